// Exact resume and crash safety: k steps then --resume to 2k equals 2k straight through (also on
// another worker count); a trainer SIGKILLed at every point of a save resumes from a complete
// checkpoint and ends with the same bytes; what a resume refuses, it refuses without writing.

import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/checkpoint/read.ts';
import { loadDataset } from '../../src/data/dataset.ts';
import { trainInProcess } from '../../src/distributed/launch.ts';
import { whyUnavailable } from '../../src/kernels/select.ts';
import { runCli } from '../helpers/cli.ts';
import { finalWeights, metricsOf, tinyConfig, tinyDataset } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir();
const dataset = loadDataset(tinyDataset(dir));
const text = join(dir, 'text.txt'); // written by tinyDataset
const config = tinyConfig({
  name: 'resume-test',
  batchSize: 6,
  steps: 10,
  evalEvery: 4,
  evalWindows: 4,
  ckptEvery: 3,
});
const stepLosses = (run: string) =>
  metricsOf(run)
    .filter((m) => m.type === 'step')
    .map((m) => m.loss);

describe('exact resume', () => {
  // wasm-fma (where the CPU fuses) and wasm; blas has its own (blas.test.ts), and the CLI runs
  // below use the default backend
  const backends = whyUnavailable('wasm-fma')
    ? (['wasm'] as const)
    : (['wasm-fma', 'wasm'] as const);
  it.each(backends)(
    'on %s: k steps, then --resume to 2k on another worker count, equals 2k straight through',
    async (backend) => {
      const straight = join(dir, `straight-${backend}`);
      const halves = join(dir, `halves-${backend}`);
      await trainInProcess(config, dataset, straight, { workers: 2, backend }).result;
      const first = await trainInProcess(config, dataset, halves, {
        workers: 2,
        backend,
        stopAfter: 5,
      }).result;
      expect(first).toMatchObject({ steps: 5, interrupted: true });
      const resume = loadCheckpoint(halves);
      expect(resume.step).toBe(5);
      const second = await trainInProcess(config, dataset, halves, {
        workers: 3,
        backend,
        resume,
      }).result;
      expect(second.steps).toBe(10);
      expect(finalWeights(halves).equals(finalWeights(straight))).toBe(true);
      expect(stepLosses(halves)).toEqual(stepLosses(straight));
    },
  );
});

describe('resume on other kernels', () => {
  it('the checkpoint says what its bits depend on; a resume on other kernels is told so', async () => {
    const run = join(dir, 'kernels');
    await trainInProcess(config, dataset, run, { workers: 1, backend: 'wasm', stopAfter: 5 })
      .result;
    const resume = loadCheckpoint(run);
    expect(resume.kernel).toBe('wasm');
    const logs: string[] = [];
    const hooks = { log: (line: string) => logs.push(line) };
    await trainInProcess(config, dataset, run, { workers: 1, backend: 'reference', resume }, hooks)
      .result;
    expect(logs).toContain(
      "note: step 5 was trained on wasm, and this run computes on reference: the weights will differ in the last bits from an uninterrupted run's",
    );
    expect(loadCheckpoint(run).kernel).toBe('reference');
  });
});

describe('crash safety', () => {
  /** `weft train` of tiny on the text into `out` with `settings`, as a user would run it. */
  const trainCli = (out: string, settings: string[], env: Record<string, string> = {}) =>
    runCli(['train', '--config', 'tiny', '--data', text, '--out', out, ...settings], { env });
  const nineSteps = ['--set', 'steps=9', '--set', 'ckptEvery=3', '--set', 'evalEvery=0'];
  const cli = (out: string, extra: string[], env: Record<string, string> = {}) =>
    trainCli(out, [...nineSteps, ...extra], env);
  const reference = join(dir, 'cli-reference');
  beforeAll(() => {
    const r = cli(reference, []);
    expect(r.status, r.stderr).toBe(0);
  });

  // the second save (step 6) is interrupted at each point
  it.each(['begin', 'file', 'before-rename', 'after-rename', 'latest-tmp', 'done'])(
    'SIGKILL at checkpoint:%s, then --resume, ends with the same bytes',
    (point) => {
      const run = join(dir, `crash-${point}`);
      const crashed = cli(run, [], { WEFT_FAULT: `checkpoint:${point}@2` });
      expect(crashed.signal, crashed.stderr).toBe('SIGKILL');
      // latest names a complete checkpoint: step 6 once it was renamed and published, else step 3
      const verify = runCli(['checkpoint', 'verify', run]);
      expect(verify.status, verify.stderr).toBe(0);
      expect(verify.stdout).toMatch(point === 'done' ? /step 6/ : /step 3/);
      const resumed = runCli(['train', '--out', run, '--resume']);
      expect(resumed.status, resumed.stderr).toBe(0);
      expect(
        readdirSync(join(run, 'checkpoints')).filter(
          (f) => f.startsWith('.tmp-') || f === 'latest.tmp',
        ),
      ).toEqual([]);
      expect(finalWeights(run).equals(finalWeights(reference))).toBe(true);
    },
  );

  it('a crash between the rename and latest, then a resume with other steps, replaces the stale step directory', () => {
    // issue 12, case 1: the crashed attempt's step-20 (trained for a 20-step schedule) must not
    // survive a save of step 20 by a resumed 40-step run
    const train = (out: string, extra: string[], env: Record<string, string> = {}) =>
      trainCli(out, ['--set', 'ckptEvery=10', '--set', 'evalEvery=0', ...extra], env);
    const crashedRun = join(dir, 'stale-step');
    const crashed = train(crashedRun, ['--steps', '20'], {
      WEFT_FAULT: 'checkpoint:after-rename@2',
    });
    expect(crashed.signal, crashed.stderr).toBe('SIGKILL'); // between the rename and latest
    const resumed = runCli([
      'train',
      '--out',
      crashedRun,
      '--resume',
      '--steps',
      '40',
      '--stop-after',
      '10',
    ]);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(
      /step-00000020 held a different state .*moved it aside to .*step-00000020\.replaced/,
    );

    const cleanRun = join(dir, 'stale-step-reference');
    expect(train(cleanRun, ['--steps', '20', '--stop-after', '10']).status).toBe(0);
    const cleanResumed = runCli([
      'train',
      '--out',
      cleanRun,
      '--resume',
      '--steps',
      '40',
      '--stop-after',
      '10',
    ]);
    expect(cleanResumed.status, cleanResumed.stderr).toBe(0);

    expect(loadCheckpoint(crashedRun)).toMatchObject({ step: 20, config: { steps: 40 } });
    expect(finalWeights(crashedRun).equals(finalWeights(cleanRun))).toBe(true);
    const verify = runCli(['checkpoint', 'verify', crashedRun]);
    expect(verify.status, verify.stderr).toBe(0);
  });

  it('refuses to resume with another architecture, naming the key, and writes nothing', () => {
    const before = finalWeights(reference);
    const r = runCli(['train', '--out', reference, '--resume', '--set', 'nLayer=3']);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(
      "weft: nLayer=3 differs from the checkpoint's nLayer=2; a resumed run keeps its architecture and data order [WEFT_E_CONFIG]",
    );
    expect(finalWeights(reference).equals(before)).toBe(true);
  });

  it('refuses to resume from a damaged checkpoint, naming the file', () => {
    const run = join(dir, 'damaged');
    expect(cli(run, []).status).toBe(0);
    const latest = join(
      run,
      'checkpoints',
      readFileSync(join(run, 'checkpoints', 'latest'), 'utf8').trim(),
      'model.safetensors',
    );
    const bytes = readFileSync(latest);
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(latest, bytes);
    const r = runCli(['train', '--out', run, '--resume', '--steps', '12']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /step-00000009\/model\.safetensors does not match its sha256 in the manifest/,
    );
    expect(readFileSync(latest).equals(bytes)).toBe(true);
    const verify = runCli(['checkpoint', 'verify', run]);
    expect(verify.status).toBe(1);
    expect(verify.stderr.trim().split('\n')).toHaveLength(1);
    expect(verify.stderr).toMatch(
      /^weft: .*step-00000009\/model\.safetensors does not match its sha256/,
    );
  });
});
