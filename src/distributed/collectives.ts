// The exact all-reduce between workers: ring reduce-scatter of the Float64 integer partial sums,
// each worker turns the chunk it owns into fp32, then ring all-gather of the fp32 chunks. The
// buffer is processed in buckets, so no chunk exceeds bucketElems / n elements, and a chunk
// travels in pieces of at most PIECE_ELEMS elements at fixed offsets, each used (added, stored)
// the moment it arrives while the next is on the wire. Pieces are matched by tag (step, attempt,
// bucket, phase, round, sender), so delivery order between and within links does not matter; a
// piece out of place (wrong offset, size, type, or twice) fails the receive; an abort rejects
// every pending receive. Pieces are sent as views of the sums and outputs (no copy), so the
// all-reduce ends only once its links have handed every piece to the operating system. A
// cancelled attempt stops at once, though: pieces it queued may then go out carrying the next
// attempt's bytes, which is harmless because they carry the old attempt in their tag and every
// receiver drops them (its floor has passed it) or uses them in an attempt the coordinator
// ignores.
//
// Ring (n members, position p, chunk c of a bucket = its c-th of n slices):
//   reduce-scatter round r = 0..n-2: send chunk (p - r) mod n to p+1, add chunk (p - r - 1) mod n from p-1
//   after it, position p holds the full sum of chunk (p + 1) mod n
//   all-gather round r = 0..n-2: send chunk (p + 1 - r) mod n, store chunk (p - r) mod n from p-1

import type { Kernels } from '../kernels/backend.ts';
import { forEachPart } from '../model/backward-order.ts';
import type { Reducer } from '../train/step.ts';
import { WeftError } from '../util/errors.ts';
import { CompactSums } from './compact-sums.ts';
import type { MessageOf } from './messages.ts';
import { msg } from './messages.ts';

export type Chunk = MessageOf<'chunk'>;
type Tag = Pick<Chunk, 'step' | 'attempt' | 'bucket' | 'phase' | 'round'>;

/** Default bucket: 2^22 elements (32 MiB of Float64 sums). */
export const DEFAULT_BUCKET_ELEMS = 2 ** 22;
/** Elements per piece (1 MiB of Float64 sums): part of the protocol, both ends use it. */
export const PIECE_ELEMS = 2 ** 17;

/** Pieces of a chunk of `length` elements: [offset, count] (one empty piece for an empty chunk). */
export function pieces(length: number): [number, number][] {
  const out: [number, number][] = [];
  for (let at = 0; at === 0 || at < length; at += PIECE_ELEMS)
    out.push([at, Math.min(PIECE_ELEMS, length - at)]);
  return out;
}

/** The ring as seen from one member: its position, and links by position. */
export interface RingLinks {
  position: number;
  size: number;
  /** Rank of the member at each position (for tags). */
  ranks: number[];
  /** Sends a piece; its data is a view the caller keeps unchanged until flushed(). */
  send(toPosition: number, chunk: Chunk): void;
  /** Resolves once every piece sent so far is out of the caller's buffers. */
  flushed?(): Promise<void>;
}

const keyOf = (from: number, c: Tag) =>
  `${from}/${c.step}/${c.attempt}/${c.bucket}/${c.phase}/${c.round}`;

/** A receive in progress: takes the pieces of one chunk, each once, in any order. */
class Receiver {
  private readonly expected: [number, number][];
  private readonly seen = new Set<number>();

  constructor(
    private readonly from: number,
    private readonly tag: Tag,
    length: number,
    private readonly onPiece: (data: Chunk['data'], offset: number) => void,
    readonly resolve: () => void,
    readonly reject: (e: Error) => void,
  ) {
    this.expected = pieces(length);
  }

  /** Hands a piece on; true once the chunk is complete. Throws a WeftError for a piece out of place. */
  take(chunk: Chunk): boolean {
    const index = chunk.offset / PIECE_ELEMS;
    const want = this.expected[index];
    const fits =
      this.tag.phase === 'rs'
        ? chunk.data instanceof Float64Array || chunk.data instanceof CompactSums
        : chunk.data instanceof Float32Array;
    if (!want || this.seen.has(index) || chunk.data.length !== want[1] || !fits) {
      throw new WeftError(
        'WEFT_E_PROTOCOL',
        `${this.tag.phase === 'rs' ? 'reduce-scatter' : 'all-gather'} piece at ${chunk.offset} from rank ${this.from} has the wrong type, place or length`,
      );
    }
    this.seen.add(index);
    this.onPiece(chunk.data, chunk.offset);
    return this.seen.size === this.expected.length;
  }
}

/** Buffers pieces that arrive before they are awaited, and hands them to the receive of their tag. */
export class Mailbox {
  private readonly early = new Map<string, Chunk[]>();
  private readonly waiting = new Map<string, Receiver>();
  private aborted: WeftError | null = null;
  /** Oldest (step, attempt) still accepted; older chunks are dropped. */
  private floor = { step: 0, attempt: 0 };

  deliver(fromRank: number, chunk: Chunk): void {
    if (
      chunk.step < this.floor.step ||
      (chunk.step === this.floor.step && chunk.attempt < this.floor.attempt)
    )
      return;
    const key = keyOf(fromRank, chunk);
    const receiver = this.waiting.get(key);
    if (receiver) return void this.give(key, receiver, chunk);
    const early = this.early.get(key) ?? [];
    if (early.some((c) => c.offset === chunk.offset)) return; // a piece twice: the receive refuses it
    early.push(chunk);
    this.early.set(key, early);
  }

  /**
   * Receives the chunk of `length` elements tagged `tag` from `fromRank`, handing each piece to
   * `onPiece(data, offset)` as it comes; resolves when every piece has been handed on.
   */
  receive(
    fromRank: number,
    tag: Tag,
    length: number,
    onPiece: (data: Chunk['data'], offset: number) => void,
  ): Promise<void> {
    if (this.aborted) return Promise.reject(this.aborted);
    const key = keyOf(fromRank, tag);
    return new Promise((resolve, reject) => {
      const receiver = new Receiver(fromRank, tag, length, onPiece, resolve, reject);
      this.waiting.set(key, receiver);
      const early = this.early.get(key) ?? [];
      this.early.delete(key);
      for (const chunk of early) if (!this.give(key, receiver, chunk)) break;
    });
  }

  /** Gives `receiver` a piece; false once it has finished (completed, or failed). */
  private give(key: string, receiver: Receiver, chunk: Chunk): boolean {
    try {
      if (!receiver.take(chunk)) return true;
      this.waiting.delete(key);
      receiver.resolve();
    } catch (err) {
      this.waiting.delete(key);
      receiver.reject(err as Error);
    }
    return false;
  }

  /** Rejects all pending receives and drops buffered chunks older than (step, attempt). */
  abort(reason: string, step: number, attempt: number): void {
    this.aborted = new WeftError('WEFT_E_PROTOCOL', `collective aborted: ${reason}`);
    for (const { reject } of this.waiting.values()) reject(this.aborted);
    this.waiting.clear();
    this.floor = { step, attempt };
    for (const key of [...this.early.keys()]) {
      const [, s, a] = key.split('/').map(Number);
      if (s < step || (s === step && a < attempt)) this.early.delete(key);
    }
  }

  /** Accepts receives again (after an abort), for a new attempt. */
  reopen(): void {
    this.aborted = null;
  }
}

function chunkRange(begin: number, end: number, c: number, n: number): [number, number] {
  const len = end - begin;
  return [begin + Math.floor((c * len) / n), begin + Math.floor(((c + 1) * len) / n)];
}

const mod = (a: number, n: number) => ((a % n) + n) % n;

/** dst[at + i] += src[i]: kept out of the async function so V8 optimises the loop on its own. */
function addInto(dst: Float64Array, src: Float64Array, at: number): void {
  for (let i = 0; i < src.length; i++) dst[at + i] += src[i];
}

export interface AllReduceOptions {
  ring: RingLinks;
  mailbox: Mailbox;
  /** Integer-valued Float64 partial sums on the exact grid; the work buffer, overwritten. */
  sums: Float64Array;
  /** Where every member gets the fp32 result. */
  out: Float32Array;
  /** out[begin..end) = fp32 of sums[begin..end) (the backend's fromExact, with the grid's bits). */
  toFp32: (out: Float32Array, sums: Float64Array, begin: number, end: number) => void;
  step: number;
  attempt: number;
  /** Once true, the call throws at its next receive and writes nothing more. */
  cancelled: () => boolean;
  /** Elements per bucket (default DEFAULT_BUCKET_ELEMS). */
  bucketElems?: number;
  /** Tag of the first bucket (default 0): all-reduces of one step among other members keep theirs apart. */
  firstBucket?: number;
  /** Before a bucket [begin, end): puts this member's partial sums into sums[begin, end). */
  fill?: (begin: number, end: number) => Promise<void>;
  /** After a bucket: out[begin, end) holds its result. */
  drain?: (begin: number, end: number) => void;
}

/** Sums every member's `sums` across the ring and writes the fp32 result into `out` on every member. */
export async function exactAllReduce(options: AllReduceOptions): Promise<void> {
  const { ring, mailbox, sums, out, toFp32, step, attempt, cancelled } = options;
  const bucketElems = options.bucketElems ?? DEFAULT_BUCKET_ELEMS;
  const { position: p, size: n, ranks } = ring;
  const next = mod(p + 1, n);
  const prevRank = ranks[mod(p - 1, n)];
  /** Sends chunk [c0, c1) of `from` as pieces (views, not copies). */
  const sendChunk = (tag: Tag, from: Float64Array | Float32Array, c0: number, c1: number) => {
    for (const [offset, count] of pieces(c1 - c0)) {
      const data = from.subarray(c0 + offset, c0 + offset + count);
      ring.send(next, msg('chunk', { ...tag, offset, data }));
    }
  };
  /** Receives chunk [c0, c1) from the previous member, each piece into `use` at its place. */
  const stopIfCancelled = () => {
    if (cancelled())
      throw new WeftError(
        'WEFT_E_PROTOCOL',
        `collective for step ${step} attempt ${attempt} cancelled`,
      );
  };
  const receiveChunk = async (
    tag: Tag,
    c0: number,
    c1: number,
    use: (data: Chunk['data'], at: number) => void,
  ) => {
    // an aborted attempt must not touch the buffers again, even if its data had arrived
    await mailbox.receive(prevRank, tag, c1 - c0, (data, offset) => {
      stopIfCancelled();
      use(data, c0 + offset);
    });
    stopIfCancelled();
  };
  try {
    const first = options.firstBucket ?? 0;
    for (let bucket = first, begin = 0; begin < sums.length; bucket++, begin += bucketElems) {
      const end = Math.min(sums.length, begin + bucketElems);
      await options.fill?.(begin, end);
      stopIfCancelled();
      for (let round = 0; round < n - 1; round++) {
        const tag = { step, attempt, bucket, phase: 'rs' as const, round };
        sendChunk(tag, sums, ...chunkRange(begin, end, mod(p - round, n), n));
        const [r0, r1] = chunkRange(begin, end, mod(p - round - 1, n), n);
        await receiveChunk(tag, r0, r1, (data, at) =>
          data instanceof CompactSums
            ? data.addInto(sums, at)
            : addInto(sums, data as Float64Array, at),
        );
      }
      const [o0, o1] = chunkRange(begin, end, mod(p + 1, n), n);
      toFp32(out, sums, o0, o1);
      for (let round = 0; round < n - 1; round++) {
        const tag = { step, attempt, bucket, phase: 'ag' as const, round };
        sendChunk(tag, out, ...chunkRange(begin, end, mod(p + 1 - round, n), n));
        const [r0, r1] = chunkRange(begin, end, mod(p - round, n), n);
        await receiveChunk(tag, r0, r1, (data, at) => out.set(data as Float32Array, at));
      }
      options.drain?.(begin, end);
    }
  } finally {
    await ring.flushed?.(); // the pieces sent are views: they must be out before anyone reuses the buffers
  }
}

/**
 * The training step's Reducer over the ring (train/step.ts): copies the accumulator into `work`
 * (the accumulator stays as it was, for a retried attempt) and all-reduces that, converting each
 * owned chunk with the backend's fromExact. `work` is an ordinary JavaScript buffer: only the
 * chunk being converted is staged in a backend's memory.
 *
 * Given the step's progress, it overlaps the backward pass: `work` and `staged` (fp32) hold the
 * gradient in the order the backward pass finishes it (model/backward-order.ts, last layers
 * first), and each bucket is copied in from the accumulator as soon as the progress says it is
 * final, reduced, and copied out to its places in the gradient.
 */
export function ringReducer(
  options: Omit<AllReduceOptions, 'sums' | 'out' | 'toFp32' | 'fill' | 'drain'> & {
    work: Float64Array;
    /** fp32 results in backward order (for overlapping; as long as `work`). */
    staged?: () => Float32Array;
    backend: Pick<Kernels, 'fromExact'>;
    bits: number;
  },
): Reducer {
  const { backend, bits, work, cancelled } = options;
  const toFp32 = (out: Float32Array, sums: Float64Array, begin: number, end: number) =>
    backend.fromExact(out.subarray(begin, end), sums.subarray(begin, end), bits);
  return {
    overlaps: options.staged !== undefined,
    reduce: (acc, grads, progress) => {
      if (cancelled())
        return Promise.reject(new WeftError('WEFT_E_PROTOCOL', 'all-reduce cancelled'));
      if (!options.staged || !progress) {
        work.set(acc);
        return exactAllReduce({ ...options, sums: work, out: grads, toFp32 });
      }
      const { order } = progress;
      const staged = options.staged();
      return exactAllReduce({
        ...options,
        sums: work,
        out: staged,
        toFp32,
        fill: async (begin, end) => {
          await progress.whenReady(end);
          forEachPart(order, begin, end, (offset, position, count) =>
            work.set(acc.subarray(offset, offset + count), position),
          );
        },
        drain: (begin, end) =>
          forEachPart(order, begin, end, (offset, position, count) =>
            grads.set(staged.subarray(position, position + count), offset),
          ),
      });
    },
  };
}
