// Reading what a training run wrote: the weights of its latest checkpoint, its metrics.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveCheckpoint } from '../../src/checkpoint/read.ts';

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
