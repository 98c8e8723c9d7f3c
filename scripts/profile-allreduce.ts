// Where the exact all-reduce's time goes: each stage of its data path timed alone, on one chunk
// (the reduce-scatter's Float64 sums and the all-gather's fp32 values of a 64 MB fp32 gradient
// split between 2 workers; realistic partial sums, ~1% needing more than 32 bits), next to raw
// memory copy speed. The stages: the old path's copy into a message (slice) and msgpack encoding
// and decoding with schema checks; the binary piece frames' compact encoding and decoding
// (chunk-frame.ts, piece by piece) and the compact sums' addition into the sums; the Float64
// addition; the conversion to fp32 (JavaScript and the wasm kernel).
//
// usage: npm run profile:allreduce -- [--mb 64] [--repeats 5]

import { parseArgs } from 'node:util';
import { PIECE_ELEMS } from '../src/distributed/collectives.ts';
import { decodeChunkFrame, encodeChunkFrame } from '../src/distributed/chunk-frame.ts';
import type { CompactSums } from '../src/distributed/compact-sums.ts';
import { decodeFrame, encodeFrame } from '../src/distributed/codec.ts';
import { msg } from '../src/distributed/messages.ts';
import { WasmBackend } from '../src/kernels/wasm/backend.ts';
import { fromExact } from '../src/kernels/optim.ts';
import { Rng } from '../src/util/rng.ts';

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

const rng = new Rng(1);
const sums = Float64Array.from({ length: elements }, () =>
  Math.round(rng.normal() * 7.5e-4 * 2 ** 40),
);
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
/** Every piece of `data` as its own chunk message. */
const piecesOf = (phase: 'rs' | 'ag', data: Float64Array | Float32Array) =>
  Array.from({ length: Math.ceil(data.length / PIECE_ELEMS) }, (_, k) =>
    msg('chunk', {
      ...tag,
      phase,
      offset: k * PIECE_ELEMS,
      data: data.subarray(k * PIECE_ELEMS, (k + 1) * PIECE_ELEMS),
    }),
  );
const rsPieces = piecesOf('rs', sums);
let rsFrames: Uint8Array[] = rsPieces.map((m) => Buffer.concat(encodeChunkFrame(m)));
row(
  'binary pieces: compact encode (int32)',
  elements * 8,
  time(() => (rsFrames = rsPieces.map((m) => encodeChunkFrame(m)[0]))),
);
row(
  'binary pieces: decode (checks, escape count)',
  elements * 8,
  time(() => rsFrames.forEach((f) => decodeChunkFrame(f))),
);
const rsDecoded = rsFrames.map((f) => decodeChunkFrame(f).data as CompactSums);
const into = new Float64Array(elements);
row(
  'binary pieces: add into the sums (fused)',
  elements * 8,
  time(() => rsDecoded.forEach((d, k) => d.addInto(into, k * PIECE_ELEMS))),
);
const agFrames = piecesOf('ag', fp32).map((m) => Buffer.concat(encodeChunkFrame(m)));
row(
  'binary pieces: fp32 decode (views)',
  elements * 4,
  time(() => agFrames.forEach((f) => decodeChunkFrame(f))),
);
const wire = Buffer.concat(rsFrames);
row('  (compact size, of the Float64 bytes)', wire.length, 0);
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
console.log('  stage                                      bytes      time      GB/s');
for (const [what, bytes, seconds] of rows) {
  console.log(
    seconds === 0
      ? `  ${what.padEnd(40)} ${(bytes / MB).toFixed(1).padStart(6)} MB`
      : `  ${what.padEnd(40)} ${(bytes / MB).toFixed(0).padStart(6)} MB ${(seconds * 1000).toFixed(1).padStart(7)} ms ${(bytes / seconds / 1e9).toFixed(2).padStart(7)}`,
  );
}
await wasm.dispose();
