// Training on the blas backend is deterministic for a fixed configuration: with 2 OpenBLAS threads
// per worker (products large enough that OpenBLAS splits them between its threads), 1, 2 and 3
// worker threads give byte-identical weights, and a run stopped on 2 workers and resumed on 3
// ends with the same bytes. Skipped, with the reason, where OpenBLAS is not installed.

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/checkpoint/read.ts';
import { loadDataset } from '../../src/data/dataset.ts';
import { serveCoordinator, trainWithThreads } from '../../src/distributed/launch.ts';
import { blasAvailable, whyNoBlas } from '../../src/kernels/blas/backend.ts';
import { startCli } from '../helpers/cli.ts';
import { finalWeights, tinyConfig, tinyDataset } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const available = blasAvailable();
if (!available) console.log(`blas training tests skipped: ${whyNoBlas()}`);

describe.runIf(available)('training on blas', () => {
  const dir = tempDir();
  const dataset = loadDataset(tinyDataset(dir));
  // C = 64 and T = 64: a shard's products (64 x 64 x 192 and up) are past OpenBLAS's threading
  // threshold, so its 2 threads split them
  const config = tinyConfig({
    name: 'blas-test',
    nEmbd: 64,
    blockSize: 64,
    batchSize: 6,
    steps: 4,
    evalEvery: 0,
  });
  const options = { backend: 'blas', threads: 2 } as const;
  const weights = (run: string) => finalWeights(join(dir, run));

  it('1, 2 and 3 workers with 2 OpenBLAS threads each give byte-identical weights', async () => {
    const logs: string[] = [];
    for (const n of [1, 2, 3]) {
      const hooks = { log: (line: string) => logs.push(line) };
      await trainWithThreads(
        config,
        dataset,
        join(dir, `blas${n}`),
        { ...options, workers: n },
        hooks,
      ).result;
    }
    const reference = weights('blas1');
    expect(weights('blas2').equals(reference)).toBe(true);
    expect(weights('blas3').equals(reference)).toBe(true);
    // every worker says what its products run on
    expect(
      logs.filter((l) => /blas backend \(OpenBLAS .+\) with 2 thread\(s\)/.test(l)),
    ).toHaveLength(6);
  });

  it('stopped on 2 workers and resumed on 3, a run ends with the same bytes', async () => {
    const run = join(dir, 'halves');
    const first = await trainWithThreads(config, dataset, run, {
      ...options,
      workers: 2,
      stopAfter: 2,
    }).result;
    expect(first).toMatchObject({ steps: 2, interrupted: true });
    const resume = loadCheckpoint(run);
    const second = await trainWithThreads(config, dataset, run, { ...options, workers: 3, resume })
      .result;
    expect(second.steps).toBe(4);
    expect(weights('halves').equals(weights('blas1'))).toBe(true);
  });

  it('a worker process with another OpenBLAS thread count is refused, naming both', async () => {
    let address = '';
    const job = await serveCoordinator({ ...config, steps: 2 }, dataset, join(dir, 'mixed'), {
      listen: '127.0.0.1:0',
      workers: 2,
      backend: 'blas',
      onListening: (a) => (address = a),
    });
    const worker = (name: string, threads: string) =>
      startCli(['worker', '--connect', `ws://${address}`, '--name', name, '--threads', threads]);
    const a = worker('a', '2');
    await a.waitFor(/blas backend \(OpenBLAS .+\) with 2 thread\(s\)/);
    const b = worker('b', '1');
    expect(await b.exited, b.output()).toBe(1);
    expect(b.output()).toMatch(
      /worker b computes on blas \(OpenBLAS .+, 1 thread\), but worker a on blas \(OpenBLAS .+, 2 threads\): their gradients would differ/,
    );
    const c = worker('c', '2'); // the same kernels as a: the run goes on
    const result = await job.result;
    expect(result.steps).toBe(2);
    expect([await a.exited, await c.exited]).toEqual([0, 0]);
  });
});
