// Loads the PyTorch preference fixtures in tests/fixtures/ (format "gpt2-preference-fixture",
// kind "dpo" or "reward": tests/fixtures/README.md). Every NAME.json of that format with a
// NAME.safetensors beside it is found, so a new pair joins the suite with no code change.

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { SafeTensors } from '../../src/checkpoint/safetensors.ts';
import { readSafetensors } from '../../src/checkpoint/safetensors.ts';
import type { GPTConfig } from '../../src/model/config.ts';
import { FIXTURE_DIR } from './fixtures.ts';

export type PreferenceKind = 'dpo' | 'reward';

export interface PreferenceFixture {
  name: string;
  kind: PreferenceKind;
  config: GPTConfig;
  batch: { N: number; T: number };
  loss: number;
  beta?: number;
  accuracy?: number;
  metrics?: Record<string, number>;
  optimizer: Record<
    'lr' | 'beta1' | 'beta2' | 'eps' | 'weight_decay' | 'grad_clip' | 'steps',
    number
  >;
  stepLosses: number[];
  stepGradNormsBeforeClip: number[];
  tensors: SafeTensors;
}

const metaOf = (name: string) =>
  JSON.parse(readFileSync(join(FIXTURE_DIR, `${name}.json`), 'utf8')) as {
    format?: string;
    kind?: string;
  };

/** Names of every preference fixture of `kind` present. */
export function preferenceFixtureNames(kind: PreferenceKind): string[] {
  return readdirSync(FIXTURE_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .filter((name) => existsSync(join(FIXTURE_DIR, `${name}.safetensors`)))
    .filter((name) => {
      const meta = metaOf(name);
      return meta.format === 'gpt2-preference-fixture' && meta.kind === kind;
    })
    .sort();
}

export function loadPreferenceFixture(name: string): PreferenceFixture {
  const file = join(FIXTURE_DIR, `${name}.safetensors`);
  return {
    ...(metaOf(name) as Omit<PreferenceFixture, 'name' | 'tensors'>),
    name,
    tensors: readSafetensors(readFileSync(file), file),
  };
}
