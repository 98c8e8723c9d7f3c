// Loads the PyTorch reference fixtures in tests/fixtures/ (format: tests/fixtures/README.md).
// Every NAME.json of format "gpt2-reference-fixture" with a NAME.safetensors beside it is found,
// so dropping a new pair into the folder adds it to the suite with no code change.

import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { SafeTensors } from '../../src/checkpoint/safetensors.ts';
import { readSafetensors } from '../../src/checkpoint/safetensors.ts';
import type { GPTConfig } from '../../src/model/config.ts';

export const FIXTURE_DIR = join(import.meta.dirname, '..', 'fixtures');

export interface Fixture {
  name: string;
  config: GPTConfig;
  B: number;
  T: number;
  loss: number;
  optimizer: {
    lr: number;
    beta1: number;
    beta2: number;
    eps: number;
    weight_decay: number;
    grad_clip: number;
    steps: number;
  };
  stepLosses: number[];
  stepGradNormsBeforeClip: number[];
  tensors: SafeTensors;
}

/** Names (without extension) of every reference fixture pair present. */
export function fixtureNames(): string[] {
  return readdirSync(FIXTURE_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .filter((name) => existsSync(join(FIXTURE_DIR, `${name}.safetensors`)))
    .filter((name) => {
      const meta = JSON.parse(readFileSync(join(FIXTURE_DIR, `${name}.json`), 'utf8')) as {
        format?: string;
      };
      return meta.format === 'gpt2-reference-fixture';
    })
    .sort();
}

export function loadFixture(name: string): Fixture {
  const meta = JSON.parse(readFileSync(join(FIXTURE_DIR, `${name}.json`), 'utf8')) as Omit<
    Fixture,
    'name' | 'B' | 'T' | 'tensors'
  > & { batch: { B: number; T: number } };
  const file = join(FIXTURE_DIR, `${name}.safetensors`);
  return {
    ...meta,
    name,
    B: meta.batch.B,
    T: meta.batch.T,
    tensors: readSafetensors(readFileSync(file), file),
  };
}

/** Largest |a[i] - b[i]|; lengths must match. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= max)) max = d; // NaN propagates as a failure
  }
  return max;
}
