// A pipeline of P stages in one process (pipeline/local.ts) trains to the bytes of one worker
// holding the whole model, for every P and both schedules: the stages' models hold only their
// share of the parameters, and the tied wte's copies on the first and last stages stay equal.

import { describe, expect, it } from 'vitest';
import type { Batch } from '../../src/data/loader.ts';
import { LocalPipeline } from '../../src/distributed/pipeline/local.ts';
import { runStage } from '../../src/distributed/pipeline/stage-runner.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { paramCount, paramLayout } from '../../src/model/layout.ts';
import { stageLayout, wholeModel } from '../../src/model/stage.ts';
import { AdamW } from '../../src/train/adamw.ts';
import type { RunConfig } from '../../src/train/config.ts';
import { DEFAULT_RUN_CONFIG } from '../../src/train/config.ts';
import { DEFAULT_EXACT_BITS, TrainingStep, runStep } from '../../src/train/step.ts';
import { Rng } from '../../src/util/rng.ts';

const config: RunConfig = {
  ...DEFAULT_RUN_CONFIG,
  nLayer: 4,
  nHead: 2,
  nEmbd: 16,
  blockSize: 8,
  vocabSize: 29,
  batchSize: 6,
  shards: 6,
  seqLen: 8,
  seed: 7,
  lr: 0.01,
  gradClip: 0.5, // small enough to clip: the norm's bits matter
};
const STEPS = 3;

/** Step s's micro-batches: B=1 sequences of random tokens, some targets ignored. */
function batches(step: number): Batch[] {
  const rng = new Rng(100 + step);
  return Array.from({ length: config.shards }, () => {
    const idx = Int32Array.from({ length: 8 }, () => rng.int(config.vocabSize));
    const targets = Int32Array.from({ length: 8 }, () =>
      rng.int(5) === 0 ? -1 : rng.int(config.vocabSize),
    );
    return { idx, targets, B: 1, T: 8 };
  });
}

/** The whole model trained by one worker: the bytes every pipeline must give. */
async function oneWorker(): Promise<{ params: Float32Array; losses: number[] }> {
  const model = GPT2.init(config, config.seed);
  const step = new TrainingStep(model, new AdamW(model.layout, config), {
    bits: DEFAULT_EXACT_BITS,
    shards: config.shards,
    gradClip: config.gradClip,
  });
  const losses: number[] = [];
  for (let s = 0; s < STEPS; s++) losses.push((await runStep(step, batches(s), config.lr)).lossSum);
  return { params: model.params, losses };
}

describe('a pipeline in one process', () => {
  it.each([
    [1, '1f1b'],
    [2, '1f1b'],
    [3, '1f1b'],
    [4, '1f1b'],
    [2, 'gpipe'],
    [4, 'gpipe'],
  ] as const)('of %i stages (%s) trains to the bytes of one worker', async (P, schedule) => {
    const expected = await oneWorker();
    const pipeline = new LocalPipeline(config, { stages: P, schedule, bits: DEFAULT_EXACT_BITS });
    const losses: number[] = [];
    for (let s = 0; s < STEPS; s++)
      losses.push((await pipeline.step(batches(s), config.lr)).lossSum);
    expect(losses).toEqual(expected.losses);
    const params = pipeline.params();
    expect(Buffer.from(params.buffer).equals(Buffer.from(expected.params.buffer))).toBe(true);

    // each stage holds only its share; wte on both ends, equal
    const held = pipeline.steps.map((s) => s.model.paramCount);
    const wte = config.vocabSize * config.nEmbd;
    expect(held.reduce((a, b) => a + b, 0)).toBe(paramCount(config) + (P > 1 ? wte : 0));
    if (P > 1) {
      const first = pipeline.steps[0].model.p.wte;
      const last = pipeline.steps[P - 1].model.p.wte;
      expect(Buffer.from(first.slice().buffer).equals(Buffer.from(last.slice().buffer))).toBe(true);
    }
  });
});

describe('held activations', () => {
  it('a 1F1B stage s holds at most P - s micro-batches, and nothing grows over 20 steps', async () => {
    const P = 4;
    const pipeline = new LocalPipeline(config, {
      stages: P,
      schedule: '1f1b',
      bits: DEFAULT_EXACT_BITS,
    });
    await pipeline.step(batches(0), config.lr);
    const after1 = pipeline.steps.map((s) => s.model.activationBytes);
    for (let step = 1; step < 20; step++) await pipeline.step(batches(step % 3), config.lr);
    expect(pipeline.steps.map((s) => s.model.activationBytes)).toEqual(after1);
    expect(pipeline.steps.map((s) => s.model.activationSlots)).toEqual([4, 3, 2, 1]);
    const gpipe = new LocalPipeline(config, {
      stages: P,
      schedule: 'gpipe',
      bits: DEFAULT_EXACT_BITS,
    });
    await gpipe.step(batches(0), config.lr);
    expect(gpipe.steps.map((s) => s.model.activationSlots)).toEqual([6, 6, 6, 6]); // all m
  });
});

describe('a stage', () => {
  it('lets the event loop run between passes, even when its inputs are all there', async () => {
    const P = 2;
    const pipeline = new LocalPipeline(config, {
      stages: P,
      schedule: 'gpipe',
      bits: DEFAULT_EXACT_BITS,
    });
    const ready = new Float32Array(8 * config.nEmbd).fill(0.1);
    let turns = 0;
    let running = true;
    const spin = () =>
      setImmediate(() => {
        turns++;
        if (running) spin();
      });
    spin();
    pipeline.steps[1].begin();
    await runStage(pipeline.steps[1], 'gpipe', 1, P, batches(0), 40, {
      send: () => {},
      receive: () => Promise.resolve(ready),
    });
    running = false;
    // heartbeats and sends get a turn after each of the 6 forwards and 6 backwards
    expect(turns).toBeGreaterThanOrEqual(12);
  });
});

describe('stage layouts', () => {
  it("the whole model's is the parameter layout, offsets and all", () => {
    expect(stageLayout(config, wholeModel(config))).toEqual(paramLayout(config));
  });
});
