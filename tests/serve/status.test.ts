// The run's status (distributed/run-status.ts) and its endpoints: /status.json agrees with
// metrics.jsonl step by step, /metrics read by a Prometheus text-format parser gives
// /status.json's values, POST /stop needs the secret; and on real worker processes, one of them
// deliberately slowed (WEFT_TEST_SLOWDOWN_MS), each worker's time breakdown adds up to the steps'
// measured time (within 5%) and the slow one is named the straggler.

import { join } from 'node:path';
import parsePrometheus from 'parse-prometheus-text-format';
import { describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/dataset.ts';
import { trainInProcess } from '../../src/distributed/launch.ts';
import type { RunStatus } from '../../src/distributed/run-status.ts';
import type { HttpAnswer, HttpRequest } from '../../src/distributed/transports/ws.ts';
import { statusRoutes } from '../../src/serve/status-routes.ts';
import { expectCliError, runCli, startCli, startWorker } from '../helpers/cli.ts';
import { freePort } from '../helpers/net.ts';
import { metricsOf, tinyConfig, tinyDataset, writeTinyConfig } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir('weft-status-');
const dataset = tinyDataset(dir);
const get = (path: string, headers: HttpRequest['headers'] = {}) => ({
  method: 'GET',
  path,
  headers,
});

describe('status.json, /metrics and metrics.jsonl agree', () => {
  let status: RunStatus;
  let answer: (r: HttpRequest) => HttpAnswer | undefined;
  let stopped = 0;

  it('a 3-worker run', async () => {
    const config = tinyConfig({ steps: 12, batchSize: 6, evalEvery: 4, logEvery: 1 });
    const job = trainInProcess(config, loadDataset(dataset), join(dir, 'run'), { workers: 3 });
    answer = statusRoutes({ status: job.status, stop: () => stopped++, secret: 's3cret' });
    await job.result;
    status = job.status();
    expect(status.phase).toBe('done');
  });

  it('status.json holds every step and eval record of metrics.jsonl, the last step whole', () => {
    const records = metricsOf(join(dir, 'run'));
    const steps = records.filter((r) => r.type === 'step');
    expect(steps).toHaveLength(12);
    expect(status.loss).toEqual(steps.map((r) => [r.step, r.loss]));
    expect(status.gradNorm).toEqual(steps.map((r) => [r.step, r.gradNorm]));
    expect(status.val).toEqual(records.filter((r) => r.type === 'eval'));
    expect(status.last).toEqual(steps.at(-1));
    expect(status.step).toBe(12);
    // each step's record names its slowest worker, written after the workers' own records
    for (const r of steps) expect(['worker-0', 'worker-1', 'worker-2']).toContain(r.slowest);
    const last = records.map((r) => r.type).lastIndexOf('step');
    expect(records.slice(last - 3, last).map((r) => r.type)).toEqual([
      'worker',
      'worker',
      'worker',
    ]);
    expect(status.workers.map((w) => [w.name, w.state])).toEqual([
      ['worker-0', 'done'],
      ['worker-1', 'done'],
      ['worker-2', 'done'],
    ]);
    expect(status.workers.filter((w) => w.straggler).map((w) => w.name)).toEqual([
      steps.at(-1)?.slowest,
    ]);
    expect(status.checkpoints.map((c) => c.step)).toEqual([12]);
    expect(status.events.map((e) => e.kind)).toContain('join');
  });

  it('/metrics, parsed as Prometheus text, gives the values of /status.json', () => {
    const json = answer(get('/status.json'))?.body as RunStatus & { controls: boolean };
    expect(json.controls).toBe(true);
    const text = answer(get('/metrics'));
    expect(text?.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = new Map(parsePrometheus(text?.body as string).map((f) => [f.name, f]));
    const value = (name: string, labels: Record<string, string> = {}) => {
      const family = families.get(name);
      expect(family, name).toBeDefined();
      const m = family?.metrics.find((s) =>
        Object.entries(labels).every(([k, v]) => s.labels?.[k] === v),
      );
      expect(m, `${name} ${JSON.stringify(labels)}`).toBeDefined();
      return Number(m?.value);
    };
    const last = json.last as NonNullable<RunStatus['last']>;
    expect(value('weft_step')).toBe(json.step);
    expect(value('weft_steps')).toBe(json.run.steps);
    expect(value('weft_loss')).toBe(last.loss);
    expect(value('weft_learning_rate')).toBe(last.lr);
    expect(value('weft_grad_norm')).toBe(last.gradNorm);
    expect(value('weft_tokens_per_second')).toBe(last.tokensPerSec);
    expect(value('weft_val_loss')).toBe(json.val.at(-1)?.loss);
    expect(value('weft_checkpoints_total')).toBe(1);
    expect(families.get('weft_checkpoints_total')?.type).toBe('COUNTER');
    for (const w of json.workers) {
      const labels = { worker: w.name, rank: String(w.rank) };
      expect(value('weft_worker_up', labels)).toBe(0); // the run is over
      expect(value('weft_worker_straggler', labels)).toBe(w.straggler ? 1 : 0);
      const times = w.times as NonNullable<typeof w.times>;
      for (const phase of ['compute', 'comm', 'overlap', 'wait', 'data', 'optim'] as const)
        expect(value('weft_step_seconds', { ...labels, phase })).toBeCloseTo(
          times[`${phase}Ms`] / 1000,
          12,
        );
    }
  });

  it('the page and its assets are served from here; POST /stop needs the secret', () => {
    for (const path of ['/', '/page.js', '/page.css', '/echarts.min.js']) {
      const a = answer(get(path));
      expect(a?.status, path).toBe(200);
      expect(a?.headers?.['Content-Security-Policy']).toMatch(/default-src 'self'/);
    }
    expect(answer(get('/nothing'))).toBeUndefined();
    const post = (authorization?: string) =>
      answer({ method: 'POST', path: '/stop', headers: authorization ? { authorization } : {} });
    expect(post()?.status).toBe(401);
    expect(post('Bearer wrong!')?.status).toBe(401);
    expect(stopped).toBe(0);
    expect(post('Bearer s3cret')?.status).toBe(202);
    expect(stopped).toBe(1);
    const readOnly = statusRoutes({ status: () => status, stop: () => stopped++, secret: null });
    expect(
      readOnly({ method: 'POST', path: '/stop', headers: { authorization: 'Bearer x' } })?.status,
    ).toBe(403);
    expect(stopped).toBe(1);
  });
});

describe('the time breakdown, with one worker slowed', () => {
  it('adds up to the measured step time on each worker, and names the slow one', async () => {
    const port = await freePort();
    const config = join(dir, 'slow.json');
    writeTinyConfig(config, { steps: 40, evalEvery: 0, logEvery: 10 });
    const out = join(dir, 'slow');
    const coordinator = startCli([
      'coordinator',
      '--listen',
      `127.0.0.1:${port}`,
      '--workers',
      '2',
      '--config',
      config,
      '--data',
      dataset,
      '--out',
      out,
      '--backend',
      'reference',
    ]);
    await Promise.race([
      coordinator.waitFor(/waiting for 2 workers/),
      coordinator.exited.then(() => {
        throw new Error(coordinator.output());
      }),
    ]);
    const fast = startWorker(`127.0.0.1:${port}`, 'fast');
    const slow = startWorker(`127.0.0.1:${port}`, 'slow', { WEFT_TEST_SLOWDOWN_MS: '25' });
    // weft status: the same picture in the terminal
    await coordinator.waitFor(/step 10\/40/);
    const table = runCli(['status', `http://127.0.0.1:${port}`, '--once']);
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/\(training\): step \d+\/40 \| loss \d\.\d{4}/);
    expect(table.stdout).toMatch(/^ {2}worker +rank +host +state/m);
    expect(table.stdout).toMatch(/^[ *] fast +\d +127\.0\.0\.1:\d+ +ready/m);
    expect(table.stdout).toMatch(/^[ *] slow +\d +127\.0\.0\.1:\d+ +ready/m);
    expect(await coordinator.exited, coordinator.output()).toBe(0);
    await Promise.all([fast.exited, slow.exited]);
    const records = metricsOf(out);
    const steps = records.filter((r) => r.type === 'step') as {
      step: number;
      elapsedMs: number;
      slowest: string;
    }[];
    expect(steps).toHaveLength(40);
    expect(steps.filter((s) => s.slowest === 'slow').length).toBeGreaterThanOrEqual(36);
    // each step from step 6 on, on the coordinator's clock (from the end of the step before); the
    // median step, so that one stall of a loaded machine at a step's end does not decide
    const at = (step: number) =>
      (steps.find((s) => s.step === step) as { elapsedMs: number }).elapsedMs;
    const keys = ['computeMs', 'commMs', 'waitMs', 'dataMs', 'optimMs'];
    for (const worker of ['fast', 'slow']) {
      const mine = records.filter(
        (r) => r.type === 'worker' && r.worker === worker && (r.step as number) > 5,
      );
      expect(mine).toHaveLength(35);
      const errors = mine.map((r) => {
        const measured = at(r.step as number) - at((r.step as number) - 1);
        const total = keys.reduce((s, k) => s + (r[k] as number), 0);
        return Math.abs(total - measured) / measured;
      });
      const median = [...errors].sort((a, b) => a - b)[17];
      expect(median, `${worker}: ${errors.map((e) => e.toFixed(3)).join(' ')}`).toBeLessThan(0.05);
    }
  }, 120_000);
});

it('weft status: an address with no coordinator is one line', async () => {
  const port = await freePort();
  expectCliError(
    runCli(['status', `http://127.0.0.1:${port}`, '--once']),
    /cannot reach http:\/\/127\.0\.0\.1:\d+\/status\.json/,
  );
  // HOST:PORT without http:// is read as http://HOST:PORT
  expectCliError(
    runCli(['status', `127.0.0.1:${port}`, '--once']),
    /cannot reach http:\/\/127\.0\.0\.1:\d+\/status\.json/,
  );
  expectCliError(
    runCli(['status', 'http://127.0.0.1:99999', '--once']),
    /http:\/\/127\.0\.0\.1:99999 is not an address: give the coordinator's as http:\/\/HOST:PORT/,
  );
});

it('weft train --status-port: the page on a port of its own, read-only', async () => {
  const train = startCli([
    'train',
    '--config',
    'tiny',
    '--data',
    dataset,
    '--out',
    join(dir, 'threads'),
    '--steps',
    '100000',
    '--workers',
    '2',
    '--status-port',
    '0',
  ]);
  await train.waitFor(/status page: http:\/\/127\.0\.0\.1:\d+\/ \(read-only\)/);
  const url = /status page: (\S+)/.exec(train.output())?.[1] as string;
  await train.waitFor(/step +\d+\/100000/);
  const status = (await (await fetch(`${url}status.json`)).json()) as RunStatus;
  expect(status.run.steps).toBe(100_000);
  expect(status.workers.map((w) => w.name).sort()).toEqual(['thread-0', 'thread-1']);
  expect((await fetch(`${url}metrics`)).status).toBe(200);
  expect((await fetch(`${url}stop`, { method: 'POST' })).status).toBe(403);
  expect((await fetch(`${url}nothing`)).status).toBe(404);
  train.child.kill('SIGINT');
  expect(await train.exited, train.output()).toBe(0);
  expect(train.output()).toMatch(/stopped at step \d+/);
}, 60_000);
