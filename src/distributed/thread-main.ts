// Body of a worker thread started by launch.ts (startThread): wraps the ports it was given (one
// to the coordinator, one per peer thread) and runs a worker on them.

import { parentPort, type MessagePort } from 'node:worker_threads';
import type { Exchange } from './shared-reduce.ts';
import { PrewiredPeerMesh } from './peers.ts';
import { clientHandshake } from './transport.ts';
import { PortConnection } from './transports/thread.ts';
import { WorkerShell } from './worker.ts';
import { threadData } from '../util/threads.ts';

export interface ThreadWorkerData {
  name: string;
  address: string;
  coordinator: MessagePort;
  peers: { address: string; port: MessagePort }[];
  /** Kernel threads of this worker. */
  threads: number;
  /** Shared memory for the all-reduce among the launcher's threads (null when alone). */
  exchange: Exchange | null;
}

/** A line a worker thread sends its launcher for the run's log. */
export interface ThreadLog {
  type: 'log';
  line: string;
}

// crash tests: WEFT_FAULT=thread:start makes every worker thread fail before it joins;
// thread:slow-start@MS delays each one's start by MS milliseconds
const fault = process.env.WEFT_FAULT ?? '';
if (fault === 'thread:start') throw new Error('WEFT_FAULT=thread:start');
if (fault.startsWith('thread:slow-start@'))
  await new Promise((resolve) => setTimeout(resolve, Number(fault.split('@')[1])));

const data = threadData<ThreadWorkerData>();
const coordinator = new PortConnection(data.coordinator, 'coordinator');
const peerLinks = new Map(
  data.peers.map((p) => [p.address, new PortConnection(p.port, p.address)]),
);
let shell: WorkerShell | null = null;
const mesh = new PrewiredPeerMesh(data.address, peerLinks, (rank, message) =>
  shell?.onPeerMessage(rank, message),
);
try {
  await clientHandshake(coordinator, null, {
    name: data.name,
    role: 'worker',
    peerAddress: data.address,
  });
  // the worker's lines (its rank, backend, reduction path) go to the launcher's log
  const log = (line: string) => parentPort?.postMessage({ type: 'log', line } satisfies ThreadLog);
  shell = new WorkerShell(coordinator, mesh, {
    name: data.name,
    log,
    threads: data.threads,
    exchange: data.exchange,
  });
  await shell.run();
} catch (err) {
  console.error(`[${data.name}] ${(err as Error).message}`);
  process.exit(1); // ends this thread (its open ports would keep it alive); its launcher sees it
}
