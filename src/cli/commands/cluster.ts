// `weft coordinator` and `weft worker`: one training job over WebSocket, workers in other
// processes or on other machines. A shared secret (--token-file or WEFT_TOKEN) authenticates
// every connection; it is required whenever the coordinator listens beyond loopback.

import type { Command } from 'commander';
import { Option } from 'commander';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { WorkerListener } from '../../distributed/launch.ts';
import { pipelineGrid } from '../../distributed/pipeline/partition.ts';
import { listenForWorkers, runNetworkWorker, serveCoordinator } from '../../distributed/launch.ts';
import { statusRoutes } from '../../serve/status-routes.ts';
import { WsNetwork, isLoopbackHost, parseAddress } from '../../distributed/transports/ws.ts';
import { check } from '../../util/errors.ts';
import { readSecretFile } from '../../util/files.ts';
import { numberFlag } from './options.ts';
import type { RunFlags } from './run-options.ts';
import {
  addRunOptions,
  awaitJob,
  prepareRun,
  progressHooks,
  startJob,
  summarize,
} from './run-options.ts';

/** The shared secret from --token-file (or WEFT_TOKEN_FILE), else WEFT_TOKEN, else null. */
function readSecret(tokenFile: string | undefined): string | null {
  if (tokenFile) return readSecretFile(tokenFile, 'token file');
  return process.env.WEFT_TOKEN?.trim() || null;
}

/** How long a worker told to stop waits for its coordinator to end the run (ms). */
const WORKER_GRACE_MS = 25_000;

/** An option that falls back to environment variable `env` (a flag given wins). */
export const envOption = (flags: string, description: string, env: string) =>
  new Option(flags, `${description} (or set ${env})`).env(env);

/** --token-file, or WEFT_TOKEN_FILE; WEFT_TOKEN itself is read where the secret is loaded. */
export const tokenFileOption = () =>
  envOption(
    '--token-file <file>',
    'file holding the shared secret, or set WEFT_TOKEN',
    'WEFT_TOKEN_FILE',
  );

export interface CoordinatorFlags extends RunFlags {
  listen: string;
  workers?: string;
  minWorkers?: string;
  rendezvousTimeout: string;
  heartbeatTimeout: string;
  tokenFile?: string;
  streamData?: boolean;
  threads?: string;
}

export interface WorkerFlags {
  connect?: string;
  connectTimeout: string;
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
    .addOption(envOption('--workers <n>', 'workers to wait for', 'WEFT_WORKERS'))
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
    .addOption(tokenFileOption())
    .option(
      '--stream-data',
      'send workers their batches even when they could read the dataset themselves',
    )
    .option(
      '--threads <n>',
      "kernel threads of the coordinator's own products (a dpo run's reference log-probs); on blas, give it the workers' --threads",
      '1',
    )
    .action(runCoordinator);

  program
    .command('worker')
    .description('join a training job as a worker')
    .addOption(envOption('--connect <url>', 'coordinator address, ws://HOST:PORT', 'WEFT_CONNECT'))
    .option(
      '--connect-timeout <s>',
      'seconds to keep retrying while the coordinator is not up yet',
      '300',
    )
    .addOption(
      envOption(
        '--name <name>',
        "name shown in the coordinator's logs (default: host-pid)",
        'WEFT_NAME',
      ),
    )
    .option(
      '--peer-listen <host:port>',
      'where other workers reach this one (default: 0.0.0.0:0, any free port)',
    )
    .addOption(tokenFileOption())
    .option(
      '--threads <n>',
      'kernel threads of this worker (wasm pool or OpenBLAS; on blas it changes the bits)',
      '1',
    )
    .option(
      '--no-overlap',
      "start the all-reduce only after the step's last backward pass (to measure the overlap)",
    )
    .action(runWorker);
}

/** `weft coordinator`: serve the run to workers that connect over WebSocket. */
export async function runCoordinator(flags: CoordinatorFlags): Promise<void> {
  const secret = readSecret(flags.tokenFile);
  // every flag and the port are checked before the run directory is touched
  check(flags.workers !== undefined, 'WEFT_E_CONFIG', '--workers N (or WEFT_WORKERS) is required');
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
  const threads = numberFlag('--threads', flags.threads ?? '1', { min: 1, integer: true });
  // bound before the run directory is touched: an address in use changes nothing
  let listener: WorkerListener | undefined;
  const run = await prepareRun(flags, async (config) => {
    if (config && config.pipelineStages > 1)
      pipelineGrid(workers, config.pipelineStages, config.shards || config.batchSize);
    listener = await listenForWorkers(flags.listen, { secret });
  });
  const job = await startJob(run, () =>
    serveCoordinator(
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
        threads,
        onListening: (address) =>
          run.progress.line(
            `coordinator listening on ws://${address}; waiting for ${workers} workers`,
          ),
      },
      progressHooks(run),
    ),
  );
  // the live page and /status.json, /metrics on the same port (status-routes.ts)
  listener?.serve(statusRoutes({ status: job.status, stop: job.stop, secret }));
  const [host, port] = parseAddress(flags.listen);
  const shown = ['0.0.0.0', '::', ''].includes(host) ? hostname() : host;
  run.progress.line(
    `status page: http://${shown}:${listener?.address.split(':').pop() ?? port}/${secret ? '' : ' (read-only)'}`,
  );
  summarize(run, await awaitJob(job, run));
}

/** `weft worker`: join a run and work until the coordinator shuts it down. */
export async function runWorker(flags: WorkerFlags): Promise<void> {
  check(
    flags.connect !== undefined,
    'WEFT_E_CONFIG',
    '--connect ws://HOST:PORT (or WEFT_CONNECT) is required',
  );
  const connectTimeoutMs = 1000 * numberFlag('--connect-timeout', flags.connectTimeout, { min: 0 });
  // (in a container the pid is often 1 on every host: a few random hex digits keep names apart)
  const name = flags.name ?? `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;
  check(
    name.length <= 128,
    'WEFT_E_CONFIG',
    `--name is ${name.length} characters long; use at most 128`,
  );
  const [host] = parseAddress(flags.connect);
  const peerListen = flags.peerListen ?? (isLoopbackHost(host) ? '127.0.0.1:0' : '0.0.0.0:0');
  // a scheduler stops every task at once (scancel, pod deletion): the coordinator ends the
  // step, saves and shuts the workers down, so the first SIGTERM waits for that a while
  let stopping = false;
  const onSignal = () => {
    if (stopping) process.exit(143);
    stopping = true;
    console.log(
      `worker ${name}: stopping when the coordinator ends the run (a second signal quits now)`,
    );
    setTimeout(() => process.exit(143), WORKER_GRACE_MS).unref();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
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
    // a deliberately slow worker, for the tests of the status page's straggler (not a user option)
    slowdownMs: Number(process.env.WEFT_TEST_SLOWDOWN_MS ?? 0) || 0,
    connectTimeoutMs,
    log: (line) => console.log(line),
  });
  console.log(`worker ${name}: ${reason}`);
}
