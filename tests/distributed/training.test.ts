// Training through the coordinator and in-process workers (the in-memory network): the loss falls
// on real text, metrics.jsonl carries the documented keys, the run is deterministic for a seed,
// and a stop request ends it cleanly with the model saved.

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/checkpoint/read.ts';
import { loadDataset } from '../../src/data/dataset.ts';
import type { RunConfig } from '../../src/train/config.ts';
import { trainInProcess } from '../../src/distributed/launch.ts';
import type { RunHooks } from '../../src/distributed/coordinator.ts';
import { tempDir } from '../helpers/tmp.ts';
import { finalWeights, metricsOf, tinyConfig, tinyDataset } from '../helpers/runs.ts';

const dir = tempDir();
const dataset = loadDataset(tinyDataset(dir));

const config = tinyConfig({
  name: 'loop-test',
  batchSize: 4,
  steps: 40,
  warmupSteps: 4,
  evalEvery: 20,
  evalWindows: 4,
});

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

const train = (c: RunConfig, out: string, workers = 1, hooks: RunHooks = {}) =>
  trainInProcess(c, dataset, out, { workers }, hooks).result;

describe('training', () => {
  it('lowers the loss on real text and writes metrics, config, tokenizer and weights', async () => {
    const out = join(dir, 'run');
    const result = await train(config, out, 2);
    expect(result.steps).toBe(40);
    const metrics = metricsOf(out);
    const steps = metrics.filter((m) => m.type === 'step');
    expect(steps).toHaveLength(40);
    for (const key of ['step', 'loss', 'lr', 'gradNorm', 'tokensPerSec', 'elapsedMs'])
      expect(steps[0]).toHaveProperty(key);
    const mean = (xs: Record<string, unknown>[]) =>
      xs.reduce((s, m) => s + (m.loss as number), 0) / xs.length;
    expect(mean(steps.slice(-5))).toBeLessThan(mean(steps.slice(0, 5)) - 0.5);
    const evals = metrics.filter((m) => m.type === 'eval');
    expect(evals.map((m) => m.step)).toEqual([20, 40]);
    for (const key of ['split', 'loss', 'ppl', 'bpb']) expect(evals[0]).toHaveProperty(key);
    expect(evals[1].loss as number).toBeLessThan(evals[0].loss as number);

    const saved = loadModel(out);
    expect(saved.config.vocabSize).toBe(dataset.tokenizer.vocabSize);
    expect(saved.config.seqLen).toBe(32);
    expect(bytesOf(saved.model.params).equals(bytesOf(result.model.params))).toBe(true);
  });

  it('gives byte-identical weights for the same seed', async () => {
    const short = { ...config, steps: 5, evalEvery: 0 };
    await train(short, join(dir, 'a'));
    await train(short, join(dir, 'b'));
    await train({ ...short, seed: 7 }, join(dir, 'c'));
    const bytes = (run: string) => finalWeights(join(dir, run));
    expect(bytes('a').equals(bytes('b'))).toBe(true);
    expect(bytes('a').equals(bytes('c'))).toBe(false);
  });

  it('stops cleanly when asked, saving the model', async () => {
    const job = trainInProcess(
      { ...config, steps: 100 },
      dataset,
      join(dir, 'stopped'),
      { workers: 2 },
      {
        // step 4 is already under way when step 3's metrics arrive: the stop lets it finish
        onStep: (m) => {
          if (m.step === 3) job.stop();
        },
      },
    );
    const result = await job.result;
    expect(result).toMatchObject({ steps: 4, interrupted: true });
    expect(metricsOf(join(dir, 'stopped')).filter((m) => m.type === 'step')).toHaveLength(4);
    expect(loadModel(join(dir, 'stopped')).model.paramCount).toBe(result.model.paramCount);
  });
});

describe('bit-identity across workers and failures (in-memory network, random delivery order)', () => {
  const short: RunConfig = { ...config, steps: 6, batchSize: 6, evalEvery: 3 };
  const weights = (run: string) => finalWeights(join(dir, run));
  let reference: Buffer;

  it('1, 2 and 3 workers give byte-identical weights', async () => {
    await train(short, join(dir, 'w1'), 1);
    reference = weights('w1');
    for (const n of [2, 3]) {
      await trainInProcess(short, dataset, join(dir, `w${n}`), { workers: n, networkSeed: 100 + n })
        .result;
      expect(weights(`w${n}`).equals(reference), `${n} workers`).toBe(true);
    }
  });

  it('each worker says per step where its time went, the reduction partly behind the backward pass', () => {
    const records = metricsOf(join(dir, 'w3')).filter((m) => m.type === 'worker');
    const keys = ['computeMs', 'commMs', 'overlapMs', 'waitMs', 'dataMs', 'optimMs'];
    expect(records).toHaveLength(3 * short.steps);
    for (let step = 1; step <= short.steps; step++) {
      const ofStep = records.filter((r) => r.step === step);
      expect(ofStep.map((r) => r.worker).sort()).toEqual(['worker-0', 'worker-1', 'worker-2']);
    }
    for (const r of records) {
      expect(Object.keys(r).sort()).toEqual([...keys, 'rank', 'step', 'type', 'worker'].sort());
      for (const k of keys) expect(r[k] as number).toBeGreaterThanOrEqual(0);
      expect(r.computeMs as number).toBeGreaterThan(0);
    }
    // every worker's last shard ran with its reduction under way
    expect(records.some((r) => (r.overlapMs as number) > 0)).toBe(true);
  });

  it('workers that cannot read the data get their batches from the coordinator, with the same bytes', async () => {
    const logs: string[] = [];
    await trainInProcess(
      short,
      dataset,
      join(dir, 'streamed'),
      { workers: 2, streamData: true },
      { log: (l) => logs.push(l) },
    ).result;
    expect(logs.filter((l) => l.includes('data streamed from the coordinator'))).toHaveLength(2);
    expect(weights('streamed').equals(reference)).toBe(true);
  });

  it('a killed worker is named, its shards move to the others, and the weights do not change', async () => {
    const logs: string[] = [];
    let net: { kill(node: string): void } | null = null;
    const job = trainInProcess(
      short,
      dataset,
      join(dir, 'killed'),
      { workers: 3, onNetwork: (n) => (net = n) },
      {
        log: (line) => logs.push(line),
        onStep: (m) => {
          if (m.step === 2) net?.kill('worker-1');
        },
      },
    );
    const result = await job.result;
    expect(result.steps).toBe(6);
    expect(logs.some((l) => /^worker worker-1 \(rank \d\) lost: /.test(l))).toBe(true);
    expect(weights('killed').equals(reference)).toBe(true);
  });

  it('a partitioned worker is found by the heartbeat timeout, and the weights do not change', async () => {
    const logs: string[] = [];
    let net: { partition(node: string): void } | null = null;
    const started = Date.now();
    const job = trainInProcess(
      short,
      dataset,
      join(dir, 'partitioned'),
      { workers: 2, heartbeatMs: 100, heartbeatTimeoutMs: 1000, onNetwork: (n) => (net = n) },
      {
        log: (line) => logs.push(line),
        onStep: (m) => {
          if (m.step === 3) net?.partition('worker-0');
        },
      },
    );
    await job.result;
    expect(
      logs.some((l) =>
        /^worker worker-0 \(rank \d\) lost: no message for \d s \(heartbeat timeout\)$/.test(l),
      ),
    ).toBe(true);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(weights('partitioned').equals(reference)).toBe(true);
  });
});
