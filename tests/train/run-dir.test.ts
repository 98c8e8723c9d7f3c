// The run-directory policy as the library gives it (src/train/run-dir.ts), with no CLI: a resumed
// run refuses every change to the architecture or the data order, naming the key, and writes
// nothing; so a program that imports weft cannot silently change which data a step reads.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { trainInProcess } from '../../src/distributed/launch.ts';
import { openFreshRun, openResumedRun } from '../../src/train/run-dir.ts';
import { expectWeftError } from '../helpers/errors.ts';
import { finalWeights, tinyConfig } from '../helpers/runs.ts';
import { ROOT } from '../helpers/cli.ts';
import { tempDir } from '../helpers/tmp.ts';
import { writeFileSync } from 'node:fs';

const dir = tempDir();
const run = join(dir, 'run');
const text = join(dir, 'text.txt');
writeFileSync(text, readFileSync(join(ROOT, 'data/tinyshakespeare.txt'), 'utf8').slice(0, 20_000));

beforeAll(async () => {
  const opened = openFreshRun({
    config: tinyConfig({ steps: 3, evalEvery: 0, tokenizer: 'bpe:300' }),
    data: text,
    outDir: run,
  });
  const { config, dataset, outDir, lock } = opened;
  await trainInProcess(config, dataset, outDir, { workers: 1, lock }).result;
  lock.release();
}, 60_000);

describe('openResumedRun', () => {
  it.each([
    ['nLayer', 3],
    ['nHead', 1],
    ['nEmbd', 16],
    ['blockSize', 64],
    ['vocabSize', 4096],
    ['seqLen', 16],
    ['batchSize', 16],
    ['shards', 2],
    ['seed', 7],
  ])('refuses %s=%s, naming it, and writes nothing', (key, value) => {
    const before = finalWeights(run);
    expectWeftError(
      () => openResumedRun({ outDir: run, overrides: { [key]: value } }),
      'WEFT_E_CONFIG',
      new RegExp(`^${key}=${value} differs from the checkpoint's ${key}=`),
    );
    expect(finalWeights(run).equals(before)).toBe(true);
  });

  it('refuses steps below the step the run is at, and writes nothing', () => {
    const before = finalWeights(run);
    expectWeftError(
      () => openResumedRun({ outDir: run, overrides: { steps: 2 } }),
      'WEFT_E_CONFIG',
      /run is at step 3, past steps=2; pass --steps above 3 to train it further$/,
    );
    expect(finalWeights(run).equals(before)).toBe(true);
    expect(existsSync(join(run, 'weft.lock'))).toBe(false);
  });

  it('refuses more worker threads than a step has shards, before locking', () => {
    expectWeftError(
      () => openResumedRun({ outDir: run, workerThreads: () => 9 }),
      'WEFT_E_CONFIG',
      /^9 worker threads are more than the 8 shards a step is split into/,
    );
    expect(existsSync(join(run, 'weft.lock'))).toBe(false);
  });

  it('takes training settings that keep the run the same (steps, lr)', () => {
    const opened = openResumedRun({ outDir: run, overrides: { steps: 5, lr: 1e-3 } });
    expect(opened.config).toMatchObject({ steps: 5, lr: 1e-3 });
    expect(opened.resume?.step).toBe(3);
    opened.lock.release();
  });
});
