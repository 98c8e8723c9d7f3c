// Byte-level BPE, one engine for all three kinds. A word (a pre-tokenizer piece) starts as its
// UTF-8 bytes; the adjacent pair with the lowest-ranked merge is merged until none applies
// (tiktoken's rule; a merge's rank is the id it produces). Any UTF-8 round-trips.
//   byte:   256 byte tokens, no merges
//   bpe:N:  256 byte tokens + N-256 learned merges (train-bpe.ts); merge i produces id 256+i
//   gpt2:   GPT-2's 50,256 ranked tokens from js-tiktoken's ranks; <|endoftext|> = 50256
// Specials follow the ordinary tokens in SPECIAL_TOKENS order.

import gpt2Ranks from 'js-tiktoken/ranks/gpt2';
import { check } from '../util/errors.ts';
import { splitWords } from './pretokenize.ts';
import type { SpecialIds, Tokenizer, TokenizerJSON } from './types.ts';
import { SPECIAL_TOKENS } from './types.ts';

/** Key of an adjacent pair of ids (ids stay below 2^20). */
const pairKey = (a: number, b: number) => a * 1048576 + b;
const MAX_CACHED_WORDS = 200_000;
const SPECIAL_SPLIT = new RegExp(
  SPECIAL_TOKENS.map((s) => s.replace(/[|]/g, '\\|')).join('|'),
  'g',
);

const latin1 = (bytes: Uint8Array) => Buffer.from(bytes).toString('latin1');

let gpt2Instance: BpeTokenizer | null = null;

export class BpeTokenizer implements Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  readonly specials: SpecialIds;
  /** Ordinary (non-special) token count; specials take the ids after it. */
  readonly ordinaryCount: number;
  private readonly byteToId: Int32Array;
  private readonly idBytes: Uint8Array[];
  /** pairKey(a, b) -> the id merging a and b produces (its rank). */
  private readonly merges: Map<number, number>;
  private readonly json: TokenizerJSON;
  private readonly cache = new Map<string, number[]>();
  private readonly utf8 = new TextEncoder();
  private readonly decoder = new TextDecoder('utf-8');

  private constructor(
    name: string,
    byteToId: Int32Array,
    idBytes: Uint8Array[],
    merges: Map<number, number>,
    json: TokenizerJSON,
  ) {
    this.name = name;
    this.byteToId = byteToId;
    this.idBytes = idBytes;
    this.merges = merges;
    this.json = json;
    this.ordinaryCount = idBytes.length;
    const [endOfText, imStart, imEnd] = SPECIAL_TOKENS.map((_, i) => idBytes.length + i);
    this.specials = { endOfText, imStart, imEnd };
    this.vocabSize = idBytes.length + SPECIAL_TOKENS.length;
  }

  /** 256 byte tokens and the specials. */
  static bytes(): BpeTokenizer {
    const identity = Int32Array.from({ length: 256 }, (_, i) => i);
    const idBytes = Array.from({ length: 256 }, (_, i) => Uint8Array.of(i));
    return new BpeTokenizer('byte', identity, idBytes, new Map(), {
      format: 'weft-tokenizer',
      version: 1,
      kind: 'byte',
    });
  }

  /** A learned BPE: `merges` is the flat list [a0, b0, a1, b1, ...]; merge i makes id 256 + i. */
  static fromMerges(merges: number[]): BpeTokenizer {
    check(
      merges.length % 2 === 0,
      'WEFT_E_FORMAT',
      `tokenizer merges list has odd length ${merges.length}`,
    );
    const identity = Int32Array.from({ length: 256 }, (_, i) => i);
    const idBytes = Array.from({ length: 256 }, (_, i) => Uint8Array.of(i));
    const table = new Map<number, number>();
    for (let i = 0; i < merges.length; i += 2) {
      const [a, b] = [merges[i], merges[i + 1]];
      const id = 256 + i / 2;
      check(
        Number.isInteger(a) && Number.isInteger(b) && a >= 0 && b >= 0 && a < id && b < id,
        'WEFT_E_FORMAT',
        `tokenizer merge ${i / 2} joins ids ${a} and ${b}, which do not exist before id ${id}`,
      );
      idBytes.push(Buffer.concat([idBytes[a], idBytes[b]]));
      table.set(pairKey(a, b), id);
    }
    const name = `bpe:${idBytes.length}`;
    return new BpeTokenizer(name, identity, idBytes, table, {
      format: 'weft-tokenizer',
      version: 1,
      kind: 'bpe',
      merges: [...merges],
    });
  }

  /** GPT-2's tokenizer, from the ranks js-tiktoken ships (no network); built once per thread. */
  static gpt2(): BpeTokenizer {
    gpt2Instance ??= BpeTokenizer.buildGpt2();
    return gpt2Instance;
  }

  private static buildGpt2(): BpeTokenizer {
    const fields = gpt2Ranks.bpe_ranks.split(' ');
    const offset = Number(fields[1]);
    const idBytes = fields.slice(2).map((b64) => new Uint8Array(Buffer.from(b64, 'base64')));
    check(offset === 0, 'WEFT_E_FORMAT', `unexpected gpt2 ranks offset ${offset}`);
    const idOf = new Map(idBytes.map((bytes, id) => [latin1(bytes), id]));
    const byteToId = Int32Array.from(
      { length: 256 },
      (_, b) => idOf.get(latin1(Uint8Array.of(b))) ?? -1,
    );
    check(!byteToId.includes(-1), 'WEFT_E_FORMAT', 'gpt2 ranks lack a single-byte token');
    // every split of a token into two tokens is a merge producing it
    const merges = new Map<number, number>();
    idBytes.forEach((bytes, id) => {
      for (let k = 1; k < bytes.length; k++) {
        const left = idOf.get(latin1(bytes.subarray(0, k)));
        const right = idOf.get(latin1(bytes.subarray(k)));
        if (left !== undefined && right !== undefined) merges.set(pairKey(left, right), id);
      }
    });
    return new BpeTokenizer('gpt2', byteToId, idBytes, merges, {
      format: 'weft-tokenizer',
      version: 1,
      kind: 'gpt2',
    });
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    for (const word of splitWords(text)) {
      for (const id of this.encodeWord(word)) ids.push(id);
    }
    return ids;
  }

  encodeWithSpecials(text: string): number[] {
    const ids: number[] = [];
    let at = 0;
    for (const match of text.matchAll(SPECIAL_SPLIT)) {
      ids.push(...this.encode(text.slice(at, match.index)));
      ids.push(
        this.ordinaryCount + SPECIAL_TOKENS.indexOf(match[0] as (typeof SPECIAL_TOKENS)[number]),
      );
      at = match.index + match[0].length;
    }
    ids.push(...this.encode(text.slice(at)));
    return ids;
  }

  decode(ids: ArrayLike<number>): string {
    const parts: Uint8Array[] = [];
    for (let i = 0; i < ids.length; i++) parts.push(this.bytesOf(ids[i]));
    return this.decoder.decode(Buffer.concat(parts));
  }

  /** The bytes token `id` decodes to (a special decodes to its own text). */
  bytesOf(id: number): Uint8Array {
    check(
      Number.isInteger(id) && id >= 0 && id < this.vocabSize,
      'WEFT_E_TOKEN',
      `token id ${id} is outside the ${this.name} vocabulary [0, ${this.vocabSize})`,
    );
    if (id < this.ordinaryCount) return this.idBytes[id];
    return this.utf8.encode(SPECIAL_TOKENS[id - this.ordinaryCount]);
  }

  byteLength(id: number): number {
    return id < this.ordinaryCount ? this.idBytes[id].length : 0;
  }

  toJSON(): TokenizerJSON {
    return this.json;
  }

  private encodeWord(word: string): number[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    const bytes = this.utf8.encode(word);
    const ids = Array.from(bytes, (b) => this.byteToId[b]);
    for (;;) {
      let best = -1;
      let bestId = Infinity;
      for (let i = 0; i + 1 < ids.length; i++) {
        const merged = this.merges.get(pairKey(ids[i], ids[i + 1]));
        if (merged !== undefined && merged < bestId) {
          bestId = merged;
          best = i;
        }
      }
      if (best < 0) break;
      ids.splice(best, 2, bestId);
    }
    if (this.cache.size >= MAX_CACHED_WORDS) this.cache.clear();
    this.cache.set(word, ids);
    return ids;
  }
}
