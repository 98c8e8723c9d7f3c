// The exact all-reduce between workers: ring reduce-scatter of the Float64 integer partial sums,
// each worker turns the chunk it owns into fp32, then ring all-gather of the fp32 chunks. The
// buffer is processed in buckets, so no message exceeds bucketElems / n elements. Messages are
// matched by tag (step, attempt, bucket, phase, round, sender), so delivery order between
// different links does not matter; an abort rejects every pending receive.
//
// Ring (n members, position p, chunk c of a bucket = its c-th of n slices):
//   reduce-scatter round r = 0..n-2: send chunk (p - r) mod n to p+1, add chunk (p - r - 1) mod n from p-1
//   after it, position p holds the full sum of chunk (p + 1) mod n
//   all-gather round r = 0..n-2: send chunk (p + 1 - r) mod n, store chunk (p - r) mod n from p-1

import type { Kernels } from '../kernels/backend.ts';
import type { Reducer } from '../train/step.ts';
import { WeftError } from '../util/errors.ts';
import type { MessageOf } from './messages.ts';
import { msg } from './messages.ts';

export type Chunk = MessageOf<'chunk'>;

/** Default bucket: 2^22 elements (32 MiB of Float64 sums). */
export const DEFAULT_BUCKET_ELEMS = 2 ** 22;

/** The ring as seen from one member: its position, and links by position. */
export interface RingLinks {
  position: number;
  size: number;
  /** Rank of the member at each position (for tags). */
  ranks: number[];
  send(toPosition: number, chunk: Chunk): void;
}

const keyOf = (from: number, c: Pick<Chunk, 'step' | 'attempt' | 'bucket' | 'phase' | 'round'>) =>
  `${from}/${c.step}/${c.attempt}/${c.bucket}/${c.phase}/${c.round}`;

/** Buffers chunks that arrive before they are awaited, and hands them to waiters by tag. */
export class Mailbox {
  private readonly early = new Map<string, Chunk['data']>();
  private readonly waiting = new Map<
    string,
    { resolve: (d: Chunk['data']) => void; reject: (e: Error) => void }
  >();
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
    const waiter = this.waiting.get(key);
    if (waiter) {
      this.waiting.delete(key);
      waiter.resolve(chunk.data);
    } else {
      this.early.set(key, chunk.data);
    }
  }

  receive(
    fromRank: number,
    tag: Pick<Chunk, 'step' | 'attempt' | 'bucket' | 'phase' | 'round'>,
  ): Promise<Chunk['data']> {
    if (this.aborted) return Promise.reject(this.aborted);
    const key = keyOf(fromRank, tag);
    const data = this.early.get(key);
    if (data) {
      this.early.delete(key);
      return Promise.resolve(data);
    }
    return new Promise((resolve, reject) => this.waiting.set(key, { resolve, reject }));
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
}

/** Sums every member's `sums` across the ring and writes the fp32 result into `out` on every member. */
export async function exactAllReduce(options: AllReduceOptions): Promise<void> {
  const { ring, mailbox, sums, out, toFp32, step, attempt, cancelled } = options;
  const bucketElems = options.bucketElems ?? DEFAULT_BUCKET_ELEMS;
  const receive = async (fromRank: number, tag: Parameters<Mailbox['receive']>[1]) => {
    const data = await mailbox.receive(fromRank, tag);
    // an aborted attempt must not touch the buffers again, even if its data had arrived
    if (cancelled())
      throw new WeftError(
        'WEFT_E_PROTOCOL',
        `collective for step ${step} attempt ${attempt} cancelled`,
      );
    return data;
  };
  const { position: p, size: n, ranks } = ring;
  const next = mod(p + 1, n);
  const prevRank = ranks[mod(p - 1, n)];
  for (let bucket = 0, begin = 0; begin < sums.length; bucket++, begin += bucketElems) {
    const end = Math.min(sums.length, begin + bucketElems);
    for (let round = 0; round < n - 1; round++) {
      const tag = { step, attempt, bucket, phase: 'rs' as const, round };
      const [s0, s1] = chunkRange(begin, end, mod(p - round, n), n);
      ring.send(next, msg('chunk', { ...tag, data: sums.slice(s0, s1) }));
      const incoming = (await receive(prevRank, tag)) as Float64Array;
      const [r0, r1] = chunkRange(begin, end, mod(p - round - 1, n), n);
      if (!(incoming instanceof Float64Array) || incoming.length !== r1 - r0) {
        throw new WeftError(
          'WEFT_E_PROTOCOL',
          `reduce-scatter chunk from rank ${prevRank} has the wrong type or length`,
        );
      }
      addInto(sums, incoming, r0);
    }
    const [o0, o1] = chunkRange(begin, end, mod(p + 1, n), n);
    toFp32(out, sums, o0, o1);
    for (let round = 0; round < n - 1; round++) {
      const tag = { step, attempt, bucket, phase: 'ag' as const, round };
      const [s0, s1] = chunkRange(begin, end, mod(p + 1 - round, n), n);
      ring.send(next, msg('chunk', { ...tag, data: out.slice(s0, s1) }));
      const incoming = (await receive(prevRank, tag)) as Float32Array;
      const [r0, r1] = chunkRange(begin, end, mod(p - round, n), n);
      if (!(incoming instanceof Float32Array) || incoming.length !== r1 - r0) {
        throw new WeftError(
          'WEFT_E_PROTOCOL',
          `all-gather chunk from rank ${prevRank} has the wrong type or length`,
        );
      }
      out.set(incoming, r0);
    }
  }
}

/**
 * The training step's Reducer over the ring (train/step.ts): copies the accumulator into `work`
 * (the accumulator stays as it was, for a retried attempt) and all-reduces that, converting each
 * owned chunk with the backend's fromExact. `work` is an ordinary JavaScript buffer: only the
 * chunk being converted is staged in a backend's memory.
 */
export function ringReducer(
  options: Omit<AllReduceOptions, 'sums' | 'out' | 'toFp32'> & {
    work: Float64Array;
    backend: Pick<Kernels, 'fromExact'>;
    bits: number;
  },
): Reducer {
  const { backend, bits, work, cancelled } = options;
  const toFp32 = (out: Float32Array, sums: Float64Array, begin: number, end: number) =>
    backend.fromExact(out.subarray(begin, end), sums.subarray(begin, end), bits);
  return {
    reduce: (acc, grads) => {
      if (cancelled())
        return Promise.reject(new WeftError('WEFT_E_PROTOCOL', 'all-reduce cancelled'));
      work.set(acc);
      return exactAllReduce({ ...options, sums: work, out: grads, toFp32 });
    },
  };
}
