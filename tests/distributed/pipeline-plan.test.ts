// Pipeline parallelism's plan, as pure data: the schedules (GPipe, 1F1B) over a grid of stages
// and micro-batches run every (stage, micro-batch) forward and backward once, in dependency
// order, within their activation bounds and in 2(m + P - 1) slots; the partition balances the
// blocks by compute and gives every parameter to a stage; the D x P grid refuses what cannot be
// split.

import { describe, expect, it } from 'vitest';
import {
  bubbleFraction,
  partitionStages,
  pipelineGrid,
} from '../../src/distributed/pipeline/partition.ts';
import type { PipelineAction } from '../../src/distributed/pipeline/schedule.ts';
import {
  SCHEDULE_KINDS,
  pipelineSchedule,
  simulate,
} from '../../src/distributed/pipeline/schedule.ts';
import { paramCount } from '../../src/model/layout.ts';
import { WeftError } from '../../src/util/errors.ts';

const grid = [1, 2, 3, 4, 5].flatMap((P) =>
  [P, P + 1, 2 * P, 8].flatMap((m) => SCHEDULE_KINDS.map((kind) => ({ kind, P, m }))),
);

describe('pipeline schedules', () => {
  it.each(grid)('$kind, P=$P, m=$m', ({ kind, P, m }) => {
    const schedules = pipelineSchedule(kind, P, m);
    const { computed, makespan, peakHeld } = simulate(schedules);
    const at = (op: string, s: number, mb: number) => {
      const found = computed.filter((a) => a.op === op && a.stage === s && a.mb === mb);
      expect(found, `${op} of micro-batch ${mb} on stage ${s}`).toHaveLength(1); // exactly once
      return found[0];
    };
    for (let s = 0; s < P; s++) {
      for (let mb = 0; mb < m; mb++) {
        const f = at('forward', s, mb);
        const b = at('backward', s, mb);
        expect(b.start).toBeGreaterThanOrEqual(f.end);
        if (s + 1 < P) {
          expect(at('forward', s + 1, mb).start).toBeGreaterThanOrEqual(f.end);
          expect(b.start).toBeGreaterThanOrEqual(at('backward', s + 1, mb).end);
        }
      }
      // activations held at once: P - s micro-batches for 1F1B, all m for GPipe
      expect(peakHeld[s]).toBe(kind === '1f1b' ? Math.min(P - s, m) : m);
    }
    expect(computed).toHaveLength(2 * P * m);
    expect(makespan).toBe(2 * (m + P - 1));
    // every stage computes 2m of those slots: the rest is the bubble
    expect(1 - (2 * m) / makespan).toBeCloseTo(bubbleFraction(P, m), 12);
  });

  it('pairs every send with a receive of the neighbouring stage', () => {
    const schedules = pipelineSchedule('1f1b', 4, 6);
    const count = (s: number, op: PipelineAction['op']) =>
      schedules[s].filter((a) => a.op === op).length;
    for (let s = 0; s < 4; s++) {
      expect(count(s, 'sendActivation')).toBe(s < 3 ? 6 : 0);
      expect(count(s, 'recvActivation')).toBe(s > 0 ? 6 : 0);
      expect(count(s, 'sendGradient')).toBe(s > 0 ? 6 : 0);
      expect(count(s, 'recvGradient')).toBe(s < 3 ? 6 : 0);
    }
  });

  it('the simulator finds a deadlock', () => {
    const schedules = pipelineSchedule('gpipe', 2, 2);
    schedules[1] = schedules[1].filter((a) => a.op !== 'sendGradient');
    expect(() => simulate(schedules)).toThrow(/deadlocks: stage 0 waits at recvGradient 0/);
  });
});

describe('pipeline partition', () => {
  const config = { nLayer: 12, nHead: 12, nEmbd: 768, blockSize: 1024, vocabSize: 50257 };

  it('gives every block to one stage, in order', () => {
    for (const P of [1, 2, 3, 4, 6, 12]) {
      const stages = partitionStages(config, P, 1, 1024);
      expect(stages[0].firstLayer).toBe(0);
      expect(stages[P - 1].endLayer).toBe(12);
      for (let p = 1; p < P; p++) expect(stages[p].firstLayer).toBe(stages[p - 1].endLayer);
      for (const s of stages) expect(s.endLayer).toBeGreaterThan(s.firstLayer);
    }
    // GPT-2 124M's head costs about 5 blocks: the last stage gets fewer blocks, and the others
    // share the rest evenly (the largest stage decides the speed; the rest are kept even)
    const four = partitionStages(config, 4, 1, 1024).map((s) => s.endLayer - s.firstLayer);
    expect(four).toEqual([4, 4, 3, 1]);
    const two = partitionStages(config, 2, 1, 1024);
    expect(two[1].endLayer - two[1].firstLayer).toBeLessThan(6);
  });

  it('no other split of the blocks has a smaller largest stage (all splits tried)', () => {
    const small = { ...config, nLayer: 8, vocabSize: 8192 };
    /** Every way to cut L blocks into P non-empty runs: the run lengths. */
    const splits = (L: number, P: number): number[][] =>
      P === 1
        ? [[L]]
        : Array.from({ length: L - P + 1 }, (_, i) => i + 1).flatMap((first) =>
            splits(L - first, P - 1).map((rest) => [first, ...rest]),
          );
    const one = partitionStages(small, 8, 1, 256); // one block per stage: a block's and the head's cost
    const block = one[0].flops;
    const head = one[7].flops - block;
    for (const P of [1, 2, 3, 4, 5]) {
      const stages = partitionStages(small, P, 1, 256);
      const worst = Math.max(...stages.map((s) => s.flops));
      const best = Math.min(
        ...splits(8, P).map((runs) =>
          Math.max(...runs.map((n, i) => n * block + (i === P - 1 ? head : 0))),
        ),
      );
      expect(worst).toBe(best);
    }
  });

  it('holds each parameter on exactly one stage, wte on both ends', () => {
    const total = paramCount(config);
    const wte = config.vocabSize * config.nEmbd;
    expect(partitionStages(config, 1, 1, 64)[0].params).toBe(total);
    for (const P of [2, 3, 4]) {
      const stages = partitionStages(config, P, 1, 64);
      expect(stages.reduce((n, s) => n + s.params, 0)).toBe(total + wte); // the tied copy
      expect(stages[0].embeddings && stages[P - 1].head).toBe(true);
    }
  });

  it('counts a micro-batch activations by the stage that saves them', () => {
    const one = partitionStages(config, 1, 2, 64)[0].activationBytes;
    const four = partitionStages(config, 4, 2, 64);
    expect(four.reduce((n, s) => n + s.activationBytes, 0)).toBe(one);
  });

  it('refuses what cannot be split, naming what can', () => {
    const refused = (f: () => unknown, message: RegExp) => {
      expect(f).toThrow(WeftError);
      expect(f).toThrow(message);
    };
    refused(
      () => partitionStages(config, 13, 1, 64),
      /P=13 must be an integer from 1 to nLayer=12/,
    );
    refused(
      () => pipelineGrid(6, 4, 16),
      /6 workers do not form pipelines of 4 stages; use a multiple of 4 \(4, 8, 12, \.\.\.\)/,
    );
    refused(() => pipelineGrid(4, 2, 3), /fewer than its 2 stages/);
    expect(pipelineGrid(8, 4, 16)).toEqual({ replicas: 2, microBatches: [8, 8] });
    expect(pipelineGrid(6, 2, 10)).toEqual({ replicas: 3, microBatches: [4, 3, 3] });
  });
});
