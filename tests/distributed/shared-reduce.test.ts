// The all-reduce through shared memory (threads of one process): every member gets the
// single-worker bits for any member count and slot order, reductions of later steps and attempts
// reuse the exchange without mixing in stale sums, and a cancelled reduction stops waiting.
// The members here are async tasks of one thread; cluster.test.ts runs it between real threads.

import { describe, expect, it } from 'vitest';
import {
  newExchange,
  reductionSeq,
  sharedReducer,
  threadAddress,
  threadSlots,
} from '../../src/distributed/shared-reduce.ts';
import { accumulateExact, fromExact } from '../../src/kernels/optim.ts';
import { Rng } from '../../src/util/rng.ts';

const BITS = 40;

/** Each member's exact accumulator of `size` random gradients, and their sum as fp32 (the oracle). */
function problem(members: number, size: number, seed: number) {
  const rng = new Rng(seed);
  const accs = Array.from({ length: members }, () => {
    const acc = new Float64Array(size);
    const g = Float32Array.from({ length: size }, () => rng.normal() * 10 ** rng.int(4) * 1e-3);
    accumulateExact(acc, g, BITS, members);
    return acc;
  });
  const total = new Float64Array(size);
  for (const acc of accs) for (let i = 0; i < size; i++) total[i] += acc[i];
  const expected = new Float32Array(size);
  fromExact(expected, total, BITS);
  return { accs, expected };
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

async function reduceAll(
  exchange: ReturnType<typeof newExchange>,
  slots: number[],
  accs: Float64Array[],
  seq: bigint,
) {
  const outs = slots.map(() => new Float32Array(exchange.params));
  await Promise.all(
    slots.map((slot, i) =>
      sharedReducer({
        exchange,
        slot,
        members: slots,
        seq,
        bits: BITS,
        cancelled: () => false,
      }).reduce(accs[i], outs[i]),
    ),
  );
  return outs;
}

describe('shared-memory all-reduce', () => {
  it.each([1, 2, 3, 4, 7])('gives every one of %i members the single-worker bits', async (n) => {
    const size = 1003;
    const { accs, expected } = problem(n, size, n);
    const exchange = newExchange(8, size);
    // any slots of the exchange, in any order (the members' rank order)
    const slots = Array.from({ length: n }, (_, i) => (i * 5 + 3) % 8);
    for (const out of await reduceAll(exchange, slots, accs, reductionSeq(0, 0)))
      expect(bytes(out).equals(bytes(expected))).toBe(true);
  });

  it('reuses the exchange step after step and attempt after attempt, with fewer members', async () => {
    const size = 517;
    const exchange = newExchange(3, size);
    const plan: [number, number, number[]][] = [
      [0, 0, [0, 1, 2]],
      [1, 0, [0, 1, 2]],
      [1, 1, [2, 0]], // a retry after member 1 was lost
      [2, 0, [0, 2]],
    ];
    for (const [step, attempt, slots] of plan) {
      const { accs, expected } = problem(slots.length, size, 10 * step + attempt);
      const outs = await reduceAll(exchange, slots, accs, reductionSeq(step, attempt));
      for (const out of outs) expect(bytes(out).equals(bytes(expected))).toBe(true);
    }
    expect(reductionSeq(1, 0) > reductionSeq(0, 5)).toBe(true);
    expect(reductionSeq(0, 0) > 0n).toBe(true);
  });

  it('stops waiting for a member that never arrives once cancelled, leaving the gradient alone', async () => {
    const size = 64;
    const exchange = newExchange(2, size);
    let cancelled = false;
    const grads = new Float32Array(size).fill(7);
    const waiting = sharedReducer({
      exchange,
      slot: 0,
      members: [0, 1],
      seq: reductionSeq(0, 0),
      bits: BITS,
      cancelled: () => cancelled,
    }).reduce(new Float64Array(size), grads);
    setTimeout(() => (cancelled = true), 30);
    await expect(waiting).rejects.toThrow(/cancelled/);
    expect(grads.every((g) => g === 7)).toBe(true);
  });

  it('refuses an accumulator of another size', async () => {
    const reducer = sharedReducer({
      exchange: newExchange(2, 10),
      slot: 0,
      members: [0, 1],
      seq: 1n,
      bits: BITS,
      cancelled: () => false,
    });
    await expect(reducer.reduce(new Float64Array(11), new Float32Array(11))).rejects.toThrow(
      /holds 10 parameters, not 11/,
    );
  });

  it('takes slots only when every member is a thread', () => {
    expect(threadSlots([threadAddress(2), threadAddress(0)])).toEqual([2, 0]);
    expect(threadSlots([threadAddress(1), '127.0.0.1:7000'])).toBeNull();
    expect(threadSlots(['thread:x'])).toBeNull();
  });
});
