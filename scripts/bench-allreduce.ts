// Benchmark: the exact all-reduce between worker processes over loopback WebSocket (as weft's
// network workers), and between worker threads of one process over MessagePorts and through shared
// memory (as weft train's workers), for 2 and 4 members and 1-256 MB gradient buffers, reported
// as nccl-tests does:
// algbw = size / time, busbw = algbw x 2(N-1)/N (size = the fp32 gradient; the reduce-scatter
// half carries it as integer sums). Raw TCP throughput on loopback and one thread's memcpy speed,
// measured in the same run, are the ceilings to compare with.
//
// usage: npm run bench:allreduce -- [--workers 2,4] [--sizes 1,4,16,64,256] [--repeats 3]
//                                   [--paths ws,ports,shared]

import { parseArgs } from 'node:util';
import type { Worker } from 'node:worker_threads';
import { MessageChannel } from 'node:worker_threads';
import type { Serializable } from 'node:child_process';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Member as RingMember } from '../src/distributed/messages.ts';
import { startThread } from '../src/util/threads.ts';
import { newExchange } from '../src/distributed/shared-reduce.ts';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '2,4' },
    sizes: { type: 'string', default: '1,4,16,64,256' },
    repeats: { type: 'string', default: '3' },
    paths: { type: 'string', default: 'ws,ports,shared' },
  },
});
const MB = 2 ** 20;
const sizes = values.sizes.split(',').map((s) => Number(s) * MB);
const entry = new URL('./bench-allreduce-worker.ts', import.meta.url);

function thread(data: unknown): Worker {
  return startThread(entry, data);
}

/** A member in a process of its own, with a thread's postMessage and terminate. */
function processMember(data: unknown): Member {
  const child = fork(fileURLToPath(entry), [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, BENCH_JOB: JSON.stringify(data) },
    serialization: 'advanced',
  });
  return Object.assign(child, {
    postMessage: (m: unknown) => void child.send(m as Serializable),
    terminate: () => Promise.resolve(void child.kill()),
  });
}
/** A ring member as the benchmark drives it: a worker thread or a child process. */
interface Member {
  once(event: 'message', listener: (m: Record<string, unknown>) => void): unknown;
  postMessage(m: unknown): void;
  terminate(): Promise<unknown>;
}

const next = (w: Member) =>
  new Promise<Record<string, unknown>>((resolve) =>
    w.once('message', (m: Record<string, unknown>) => resolve(m)),
  );

async function rawTcp(bytes: number): Promise<number> {
  const server = thread({ kind: 'tcp-server', bytes });
  const { port } = (await next(server)) as { port: number };
  const done = next(server);
  const client = thread({ kind: 'tcp-client', port, bytes });
  const { seconds } = (await done) as { seconds: number };
  await Promise.all([server.terminate(), client.terminate()]);
  return bytes / seconds / 1e9;
}

/**
 * The ring's traffic with no work at all: n raw TCP streams at once, member i sending to i + 1
 * what one member sends in an all-reduce of `size` bytes (Float64 sums in the reduce-scatter,
 * fp32 in the all-gather: 3 size (n-1)/n bytes), as the busbw that time would give.
 */
async function rawTcpRing(n: number, size: number): Promise<number> {
  const bytes = Math.round((3 * size * (n - 1)) / n);
  const members = Array.from({ length: n }, () => thread({ kind: 'tcp-ring', bytes }));
  const ports = await Promise.all(members.map(async (m) => (await next(m)).port as number));
  const ready = members.map((m) => next(m));
  members.forEach((m, i) => m.postMessage(ports[(i + 1) % n]));
  await Promise.all(ready);
  const done = members.map((m) => next(m));
  for (const m of members) m.postMessage('go');
  const seconds = Math.max(...(await Promise.all(done)).map((r) => r.seconds as number));
  await Promise.all(members.map((m) => m.terminate()));
  return ((size / seconds / 1e9) * 2 * (n - 1)) / n;
}

/** memcpy speed of one thread (Buffer.copy of 256 MB, best of 3): the ceiling between threads. */
function memcpy(): number {
  const from = Buffer.alloc(256 * MB, 1);
  const to = Buffer.alloc(256 * MB);
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const start = performance.now();
    from.copy(to);
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  return from.length / best / 1e9;
}

async function allReduce(
  n: number,
  over: 'ws' | 'ports' | 'shared',
): Promise<{ size: number; seconds: number }[]> {
  const repeats = Number(values.repeats);
  // over ports: channel i carries thread i's pieces to thread i + 1, as weft train wires them
  const channels = Array.from({ length: n }, () => new MessageChannel());
  const exchanges = over === 'shared' ? sizes.map((size) => newExchange(n, size / 4)) : [];
  const threads = Array.from({ length: n }, (_, rank): Member => {
    if (over === 'ws') return processMember({ kind: 'ring', rank, sizes, repeats });
    if (over === 'shared') return thread({ kind: 'ring', rank, sizes, repeats, exchanges });
    const toNext = channels[rank].port1;
    const fromPrev = channels[(rank - 1 + n) % n].port2;
    return startThread(
      entry,
      { kind: 'ring', rank, sizes, repeats, ports: { toNext, fromPrev } },
      {
        transferList: [toNext, fromPrev],
      },
    );
  });
  const addresses = await Promise.all(
    threads.map(async (t) => ((await next(t)) as { address: string }).address),
  );
  const members: RingMember[] = addresses.map((address, rank) => ({
    rank,
    name: `bench-${rank}`,
    address,
  }));
  for (const t of threads) t.postMessage(members);
  for (let round = 0; round < sizes.length * (repeats + 1); round++) {
    await Promise.all(threads.map((t) => next(t))); // every member ready
    for (const t of threads) t.postMessage('go');
  }
  const reports = await Promise.all(
    threads.map(
      async (t) => ((await next(t)) as { results: { size: number; seconds: number }[] }).results,
    ),
  );
  await Promise.all(threads.map((t) => t.terminate()));
  return sizes.map((size, i) => ({ size, seconds: Math.max(...reports.map((r) => r[i].seconds)) }));
}

const tcp = await rawTcp(1024 * MB);
console.log(`raw TCP on loopback (one stream, 1 GiB): ${tcp.toFixed(2)} GB/s`);
const copy = memcpy();
console.log(`memcpy (one thread, 256 MB): ${copy.toFixed(2)} GB/s`);
for (const [over, what, ceiling, name] of [
  ['ws', 'as processes over loopback WebSocket', tcp, 'TCP'],
  ['ports', 'as threads of one process over MessagePorts', copy, 'memcpy'],
  ['shared', 'as threads of one process sharing memory (weft train)', copy, 'memcpy'],
] as const) {
  if (!values.paths.split(',').includes(over)) continue;
  for (const n of values.workers.split(',').map(Number)) {
    console.log(`\nexact all-reduce, ${n} workers ${what}`);
    // over TCP, also the ring's own traffic pattern on raw sockets: what no work at all would reach
    const ring = over === 'ws' ? await rawTcpRing(n, Math.max(...sizes)) : 0;
    if (ring)
      console.log(
        `(raw TCP streams in the ring's pattern, ${n} at once, no work: busbw ${ring.toFixed(3)} GB/s)`,
      );
    const ringColumn = ring ? '  busbw/ring' : '';
    console.log(`      size      time     algbw     busbw   busbw/${name}${ringColumn}`);
    for (const { size, seconds } of await allReduce(n, over)) {
      const algbw = size / seconds / 1e9;
      const busbw = (algbw * 2 * (n - 1)) / n;
      const ofRing = ring ? (busbw / ring).toFixed(2).padStart(12) : '';
      console.log(
        `${(size / MB).toFixed(0).padStart(7)} MB ${(seconds * 1000).toFixed(1).padStart(7)} ms ${algbw.toFixed(3).padStart(6)} GB/s ${busbw.toFixed(3).padStart(6)} GB/s ${(busbw / ceiling).toFixed(2).padStart(8)}${ofRing}`,
      );
    }
  }
}
process.exit(0);
