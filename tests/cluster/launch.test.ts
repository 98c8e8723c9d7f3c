// `weft launch`: the role of each task from the scheduler's environment (Slurm's variables,
// an Indexed Job's index, weft's own), and one command line for every task of a job, here three
// tasks as srun would start them, giving the bytes of a one-worker run.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { firstHost, schedulerRole } from '../../src/distributed/scheduler-env.ts';
import { ROOT, expectCliError, runCli, startCli } from '../helpers/cli.ts';
import { expectWeftError } from '../helpers/errors.ts';
import { finalWeights } from '../helpers/runs.ts';

const dir = mkdtempSync(join(tmpdir(), 'weft-launch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the role from the environment', () => {
  it('Slurm hostlists: the first node', () => {
    expect(firstHost('node[03-05,9],gpu1')).toBe('node03');
    expect(firstHost('cn7')).toBe('cn7');
    expect(firstHost('a-b[1,4]')).toBe('a-b1');
    expect(firstHost('10.0.0.5')).toBe('10.0.0.5');
  });

  it('Slurm, an Indexed Job, weft’s own variables', () => {
    expect(
      schedulerRole({ SLURM_PROCID: '2', SLURM_NTASKS: '3', SLURM_JOB_NODELIST: 'n[1-3]' }),
    ).toEqual({
      rank: 2,
      world: 3,
      coordinatorHost: 'n1',
      source: 'slurm',
    });
    expect(schedulerRole({ JOB_COMPLETION_INDEX: '0', WEFT_WORLD_SIZE: '4' })).toEqual({
      rank: 0,
      world: 4,
      coordinatorHost: null,
      source: 'kubernetes',
    });
    expect(schedulerRole({ WEFT_RANK: '1', WEFT_WORLD_SIZE: '2' }).source).toBe('weft');
  });

  it('refuses what cannot be a job, naming it', () => {
    expectWeftError(
      () => schedulerRole({}),
      'WEFT_E_CONFIG',
      /found no scheduler: set SLURM_PROCID/,
    );
    expectWeftError(
      () => schedulerRole({ SLURM_PROCID: '0' }),
      'WEFT_E_CONFIG',
      /SLURM_NTASKS is not/,
    );
    expectWeftError(
      () => schedulerRole({ JOB_COMPLETION_INDEX: '1' }),
      'WEFT_E_CONFIG',
      /WEFT_WORLD_SIZE is not/,
    );
    expectWeftError(
      () => schedulerRole({ WEFT_RANK: '2', WEFT_WORLD_SIZE: '2' }),
      'WEFT_E_CONFIG',
      /rank 2 of 2 processes/,
    );
    expectWeftError(
      () => schedulerRole({ WEFT_RANK: 'x', WEFT_WORLD_SIZE: '2' }),
      'WEFT_E_CONFIG',
      /WEFT_RANK=x is not/,
    );
  });
});

describe('weft launch', () => {
  it('three tasks as srun starts them train to the bytes of one worker', async () => {
    const text = join(dir, 'text.txt');
    writeFileSync(
      text,
      readFileSync(join(ROOT, 'data/tinyshakespeare.txt'), 'utf8').slice(0, 20_000),
    );
    const run = ['--config', 'tiny', '--data', text, '--backend', 'reference', '--steps', '6'];
    const one = runCli(['train', ...run, '--out', join(dir, 'one'), '--workers', '1']);
    expect(one.status, one.stderr).toBe(0);
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = String((server.address() as { port: number }).port);
    await new Promise((resolve) => server.close(resolve));
    const env = (rank: number) => ({
      SLURM_PROCID: String(rank),
      SLURM_NTASKS: '3',
      SLURM_JOB_NODELIST: '127.0.0.1',
    });
    const args = [
      'launch',
      ...run,
      '--out',
      join(dir, 'launched'),
      '--port',
      port,
      '--host',
      '127.0.0.1',
    ];
    const tasks = [2, 1, 0].map((rank) => startCli(args, env(rank))); // workers first, as tasks start in any order
    const codes = await Promise.all(tasks.map((t) => t.exited));
    expect(codes, tasks.map((t) => t.output()).join('\n')).toEqual([0, 0, 0]);
    expect(tasks[2].output()).toMatch(/launch \(slurm\): rank 0 of 3, the coordinator/);
    expect(tasks[0].output()).toMatch(/rank 2 of 3, a worker of ws:\/\/127\.0\.0\.1:/);
    expect(finalWeights(join(dir, 'launched')).equals(finalWeights(join(dir, 'one')))).toBe(true);
  }, 120_000);

  it('outside a scheduler: one line', () => {
    expectCliError(
      runCli(['launch', '--config', 'tiny'], {
        env: { SLURM_PROCID: '', JOB_COMPLETION_INDEX: '', WEFT_RANK: '' },
      }),
      /found no scheduler/,
    );
  });
});
