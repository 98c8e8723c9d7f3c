// `weft train`: the coordinator and N worker threads in this process train a model from a config
// preset on a dataset or raw text, writing the run directory. `--workers 1` is the single-worker
// case of the same code; every worker count gives the same bytes.

import type { Command } from 'commander';
import { pipelineGrid } from '../../distributed/pipeline/partition.ts';
import type { RunConfig } from '../../train/config.ts';
import { availableParallelism } from 'node:os';
import { trainWithThreads } from '../../distributed/launch.ts';
import { serveStatusPage } from '../../serve/status-server.ts';
import { statusRoutes } from '../../serve/status-routes.ts';
import { numberFlag, portFlag } from './options.ts';
import type { RunFlags } from './run-options.ts';
import {
  addRunOptions,
  awaitJob,
  prepareRun,
  progressHooks,
  startJob,
  summarize,
} from './run-options.ts';

type TrainFlags = RunFlags & {
  workers?: string;
  threads: string;
  statusPort?: string;
  statusHost: string;
};

export function registerTrain(program: Command): void {
  addRunOptions(
    program
      .command('train')
      .description(
        'train a GPT-2 model on a text file, a directory of text files, or a prepared dataset',
      ),
  )
    .option(
      '--workers <n>',
      "worker threads, at most the step's shards (default: the number of cores, at most the shards; 1 on --backend gpu)",
    )
    .option(
      '--threads <n>',
      'kernel threads per worker (wasm pool or OpenBLAS; on blas it changes the bits)',
      '1',
    )
    .option('--status-port <port>', 'serve the live status page on this port (0: any free port)')
    .option('--status-host <host>', 'address of the status page', '127.0.0.1')
    .action(async (flags: TrainFlags) => {
      const threads = numberFlag('--threads', flags.threads, { min: 1, integer: true });
      // the status page's port is bound before the run directory is touched
      const page =
        flags.statusPort === undefined
          ? null
          : await serveStatusPage(flags.statusHost, portFlag('--status-port', flags.statusPort));
      const asked =
        flags.workers === undefined
          ? undefined
          : numberFlag('--workers', flags.workers, { min: 1, integer: true });
      // one worker per core (at most one per shard of a step) on the CPU backends; one per GPU
      // (there is one device) on gpu; a pipeline: one per stage
      const workersFor = (config: RunConfig, backend: string) => {
        const P = config.pipelineStages;
        const shards = config.shards || config.batchSize;
        return (
          asked ?? (P > 1 ? P : backend === 'gpu' ? 1 : Math.min(availableParallelism(), shards))
        );
      };
      // a pipeline that the workers cannot form, more threads than shards or than memory holds
      // are refused before the run directory is touched
      const run = await prepareRun(
        flags,
        (config) => {
          if (config && config.pipelineStages > 1)
            pipelineGrid(
              workersFor(config, flags.backend ?? ''),
              config.pipelineStages,
              config.shards || config.batchSize,
            );
        },
        (config) => workersFor(config, flags.backend ?? ''),
      );
      const workers = workersFor(run.config, run.backend);
      if (workers > availableParallelism())
        run.progress.line(
          `${workers} worker threads on ${availableParallelism()} cores: they take turns, so starting them takes a while and steps are no faster than with ${availableParallelism()}`,
        );
      const job = await startJob(run, () =>
        trainWithThreads(
          run.config,
          run.dataset,
          run.outDir,
          {
            workers,
            threads,
            backend: run.backend,
            resume: run.resume,
            init: run.initParams,
            reference: run.reference,
            stopAfter: run.stopAfter,
            lock: run.lock,
            replaceRun: run.replaceRun,
          },
          progressHooks(run),
        ),
      );
      page?.source(statusRoutes({ status: job.status, stop: job.stop, secret: null }));
      if (page) run.progress.line(`status page: ${page.url} (read-only)`);
      try {
        summarize(run, await awaitJob(job, run));
      } finally {
        await page?.close();
      }
    });
}
