// The exact all-reduce: ring reduce-scatter + all-gather gives every member the exact sum for
// any member count, bucket size and delivery order, and an abort stops it without touching the
// output again.

import { describe, expect, it } from 'vitest';
import type { Chunk, RingLinks } from '../../src/distributed/collectives.ts';
import { Mailbox, PIECE_ELEMS, exactAllReduce } from '../../src/distributed/collectives.ts';
import { PROTOCOL_VERSION, detached } from '../../src/distributed/messages.ts';
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
    // a copy, as every transport makes: a piece is a view of the sender's buffers
    send: (to: number, chunk: Chunk) => {
      const copy = detached(chunk) as Chunk;
      queue.push(() => mailboxes[to].deliver(rank, copy));
    },
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

/** Six shards' gradients of `size` elements, and the single-worker sum of them as fp32 (the oracle). */
function problem(size: number) {
  const grads = shardGrads(new Rng(3), 6, size);
  const single = new Float64Array(size);
  for (const g of grads) accumulateExact(single, g, BITS, 6);
  const expected = new Float32Array(size);
  fromExact(expected, single, BITS);
  return { grads, expected };
}

/** n members all-reduce their shards (dealt round-robin); every output must be `expected`, bit for bit. */
async function expectSingleWorkerBits(n: number, size: number, bucketElems: number) {
  const { grads, expected } = problem(size);
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
        bucketElems,
      }),
    ),
  );
  await flush();
  await done;
  for (const out of outs)
    expect(Buffer.from(out.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
}

describe('exact all-reduce', () => {
  const size = 1001;

  it.each([1, 2, 3, 4, 6])('gives every one of %i members the single-worker bits', (n) =>
    expectSingleWorkerBits(n, size, 128),
  );

  it.each([2, 3])(
    'with %i members, chunks of several pieces arriving in any order still give those bits',
    (n) => expectSingleWorkerBits(n, 3 * PIECE_ELEMS + 17, 2 ** 22),
  );

  it('sends views, not copies, and ends only once its link has flushed them', async () => {
    // pieces are handed over late, as views of the sender's buffers; flushed() resolves only
    // when this sender's queue is empty: the result must still be exact, and no all-reduce may
    // end while a piece it sent is waiting
    const { grads, expected } = problem(3 * PIECE_ELEMS + 5);
    const n = 2;
    const mailboxes = [new Mailbox(), new Mailbox()];
    const queues: (() => void)[][] = [[], []];
    const drains: (() => void)[][] = [[], []];
    let endedWhilePending = false;
    const links: RingLinks[] = [0, 1].map((p) => ({
      position: p,
      size: n,
      ranks: [0, 1],
      send: (to: number, chunk: Chunk) => queues[p].push(() => mailboxes[to].deliver(p, chunk)),
      flushed: () =>
        queues[p].length === 0 ? Promise.resolve() : new Promise((r) => drains[p].push(r)),
    }));
    const deliverer = setInterval(() => {
      for (const p of [0, 1]) {
        queues[p].shift()?.();
        if (queues[p].length === 0) drains[p].splice(0).forEach((r) => r());
      }
    }, 0);
    const size = grads[0].length;
    const sums = [0, 1].map((p) => {
      const acc = new Float64Array(size);
      for (let shard = p; shard < 6; shard += n) accumulateExact(acc, grads[shard], BITS, 6);
      return acc;
    });
    const outs = [0, 1].map(() => new Float32Array(size));
    await Promise.all(
      [0, 1].map(async (p) => {
        await exactAllReduce({
          ring: links[p],
          mailbox: mailboxes[p],
          sums: sums[p],
          out: outs[p],
          toFp32,
          step: 0,
          attempt: 0,
          cancelled: () => false,
        });
        if (queues[p].length > 0) endedWhilePending = true;
      }),
    );
    clearInterval(deliverer);
    expect(endedWhilePending).toBe(false);
    for (const out of outs)
      expect(Buffer.from(out.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
  });

  it('refuses a piece of the wrong type (fp32 in the reduce-scatter)', async () => {
    const box = new Mailbox();
    const tag = { step: 0, attempt: 0, bucket: 0, phase: 'rs' as const, round: 0 };
    const failed = box.receive(1, tag, 4, () => {});
    box.deliver(1, {
      v: PROTOCOL_VERSION,
      t: 'chunk',
      ...tag,
      offset: 0,
      data: new Float32Array(4),
    });
    await expect(failed).rejects.toThrow(/wrong type, place or length/);
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
    box.deliver(1, {
      v: PROTOCOL_VERSION,
      t: 'chunk',
      ...tag,
      offset: 0,
      data: new Float64Array(1),
    });
    const got: number[] = [];
    const late = box.receive(1, tag, 1, (d) => got.push(...(d as Float64Array)));
    const newer = { ...tag, attempt: 2 };
    box.deliver(1, {
      v: PROTOCOL_VERSION,
      t: 'chunk',
      ...newer,
      offset: 0,
      data: Float64Array.of(5),
    });
    await box.receive(1, newer, 1, (d) => got.push(...(d as Float64Array)));
    expect(got).toEqual([5]);
    const raced = await Promise.race([
      late.then(() => 'delivered'),
      new Promise((r) => setTimeout(() => r('pending'), 20)),
    ]);
    expect(raced).toBe('pending');
  });

  it('takes pieces in any order, and fails a receive on a piece out of place', async () => {
    const box = new Mailbox();
    const tag = { step: 0, attempt: 0, bucket: 0, phase: 'rs' as const, round: 0 };
    const length = PIECE_ELEMS + 3;
    const piece = (offset: number, n: number) =>
      ({
        v: PROTOCOL_VERSION,
        t: 'chunk',
        ...tag,
        offset,
        data: new Float64Array(n).fill(offset + 1),
      }) as const;
    const into = new Float64Array(length);
    box.deliver(1, piece(PIECE_ELEMS, 3)); // the second piece first, before the receive
    const done = box.receive(1, tag, length, (d, at) => into.set(d as Float64Array, at));
    box.deliver(1, piece(0, PIECE_ELEMS));
    await done;
    expect(into[0]).toBe(1);
    expect(into[length - 1]).toBe(PIECE_ELEMS + 1);
    for (const bad of [piece(0, 5), piece(7, PIECE_ELEMS), piece(2 * PIECE_ELEMS, 1)]) {
      const failed = box.receive(1, { ...tag, round: 1 }, length, () => {});
      box.deliver(1, { ...bad, round: 1 });
      await expect(failed).rejects.toThrow(
        /piece at \d+ from rank 1 has the wrong type, place or length/,
      );
    }
    const twice = box.receive(1, { ...tag, round: 2 }, length, () => {});
    box.deliver(1, { ...piece(0, PIECE_ELEMS), round: 2 });
    box.deliver(1, { ...piece(0, PIECE_ELEMS), round: 2 });
    await expect(twice).rejects.toThrow(/wrong type, place or length/);
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
