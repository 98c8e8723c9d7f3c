// One participant of scripts/bench-allreduce.ts, in its own thread or (over WebSocket, as weft's
// network workers) its own process: either a ring member running the exact all-reduce on
// realistic partial sums, over loopback WebSocket, over MessagePorts between threads, or through
// shared memory (as weft train's workers), or one end of a raw TCP stream. A process gets its job
// in BENCH_JOB and talks to the benchmark over its IPC channel.

import { createConnection, createServer } from 'node:net';
import type { MessagePort } from 'node:worker_threads';
import { parentPort } from 'node:worker_threads';
import { Mailbox, exactAllReduce } from '../src/distributed/collectives.ts';
import { fromExact } from '../src/kernels/optim.ts';
import { Rng } from '../src/util/rng.ts';
import { threadData } from '../src/util/threads.ts';
import type { Member, Message } from '../src/distributed/messages.ts';
import type { Connection } from '../src/distributed/transport.ts';
import { PortConnection } from '../src/distributed/transports/thread.ts';
import { NetworkPeerMesh } from '../src/distributed/peers.ts';
import { WsNetwork } from '../src/distributed/transports/ws.ts';
import type { Exchange } from '../src/distributed/shared-reduce.ts';
import { reductionSeq, sharedReducer } from '../src/distributed/shared-reduce.ts';

type Job =
  | {
      kind: 'ring';
      rank: number;
      sizes: number[];
      repeats: number;
      /** Threads of one process joined by MessagePorts (as weft train's), instead of WebSocket. */
      ports?: { toNext: MessagePort; fromPrev: MessagePort };
      /** Threads of one process sharing memory (as weft train's): one exchange per size. */
      exchanges?: Exchange[];
    }
  | { kind: 'tcp-server'; bytes: number }
  | { kind: 'tcp-client'; port: number; bytes: number }
  /** A ring of raw TCP streams: send `bytes` to the next member while receiving as many from the previous. */
  | { kind: 'tcp-ring'; bytes: number };

const job = process.env.BENCH_JOB ? (JSON.parse(process.env.BENCH_JOB) as Job) : threadData<Job>();

/**
 * A worker's partial sums as training makes them: one shard's gradient on the 2^-40 grid. The
 * values are normal with a spread (7.5e-4) at which about 1% need more than 32 bits, as measured
 * on the shakespeare config's first step (0.1-0.2% later in training).
 */
function realisticSums(elements: number, seed: number): Float64Array {
  const rng = new Rng(seed + 1);
  return Float64Array.from({ length: elements }, () => Math.round(rng.normal() * 7.5e-4 * 2 ** 40));
}
/** The benchmark's end of the conversation: the thread's parent port, or the process's IPC channel. */
const port = parentPort ?? {
  postMessage: (m: unknown) => process.send?.(m),
  once: (_: 'message', f: (m: unknown) => void) => process.once('message', f),
};

if (job.kind === 'tcp-server') {
  const server = createServer((socket) => {
    let received = 0;
    let start = 0;
    socket.on('data', (d: Buffer) => {
      if (start === 0) start = performance.now();
      received += d.length;
      if (received >= job.bytes) {
        port.postMessage({ seconds: (performance.now() - start) / 1000 });
        socket.destroy();
        server.close();
      }
    });
  });
  server.listen(0, '127.0.0.1', () =>
    port.postMessage({ port: (server.address() as { port: number }).port }),
  );
} else if (job.kind === 'tcp-ring') {
  const { bytes } = job;
  let received = 0;
  let receivedAll: () => void = () => {};
  const allIn = new Promise<void>((resolve) => (receivedAll = resolve));
  let connected: () => void = () => {};
  const fromPrev = new Promise<void>((resolve) => (connected = resolve));
  const server = createServer((socket) => {
    connected();
    socket.on('data', (d: Buffer) => {
      received += d.length;
      if (received >= bytes) receivedAll();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port.postMessage({ port: (server.address() as { port: number }).port });
  const nextPort = await new Promise<number>((resolve) =>
    port.once('message', (m) => resolve(m as number)),
  );
  const toNext = createConnection(nextPort, '127.0.0.1');
  await new Promise((resolve) => toNext.once('connect', resolve));
  await fromPrev;
  await new Promise<void>((resolve) => {
    port.once('message', () => resolve()); // barrier: every member starts together
    port.postMessage({ ready: true });
  });
  const start = performance.now();
  const block = Buffer.alloc(1 << 20, 7);
  let sent = 0;
  const allOut = new Promise<void>((resolve) => {
    const pump = () => {
      while (sent < bytes) {
        sent += block.length;
        if (!toNext.write(block)) return void toNext.once('drain', pump);
      }
      resolve();
    };
    pump();
  });
  await Promise.all([allIn, allOut]);
  port.postMessage({ seconds: (performance.now() - start) / 1000 });
  toNext.destroy();
  server.close();
} else if (job.kind === 'tcp-client') {
  const socket = createConnection(job.port, '127.0.0.1', () => {
    const block = Buffer.alloc(1 << 20, 7);
    let sent = 0;
    const pump = () => {
      while (sent < job.bytes) {
        sent += block.length;
        if (!socket.write(block)) return void socket.once('drain', pump);
      }
      socket.end();
    };
    pump();
  });
  socket.on('error', () => {});
} else {
  const mailbox = new Mailbox();
  const deliver = (from: number, m: Message) => {
    if (m.t === 'chunk') mailbox.deliver(from, m);
  };
  const mesh =
    job.ports || job.exchanges
      ? null
      : await NetworkPeerMesh.start(
          new WsNetwork(),
          '127.0.0.1:0',
          null,
          deliver,
          `bench-${job.rank}`,
        );
  mesh?.identify(job.rank, 'bench');
  port.postMessage({ address: mesh?.address ?? '' });
  const members = await new Promise<Member[]>((resolve) => port.once('message', resolve));
  const n = members.length;
  const position = members.findIndex((m) => m.rank === job.rank);
  const next = members[(position + 1) % n];
  const prev = members[(position - 1 + n) % n];
  let toNext: Connection;
  if (job.exchanges) {
    toNext = null as unknown as Connection; // not used: the members share memory
  } else if (job.ports) {
    toNext = new PortConnection(job.ports.toNext, 'next');
    new PortConnection(job.ports.fromPrev, 'prev').onMessage = (m) => deliver(prev.rank, m);
  } else {
    [toNext] = await Promise.all([
      (mesh as NetworkPeerMesh).link(next),
      (mesh as NetworkPeerMesh).link(prev),
    ]);
  }
  const ring = {
    position,
    size: n,
    ranks: members.map((m) => m.rank),
    send: (_: number, c: Parameters<typeof toNext.send>[0]) => toNext.send(c),
    flushed: () => toNext.flushed?.() ?? Promise.resolve(),
  };
  let step = 0;
  const results: { size: number; seconds: number }[] = [];
  for (const [i, bytes] of job.sizes.entries()) {
    const elements = bytes / 4;
    const partial = realisticSums(elements, job.rank);
    const sums = new Float64Array(elements);
    const out = new Float32Array(elements);
    const times: number[] = [];
    for (let r = 0; r < job.repeats + 1; r++) {
      sums.set(partial); // each run starts from the same partial sums (the last one summed them)
      await new Promise<void>((resolve) => {
        port.once('message', () => resolve()); // barrier: the main thread starts every member together
        port.postMessage({ ready: true });
      });
      const start = performance.now();
      const exchange = job.exchanges?.[i];
      if (exchange) {
        const members = Array.from({ length: n }, (_, m) => m);
        await sharedReducer({
          exchange,
          slot: position,
          members,
          seq: reductionSeq(step++, 0),
          bits: 40,
          cancelled: () => false,
        }).reduce(sums, out);
      } else
        await exactAllReduce({
          ring,
          mailbox,
          sums,
          out,
          toFp32: (o, a, begin, end) => fromExact(o, a, 40, begin, end),
          step: step++,
          attempt: 0,
          cancelled: () => false,
        });
      if (r > 0) times.push((performance.now() - start) / 1000); // the first run warms up
    }
    results.push({
      size: bytes,
      seconds: times.sort((a, b) => a - b)[Math.floor(times.length / 2)],
    });
  }
  port.postMessage({ results });
  mesh?.close();
  if (!parentPort) process.disconnect(); // a process: its IPC channel would keep it alive
}
