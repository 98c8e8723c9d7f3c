// Reading what a training run wrote: the weights of its latest checkpoint, its metrics.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint, resolveCheckpoint } from '../../src/checkpoint/read.ts';
import { loadDataset } from '../../src/data/dataset.ts';
import { prepareDataset } from '../../src/data/prepare.ts';
import { trainWithThreads } from '../../src/distributed/launch.ts';
import type { RunConfig } from '../../src/train/config.ts';
import { DEFAULT_RUN_CONFIG } from '../../src/train/config.ts';
import { ROOT } from './cli.ts';

/** Bytes of model.safetensors in the run's latest checkpoint. */
export function finalWeights(runDir: string): Buffer {
  return readFileSync(join(resolveCheckpoint(runDir), 'model.safetensors'));
}

/** The records of the run's metrics.jsonl. */
export function metricsOf(runDir: string): Record<string, unknown>[] {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** configs/tiny.json with `overrides`, written to `path` as a config file for the CLI; returns `path`. */
export function writeTinyConfig(path: string, overrides: Record<string, number>): string {
  const tiny = JSON.parse(readFileSync(join(ROOT, 'configs/tiny.json'), 'utf8')) as object;
  writeFileSync(path, JSON.stringify({ ...tiny, ...overrides }));
  return path;
}

/** The first `chars` of tinyshakespeare as a bpe:300 dataset in `dir`/ds (written once). */
export function tinyDataset(dir: string, chars = 30_000): string {
  writeFileSync(
    join(dir, 'text.txt'),
    readFileSync(join(ROOT, 'data/tinyshakespeare.txt'), 'utf8').slice(0, chars),
  );
  prepareDataset(join(dir, 'text.txt'), join(dir, 'ds'), {
    tokenizer: 'bpe:300',
    valFraction: 0.1,
  });
  return join(dir, 'ds');
}

/** A 2-layer, 2-head, 32-channel GPT-2 with context 32, lr 3e-3 after 2 warm-up steps; plus `overrides`. */
export function tinyConfig(overrides: Partial<RunConfig>): RunConfig {
  return {
    ...DEFAULT_RUN_CONFIG,
    name: 'tiny-test',
    nLayer: 2,
    nHead: 2,
    nEmbd: 32,
    blockSize: 32,
    lr: 3e-3,
    warmupSteps: 2,
    ...overrides,
  };
}

/** A tinyConfig model trained on `dataset` into `run` (one worker thread, reference). */
export async function trainTiny(
  dataset: string,
  run: string,
  overrides: Partial<RunConfig>,
  resume = false,
): Promise<void> {
  const config = tinyConfig({ batchSize: 8, steps: 20, evalEvery: 0, ...overrides });
  const options = {
    workers: 1,
    backend: 'reference',
    resume: resume ? loadCheckpoint(run) : undefined,
  } as const;
  await trainWithThreads(config, loadDataset(dataset), run, options).result;
}
