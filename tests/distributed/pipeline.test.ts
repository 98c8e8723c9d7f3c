// Pipeline-parallel training (issue 15): D replicas x P stages of workers, each holding only its
// stage's blocks, activations and their gradients sent between neighbouring stages, the exact
// reduction per stage, give the final weights of one worker byte for byte: on the in-memory
// network, on worker threads, and on worker processes over WebSocket; a checkpoint saved with one
// layout resumes with another to the same bytes; a lost stage worker is named.

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/checkpoint/read.ts';
import { loadDataset } from '../../src/data/dataset.ts';
import {
  serveCoordinator,
  trainInProcess,
  trainWithThreads,
} from '../../src/distributed/launch.ts';
import type { RunConfig } from '../../src/train/config.ts';
import { startWorker } from '../helpers/cli.ts';
import { finalWeights, metricsOf, tinyConfig, tinyDataset } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir();
const dataset = loadDataset(tinyDataset(dir));
// configs/tiny.json's shape with 4 blocks, a few steps
const config = tinyConfig({
  nLayer: 4,
  batchSize: 8,
  steps: 4,
  evalEvery: 0,
  ckptEvery: 2,
  gradClip: 0.05, // every step clips: the global norm's bits decide the weights'
});
const pipelined = (P: number, schedule = '1f1b'): RunConfig => ({
  ...config,
  pipelineStages: P,
  pipelineSchedule: schedule,
});
const weights = (run: string) => finalWeights(join(dir, run));
const evals = (run: string) =>
  metricsOf(join(dir, run)).filter((m) => m.type === 'eval') as { step: number; loss: number }[];
/** Each step's loss and gradient norm: the same bits whatever the layout. */
const steps = (run: string) =>
  metricsOf(join(dir, run))
    .filter((m) => m.type === 'step')
    .map((m) => [m.loss, m.gradNorm]);

describe('pipeline parallelism', () => {
  it('P = 2 and 4 (1F1B and GPipe), and 2 x 2, in one process give one worker bytes', async () => {
    await trainInProcess(config, dataset, join(dir, 'one'), { workers: 1 }).result;
    const one = weights('one');
    for (const [P, workers, schedule] of [
      [2, 2, '1f1b'],
      [4, 4, '1f1b'],
      [4, 4, 'gpipe'],
      [2, 4, '1f1b'],
    ] as const) {
      const run = `mem-${workers}x${P}-${schedule}`;
      const logs: string[] = [];
      await trainInProcess(
        pipelined(P, schedule),
        dataset,
        join(dir, run),
        { workers, networkSeed: P + workers },
        { log: (l) => logs.push(l) },
      ).result;
      expect(weights(run).equals(one), run).toBe(true);
      expect(steps(run), run).toEqual(steps('one'));
      // evaluated at the end (by the coordinator: no worker holds the whole model)
      const [evaluated] = evals(run);
      expect(evaluated.step).toBe(config.steps);
      expect(evaluated.loss).toBeCloseTo(evals('one')[0].loss, 5);
      // each worker holds only its stage's blocks
      const stages = logs.filter((l) => /pipeline stage \d \(blocks/.test(l));
      expect(stages).toHaveLength(workers);
    }
  });

  it('on worker threads (P = 2, P = 4, and 2 x 2) give the same bytes', async () => {
    for (const [P, workers] of [
      [2, 2],
      [4, 4],
      [2, 4],
    ] as const) {
      const run = `threads-${workers}x${P}`;
      await trainWithThreads(pipelined(P), dataset, join(dir, run), { workers }).result;
      expect(weights(run).equals(weights('one')), run).toBe(true);
    }
  });

  it('on two worker processes over WebSocket (P = 2) give the same bytes', async () => {
    let address = '';
    const job = await serveCoordinator(pipelined(2), dataset, join(dir, 'ws'), {
      listen: '127.0.0.1:0',
      workers: 2,
      onListening: (a) => (address = a),
    });
    const workers = [startWorker(address, 'stage-a'), startWorker(address, 'stage-b')];
    await job.result;
    for (const w of workers) expect(await w.exited, w.output()).toBe(0);
    expect(weights('ws').equals(weights('one'))).toBe(true);
  });

  it('a stage worker process SIGKILLed mid-run is named, and the run ends with the same bytes', async () => {
    let address = '';
    const logs: string[] = [];
    let workers: ReturnType<typeof startWorker>[] = [];
    const job = await serveCoordinator(
      pipelined(2),
      dataset,
      join(dir, 'ws-kill'),
      { listen: '127.0.0.1:0', workers: 2, onListening: (a) => (address = a) },
      {
        log: (l) => logs.push(l),
        onStep: (m) => {
          if (m.step === 3) workers[1].child.kill('SIGKILL');
        },
      },
    );
    workers = [startWorker(address, 'stage-a'), startWorker(address, 'stage-b')];
    await job.result;
    expect(await workers[0].exited, workers[0].output()).toBe(0);
    expect(logs).toContain('re-planned from step 2: 1 worker(s) holding the whole model');
    expect(
      logs.some((l) =>
        /^worker stage-b \(rank \d, pipeline stage \d of replica 0\) lost: /.test(l),
      ),
    ).toBe(true);
    expect(weights('ws-kill').equals(weights('one'))).toBe(true);
  });

  it('a checkpoint saved with P = 2 resumes at P = 1 and at 1 x 4 to the same bytes', async () => {
    const half = await trainInProcess(pipelined(2), dataset, join(dir, 'half'), {
      workers: 2,
      stopAfter: 2,
    }).result;
    expect(half.steps).toBe(2);
    for (const [P, workers] of [
      [1, 1],
      [4, 4],
    ] as const) {
      const run = `resumed-${P}`;
      await trainInProcess(pipelined(P), dataset, join(dir, run), {
        workers,
        resume: loadCheckpoint(join(dir, 'half')),
      }).result;
      expect(weights(run).equals(weights('one')), run).toBe(true);
    }
  });

  it('a link between neighbouring stages that resets mid-step: the stage leaves, the rest go on, same bytes', async () => {
    const logs: string[] = [];
    await trainInProcess(
      pipelined(2),
      dataset,
      join(dir, 'reset'),
      {
        workers: 2,
        heartbeatMs: 100,
        heartbeatTimeoutMs: 1000,
        onNetwork: (net) => {
          // the link carrying step 3's first activation resets with it in flight
          let done = false;
          net.resetOn = (m) => {
            if (done || m.t !== 'act' || m.step !== 2) return false;
            return (done = true);
          };
        },
      },
      { log: (l) => logs.push(l) },
    ).result;
    expect(logs.some((l) => /left: the link to a neighbouring pipeline stage closed/.test(l))).toBe(
      true,
    );
    expect(logs).toContain('re-planned from step 2: 1 worker(s) holding the whole model');
    expect(weights('reset').equals(weights('one'))).toBe(true);
    expect(steps('reset')).toEqual(steps('one'));
  });

  it('a lost stage worker is named with its stage and replica; the grid is re-planned and the bytes stay', async () => {
    let net: { kill(node: string): void } | null = null;
    const logs: string[] = [];
    await trainInProcess(
      pipelined(2),
      dataset,
      join(dir, 'lost'),
      { workers: 4, onNetwork: (n) => (net = n) },
      {
        log: (l) => logs.push(l),
        onStep: (m) => {
          if (m.step === 3) net?.kill('worker-1');
        },
      },
    ).result;
    expect(
      logs.some((l) =>
        /^worker worker-1 \(rank \d, pipeline stage \d of replica \d\) lost: /.test(l),
      ),
    ).toBe(true);
    // stage 1 is still held by the other replica: its state now, not the checkpoint at step 2
    expect(logs).toContain("going on from step 3 with the surviving workers' state");
    expect(logs).toContain('re-planned from step 3: 1 replica(s) x 2 stages');
    expect(weights('lost').equals(weights('one'))).toBe(true);
    expect(steps('lost')).toEqual(steps('one'));
  });
});
