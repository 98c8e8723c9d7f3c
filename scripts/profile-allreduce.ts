// Where the exact all-reduce's time goes: each piece of its data path timed alone, on one chunk
// (the reduce-scatter's Float64 sums and the all-gather's fp32 values of a 64 MB fp32 gradient
// split between 2 workers), next to raw memory copy speed. The pieces: the copy into a message
// (slice), msgpack encoding and decoding with schema checks, the Float64 addition, the conversion
// to fp32 (JavaScript and the wasm kernel), and one frame's trip over loopback WebSocket between
// two threads (send to delivery, including ws framing and the socket).
//
// usage: npx tsx scripts/profile-allreduce.ts [--mb 64] [--repeats 5]

import { parseArgs } from 'node:util';
import { decodeFrame, encodeFrame } from '../src/distributed/codec.ts';
import { msg } from '../src/distributed/messages.ts';
import { WasmBackend } from '../src/kernels/wasm/backend.ts';
import { fromExact } from '../src/kernels/optim.ts';

const { values } = parseArgs({
  options: { mb: { type: 'string', default: '64' }, repeats: { type: 'string', default: '5' } },
});
const MB = 2 ** 20;
const gradientBytes = Number(values.mb) * MB;
const repeats = Number(values.repeats);
const elements = gradientBytes / 4 / 2; // one worker's half of the buffer

/** Median seconds of `repeats` runs of `run` (after one warm-up). */
function time(run: () => void): number {
  run();
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const start = performance.now();
    run();
    times.push((performance.now() - start) / 1000);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}

const rows: [string, number, number][] = [];
const row = (what: string, bytes: number, seconds: number) => rows.push([what, bytes, seconds]);

const sums = Float64Array.from({ length: elements }, (_, i) => (i % 1000) - 500);
const fp32 = Float32Array.from({ length: elements }, (_, i) => i * 1e-3);
const big = Buffer.alloc(elements * 8, 1);
const bigDst = Buffer.alloc(elements * 8);
row(
  'memcpy (Buffer.copy)',
  big.length,
  time(() => big.copy(bigDst)),
);
row(
  'slice of the Float64 sums',
  elements * 8,
  time(() => sums.slice()),
);
const tag = { step: 1, attempt: 0, bucket: 0, round: 0, offset: 0 };
const rsMessage = msg('chunk', { ...tag, phase: 'rs', data: sums });
const agMessage = msg('chunk', { ...tag, phase: 'ag', data: fp32 });
let rsFrame = encodeFrame(rsMessage);
let agFrame = encodeFrame(agMessage);
row(
  'msgpack encode, Float64 chunk',
  elements * 8,
  time(() => (rsFrame = encodeFrame(rsMessage))),
);
row(
  'msgpack decode + schema, Float64',
  elements * 8,
  time(() => decodeFrame(rsFrame)),
);
row(
  'msgpack encode, fp32 chunk',
  elements * 4,
  time(() => (agFrame = encodeFrame(agMessage))),
);
row(
  'msgpack decode + schema, fp32',
  elements * 4,
  time(() => decodeFrame(agFrame)),
);
const acc = new Float64Array(elements);
row(
  'Float64 addition (JavaScript loop)',
  elements * 8,
  time(() => {
    for (let i = 0; i < elements; i++) acc[i] += sums[i];
  }),
);
row(
  'fromExact, JavaScript',
  elements * 8,
  time(() => fromExact(fp32, sums, 40)),
);
const wasm = new WasmBackend();
const heapSums = wasm.allocF64(elements);
const heapOut = wasm.allocF32(elements);
heapSums.set(sums);
row(
  'fromExact, wasm (in its memory)',
  elements * 8,
  time(() => wasm.fromExact(heapOut, heapSums, 40)),
);

console.log(
  `one worker's chunk of a ${values.mb} MB gradient (2 workers): ${elements.toLocaleString('en-US')} elements`,
);
console.log('  piece                                  bytes      time      GB/s');
for (const [what, bytes, seconds] of rows) {
  console.log(
    `  ${what.padEnd(36)} ${(bytes / MB).toFixed(0).padStart(6)} MB ${(seconds * 1000).toFixed(1).padStart(7)} ms ${(bytes / seconds / 1e9).toFixed(2).padStart(7)}`,
  );
}
await wasm.dispose();
