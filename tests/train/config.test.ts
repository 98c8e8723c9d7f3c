// Run configuration: presets merged over defaults, typed overrides, and one-line errors.

import { readFileSync, writeFileSync } from 'node:fs';

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RUN_CONFIG,
  loadRunConfig,
  parseOverrides,
  sequenceLength,
} from '../../src/train/config.ts';
import { expectWeftError } from '../helpers/errors.ts';
import { ROOT } from '../helpers/cli.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir();
function preset(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('run config', () => {
  it('merges a preset over the defaults and names it after the file', () => {
    const cfg = loadRunConfig(join(ROOT, 'configs/bench-m.json'));
    expect(cfg).toMatchObject({
      name: 'bench-m',
      nLayer: 6,
      nEmbd: 384,
      batchSize: 8,
      lr: DEFAULT_RUN_CONFIG.lr,
    });
    expect(sequenceLength(cfg)).toBe(256);
  });

  it('applies typed overrides after the file', () => {
    const cfg = loadRunConfig(
      join(ROOT, 'configs/bench-s.json'),
      parseOverrides(['lr=3e-4', 'seqLen=64', 'name=x']),
    );
    expect(cfg.lr).toBe(3e-4);
    expect(sequenceLength(cfg)).toBe(64);
    expect(cfg.name).toBe('x');
  });

  it('rejects unknown keys, listing the valid ones', () => {
    expectWeftError(
      () => loadRunConfig(preset('a.json', '{"nLayers": 2}')),
      'WEFT_E_CONFIG',
      /unknown config key "nLayers" in .*a\.json; valid keys: name, nLayer, nHead/,
    );
  });

  it('rejects mistyped values, bad JSON and non-objects', () => {
    expectWeftError(
      () => loadRunConfig(preset('b.json', '{"lr": "fast"}')),
      'WEFT_E_CONFIG',
      /"lr" in .*b\.json must be a number, got "fast"/,
    );
    expectWeftError(
      () => loadRunConfig(preset('c.json', '{"lr": ')),
      'WEFT_E_CONFIG',
      /c\.json is not valid JSON/,
    );
    expectWeftError(
      () => loadRunConfig(preset('d.json', '[1]')),
      'WEFT_E_CONFIG',
      /d\.json must hold a JSON object/,
    );
    expectWeftError(
      () => parseOverrides(['lr']),
      'WEFT_E_CONFIG',
      'override "lr" is not key=value',
    );
  });

  it('rejects a sequence longer than the block', () => {
    expectWeftError(
      () => loadRunConfig(preset('e.json', '{"blockSize": 32, "seqLen": 64}')),
      'WEFT_E_CONFIG',
      /seqLen=64 must be an integer from 0 \(= blockSize\) to blockSize=32/,
    );
  });

  it.each([
    ['beta1=2', /^AdamW beta1=2 must be in \[0, 1\)$/],
    ['beta2=-0.5', /^AdamW beta2=-0\.5 must be in \[0, 1\)$/],
    ['eps=0', /^AdamW eps=0 must be positive$/],
    ['weightDecay=-1', /^AdamW weightDecay=-1 must be non-negative$/],
  ])('rejects AdamW values with the config, as AdamW would: %s', (pair, message) => {
    expectWeftError(
      () => loadRunConfig(join(ROOT, 'configs/tiny.json'), parseOverrides([pair])),
      'WEFT_E_CONFIG',
      message,
    );
  });
});

describe('docs/training.md', () => {
  it('describes every config key', () => {
    const doc = readFileSync(join(ROOT, 'docs/training.md'), 'utf8');
    for (const key of Object.keys(DEFAULT_RUN_CONFIG)) expect(doc).toContain(`\`${key}\``);
  });
});
