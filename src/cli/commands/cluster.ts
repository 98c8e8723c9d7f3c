// `weft coordinator` and `weft worker`: one training job over WebSocket, workers in other
// processes or on other machines. A shared secret (--token-file or WEFT_TOKEN) authenticates
// every connection; it is required whenever the coordinator listens beyond loopback.

import type { Command } from 'commander';
import { hostname } from 'node:os';
import type { WorkerListener } from '../../distributed/launch.ts';
import { pipelineGrid } from '../../distributed/pipeline/partition.ts';
import { listenForWorkers, runNetworkWorker, serveCoordinator } from '../../distributed/launch.ts';
import { WsNetwork, isLoopbackHost, parseAddress } from '../../distributed/transports/ws.ts';
import { check } from '../../util/errors.ts';
import { readSecretFile } from '../../util/files.ts';
import { numberFlag } from './options.ts';
import type { RunFlags } from './run-options.ts';
import { addRunOptions, awaitJob, prepareRun, progressHooks, summarize } from './run-options.ts';

/** The shared secret from --token-file, else WEFT_TOKEN, else null. */
function readSecret(tokenFile: string | undefined): string | null {
  if (tokenFile) return readSecretFile(tokenFile, 'token file');
  return process.env.WEFT_TOKEN?.trim() || null;
}

interface CoordinatorFlags extends RunFlags {
  listen: string;
  workers: string;
  minWorkers?: string;
  rendezvousTimeout: string;
  heartbeatTimeout: string;
  tokenFile?: string;
  streamData?: boolean;
}

interface WorkerFlags {
  connect: string;
  threads?: string;
  name?: string;
  peerListen?: string;
  tokenFile?: string;
  overlap: boolean;
}

export function registerCluster(program: Command): void {
  addRunOptions(
    program
      .command('coordinator')
      .description('coordinate a training job whose workers connect over WebSocket'),
  )
    .requiredOption(
      '--listen <host:port>',
      'address to listen on for workers (port 0: any free port)',
    )
    .requiredOption('--workers <n>', 'workers to wait for')
    .option(
      '--min-workers <n>',
      'start with this many if not all have joined by the rendezvous timeout',
    )
    .option('--rendezvous-timeout <s>', 'seconds to wait for workers', '120')
    .option(
      '--heartbeat-timeout <s>',
      'seconds of silence after which a worker is declared lost',
      '30',
    )
    .option('--token-file <file>', 'file holding the shared secret (or set WEFT_TOKEN)')
    .option(
      '--stream-data',
      'send workers their batches even when they could read the dataset themselves',
    )
    .action(async (flags: CoordinatorFlags) => {
      const secret = readSecret(flags.tokenFile);
      // every flag and the port are checked before the run directory is touched
      const workers = numberFlag('--workers', flags.workers, { min: 1, integer: true });
      const minWorkers =
        flags.minWorkers === undefined
          ? workers
          : numberFlag('--min-workers', flags.minWorkers, { min: 1, integer: true });
      check(
        minWorkers <= workers,
        'WEFT_E_CONFIG',
        `--min-workers ${minWorkers} is more than --workers ${workers}`,
      );
      const rendezvousMs =
        1000 * numberFlag('--rendezvous-timeout', flags.rendezvousTimeout, { min: 0 });
      const heartbeatTimeoutMs =
        1000 * numberFlag('--heartbeat-timeout', flags.heartbeatTimeout, { min: 1 });
      // bound before the run directory is touched: an address in use changes nothing
      let listener: WorkerListener | undefined;
      const run = await prepareRun(flags, async (config) => {
        if (config && config.pipelineStages > 1)
          pipelineGrid(workers, config.pipelineStages, config.shards || config.batchSize);
        listener = await listenForWorkers(flags.listen, { secret });
      });
      const job = await serveCoordinator(
        run.config,
        run.dataset,
        run.outDir,
        {
          listen: flags.listen,
          listener,
          lock: run.lock,
          replaceRun: run.replaceRun,
          workers,
          minWorkers,
          rendezvousMs,
          heartbeatTimeoutMs,
          secret,
          streamData: flags.streamData === true,
          resume: run.resume,
          init: run.initParams,
          reference: run.reference,
          stopAfter: run.stopAfter,
          backend: run.backend,
          onListening: (address) =>
            run.progress.line(
              `coordinator listening on ws://${address}; waiting for ${workers} workers`,
            ),
        },
        progressHooks(run),
      );
      summarize(run, await awaitJob(job, run));
    });

  program
    .command('worker')
    .description('join a training job as a worker')
    .requiredOption('--connect <url>', 'coordinator address, ws://HOST:PORT')
    .option('--name <name>', "name shown in the coordinator's logs (default: host-pid)")
    .option(
      '--peer-listen <host:port>',
      'where other workers reach this one (default: 0.0.0.0:0, any free port)',
    )
    .option('--token-file <file>', 'file holding the shared secret (or set WEFT_TOKEN)')
    .option('--threads <n>', 'kernel threads of this worker (wasm backend)', '1')
    .option(
      '--no-overlap',
      "start the all-reduce only after the step's last backward pass (to measure the overlap)",
    )
    .action(async (flags: WorkerFlags) => {
      const name = flags.name ?? `${hostname()}-${process.pid}`;
      check(
        name.length <= 128,
        'WEFT_E_CONFIG',
        `--name is ${name.length} characters long; use at most 128`,
      );
      const [host] = parseAddress(flags.connect);
      const peerListen = flags.peerListen ?? (isLoopbackHost(host) ? '127.0.0.1:0' : '0.0.0.0:0');
      const reason = await runNetworkWorker({
        network: new WsNetwork(),
        address: flags.connect,
        peerListen,
        secret: readSecret(flags.tokenFile),
        name,
        threads:
          flags.threads === undefined
            ? 1
            : numberFlag('--threads', flags.threads, { min: 1, integer: true }),
        overlap: flags.overlap,
        log: (line) => console.log(line),
      });
      console.log(`worker ${name}: ${reason}`);
    });
}
