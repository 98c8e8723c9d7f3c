// Saving a step whose directory already exists (issue 12, case 1): the existing directory is
// verified and kept only when it is byte-equal to the new state by its manifest; otherwise it is
// moved aside (damaged or replaced, named in the log) and the new one takes its place. Pruning
// never deletes the newest verified checkpoint, and never keeps a damaged one as current.

import { cpSync, existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CheckpointState } from '../../src/checkpoint/format.ts';
import { loadCheckpoint, resolveCheckpoint } from '../../src/checkpoint/read.ts';
import {
  cleanCheckpointTemps,
  pruneCheckpoints,
  writeCheckpoint,
} from '../../src/checkpoint/write.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { BpeTokenizer } from '../../src/tokenizer/bpe.ts';
import { tempDir } from '../helpers/tmp.ts';

const config = { nLayer: 1, nHead: 2, nEmbd: 16, blockSize: 8, vocabSize: 259, name: 'rs' };

function state(step: number, seed = 1): CheckpointState {
  const model = GPT2.init(config, seed);
  return {
    step,
    tokensSeen: step * 8,
    config,
    tokenizer: BpeTokenizer.bytes().toJSON(),
    adamSteps: step,
    loader: { step },
    rng: { seed },
    data: { path: '/data', manifestSha256: 'abc' },
    metrics: {},
    params: model.params,
    m: model.params.map((x) => x * 0.1),
    v: model.params.map((x) => x * x),
  };
}

const ckpts = (run: string) => readdirSync(join(run, 'checkpoints')).sort();
const weightsOf = (dir: string) => readFileSync(join(dir, 'model.safetensors'));

/** Flips one byte of a checkpoint file, as a bad disk or a stray write would. */
function damage(dir: string): void {
  const path = join(dir, 'model.safetensors');
  const bytes = readFileSync(path);
  bytes[bytes.length - 3] ^= 0xff;
  writeFileSync(path, bytes);
}

describe('re-saving a step that already has a directory', () => {
  it('replaces a directory holding another state and moves the old one aside, named in the log', async () => {
    const run = tempDir();
    const stale = await writeCheckpoint(run, state(20, 1));
    const staleWeights = weightsOf(stale);
    const log: string[] = [];
    const dir = await writeCheckpoint(run, state(20, 2), 0, (line) => log.push(line));
    expect(dir).toBe(stale);
    expect(loadCheckpoint(run).rng).toEqual({ seed: 2 }); // the new state, verified
    expect(weightsOf(dir).equals(weightsOf(stale))).toBe(true);
    expect(weightsOf(dir).equals(staleWeights)).toBe(false);
    expect(ckpts(run)).toEqual(['latest', 'step-00000020', 'step-00000020.replaced']);
    expect(weightsOf(join(run, 'checkpoints', 'step-00000020.replaced')).equals(staleWeights)).toBe(
      true,
    );
    expect(log.join('\n')).toMatch(
      /step-00000020 held a different state .*; moved it aside to .*step-00000020\.replaced/,
    );
  });

  it('replaces a damaged directory and moves it aside as damaged', async () => {
    const run = tempDir();
    const dir = await writeCheckpoint(run, state(60));
    damage(dir);
    const log: string[] = [];
    await writeCheckpoint(run, state(60), 0, (line) => log.push(line));
    expect(() => loadCheckpoint(run)).not.toThrow();
    expect(ckpts(run)).toEqual(['latest', 'step-00000060', 'step-00000060.damaged']);
    expect(log.join('\n')).toMatch(
      /step-00000060 is damaged .*moved it aside to .*step-00000060\.damaged/,
    );
  });

  it('keeps a directory that is byte-equal by its manifest hashes, and says so', async () => {
    const run = tempDir();
    const dir = await writeCheckpoint(run, state(7));
    const before = weightsOf(dir);
    const log: string[] = [];
    await writeCheckpoint(run, state(7), 0, (line) => log.push(line));
    expect(ckpts(run)).toEqual(['latest', 'step-00000007']);
    expect(weightsOf(dir).equals(before)).toBe(true);
    expect(log.join('\n')).toMatch(/step-00000007 already holds this state/);
  });

  it('a second replacement of the same step keeps both earlier copies', async () => {
    const run = tempDir();
    await writeCheckpoint(run, state(3, 1));
    await writeCheckpoint(run, state(3, 2));
    await writeCheckpoint(run, state(3, 3));
    expect(ckpts(run)).toEqual([
      'latest',
      'step-00000003',
      'step-00000003.replaced',
      'step-00000003.replaced-2',
    ]);
    expect(loadCheckpoint(run).rng).toEqual({ seed: 3 });
  });
});

describe('pruning', () => {
  it('a damaged step-60 never costs the good step-59 (resume from 59, save 60, keepLast 1)', async () => {
    const run = tempDir();
    await writeCheckpoint(run, state(59), 1);
    // a crashed earlier attempt left a step-60 that was later damaged; latest still names 59
    const damaged = await writeCheckpoint(run, state(60, 9), 0);
    damage(damaged);
    writeFileSync(join(run, 'checkpoints', 'latest'), 'step-00000059\n');
    await writeCheckpoint(run, state(60), 1);
    expect(resolveCheckpoint(run)).toBe(join(run, 'checkpoints', 'step-00000060'));
    expect(loadCheckpoint(run).step).toBe(60);
    expect(ckpts(run)).toEqual(['latest', 'step-00000060', 'step-00000060.damaged']);
  });

  it('never deletes the newest verified checkpoint: a newest that fails verification is moved aside and latest goes back', async () => {
    const run = tempDir();
    await writeCheckpoint(run, state(59));
    const newest = await writeCheckpoint(run, state(60));
    damage(newest); // damaged between its write and the prune
    const log: string[] = [];
    await pruneCheckpoints(join(run, 'checkpoints'), 1, 'step-00000060', (line) => log.push(line));
    expect(existsSync(join(run, 'checkpoints', 'step-00000059'))).toBe(true);
    expect(resolveCheckpoint(run)).toBe(join(run, 'checkpoints', 'step-00000059'));
    expect(ckpts(run)).toEqual(['latest', 'step-00000059', 'step-00000060.damaged']);
    expect(log.join('\n')).toMatch(/step-00000060 is damaged/);
  });

  it('leaves alone checkpoints past the newest (from an abandoned attempt) and counts from the newest', async () => {
    const run = tempDir();
    for (const step of [10, 20, 30]) await writeCheckpoint(run, state(step));
    writeFileSync(join(run, 'checkpoints', 'latest'), 'step-00000020\n'); // resumed from 20
    await writeCheckpoint(run, state(25), 2);
    expect(ckpts(run)).toEqual(['latest', 'step-00000020', 'step-00000025', 'step-00000030']);
    expect(resolveCheckpoint(run)).toBe(join(run, 'checkpoints', 'step-00000025'));
  });
});

describe('a crash in the middle of a replacement', () => {
  it('latest never stays on a missing directory: the next start puts the finished replacement in', async () => {
    const run = tempDir();
    const ckpts = join(run, 'checkpoints');
    await writeCheckpoint(run, state(6, 1));
    await writeCheckpoint(run, state(6, 2)); // step-00000006.replaced holds seed 1
    // the state a crash at checkpoint:replace leaves: the new copy still under its temporary name
    renameSync(join(ckpts, 'step-00000006'), join(ckpts, '.tmp-step-00000006-99'));
    const log: string[] = [];
    cleanCheckpointTemps(run, (line) => log.push(line));
    expect(loadCheckpoint(run).rng).toEqual({ seed: 2 });
    expect(log.join('\n')).toMatch(
      /named step-00000006, which an interrupted save had moved; put \.tmp-step-00000006-99 back/,
    );
  });

  it('without a finished replacement, the copy moved aside goes back', async () => {
    const run = tempDir();
    const ckpts = join(run, 'checkpoints');
    await writeCheckpoint(run, state(6, 1));
    cpSync(join(ckpts, 'step-00000006'), join(ckpts, 'step-00000006.replaced'), {
      recursive: true,
    });
    renameSync(join(ckpts, 'step-00000006'), join(ckpts, 'step-00000006.replaced-2'));
    cleanCheckpointTemps(run);
    expect(loadCheckpoint(run).rng).toEqual({ seed: 1 });
    expect(readdirSync(ckpts).sort()).toEqual([
      'latest',
      'step-00000006',
      'step-00000006.replaced',
    ]);
  });
});
