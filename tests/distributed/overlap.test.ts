// The all-reduce overlapped with the backward pass: each member starts its ring reduction before
// its last shard's backward pass, which yields after every stage (as the worker shell drives it).
// Buckets go out while later layers are still being computed, and every member still ends with
// the bits of one worker holding the whole batch (the PyTorch fixture's, tests/fixtures).

import { describe, expect, it } from 'vitest';
import type { Chunk } from '../../src/distributed/collectives.ts';
import { Mailbox, ringReducer } from '../../src/distributed/collectives.ts';
import { detached } from '../../src/distributed/messages.ts';
import { createBackend } from '../../src/kernels/select.ts';
import { backwardOrder } from '../../src/model/backward-order.ts';
import { runStep } from '../../src/train/step.ts';
import { fixtureStep } from '../helpers/fixture-step.ts';
import { loadFixture } from '../helpers/fixtures.ts';

const fx = loadFixture('gpt2-tiny');
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('all-reduce overlapped with the backward pass', () => {
  it('sends buckets while the backward pass runs, and gives one worker bits', async () => {
    const single = fixtureStep(fx, createBackend('reference'));
    await runStep(single.step, single.rows, single.lr);
    const expected = Buffer.from(single.step.model.params.buffer);

    const n = 2;
    const members = Array.from({ length: n }, () => fixtureStep(fx, createBackend('reference')));
    const mailboxes = members.map(() => new Mailbox());
    const sent = members.map(
      () => [] as { phase: string; bucket: number; duringBackward: boolean }[],
    );
    const inBackward = members.map(() => false);
    const run = async (p: number) => {
      const { step, rows, globalTargets, lr } = members[p];
      const mine = rows.filter((_, row) => row % n === p);
      const reducer = ringReducer({
        ring: {
          position: p,
          size: n,
          ranks: [0, 1],
          send: (to, chunk: Chunk) => {
            sent[p].push({ ...chunk, duringBackward: inBackward[p] });
            const copy = detached(chunk) as Chunk;
            setImmediate(() => mailboxes[to].deliver(p, copy));
          },
        },
        mailbox: mailboxes[p],
        work: new Float64Array(step.model.paramCount),
        staged: () => new Float32Array(step.model.paramCount),
        backend: step.model.backend,
        bits: step.options.bits,
        step: 0,
        attempt: 0,
        cancelled: () => false,
        bucketElems: 1024,
      });
      step.begin();
      for (const row of mine.slice(0, -1)) step.addShard(row, globalTargets);
      const stages = step.addShardInStages(mine[mine.length - 1], globalTargets);
      const reduced = step.reduce(reducer); // before the last shard runs: it waits for its buckets
      inBackward[p] = true;
      while (!stages.next().done) await tick();
      inBackward[p] = false;
      await reduced;
      step.apply(lr);
    };
    await Promise.all(members.map((_, p) => run(p)));

    for (const m of members)
      expect(Buffer.from(m.step.model.params.buffer).equals(expected)).toBe(true);
    // the last layers' buckets were reduced (both phases) before the backward pass ended
    const early = sent.flat().filter((s) => s.duringBackward);
    expect(early.some((s) => s.phase === 'rs')).toBe(true);
    expect(early.some((s) => s.phase === 'ag')).toBe(true);
    // and the embeddings' (final only at the end) were not
    const order = backwardOrder(fx.config);
    const embeddings = order.stageEnds[order.stageEnds.length - 2]; // where wpe and wte begin
    expect(early.every((s) => (s.bucket + 1) * 1024 <= embeddings)).toBe(true);
  });
});

describe('backward order', () => {
  it('covers every parameter once, each layer after the ones above it', () => {
    const order = backwardOrder(fx.config);
    const seen = new Uint8Array(order.total);
    for (const r of order.ranges) for (let i = r.offset; i < r.offset + r.size; i++) seen[i]++;
    expect(order.total).toBe(single().step.model.paramCount);
    expect(seen.every((v) => v === 1)).toBe(true);
    expect(order.stageEnds).toHaveLength(fx.config.nLayer + 2);
    expect(order.stageEnds[order.stageEnds.length - 1]).toBe(order.total);
  });
});

function single() {
  return fixtureStep(fx, createBackend('reference'));
}
