// The exact all-reduce: ring reduce-scatter + all-gather gives every member the exact sum for
// any member count, bucket size and delivery order, and an abort stops it without touching the
// output again.

import { describe, expect, it } from 'vitest';
import type { Chunk, RingLinks } from '../../src/distributed/collectives.ts';
import { Mailbox, exactAllReduce } from '../../src/distributed/collectives.ts';
import { accumulateExact, fromExact } from '../../src/kernels/optim.ts';
import { Rng } from '../../src/util/rng.ts';

const BITS = 40;

/** n members wired through mailboxes; deliveries happen in a random order (seeded). */
function ring(
  n: number,
  seed: number,
): { links: RingLinks[]; mailboxes: Mailbox[]; flush: () => Promise<void> } {
  const rng = new Rng(seed);
  const mailboxes = Array.from({ length: n }, () => new Mailbox());
  const ranks = Array.from({ length: n }, (_, i) => 10 + i); // ranks need not be positions
  const queue: (() => void)[] = [];
  const links = ranks.map((rank, position) => ({
    position,
    size: n,
    ranks,
    send: (to: number, chunk: Chunk) => queue.push(() => mailboxes[to].deliver(rank, chunk)),
  }));
  const flush = async () => {
    for (let idle = 0; idle < 5;) {
      if (queue.length === 0) {
        idle++;
        await new Promise((r) => setImmediate(r));
        continue;
      }
      idle = 0;
      const [deliver] = queue.splice(rng.int(queue.length), 1);
      deliver();
      await Promise.resolve();
    }
  };
  return { links, mailboxes, flush };
}

const toFp32 = (out: Float32Array, sums: Float64Array, begin: number, end: number) =>
  fromExact(out, sums, BITS, begin, end);

function shardGrads(rng: Rng, shards: number, size: number): Float32Array[] {
  return Array.from({ length: shards }, () =>
    Float32Array.from({ length: size }, () => rng.normal() * 10 ** rng.int(4) * 1e-3),
  );
}

describe('exact all-reduce', () => {
  const size = 1001;
  const grads = shardGrads(new Rng(3), 6, size);
  // the oracle: all six shards summed on one worker
  const single = new Float64Array(size);
  for (const g of grads) accumulateExact(single, g, BITS, 6);
  const expected = new Float32Array(size);
  fromExact(expected, single, BITS);

  it.each([1, 2, 3, 4, 6])('gives every one of %i members the single-worker bits', async (n) => {
    const { links, mailboxes, flush } = ring(n, n);
    const sums = links.map((_, p) => {
      const acc = new Float64Array(size);
      for (let shard = p; shard < 6; shard += n) accumulateExact(acc, grads[shard], BITS, 6);
      return acc;
    });
    const outs = links.map(() => new Float32Array(size));
    const done = Promise.all(
      links.map((l, p) =>
        exactAllReduce({
          ring: l,
          mailbox: mailboxes[p],
          sums: sums[p],
          out: outs[p],
          toFp32,
          step: 0,
          attempt: 0,
          cancelled: () => false,
          bucketElems: 128,
        }),
      ),
    );
    await flush();
    await done;
    for (const out of outs)
      expect(Buffer.from(out.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
  });

  it('stops at the next receive once cancelled, leaving the output alone', async () => {
    const { links, mailboxes } = ring(2, 1);
    const out = new Float32Array(size).fill(7);
    let cancelled = false;
    const pending = exactAllReduce({
      ring: links[0],
      mailbox: mailboxes[0],
      sums: new Float64Array(size),
      out,
      toFp32,
      step: 0,
      attempt: 0,
      cancelled: () => cancelled,
      bucketElems: 128,
    });
    cancelled = true;
    mailboxes[0].abort('peer lost', 0, 1);
    await expect(pending).rejects.toThrow(/aborted: peer lost|cancelled/);
    expect(out.every((x) => x === 7)).toBe(true);
  });

  it('drops chunks from older attempts', async () => {
    const box = new Mailbox();
    box.abort('replanned', 3, 2);
    box.reopen();
    const tag = { step: 3, attempt: 1, bucket: 0, phase: 'rs' as const, round: 0 };
    box.deliver(1, { v: 1, t: 'chunk', ...tag, data: new Float64Array(1) });
    const late = box.receive(1, tag);
    const newer = { ...tag, attempt: 2 };
    box.deliver(1, { v: 1, t: 'chunk', ...newer, data: Float64Array.of(5) });
    expect(Array.from((await box.receive(1, newer)) as Float64Array)).toEqual([5]);
    const raced = await Promise.race([
      late.then(() => 'delivered'),
      new Promise((r) => setTimeout(() => r('pending'), 20)),
    ]);
    expect(raced).toBe('pending');
  });
});

describe('exact sums', () => {
  it('are independent of how shards are grouped and in which order groups are added', () => {
    const rng = new Rng(9);
    const grads = shardGrads(rng, 8, 257);
    const sum = (groups: number[][]) => {
      const total = new Float64Array(257);
      for (const group of groups) {
        const part = new Float64Array(257);
        for (const s of group) accumulateExact(part, grads[s], BITS, 8);
        for (let i = 0; i < 257; i++) total[i] += part[i];
      }
      return Buffer.from(total.buffer);
    };
    const reference = sum([[0, 1, 2, 3, 4, 5, 6, 7]]);
    expect(
      sum([
        [7, 6],
        [5, 4, 3],
        [2, 1, 0],
      ]).equals(reference),
    ).toBe(true);
    expect(sum([[3], [1], [4], [0], [5], [2], [6], [7]]).equals(reference)).toBe(true);
  });

  it('flag a value too large for the grid (and NaN) as overflow', () => {
    const acc = new Float64Array(2);
    expect(accumulateExact(acc, Float32Array.from([1, -2]), BITS, 8)).toBe(false);
    expect(accumulateExact(acc, Float32Array.from([2 ** 12 / 8, 0]), BITS, 8)).toBe(true);
    expect(accumulateExact(new Float64Array(1), Float32Array.from([NaN]), BITS, 8)).toBe(true);
  });

  it('round onto the 2^-G grid', () => {
    const acc = new Float64Array(3);
    accumulateExact(acc, Float32Array.of(0.75, 3 * 2 ** -42, 2 ** -42), BITS, 1);
    expect(Array.from(acc)).toEqual([0.75 * 2 ** 40, 1, 0]); // 0.75 and 0.25 grid steps round to 1 and 0
    const out = new Float32Array(3);
    fromExact(out, acc, BITS);
    expect(Array.from(out)).toEqual([0.75, 2 ** -40, 0]);
  });
});
