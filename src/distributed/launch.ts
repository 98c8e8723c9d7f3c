// Ways to run a training job, all on the same coordinator and worker code:
//   trainWithThreads   coordinator on this thread, N worker threads over MessagePorts, reducing
//                      through shared memory (weft train); it waits for all N however long
//                      they take to start
//   trainInProcess     coordinator and N workers on this thread over the in-memory network
//                      (simulation tests, library use; the network can be scripted to fail)
//   serveCoordinator   coordinator listening on WebSocket for workers on other processes/machines
//   runNetworkWorker   a worker process connecting to a coordinator (weft worker)
// and stopOnSignals, which stops a job after its step on Ctrl-C as the CLI does. Open the run
// directory first with train/run-dir.ts and pass its lock (ClusterOptions.lock).

import type { Worker } from 'node:worker_threads';
import { MessageChannel } from 'node:worker_threads';
import { startThread } from '../util/threads.ts';
import type { Dataset } from '../data/dataset.ts';
import type { RunConfig } from '../train/config.ts';
import { checkCapacity } from '../train/capacity.ts';
import { resolveForData } from '../train/config.ts';
import { paramCount } from '../model/layout.ts';
import type { ClusterOptions, RunHooks, RunResult } from './coordinator.ts';
import type { RunStatus } from './run-status.ts';
import { CoordinatorShell } from './coordinator.ts';
import type { Limits, Message } from './messages.ts';
import { NetworkPeerMesh } from './peers.ts';
import { newExchange, threadAddress } from './shared-reduce.ts';
import type { ThreadLog, ThreadWorkerData } from './thread-main.ts';
import type { Connection, Network } from './transport.ts';
import { clientHandshake } from './transport.ts';
import { MemoryNetwork } from './transports/memory.ts';
import { PortConnection } from './transports/thread.ts';
import type { HttpResponder } from './transports/ws.ts';
import { WsNetwork, isLoopbackHost, parseAddress } from './transports/ws.ts';
import { WeftError } from '../util/errors.ts';
import { WorkerShell } from './worker.ts';

/** Handle on a running job: stop it after the current step; see how it goes. */
export interface Job {
  result: Promise<RunResult>;
  stop: () => void;
  /** The run as the live page shows it (distributed/run-status.ts). */
  status: () => RunStatus;
}

/**
 * Stops `job` after its current step (saving a checkpoint) on SIGINT or SIGTERM, as torchrun and
 * the CLI do; a second signal calls `onSecond` (the CLI quits without saving), or, without one,
 * gets the signal's default action (the process ends). Returns the function that removes the
 * handlers; call it when the job is over.
 */
export function stopOnSignals(
  job: Job,
  hooks: { onStop?: () => void; onSecond?: () => void } = {},
): () => void {
  let stopping = false;
  const remove = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      if (hooks.onSecond) return hooks.onSecond();
      remove();
      return void process.kill(process.pid, signal);
    }
    stopping = true;
    hooks.onStop?.();
    job.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return remove;
}

export function trainWithThreads(
  config: RunConfig,
  dataset: Dataset,
  outDir: string,
  cluster: ClusterOptions,
  hooks: RunHooks = {},
): Job {
  // more threads than shards, or than memory holds, are refused before anything is allocated
  // (train/run-dir.ts refuses them before the run directory is touched)
  const resolved = resolveForData(config, dataset.tokenizer);
  checkCapacity(resolved, cluster.workers);
  // the threads are ours: wait for every one however long it takes to start (no rendezvous
  // timeout, no --min-workers), and fail at once if one dies before training starts
  let started = false;
  const coordinator = new CoordinatorShell(
    config,
    dataset,
    outDir,
    { ...cluster, secret: null, rendezvousMs: Infinity, minWorkers: cluster.workers },
    {
      ...hooks,
      onStart: (c, workers) => {
        started = true;
        hooks.onStart?.(c, workers);
      },
    },
  );
  const result = coordinator.run();
  const n = cluster.workers;
  const address = threadAddress;
  // the threads' shared memory for the all-reduce (see shared-reduce.ts)
  const params = paramCount(resolved);
  const exchange = n > 1 ? newExchange(n, params) : null;
  const peerPorts = Array.from(
    { length: n },
    () => [] as { address: string; port: MessageChannel['port1'] }[],
  );
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const { port1, port2 } = new MessageChannel();
      peerPorts[i].push({ address: address(j), port: port1 });
      peerPorts[j].push({ address: address(i), port: port2 });
    }
  }
  const threads: Worker[] = [];
  for (let i = 0; i < n; i++) {
    const { port1, port2 } = new MessageChannel();
    coordinator.accept(new PortConnection(port1, `thread-${i}`), null, Infinity);
    const data: ThreadWorkerData = {
      name: `thread-${i}`,
      address: address(i),
      coordinator: port2,
      peers: peerPorts[i],
      threads: cluster.threads ?? 1,
      exchange,
    };
    const thread = startThread(new URL('./thread-main.ts', import.meta.url), data, {
      transferList: [port2, ...peerPorts[i].map((p) => p.port)],
    });
    thread.on('error', (err) => hooks.log?.(`worker thread ${i} crashed: ${err.message}`));
    thread.on('message', (m: ThreadLog) => {
      if (m?.type === 'log' && typeof m.line === 'string') hooks.log?.(m.line);
    });
    thread.on('exit', (code) => {
      if (!started)
        coordinator.abort(`worker thread ${i} exited (code ${code}) before training started`);
    });
    threads.push(thread);
  }
  const done = result.finally(() =>
    setTimeout(() => threads.forEach((t) => void t.terminate()), 500).unref(),
  );
  return { result: done, stop: () => coordinator.stop(), status: () => coordinator.status() };
}

export interface InProcessOptions extends ClusterOptions {
  /** Seed of the network's delivery order. */
  networkSeed?: number;
  /** Deliver messages from different links in random interleavings (default true). */
  randomOrder?: boolean;
  /** Called with the network once it exists, to script failures (kill, partition). */
  onNetwork?: (network: MemoryNetwork) => void;
}

export function trainInProcess(
  config: RunConfig,
  dataset: Dataset,
  outDir: string,
  options: InProcessOptions,
  hooks: RunHooks = {},
): Job {
  const net = new MemoryNetwork({
    seed: options.networkSeed ?? 1,
    randomOrder: options.randomOrder ?? true,
  });
  options.onNetwork?.(net);
  const coordinator = new CoordinatorShell(config, dataset, outDir, options, hooks);
  const result = coordinator.run();
  const secret = options.secret ?? null;
  const started = (async () => {
    await net.node('coordinator').listen('coordinator', (conn) => coordinator.accept(conn));
    await Promise.all(
      Array.from({ length: options.workers }, (_, i) =>
        runNetworkWorker({
          network: net.node(`worker-${i}`),
          address: 'coordinator',
          peerListen: `peer-${i}`,
          secret,
          name: `worker-${i}`,
          threads: options.threads,
          log: hooks.log,
        }),
      ),
    );
  })();
  started.catch((err: Error) => hooks.log?.(`worker failed: ${err.message}`));
  return { result, stop: () => coordinator.stop(), status: () => coordinator.status() };
}

export interface NetworkWorkerOptions {
  network: Network;
  /** The coordinator's address. */
  address: string;
  /** Where to listen for the other workers. */
  peerListen: string;
  secret: string | null;
  name: string;
  /** Kernel threads of this worker. */
  threads?: number;
  /** Reduce during the last backward pass of a step (default true; false: after it, to compare). */
  overlap?: boolean;
  /** Test-only: slow each shard's compute by this many ms (worker.ts). */
  slowdownMs?: number;
  log?: (line: string) => void;
  onPeerListening?: (address: string) => void;
  /**
   * How long to keep trying to reach a coordinator that is not up yet (ms; default 300 s): under
   * a scheduler, pods and tasks start in any order.
   */
  connectTimeoutMs?: number;
}

/** First and longest wait between attempts to reach the coordinator. */
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5_000;

/**
 * Connects to `address`, retrying with exponential backoff while it cannot be reached (refused,
 * a name that does not resolve yet, a timeout) until `timeoutMs` has passed; then one error
 * naming the address, the time and the last failure.
 */
export async function connectWithRetry(
  network: Network,
  address: string,
  timeoutMs: number,
  log: (line: string) => void = () => {},
): Promise<Connection> {
  const deadline = Date.now() + timeoutMs;
  let wait = RETRY_FIRST_MS;
  let lastSaid = 0;
  for (;;) {
    try {
      return await network.connect(address);
    } catch (err) {
      if (!(err instanceof WeftError && err.code === 'WEFT_E_NETWORK')) throw err;
      const now = Date.now();
      if (now + wait > deadline)
        throw new WeftError(
          'WEFT_E_NETWORK',
          `could not reach the coordinator at ${address} within ${Math.round(timeoutMs / 1000)} s (${err.message}); is it running, and is the address right?`,
          { resumable: true },
        );
      if (now - lastSaid >= 30_000) {
        log(`coordinator at ${address} not reachable yet (${err.message}); retrying`);
        lastSaid = now;
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(RETRY_MAX_MS, wait * 2);
    }
  }
}

/** Connects a worker to the coordinator and runs it until shut down. */
export async function runNetworkWorker(options: NetworkWorkerOptions): Promise<string> {
  const { network, address, secret, name } = options;
  if (network instanceof WsNetwork) requireSecretBeyondLoopback(options.peerListen, secret);
  let shell: WorkerShell | null = null;
  const mesh = await NetworkPeerMesh.start(
    network,
    options.peerListen,
    secret,
    (rank, m: Message) => shell?.onPeerMessage(rank, m),
    name,
  );
  options.onPeerListening?.(mesh.address);
  try {
    const conn = await connectWithRetry(
      network,
      address,
      options.connectTimeoutMs ?? 300_000,
      options.log,
    );
    await clientHandshake(conn, secret, { name, role: 'worker', peerAddress: mesh.address });
    shell = new WorkerShell(conn, mesh, {
      name,
      log: options.log,
      threads: options.threads,
      overlap: options.overlap,
      slowdownMs: options.slowdownMs,
    });
    return await shell.run();
  } finally {
    mesh.close();
  }
}

export interface ServeOptions extends ClusterOptions {
  /** HOST:PORT to listen on (port 0: any free port). */
  listen: string;
  /** Already bound (listenForWorkers); else `listen` is bound here. */
  listener?: WorkerListener;
  /** Frame and tensor size limits for incoming frames. */
  limits?: Limits;
  /** Called with the address actually listened on. */
  onListening?: (address: string) => void;
}

export async function serveCoordinator(
  config: RunConfig,
  dataset: Dataset,
  outDir: string,
  options: ServeOptions,
  hooks: RunHooks = {},
): Promise<Job> {
  const secret = options.secret ?? null;
  const listener =
    options.listener ??
    (await listenForWorkers(options.listen, { secret, limits: options.limits }));
  const coordinator = new CoordinatorShell(config, dataset, outDir, options, hooks);
  let result: Promise<RunResult>;
  try {
    result = coordinator.run();
  } catch (err) {
    await listener.close();
    throw err;
  }
  listener.attach(
    (conn) => coordinator.accept(conn),
    () => coordinator.readiness(),
  );
  options.onListening?.(listener.address);
  const done = result.finally(() => setTimeout(() => void listener.close(), 300).unref());
  return { result: done, stop: () => coordinator.stop(), status: () => coordinator.status() };
}

/**
 * A WebSocket listener for workers, bound at once; connections wait for the coordinator that
 * takes them. The same port answers HTTP probes: GET /healthz (200 while the process is up) and
 * GET /readyz (200 while the coordinator waits for workers or trains, with its progress; 503
 * before it starts and after it ends); other HTTP requests go to `serve`'s routes.
 */
export interface WorkerListener {
  /** HOST:PORT actually listened on. */
  address: string;
  /** Hands every connection, those that came already first, to `onConnection`; `probe` says how the run goes. */
  attach(onConnection: (connection: Connection) => void, probe?: () => Readiness): void;
  /** Answers HTTP requests other than the probes with `routes` (the status page). */
  serve(routes: HttpResponder): void;
  close(): Promise<void>;
}

/** What /readyz reports. */
export interface Readiness {
  ready: boolean;
  status: string;
  [key: string]: unknown;
}

/** Refuses to listen on `address` (HOST:PORT) beyond loopback without a shared secret. */
export function requireSecretBeyondLoopback(address: string, secret: string | null): void {
  const [host] = parseAddress(address);
  if (!secret && !isLoopbackHost(host)) {
    throw new WeftError(
      'WEFT_E_AUTH',
      `listening on ${host} needs a shared secret: pass --token-file FILE or set WEFT_TOKEN`,
    );
  }
}

/**
 * Binds `listen` (HOST:PORT) now: an address in use fails here, with one line, before anything
 * else is done (weft coordinator binds before it prepares data or touches the run directory).
 * Beyond loopback a secret is required (workers authenticate with it).
 */
export async function listenForWorkers(
  listen: string,
  options: { secret: string | null; limits?: Limits },
): Promise<WorkerListener> {
  requireSecretBeyondLoopback(listen, options.secret);
  const limits = options.limits;
  let target: ((connection: Connection) => void) | null = null;
  let probe: () => Readiness = () => ({ ready: false, status: 'starting' });
  let routes: HttpResponder = () => undefined;
  const early: Connection[] = [];
  const respond: HttpResponder = (request) => {
    if (request.method !== 'GET' || !['/healthz', '/readyz'].includes(request.path))
      return routes(request);
    if (request.path === '/healthz') return { status: 200, body: { status: 'alive' } };
    const body = probe();
    return { status: body.ready ? 200 : 503, body };
  };
  const listener = await new WsNetwork(limits).listen(
    listen,
    (conn) => (target ? target(conn) : early.push(conn)),
    respond,
  );
  return {
    address: listener.address,
    attach: (onConnection, readiness) => {
      target = onConnection;
      if (readiness) probe = readiness;
      for (const conn of early.splice(0)) onConnection(conn);
    },
    serve: (given) => {
      routes = given;
    },
    close: () => listener.close(),
  };
}
