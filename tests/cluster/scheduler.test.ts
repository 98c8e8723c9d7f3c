// What a scheduler needs from weft's processes (cluster/README.md): workers that wait for a
// coordinator not up yet, configuration from the environment, health and readiness probes on the
// coordinator's port, and exit codes that say whether to resubmit (75: the cluster was lost,
// resume) or not (1: bad input).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli, startCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/net.ts';
import { finalWeights } from '../helpers/runs.ts';

let dir: string;
let text: string;
const fast = ['--backend', 'reference', '--steps', '6'];

const probe = async (port: number, path: string) => {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'weft-sched-'));
  text = join(dir, 'text.txt');
  writeFileSync(
    text,
    readFileSync(join(ROOT, 'data/tinyshakespeare.txt'), 'utf8').slice(0, 20_000),
  );
  writeFileSync(join(dir, 'token'), 'a shared secret\n');
  const one = runCli([
    'train',
    '--config',
    'tiny',
    '--data',
    text,
    '--out',
    join(dir, 'one'),
    '--workers',
    '1',
    ...fast,
  ]);
  expect(one.status, one.stderr).toBe(0);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('under a scheduler', () => {
  it('workers started 20 s before their coordinator connect and train (configured from the environment); the probes answer', async () => {
    const port = await freePort();
    const env = {
      WEFT_CONNECT: `ws://127.0.0.1:${port}`,
      WEFT_TOKEN_FILE: join(dir, 'token'),
    };
    const workers = [0, 1].map((i) => startCli(['worker'], { ...env, WEFT_NAME: `early-${i}` }));
    await new Promise((resolve) => setTimeout(resolve, 20_000));
    expect(workers.every((w) => w.child.exitCode === null)).toBe(true); // still trying
    const coordinator = startCli(
      [
        'coordinator',
        '--listen',
        `127.0.0.1:${port}`,
        '--config',
        'tiny',
        '--data',
        text,
        '--out',
        join(dir, 'late'),
        ...fast,
      ],
      { WEFT_WORKERS: '2', WEFT_TOKEN_FILE: join(dir, 'token') },
    );
    await coordinator.waitFor(/coordinator listening/);
    expect((await probe(port, '/healthz')).status).toBe(200);
    const ready = await probe(port, '/readyz');
    expect(ready.status).toBe(200);
    expect(['waiting', 'training']).toContain(ready.body.status);
    expect(await coordinator.exited, coordinator.output()).toBe(0);
    expect(coordinator.output()).toMatch(/early-0/);
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([0, 0]);
    expect(finalWeights(join(dir, 'late')).equals(finalWeights(join(dir, 'one')))).toBe(true);
  }, 120_000);

  it('/readyz says how many workers have joined, before training starts', async () => {
    const port = await freePort();
    const coordinator = startCli([
      'coordinator',
      '--listen',
      `127.0.0.1:${port}`,
      '--workers',
      '2',
      '--config',
      'tiny',
      '--data',
      text,
      '--out',
      join(dir, 'waiting'),
      ...fast,
    ]);
    await coordinator.waitFor(/coordinator listening/);
    expect(await probe(port, '/readyz')).toEqual({
      status: 200,
      body: { ready: true, status: 'waiting', workers: 0, expected: 2 },
    });
    expect(await probe(port, '/healthz')).toEqual({ status: 200, body: { status: 'alive' } });
    coordinator.child.kill('SIGTERM');
    await coordinator.exited;
  }, 60_000);

  it('a worker gives up after --connect-timeout with one line and exit code 75', async () => {
    const port = await freePort();
    const r = runCli(['worker', '--connect', `ws://127.0.0.1:${port}`, '--connect-timeout', '1']);
    expect(r.status).toBe(75);
    expect(r.stderr).toMatch(/could not reach the coordinator at .* within 1 s .*is it running/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a coordinator that loses all its workers exits 75 (resumable) and its checkpoint resumes', async () => {
    const port = await freePort();
    const out = join(dir, 'lost');
    const coordinator = startCli([
      'coordinator', '--listen', `127.0.0.1:${port}`, '--workers', '1', '--heartbeat-timeout', '2',
      '--config', 'tiny', '--data', text, '--out', out, '--backend', 'reference', '--steps', '100000', '--set', 'ckptEvery=2',
    ]); // prettier-ignore
    await coordinator.waitFor(/coordinator listening/);
    const worker = startCli(['worker', '--connect', `ws://127.0.0.1:${port}`]);
    await coordinator.waitFor(/step +10\//); // checkpoints at steps 2, 4, ...
    worker.child.kill('SIGKILL');
    expect(await coordinator.exited).toBe(75);
    expect(coordinator.output()).toMatch(/all workers are lost/);
    const resumed = runCli([
      'train',
      '--out',
      out,
      '--resume',
      '--steps',
      '12',
      '--workers',
      '1',
      '--backend',
      'reference',
    ]);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resuming .* \(step (\d+)\)/);
  }, 60_000);
});
