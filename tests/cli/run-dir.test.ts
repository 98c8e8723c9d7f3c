// What `weft train` and `weft coordinator` do to a run directory before and around training
// (issue 12, cases 2, 3, 4 and 8): nothing in it changes before every check has passed, one
// trainer at a time holds it, a run that never trained leaves nothing in the way, and mistakes
// are named before any data is prepared.

import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveCheckpoint } from '../../src/checkpoint/read.ts';
import { editManifest } from '../helpers/manifest.ts';
import { ROOT, expectCliError, runCli, startCli } from '../helpers/cli.ts';
import { metricsOf } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir();
const text = join(dir, 'text.txt');
const shakespeare = readFileSync(join(ROOT, 'data/tinyshakespeare.txt'), 'utf8');
writeFileSync(text, shakespeare.slice(0, 20_000));
const other = join(dir, 'other.txt');
writeFileSync(other, shakespeare.slice(20_000, 40_000));
const fast = ['--set', 'evalEvery=0', '--set', 'evalWindows=2', '--workers', '1'];
const trainArgs = (out: string, extra: string[] = []) => [
  'train',
  '--config',
  'tiny',
  '--data',
  text,
  '--out',
  out,
  ...fast,
  ...extra,
];
const train = (out: string, extra: string[] = []) => runCli(trainArgs(out, extra));

/** Every file under `root` with its bytes, for "nothing changed" checks. */
function snapshot(root: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (d: string) => {
    for (const f of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, f.name);
      if (f.isDirectory()) walk(path);
      else files.set(path, readFileSync(path).toString('base64'));
    }
  };
  walk(root);
  return files;
}

/** Starts a long `weft train` and resolves once it has trained a step. */
async function startLongRun(out: string) {
  const trainer = startCli(trainArgs(out, ['--steps', '100000']));
  await trainer.waitFor(/step\s+\d+\//);
  return trainer;
}

/** `weft coordinator` on `listen` for one worker, training tiny on `data` into `out`. */
const coordinator = (listen: string, out: string, extra: string[] = [], data = text) =>
  runCli([
    'coordinator',
    '--listen',
    listen,
    '--workers',
    '1',
    ...extra,
    '--config',
    'tiny',
    '--data',
    data,
    '--out',
    out,
  ]);

describe('case 2: --resume --data OTHER', () => {
  it('refuses without touching the run, and a plain --resume still works', () => {
    const run = join(dir, 'other-data');
    expect(train(run, ['--steps', '4']).status).toBe(0);
    const before = snapshot(run);
    expectCliError(
      runCli(['train', '--out', run, '--resume', '--data', other, '--steps', '6']),
      /the dataset of .*other\.txt is not the one checkpoint .*step-00000004 was trained on/,
    );
    expect(snapshot(run)).toEqual(before);
    const resumed = runCli(['train', '--out', run, '--resume', '--steps', '6']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/done: 6 steps/);
  });
});

describe('case 3: one trainer per run directory', () => {
  it('a second trainer is refused naming the first; --overwrite cannot pull the run away either', async () => {
    const run = join(dir, 'locked');
    const { child, exited } = await startLongRun(run);
    try {
      const message = new RegExp(
        `run directory .*locked is in use by pid ${child.pid} on this host`,
      );
      expectCliError(runCli(['train', '--out', run, '--resume']), message);
      expectCliError(train(run, ['--overwrite']), message);
      expect(existsSync(join(run, 'checkpoints'))).toBe(false); // nothing saved yet, nothing removed
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    expect(existsSync(join(run, 'weft.lock'))).toBe(false);
    const steps = metricsOf(run)
      .filter((m) => m.type === 'step')
      .map((m) => m.step);
    expect(new Set(steps).size).toBe(steps.length); // no step written twice
    expect(runCli(['train', '--out', run, '--resume', '--stop-after', '1']).status).toBe(0);
  });

  it("takes over a dead process's lock on this host, with a message", () => {
    const run = join(dir, 'stale-lock');
    expect(train(run, ['--steps', '2']).status).toBe(0);
    const dead = spawnSync(process.execPath, ['-e', '']).pid; // exited: its pid is free
    writeFileSync(
      join(run, 'weft.lock'),
      JSON.stringify({ pid: dead, host: hostname(), started: 1 }),
    );
    const r = runCli(['train', '--out', run, '--resume', '--steps', '3']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `took over ${join(run, 'weft.lock')} from pid ${dead}, which is no longer running`,
    );
    expect(existsSync(join(run, 'weft.lock'))).toBe(false);
  });

  it("refuses another host's lock, naming the host", () => {
    const run = join(dir, 'remote-lock');
    expect(train(run, ['--steps', '2']).status).toBe(0);
    writeFileSync(
      join(run, 'weft.lock'),
      JSON.stringify({ pid: 4242, host: 'gpu-node-7', started: 1 }),
    );
    expectCliError(
      runCli(['train', '--out', run, '--resume', '--steps', '3']),
      /in use by pid 4242 on host gpu-node-7 .*weft\.lock/,
    );
  });
});

describe('case 4: a run that never trained leaves nothing in the way', () => {
  it('a coordinator whose port is in use fails in one line, before preparing data or writing anything', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as AddressInfo).port;
    const run = join(dir, 'port-in-use');
    try {
      const r = coordinator(`127.0.0.1:${port}`, run);
      expectCliError(r, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
      expect(r.stdout).not.toMatch(/stopping after/);
      expect(existsSync(join(run, 'data'))).toBe(false);
      expect(existsSync(join(run, 'config.json'))).toBe(false);
    } finally {
      server.close();
    }
    expect(train(run, ['--steps', '2']).status).toBe(0); // no --overwrite needed
  });

  it('a coordinator that no worker joined leaves a directory that a plain run takes', () => {
    const run = join(dir, 'no-workers');
    const r = coordinator('127.0.0.1:0', run, ['--rendezvous-timeout', '0.5']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/only 0 of 1 workers were ready/);
    for (const f of ['config.json', 'metrics.jsonl', 'checkpoints', 'weft.lock'])
      expect(existsSync(join(run, f)), f).toBe(false);
    expect(existsSync(run)).toBe(false); // a failed start removes the directory it created
    const again = train(run, ['--steps', '2']);
    expect(again.status, again.stderr).toBe(0);
  });

  it('--resume on a directory without a checkpoint says to run it without --resume', () => {
    const run = join(dir, 'never-saved');
    coordinator('127.0.0.1:0', run, ['--rendezvous-timeout', '0']);
    expectCliError(
      runCli(['train', '--out', run, '--resume']),
      /holds no checkpoint to resume .*run it again without --resume/,
    );
  });

  it.each([
    [['train', '--workers', '0'], /--workers 0 is not an integer >= 1/],
    [['train', '--seed', 'abc'], /--seed abc is not an integer \[/],
    [['train', '--steps', '1.5'], /--steps 1\.5 is not an integer >= 1/],
    [['train', '--stop-after', 'x'], /--stop-after x is not an integer >= 1/],
    [['train', '--status-port', '99999'], /--status-port 99999 is not an integer from 0 to 65535/],
    [
      ['coordinator', '--listen', '127.0.0.1:0', '--workers', '2', '--min-workers', '3'],
      /--min-workers 3 is more than --workers 2/,
    ],
    [
      ['coordinator', '--listen', '127.0.0.1:0', '--workers', '2', '--threads', '0'],
      /--threads 0 is not an integer >= 1/,
    ],
    [
      ['coordinator', '--listen', '127.0.0.1:0', '--workers', 'two'],
      /--workers two is not an integer >= 1/,
    ],
    [
      ['train', '--set', 'nLayer=4', '--pipeline', '2', '--workers', '3'],
      /3 workers do not form pipelines of 2 stages; use a multiple of 2 \(2, 4, 6, \.\.\.\)/,
    ],
    [
      [
        'coordinator',
        '--listen',
        '127.0.0.1:0',
        '--workers',
        '3',
        '--set',
        'nLayer=4',
        '--pipeline',
        '2',
      ],
      /3 workers do not form pipelines of 2 stages/,
    ],
    [['train', '--pipeline', '5'], /config pipelineStages=5 must be an integer from 1 to nLayer=2/],
    // AdamW's values are checked with the config, not first in the worker threads
    [['train', '--set', 'beta1=2'], /AdamW beta1=2 must be in \[0, 1\)/],
    [['train', '--set', 'beta2=-0.5'], /AdamW beta2=-0\.5 must be in \[0, 1\)/],
    [['train', '--set', 'eps=0'], /AdamW eps=0 must be positive/],
    [
      ['coordinator', '--listen', '127.0.0.1:0', '--workers', '1', '--set', 'weightDecay=-1'],
      /AdamW weightDecay=-1 must be non-negative/,
    ],
    // worker threads beyond the step's shards, a model beyond one typed array or the memory
    [
      ['train', '--workers', '100000'],
      /100000 worker threads are more than the 4 shards a step is split into \(batchSize=4, shards=0\), .*use --workers 4 or fewer/,
    ],
    [
      ['train', '--set', 'nEmbd=1000000', '--set', 'nHead=1'],
      /the model has 24,000,[\d,]+ parameters, so \d+ worker threads? and the coordinator need at least [\d,.]+ TiB .*but one typed array holds at most 4,294,967,296 values; use a smaller model/,
    ],
    [
      [
        'coordinator',
        '--listen',
        '127.0.0.1:0',
        '--workers',
        '1',
        '--set',
        'nEmbd=1000000',
        '--set',
        'nHead=1',
      ],
      /the model has 24,000,[\d,]+ parameters, so the coordinator needs at least [\d,.]+ TiB .*one typed array holds at most/,
    ],
    [
      [
        'train',
        '--set',
        'nEmbd=12800',
        '--set',
        'nHead=1',
        '--set',
        'batchSize=64',
        '--workers',
        '64',
      ],
      /the model has 3,9[\d,]+ parameters, so 64 worker threads and the coordinator need at least [\d,.]+ TiB .*but this machine has [\d,.]+ [GT]iB of memory; use a smaller model \(nLayer, nEmbd, vocabSize\) or fewer --workers/,
    ],
    [
      ['train', '--backend', 'wasm', '--set', 'blockSize=32768', '--workers', '1'],
      /on the wasm backend a worker's weights, gradients and activations share one wasm memory of at most 4 GiB, and this model and micro-batch need at least [\d.]+ GiB/,
    ],
  ])('%j is named, and no data is prepared', (args, message) => {
    const run = join(dir, `flags-${args.join('-')}`);
    expectCliError(runCli([...args, '--config', 'tiny', '--data', text, '--out', run]), message);
    expect(existsSync(run)).toBe(false);
  });
});

describe('after an interruption', () => {
  it('a resumed run that trains no step saves nothing (its checkpoint holds the state)', () => {
    const run = join(dir, 'no-step');
    expect(train(run, ['--steps', '4']).status).toBe(0);
    const before = snapshot(join(run, 'checkpoints'));
    const r = runCli(['train', '--out', run, '--resume', '--steps', '4', '--set', 'lr=0.001']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/done: 4 steps; checkpoint saved in .*step-00000004/);
    expect(snapshot(join(run, 'checkpoints'))).toEqual(before);
  });

  it('--overwrite of a run whose coordinator never starts training loses nothing', () => {
    const run = join(dir, 'overwrite-never-started');
    expect(train(run, ['--steps', '2']).status).toBe(0);
    const before = snapshot(join(run, 'checkpoints'));
    const r = coordinator('127.0.0.1:0', run, ['--rendezvous-timeout', '0.5', '--overwrite']);
    expect(r.stderr).toMatch(/only 0 of 1 workers were ready/);
    expect(snapshot(join(run, 'checkpoints'))).toEqual(before);
    expect(runCli(['train', '--out', run, '--resume', '--steps', '3']).status).toBe(0);
  });

  it('what an interrupted swap of the prepared data left is put back or removed', () => {
    const run = join(dir, 'data-swap');
    expect(train(run, ['--steps', '2']).status).toBe(0);
    renameSync(join(run, 'data'), join(run, 'data.old-12345')); // moved aside, not replaced
    mkdirSync(join(run, 'data.tmp-777'));
    const r = runCli(['train', '--out', run, '--resume', '--steps', '3']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/put back .*data, which an interrupted preparation had moved/);
    expect(readdirSync(run).filter((f) => f.startsWith('data'))).toEqual(['data']);
  });

  it('an --out that cannot be a directory is one line', () => {
    writeFileSync(join(dir, 'plain-file'), 'keep');
    expectCliError(
      train(join(dir, 'plain-file', 'run')),
      /cannot lock run directory .*plain-file\/run: ENOTDIR/,
    );
    expectCliError(
      train(join(dir, 'plain-file')),
      /^weft: --out .*plain-file is a file, not a directory; pass a directory for the run/,
    );
    expect(readFileSync(join(dir, 'plain-file'), 'utf8')).toBe('keep');
  });

  it('--resume with --steps below the step the run is at is refused, and nothing changes', () => {
    const run = join(dir, 'steps-below');
    expect(train(run, ['--steps', '4']).status).toBe(0);
    const before = snapshot(run);
    expectCliError(
      runCli(['train', '--out', run, '--resume', '--steps', '2']),
      /steps-below is at step 4, past steps=2; pass --steps above 4 to train it further/,
    );
    expect(snapshot(run)).toEqual(before);
  });
});

describe("case 8: a prepared dataset and the config's tokenizer", () => {
  it('refuses a dataset prepared with another tokenizer, naming both; prepare --config makes a fitting one', () => {
    const gpt2 = join(dir, 'ds-gpt2');
    expect(runCli(['prepare', '--input', text, '--out', gpt2]).status).toBe(0); // default: gpt2
    const run = join(dir, 'wrong-tokenizer');
    expectCliError(
      runCli(['train', '--config', 'tiny', '--data', gpt2, '--out', run]),
      /dataset .*ds-gpt2 was prepared with tokenizer gpt2 \(50,?259 ids\) but config tiny uses bpe:300; pass --set tokenizer=gpt2 .*or prepare it again with weft prepare --config tiny/,
    );
    const fitting = join(dir, 'ds-tiny');
    const prep = runCli(['prepare', '--input', text, '--out', fitting, '--config', 'tiny']);
    expect(prep.status, prep.stderr).toBe(0);
    expect(prep.stdout).toMatch(/tokenizer bpe:300/);
    const r = runCli([
      'train',
      '--config',
      'tiny',
      '--data',
      fitting,
      '--out',
      run,
      '--steps',
      '2',
      ...fast,
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/V=303\b/);
  });
});

describe('a start that fails changes nothing', () => {
  /** `weft coordinator --overwrite` of `run` on other data, which no worker joins. */
  const overwriteNoWorkerJoins = (run: string) =>
    coordinator('127.0.0.1:0', run, ['--rendezvous-timeout', '0.5', '--overwrite'], other);

  it('a failed --overwrite leaves the run it was to replace byte-identical, and it resumes', () => {
    const run = join(dir, 'overwrite-failed');
    expect(train(run, ['--steps', '2']).status).toBe(0);
    const before = snapshot(run);
    const six = join(dir, 'six-bytes.txt');
    writeFileSync(six, 'hello\n');
    // data too short for one sequence: refused before the run's own data is replaced
    expectCliError(
      runCli(['train', '--config', 'tiny', '--out', run, '--overwrite', '--data', six, ...fast]),
      /the data has \d+ tokens, fewer than one sequence needs/,
    );
    expect(snapshot(run)).toEqual(before);
    // other data, prepared and accepted, but no worker comes: the old data is put back
    expect(overwriteNoWorkerJoins(run).stderr).toMatch(/only 0 of 1 workers were ready/);
    expect(snapshot(run)).toEqual(before);
    const resumed = runCli(['train', '--out', run, '--resume', '--steps', '3', ...fast]);
    expect(resumed.status, resumed.stderr).toBe(0);
    // the same when the latest checkpoint's manifest is damaged (perhaps why it is replaced)
    editManifest(resolveCheckpoint(run), (m) => (m.metrics = null));
    const damaged = snapshot(run);
    expect(overwriteNoWorkerJoins(run).stderr).toMatch(/only 0 of 1 workers were ready/);
    expect(snapshot(run)).toEqual(damaged);
  });

  it('a failed --overwrite of a run trained on a prepared dataset leaves no data/ behind', () => {
    const dataset = join(dir, 'ds-prepared');
    expect(runCli(['prepare', '--input', text, '--out', dataset, '--config', 'tiny']).status).toBe(
      0,
    );
    const run = join(dir, 'overwrite-prepared');
    const first = train(run, ['--data', dataset, '--steps', '2']); // the last --data counts
    expect(first.status, first.stderr).toBe(0);
    expect(existsSync(join(run, 'data'))).toBe(false);
    const before = snapshot(run);
    expect(overwriteNoWorkerJoins(run).stderr).toMatch(/only 0 of 1 workers were ready/);
    expect(snapshot(run)).toEqual(before);
  });

  it('the data of an --overwrite killed before it started is put back at the next start', () => {
    const run = join(dir, 'overwrite-killed');
    expect(train(run, ['--steps', '2']).status).toBe(0);
    const otherDataset = join(dir, 'ds-other');
    expect(
      runCli(['prepare', '--input', other, '--out', otherDataset, '--config', 'tiny']).status,
    ).toBe(0);
    // what a replacement killed between preparing its data and its first step leaves
    renameSync(join(run, 'data'), join(run, 'data.old-4242'));
    renameSync(otherDataset, join(run, 'data'));
    const r = runCli(['train', '--out', run, '--resume', '--steps', '3', ...fast]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /put back .*data, which an --overwrite that never started had replaced/,
    );
    expect(readdirSync(run).filter((f) => f.startsWith('data'))).toEqual(['data']);
  });

  it('a model imported with weft checkpoint import has no data of its own: --resume asks for --data', () => {
    const run = join(dir, 'to-export');
    expect(train(run, ['--steps', '2']).status).toBe(0);
    const hf = join(dir, 'hf-export');
    expect(runCli(['checkpoint', 'export', run, '--format', 'hf', '--out', hf]).status).toBe(0);
    const imported = join(dir, 'imported');
    expect(runCli(['checkpoint', 'import', hf, '--out', imported]).status).toBe(0);
    expectCliError(
      runCli(['train', '--out', imported, '--resume', '--steps', '2', ...fast]),
      /imported has no data of its own .*; pass --data with the text to train it on/,
    );
    // the text is tokenized with the model's own tokenizer; later resumes need no --data
    const withData = runCli([
      'train',
      '--out',
      imported,
      '--resume',
      '--data',
      text,
      '--steps',
      '2',
      ...fast,
    ]);
    expect(withData.status, withData.stderr).toBe(0);
    const again = runCli(['train', '--out', imported, '--resume', '--steps', '3', ...fast]);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/done: 3 steps/);
  });
});
