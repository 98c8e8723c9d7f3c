// The weft command end to end: prepare, train, eval and generate on real text, and one-line
// errors for the mistakes users make.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { splitTrainVal } from '../../src/data/prepare.ts';
import { ROOT, expectCliError, runCli, startCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir();
const text = join(dir, 'text.txt');
writeFileSync(text, readFileSync(join(ROOT, 'data/tinyshakespeare.txt'), 'utf8').slice(0, 20_000));
const fast = ['--set', 'steps=6', '--set', 'evalEvery=3', '--set', 'evalWindows=2'];

const expectOneLineError = (args: string[], message: RegExp) =>
  expectCliError(runCli(args), message);

describe('weft prepare, train, eval, generate', () => {
  it('runs the whole path on a text file', () => {
    const ds = join(dir, 'ds');
    const prep = runCli(['prepare', '--input', text, '--out', ds, '--tokenizer', 'bpe:300']);
    expect(prep.status, prep.stderr).toBe(0);
    expect(prep.stdout).toMatch(/wrote .*ds: [\d,]+ train \+ [\d,]+ val tokens/);

    const run = join(dir, 'run');
    const tr = runCli([
      'train',
      '--config',
      'tiny',
      '--data',
      ds,
      '--out',
      run,
      ...fast,
      '--set',
      'sampleTokens=20',
    ]);
    expect(tr.status, tr.stderr).toBe(0);
    // the banner names the default backend and why it is the default
    expect(tr.stdout).toMatch(/\((blas|wasm-fma|wasm) backend: the fastest that works here\b/);
    expect(tr.stdout).toMatch(/step 6\/6 \| loss \d/);
    expect(tr.stdout).toMatch(/final validation: \d+\.\d+ bits per byte/);
    expect(tr.stdout).toContain('--- sample');
    for (const f of [
      'config.json',
      'tokenizer.json',
      'metrics.jsonl',
      'checkpoints/latest',
      'checkpoints/step-00000006/model.safetensors',
    ])
      expect(existsSync(join(run, f))).toBe(true);
    // the run's loss chart: training and validation loss
    expect(tr.stdout).toMatch(/loss curves in .*loss\.svg/);
    const chart = readFileSync(join(run, 'loss.svg'), 'utf8');
    expect(chart.startsWith('<svg')).toBe(true);
    expect(chart).toContain('>train</text>');
    expect(chart).toContain('>val</text>');

    const ev = runCli(['eval', '--checkpoint', run, '--data', text, '--json']);
    expect(ev.status, ev.stderr).toBe(0);
    const metrics = JSON.parse(ev.stdout) as Record<string, number>;
    expect(Object.keys(metrics).sort()).toEqual(['bpb', 'bytes', 'loss', 'ppl', 'tokens']);
    expect(metrics.bytes).toBe(Buffer.byteLength(readFileSync(text)) - 1); // every byte but the first is predicted
    expect(Math.abs(metrics.ppl - Math.exp(metrics.loss))).toBeLessThan(1e-9);

    // a prepared dataset: its whole validation split, the same text as in a file (and the
    // end-of-text token the dataset closes each document's part with: predicted, no bytes)
    const val = join(dir, 'val.txt');
    writeFileSync(val, splitTrainVal(readFileSync(text, 'utf8'), 0.1)[1]);
    const split = runCli(['eval', '--checkpoint', run, '--data', ds, '--json']);
    expect(split.status, split.stderr).toBe(0);
    const fromFile = runCli(['eval', '--checkpoint', run, '--data', val, '--json']);
    const [whole, file] = [split, fromFile].map((r) => JSON.parse(r.stdout) as typeof metrics);
    expect(whole.tokens).toBe(file.tokens + 1);
    expect(whole.bytes).toBe(file.bytes);
    expect(whole.bytes).toBe(Buffer.byteLength(readFileSync(val)) - 1);
    expect(Math.abs(whole.bpb - file.bpb)).toBeLessThan(0.05);
    // one tokenized for another model is refused
    const bytes = join(dir, 'ds-byte');
    expect(runCli(['prepare', '--input', text, '--out', bytes, '--tokenizer', 'byte']).status).toBe(
      0,
    );
    expectOneLineError(
      ['eval', '--checkpoint', run, '--data', bytes],
      /^weft: dataset .*ds-byte was tokenized with byte, not the checkpoint's tokenizer \(bpe:300\)/,
    );
    expectOneLineError(
      ['eval', '--checkpoint', run, '--data', dir],
      /^weft: .* is a directory but not a prepared dataset \(no dataset\.json\)/,
    );

    const gen = runCli([
      'generate',
      '--checkpoint',
      run,
      '--prompt',
      'ROMEO:',
      '--max-tokens',
      '10',
    ]);
    expect(gen.status, gen.stderr).toBe(0);
    expect(gen.stdout.startsWith('ROMEO:')).toBe(true);
  });

  it('prepares raw text on the fly and refuses to overwrite a run', () => {
    const run = join(dir, 'raw');
    expect(
      runCli(['train', '--config', 'tiny', '--data', text, '--out', run, ...fast]).status,
    ).toBe(0);
    expect(existsSync(join(run, 'data', 'dataset.json'))).toBe(true);
    expectOneLineError(
      ['train', '--config', 'tiny', '--data', text, '--out', run],
      /already holds a run; pass --resume to continue it, --overwrite to replace it/,
    );
    expect(
      runCli(['train', '--config', 'tiny', '--data', text, '--out', run, '--overwrite', ...fast])
        .status,
    ).toBe(0);
  });
});

describe('one-line errors', () => {
  it('a missing data file', () => {
    expectOneLineError(
      ['train', '--config', 'tiny', '--data', join(dir, 'nope.txt'), '--out', join(dir, 'e1')],
      /data .*nope\.txt does not exist/,
    );
  });
  it('an empty data file', () => {
    writeFileSync(join(dir, 'empty.txt'), '');
    expectOneLineError(
      ['train', '--config', 'tiny', '--data', join(dir, 'empty.txt'), '--out', join(dir, 'e2')],
      /empty\.txt is empty/,
    );
  });
  it('a non-UTF-8 file for gpt2', () => {
    writeFileSync(join(dir, 'latin1.txt'), Buffer.from('caf\xe9 au lait\n', 'latin1'));
    expectOneLineError(
      [
        'prepare',
        '--input',
        join(dir, 'latin1.txt'),
        '--out',
        join(dir, 'e3'),
        '--tokenizer',
        'gpt2',
      ],
      /latin1\.txt is not valid UTF-8/,
    );
  });
  it('an unknown config key', () => {
    expectOneLineError(
      ['train', '--config', 'tiny', '--data', text, '--set', 'layers=2'],
      /unknown config key "layers" in --set; valid keys: name, nLayer/,
    );
  });
  it('a data file shorter than one sequence', () => {
    writeFileSync(join(dir, 'short.txt'), 'To be.\n');
    expectOneLineError(
      [
        'train',
        '--config',
        'tiny',
        '--data',
        join(dir, 'short.txt'),
        '--out',
        join(dir, 'e4'),
        '--set',
        'valFraction=0',
      ],
      /fewer than one sequence needs \(seqLen \+ 1 = 33\)/,
    );
    expect(existsSync(join(dir, 'e4'))).toBe(false); // a failed start removes what it created
  });
  it('an unknown tokenizer and a bad number', () => {
    expectOneLineError(
      ['prepare', '--input', text, '--out', join(dir, 'e5'), '--tokenizer', 'wordpiece'],
      /unknown tokenizer "wordpiece"/,
    );
    expectOneLineError(
      ['generate', '--checkpoint', join(dir, 'run'), '--max-tokens', 'ten'],
      /--max-tokens ten is not an integer >= 1/,
    );
  });
});

describe('--pipeline', () => {
  it('configs/tiny.json with --set nLayer=4 in 2 stages ends with the bytes of 1 worker', () => {
    const weightsOf = (run: string) =>
      readFileSync(join(run, 'checkpoints/step-00000004/model.safetensors'));
    const runs = [
      ['one', '--workers', '1'],
      ['stages', '--pipeline', '2'],
    ].map(([name, ...flags]) => {
      const run = join(dir, `pipeline-${name}`);
      const r = runCli([
        'train', '--config', 'tiny', '--data', text, '--out', run,
        '--set', 'nLayer=4', '--steps', '4', ...flags,
      ]); // prettier-ignore
      expect(r.status, r.stderr).toBe(0);
      return { run, stdout: r.stdout };
    });
    expect(runs[1].stdout).toMatch(/on 2 workers, as 1 replica\(s\) x 2 pipeline stages \(1f1b\)/);
    expect(weightsOf(runs[1].run).equals(weightsOf(runs[0].run))).toBe(true);
  });
});

describe('Ctrl-C', () => {
  it('finishes the step in progress, saves a checkpoint and exits 0', async () => {
    const run = join(dir, 'interrupted');
    const trainer = startCli([
      'train',
      '--config',
      'tiny',
      '--data',
      text,
      '--out',
      run,
      '--steps',
      '100000',
      '--workers',
      '1',
    ]);
    const { child, exited } = trainer;
    await trainer.waitFor(/step\s+5\//);
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(trainer.output()).toMatch(/stopping after this step/);
    expect(trainer.output()).toMatch(/stopped at step \d+; checkpoint saved in .*step-\d{8}/);
    const verify = runCli(['checkpoint', 'verify', run]);
    expect(verify.status, verify.stderr).toBe(0);
    // what it holds, and what its bits depended on (the default backend's identity)
    const inspect = runCli(['checkpoint', 'inspect', run]);
    expect(inspect.status, inspect.stderr).toBe(0);
    expect(inspect.stdout).toMatch(/^step {8}\d+ \([\d,]+ tokens seen, \d+ AdamW updates\)$/m);
    expect(inspect.stdout).toMatch(/^kernels {5}(blas \(OpenBLAS .+, 1 thread\)|wasm-fma|wasm)$/m);
  });
});
