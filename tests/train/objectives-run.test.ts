// The post-training objectives end to end on the distributed engine: a tiny language model is
// pre-trained, then each of sft, reward and dpo starts from it (--init) on JSONL records with
// 1, 2 and 3 worker threads and 2 pipeline stages, which must give byte-identical weights, and a run stopped halfway
// and resumed must give the same bytes as a straight one. The records include bad ones (no
// assistant turn, no chosen/rejected, a prompt longer than the context), which are counted and
// reported, not fatal.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/dataset.ts';
import { trainWithThreads } from '../../src/distributed/launch.ts';
import type { RunConfig } from '../../src/train/config.ts';
import type { OpenedRun } from '../../src/train/run-dir.ts';
import { openFreshRun, openResumedRun } from '../../src/train/run-dir.ts';
import { finalWeights, metricsOf, tinyConfig, tinyDataset, trainTiny } from '../helpers/runs.ts';

let dir: string;
let base: string;

const sftRecords = [
  ...Array.from({ length: 14 }, (_, i) => ({
    question: `What is ${i} plus ${i + 1}?`,
    answer: `${i} + ${i + 1} is <<${i}+${i + 1}=${2 * i + 1}>>${2 * i + 1}.\n#### ${2 * i + 1}`,
  })),
  { messages: [{ role: 'user', content: 'no reply here' }] }, // no assistant turn
  'not an object',
];
const preferenceRecords = [
  ...Array.from({ length: 14 }, (_, i) => ({
    prompt: `Name a number near ${i}.`,
    chosen: `${i + 1} is near ${i}.`,
    rejected: `I will not.`,
  })),
  { prompt: 'only a prompt' }, // no chosen/rejected
  { prompt: 'long '.repeat(200), chosen: 'a', rejected: 'b' }, // longer than the context
];

const jsonl = (name: string, records: unknown[]) => {
  const path = join(dir, name);
  writeFileSync(path, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return path;
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'weft-objectives-'));
  base = join(dir, 'base');
  await trainTiny(tinyDataset(dir), base, { steps: 6, blockSize: 96 });
  jsonl('sft.jsonl', sftRecords);
  jsonl('pairs.jsonl', preferenceRecords);
}, 120_000);

afterAll(() => {
  if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
});

const configOf = (objective: string): RunConfig =>
  tinyConfig({
    objective,
    batchSize: 4,
    shards: 4,
    steps: 6,
    lr: 1e-3,
    warmupSteps: 1,
    evalEvery: 0,
    valFraction: 0.2,
  });

async function train(opened: OpenedRun, workers: number, stopAfter?: number): Promise<void> {
  const job = trainWithThreads(opened.config, opened.dataset, opened.outDir, {
    workers,
    backend: 'reference',
    resume: opened.resume,
    init: opened.initParams,
    reference: opened.reference,
    lock: opened.lock,
    stopAfter,
  });
  try {
    await job.result;
  } finally {
    opened.lock.release();
  }
}

describe.each([
  ['sft', 'sft.jsonl'],
  ['reward', 'pairs.jsonl'],
  ['dpo', 'pairs.jsonl'],
])('objective %s', (objective, data) => {
  const fresh = (out: string, log?: (line: string) => void, more: Partial<RunConfig> = {}) =>
    openFreshRun({
      config: { ...configOf(objective), ...more },
      data: join(dir, data),
      outDir: join(dir, `${objective}-${out}`),
      init: base,
      log,
    });

  it('1, 2 and 3 worker threads give byte-identical weights; bad records are counted', async () => {
    const lines: string[] = [];
    for (const n of [1, 2, 3])
      await train(
        fresh(`threads${n}`, (l) => lines.push(l)),
        n,
      );
    const one = finalWeights(join(dir, `${objective}-threads1`));
    expect(finalWeights(join(dir, `${objective}-threads2`)).equals(one)).toBe(true);
    expect(finalWeights(join(dir, `${objective}-threads3`)).equals(one)).toBe(true);
    // what was skipped, and why, is in the dataset's manifest and the log
    const manifest = loadDataset(join(dir, `${objective}-threads1`, 'data')).manifest;
    const skipped = manifest.records?.skipped ?? {};
    if (objective === 'sft') {
      expect(skipped).toEqual({ 'no assistant message': 1, 'not a JSON object': 1 });
    } else {
      expect(skipped).toEqual({
        'missing chosen/rejected': 1,
        'prompt longer than the context': 1,
      });
    }
    expect(lines.some((l) => l.includes('skipped'))).toBe(true);
    // the objective's metrics each step, and a held-out evaluation at the end
    const metrics = metricsOf(join(dir, `${objective}-threads1`));
    const steps = metrics.filter((m) => m.type === 'step');
    expect(steps).toHaveLength(6);
    if (objective === 'dpo') {
      expect(Math.abs((steps[0].loss as number) - Math.LN2)).toBeLessThan(1e-6); // policy = reference
      for (const key of [
        'rewards/chosen',
        'rewards/rejected',
        'rewards/accuracies',
        'rewards/margins',
        'logps/chosen',
        'logps/rejected',
      ])
        expect(typeof steps[0][key]).toBe('number');
    }
    const evals = metrics.filter((m) => m.type === 'eval');
    expect(evals).toHaveLength(1);
    if (objective === 'sft') expect(evals[0].bpb).toBeGreaterThan(0);
    else expect(evals[0].pairs).toBeGreaterThan(0);
  }, 120_000);

  it('2 pipeline stages give the same bytes as data parallelism', async () => {
    await train(fresh('pipeline', undefined, { pipelineStages: 2 }), 2);
    const one = finalWeights(join(dir, `${objective}-threads1`));
    expect(finalWeights(join(dir, `${objective}-pipeline`)).equals(one)).toBe(true);
    const steps = metricsOf(join(dir, `${objective}-pipeline`)).filter((m) => m.type === 'step');
    const straight = metricsOf(join(dir, `${objective}-threads1`)).filter((m) => m.type === 'step');
    expect(steps.map((m) => [m.loss, m['rewards/margins']])).toEqual(
      straight.map((m) => [m.loss, m['rewards/margins']]),
    );
  }, 120_000);

  it('a run stopped and resumed gives the same bytes as a straight run', async () => {
    const straight = finalWeights(join(dir, `${objective}-threads1`));
    await train(fresh('resumed'), 2, 3);
    const out = join(dir, `${objective}-resumed`);
    await train(openResumedRun({ outDir: out }), 2);
    expect(finalWeights(out).equals(straight)).toBe(true);
  }, 120_000);
});

it('a reward model checkpoint holds score.weight [1, C]', () => {
  const file = readFileSync(join(dir, 'reward-threads1', 'checkpoints', 'latest'), 'utf8').trim();
  const st = readFileSync(join(dir, 'reward-threads1', 'checkpoints', file, 'model.safetensors'));
  const header = JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString()) as Record<
    string,
    { shape: number[] }
  >;
  expect(header['score.weight'].shape).toEqual([1, 32]);
});
