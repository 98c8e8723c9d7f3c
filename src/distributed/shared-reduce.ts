// The exact all-reduce between worker threads of one process, through shared memory: no socket,
// no message, no copy but the ones the sum needs. The launcher (launch.ts, trainWithThreads)
// makes one Exchange for all its threads; each thread has a slot (its thread index).
//
// A reduction among `members` (their slots, in rank order) for one (step, attempt):
//   1. each member copies its exact accumulator into its slot's sums, then says so (arrived);
//   2. once every member has arrived, member q sums chunk q of every member's sums (integers:
//      exact in any order) and writes it as fp32 into the shared result, then says so (reduced);
//   3. once every member has reduced, each copies the whole result into its own gradient.
// The same bits as the ring (collectives.ts) and as one worker. Waiting is Atomics.waitAsync (the
// event loop keeps reading the coordinator), a little at a time so a cancelled attempt (a member
// lost: the coordinator aborts) stops waiting. Progress is stamped with the reduction's sequence
// number, so stamps of an earlier attempt or step never count.
//
// Exchange layout: control (BigInt64, 2 per slot: arrived, reduced: the sequence number of the
// member's latest reduction to get that far), then per slot `params` float64 sums, then `params`
// float32 of the result.

import type { Reducer } from '../train/step.ts';
import { WeftError } from '../util/errors.ts';

export interface Exchange {
  buffer: SharedArrayBuffer;
  slots: number;
  params: number;
}

/** Shared memory for `slots` threads reducing gradients of `params` elements. */
export function newExchange(slots: number, params: number): Exchange {
  return {
    buffer: new SharedArrayBuffer(16 * slots + slots * params * 8 + params * 4),
    slots,
    params,
  };
}

/** The sequence number of a reduction: grows with (step, attempt), never 0. */
export function reductionSeq(step: number, attempt: number): bigint {
  return (BigInt(step) << 32n) + BigInt(attempt) + 1n;
}

/** A worker thread's peer address: its slot in the launcher's exchange. */
export function threadAddress(slot: number): string {
  return `thread:${slot}`;
}

/** The members' slots when every member is a thread of this launcher, else null. */
export function threadSlots(addresses: string[]): number[] | null {
  const slots = addresses.map((a) => /^thread:(\d+)$/.exec(a)?.[1]);
  return slots.every((s) => s !== undefined) ? slots.map(Number) : null;
}

/** How long one wait lasts before cancellation is checked again (ms). */
const POLL_MS = 20;

export function sharedReducer(options: {
  exchange: Exchange;
  /** This thread's slot, and the members' slots in rank order. */
  slot: number;
  members: number[];
  seq: bigint;
  bits: number;
  cancelled: () => boolean;
}): Reducer {
  const { exchange, slot, members, seq, bits, cancelled } = options;
  const { buffer, slots, params } = exchange;
  const control = new BigInt64Array(buffer, 0, 2 * slots);
  const controlBytes = 16 * slots;
  const sumsOf = (s: number) => new Float64Array(buffer, controlBytes + s * params * 8, params);
  const result = new Float32Array(buffer, controlBytes + slots * params * 8, params);
  const ARRIVED = 0;
  const REDUCED = 1;

  const stopIfCancelled = () => {
    if (cancelled()) throw new WeftError('WEFT_E_PROTOCOL', `shared-memory reduction cancelled`);
  };
  /**
   * Resolves once every member has stamped `field` with at least seq; rejects once cancelled,
   * also when the stamps it waited for came from a later attempt (after every wait, the caller's
   * next synchronous stretch must be its own attempt's).
   */
  const all = async (field: number) => {
    for (const m of members) {
      const at = 2 * m + field;
      for (let seen = Atomics.load(control, at); seen < seq; seen = Atomics.load(control, at)) {
        stopIfCancelled();
        await Atomics.waitAsync(control, at, seen, POLL_MS).value;
      }
    }
    stopIfCancelled();
  };
  const stamp = (field: number) => {
    Atomics.store(control, 2 * slot + field, seq);
    Atomics.notify(control, 2 * slot + field);
  };

  return {
    reduce: async (acc, grads) => {
      // a pending Atomics.waitAsync does not keep the event loop alive: a timer does
      const alive = setInterval(() => {}, 1000);
      try {
        if (acc.length !== params || grads.length !== params)
          throw new WeftError(
            'WEFT_E_SHAPE',
            `the exchange holds ${params} parameters, not ${acc.length}`,
          );
        stopIfCancelled();
        sumsOf(slot).set(acc);
        stamp(ARRIVED);
        await all(ARRIVED);
        // chunk q of n: [q*P/n, (q+1)*P/n), summed over the members into this slot's own chunk
        // (only this member reads it), the last member's added on the way to fp32
        // (kernels/optim.ts fromExact: fp32(sum * 2^-bits))
        const n = members.length;
        const q = members.indexOf(slot);
        const begin = Math.floor((q * params) / n);
        const end = Math.floor(((q + 1) * params) / n);
        const others = members.filter((m) => m !== slot).map((m) => sumsOf(m).subarray(begin, end));
        const mine = sumsOf(slot).subarray(begin, end);
        const last = others.pop() ?? new Float64Array(mine.length); // alone: nothing to add
        for (const other of others) for (let i = 0; i < mine.length; i++) mine[i] += other[i];
        const out = result.subarray(begin, end);
        const scale = 2 ** -bits;
        for (let i = 0; i < out.length; i++) out[i] = (mine[i] + last[i]) * scale;
        stamp(REDUCED);
        await all(REDUCED);
        grads.set(result);
      } finally {
        clearInterval(alive);
      }
    },
  };
}
