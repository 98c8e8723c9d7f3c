// Benchmark: the exact all-reduce over loopback WebSocket between worker threads (each its own
// event loop), for 2 and 4 members and 1-256 MB gradient buffers, reported as nccl-tests does:
// algbw = size / time, busbw = algbw x 2(N-1)/N (size = the fp32 gradient; the reduce-scatter
// half carries it as 8-byte integer sums). Raw TCP throughput on loopback, measured in the same
// run, is the ceiling to compare with.
//
// usage: npm run bench:allreduce -- [--workers 2,4] [--sizes 1,4,16,64,256] [--repeats 3]

import { parseArgs } from 'node:util';
import type { Worker } from 'node:worker_threads';
import type { Member } from '../src/distributed/messages.ts';
import { startThread } from '../src/util/threads.ts';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '2,4' },
    sizes: { type: 'string', default: '1,4,16,64,256' },
    repeats: { type: 'string', default: '3' },
  },
});
const MB = 2 ** 20;
const sizes = values.sizes.split(',').map((s) => Number(s) * MB);
const entry = new URL('./bench-allreduce-worker.ts', import.meta.url);

function thread(data: unknown): Worker {
  return startThread(entry, data);
}

const next = (w: Worker) =>
  new Promise<Record<string, unknown>>((resolve) => w.once('message', resolve));

async function rawTcp(bytes: number): Promise<number> {
  const server = thread({ kind: 'tcp-server', bytes });
  const { port } = (await next(server)) as { port: number };
  const done = next(server);
  const client = thread({ kind: 'tcp-client', port, bytes });
  const { seconds } = (await done) as { seconds: number };
  await Promise.all([server.terminate(), client.terminate()]);
  return bytes / seconds / 1e9;
}

async function allReduce(n: number): Promise<{ size: number; seconds: number }[]> {
  const repeats = Number(values.repeats);
  const threads = Array.from({ length: n }, (_, rank) =>
    thread({ kind: 'ring', rank, sizes, repeats }),
  );
  const addresses = await Promise.all(
    threads.map(async (t) => ((await next(t)) as { address: string }).address),
  );
  const members: Member[] = addresses.map((address, rank) => ({
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
for (const n of values.workers.split(',').map(Number)) {
  console.log(`\nexact all-reduce, ${n} workers over loopback WebSocket`);
  console.log('      size      time     algbw     busbw   busbw/TCP');
  for (const { size, seconds } of await allReduce(n)) {
    const algbw = size / seconds / 1e9;
    const busbw = (algbw * 2 * (n - 1)) / n;
    console.log(
      `${(size / MB).toFixed(0).padStart(7)} MB ${(seconds * 1000).toFixed(1).padStart(7)} ms ${algbw.toFixed(3).padStart(6)} GB/s ${busbw.toFixed(3).padStart(6)} GB/s ${(busbw / tcp).toFixed(2).padStart(8)}`,
    );
  }
}
process.exit(0);
