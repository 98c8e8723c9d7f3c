// Tokenizer factory: builds a tokenizer from a spec ('gpt2', 'byte', 'bpe:N' trained on a
// corpus) or from its saved tokenizer.json, checking the JSON before use.

import { WeftError, check } from '../util/errors.ts';
import { readJson } from '../util/files.ts';
import { BpeTokenizer } from './bpe.ts';
import { trainBpe } from './train-bpe.ts';
import type { Tokenizer, TokenizerJSON } from './types.ts';
import { SPECIAL_TOKENS } from './types.ts';

export type { Tokenizer, TokenizerJSON } from './types.ts';

/** Parses 'gpt2' | 'byte' | 'bpe:N'; throws WEFT_E_CONFIG naming the spec otherwise. */
export function parseTokenizerSpec(
  spec: string,
): { kind: 'gpt2' | 'byte' } | { kind: 'bpe'; size: number } {
  if (spec === 'gpt2' || spec === 'byte') return { kind: spec };
  const m = /^bpe:(\d+)$/.exec(spec);
  if (m && Number(m[1]) >= 256 && Number(m[1]) < 1048576)
    return { kind: 'bpe', size: Number(m[1]) };
  throw new WeftError(
    'WEFT_E_CONFIG',
    `unknown tokenizer "${spec}"; use gpt2, byte, or bpe:N with 256 <= N < 1048576`,
  );
}

/**
 * The vocabulary size tokenizer `spec` gives (specials included): exact for gpt2 and byte; for
 * bpe:N the size when the training text has enough distinct pairs to learn all N tokens.
 */
export function specVocabSize(spec: string): number {
  const parsed = parseTokenizerSpec(spec);
  return (
    (parsed.kind === 'bpe' ? parsed.size : createTokenizer(parsed.kind).vocabSize) +
    (parsed.kind === 'bpe' ? SPECIAL_TOKENS.length : 0)
  );
}

/** Builds the tokenizer `spec`; a bpe:N spec learns its merges from `corpus`. */
export function createTokenizer(spec: string, corpus = ''): Tokenizer {
  const parsed = parseTokenizerSpec(spec);
  switch (parsed.kind) {
    case 'gpt2':
      return BpeTokenizer.gpt2();
    case 'byte':
      return BpeTokenizer.bytes();
    case 'bpe':
      return BpeTokenizer.fromMerges(trainBpe(corpus, parsed.size));
    default:
      return parsed satisfies never;
  }
}

export function tokenizerFromJSON(json: unknown, source = 'tokenizer.json'): Tokenizer {
  const t = json as Partial<TokenizerJSON> | null;
  check(
    typeof t === 'object' && t !== null && t.format === 'weft-tokenizer',
    'WEFT_E_FORMAT',
    `${source} is not a weft tokenizer (missing "format": "weft-tokenizer")`,
  );
  check(
    t.version === 1,
    'WEFT_E_FORMAT',
    `${source} has version ${String(t.version)}; this weft reads version 1`,
  );
  switch (t.kind) {
    case 'gpt2':
      return BpeTokenizer.gpt2();
    case 'byte':
      return BpeTokenizer.bytes();
    case 'bpe':
      check(Array.isArray(t.merges), 'WEFT_E_FORMAT', `${source} has no merges list`);
      return BpeTokenizer.fromMerges(t.merges);
    default:
      throw new WeftError('WEFT_E_FORMAT', `${source} has unknown kind ${JSON.stringify(t.kind)}`);
  }
}

export function loadTokenizer(path: string): Tokenizer {
  return tokenizerFromJSON(readJson(path, 'tokenizer file'), path);
}
