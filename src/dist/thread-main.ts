// Body of a worker thread started by launch.ts: wraps the ports it was given (one to the
// coordinator, one per peer thread) and runs a worker on them.

import { workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { PrewiredPeerMesh } from './peers.ts';
import { clientHandshake } from './transport.ts';
import { PortConnection } from './transports/thread.ts';
import { WorkerShell } from './worker.ts';

export interface ThreadWorkerData {
  name: string;
  address: string;
  coordinator: MessagePort;
  peers: { address: string; port: MessagePort }[];
  /** Kernel threads of this worker. */
  threads: number;
}

// crash tests: WEFT_FAULT=thread:start makes every worker thread fail before it joins
if (process.env.WEFT_FAULT === 'thread:start') throw new Error('WEFT_FAULT=thread:start');

const data = workerData as ThreadWorkerData;
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
  const log = process.env.WEFT_DEBUG ? (line: string) => console.error(line) : undefined;
  shell = new WorkerShell(coordinator, mesh, { name: data.name, log, threads: data.threads });
  await shell.run();
} catch (err) {
  console.error(`[${data.name}] ${(err as Error).message}`);
  process.exitCode = 1;
}
