// Fuzzing a live cluster: thousands of random and mutated frames (random bytes, truncations, bit
// flips, wrong versions, wrong field types, unknown types, oversized frames, valid messages and
// binary all-reduce pieces sent before the handshake, hellos with a bad proof) go to the
// coordinator's port and to a worker's peer port while training runs. Each frame comes on a
// fresh, unauthenticated connection, so the handshake's frame limit applies: each gets a reject
// with the code a local decode under that limit predicts (or, past twice the limit, a closed
// connection); nothing crashes; the trained weights are byte-identical to a run nobody disturbed.

import { join } from 'node:path';
import { pack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame } from '../../src/distributed/codec.ts';
import { encodeChunkFrame, isChunkFrame } from '../../src/distributed/chunk-frame.ts';
import { serveCoordinator, trainWithThreads } from '../../src/distributed/launch.ts';
import type { Limits, Message } from '../../src/distributed/messages.ts';
import {
  DEFAULT_LIMITS,
  PROTOCOL_VERSION,
  handshakeLimits,
  msg,
} from '../../src/distributed/messages.ts';
import { connectRaw } from '../../src/distributed/transports/ws.ts';
import { loadDataset } from '../../src/data/dataset.ts';
import { WeftError } from '../../src/util/errors.ts';
import { Rng } from '../../src/util/rng.ts';
import { startWorker } from '../helpers/cli.ts';
import { tempDir } from '../helpers/tmp.ts';
import { finalWeights, tinyConfig, tinyDataset } from '../helpers/runs.ts';

const FRAMES_PER_TARGET = Number(process.env.FUZZ_FRAMES ?? 1200);
// small enough that oversized frames are cheap to send, large enough for this model's chunks
const LIMITS: Limits = {
  maxFrameBytes: 512 * 1024,
  maxTensorElements: 64 * 1024,
  maxHandshakeFrameBytes: DEFAULT_LIMITS.maxHandshakeFrameBytes,
};
const HANDSHAKE_BYTES = DEFAULT_LIMITS.maxHandshakeFrameBytes;
const SECRET = 'fuzz secret';

const dir = tempDir();
const dataset = loadDataset(tinyDataset(dir));
const config = tinyConfig({
  name: 'fuzz',
  batchSize: 4,
  steps: 100_000, // stopped once the fuzzing is over
  evalEvery: 0,
});

const VALID: Message[] = [
  msg('hello', { name: 'x', role: 'worker', nonce: 'ab', proof: 'cd' }),
  msg('ready', { dataLocal: true, kernel: 'wasm' }),
  msg('shardDone', { step: 0, attempt: 0, shard: 0, lossSum: 1, targets: 2, overflow: false }),
  msg('chunk', {
    step: 0,
    attempt: 0,
    bucket: 0,
    phase: 'rs',
    round: 0,
    offset: 0,
    data: new Float64Array(64),
  }),
  msg('chunk', {
    step: 0,
    attempt: 0,
    bucket: 0,
    phase: 'ag',
    round: 0,
    offset: 0,
    data: new Float32Array(LIMITS.maxTensorElements + 1),
  }),
  msg('start', {
    step: 0,
    attempt: 0,
    lr: 1,
    targetCount: 1,
    members: [{ rank: 0, name: 'a', address: 'b' }],
    shards: [0],
    batches: [],
  }),
  msg('state', { what: 'v', offset: 0, total: 4, data: new Float32Array(4), adamSteps: 2 }),
  msg('commit', { step: 0, attempt: 0, skip: false }),
  msg('ping', {}),
];

function randomValue(rng: Rng): unknown {
  const options: unknown[] = [
    rng.int(1000),
    -rng.uniform(),
    'text',
    true,
    null,
    [1, 2],
    { a: 1 },
    new Float32Array(3),
    2 ** 60,
  ];
  return options[rng.int(options.length)];
}

/** A collective's piece as its binary frame (chunk-frame.ts), maybe cut short. */
function binaryPiece(rng: Rng): Uint8Array {
  const rs = rng.int(2) === 0;
  const count = rng.int(500);
  const data = rs
    ? Float64Array.from({ length: count }, () => Math.round(rng.normal() * 2 ** (10 + rng.int(40))))
    : Float32Array.from({ length: count }, () => rng.normal());
  const piece = msg('chunk', {
    step: rng.int(5),
    attempt: 0,
    bucket: 0,
    phase: rs ? 'rs' : 'ag',
    round: 0,
    offset: 0,
    data,
  });
  const bytes = Buffer.concat(encodeChunkFrame(piece));
  return rng.int(2) ? bytes : bytes.subarray(0, rng.int(bytes.length));
}

/** One fuzz frame: bytes to send. */
function fuzzFrame(rng: Rng): Uint8Array {
  const base = VALID[rng.int(VALID.length)];
  const frame = encodeFrame(base);
  switch (rng.int(12)) {
    case 10:
      return binaryPiece(rng); // a piece before the handshake: refused unread
    case 0:
      return Uint8Array.from({ length: rng.int(200) }, () => rng.int(256));
    case 1:
      return frame.subarray(0, rng.int(frame.length));
    case 2: {
      const flipped = frame.slice();
      for (let i = 0, n = 1 + rng.int(8); i < n; i++)
        flipped[rng.int(flipped.length)] ^= 1 << rng.int(8);
      return flipped;
    }
    case 3:
      return new Uint8Array(pack({ ...base, v: PROTOCOL_VERSION + 1 + rng.int(100) }));
    case 4: {
      const keys = Object.keys(base).filter((k) => k !== 'v' && k !== 't');
      if (keys.length === 0) return new Uint8Array(pack({ ...base, t: 42 }));
      return new Uint8Array(pack({ ...base, [keys[rng.int(keys.length)]]: randomValue(rng) }));
    }
    case 5:
      return new Uint8Array(pack({ v: PROTOCOL_VERSION, t: `bogus${rng.int(100)}` }));
    case 6:
      return new Uint8Array(pack({ ...base, extra: randomValue(rng) }));
    case 7:
      return new Uint8Array(LIMITS.maxFrameBytes + 1 + rng.int(2 * LIMITS.maxFrameBytes)).fill(
        rng.int(256),
      );
    case 8: {
      // a hello between the handshake limit and twice it: refused with a reject, not cut off
      const name = 'x'.repeat(HANDSHAKE_BYTES + rng.int(HANDSHAKE_BYTES - 100));
      return encodeFrame(msg('hello', { name, role: 'worker', nonce: 'n', proof: 'p' }));
    }
    case 9:
      return encodeFrame(
        msg('hello', {
          name: 'intruder',
          role: rng.int(2) ? 'worker' : 'peer',
          nonce: 'n',
          proof: 'f'.repeat(64),
        }),
      );
    default:
      return frame; // a valid message, but before the handshake
  }
}

/** The code a receiver with `limits` must answer `frame` with, before the handshake completes. */
function expectedCode(frame: Uint8Array, role: 'worker' | 'peer', limits: Limits): string {
  const before = handshakeLimits(limits);
  if (frame.length > 2 * before.maxFrameBytes) return 'closed';
  if (isChunkFrame(frame)) return 'WEFT_E_FRAME';
  try {
    const m = decodeFrame(frame, before);
    if (m.t !== 'hello' || m.role !== role) return 'WEFT_E_PROTOCOL';
    return 'WEFT_E_AUTH';
  } catch (err) {
    return (err as WeftError).code;
  }
}

/** Sends one frame on a fresh connection; resolves with the reject code, or 'closed'. */
async function probe(address: string, frame: Uint8Array): Promise<string> {
  const conn = await connectRaw(address);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('no answer'), 5000);
    conn.onMessage = (m) => {
      if (m.t === 'reject') {
        clearTimeout(timer);
        resolve(m.code);
        conn.close();
      }
    };
    conn.onClose = () => {
      clearTimeout(timer);
      resolve('closed');
    };
    conn.sendRaw(frame);
  });
}

async function fuzz(
  address: string,
  role: 'worker' | 'peer',
  limits: Limits,
  seed: number,
): Promise<{ mismatches: string[]; codes: Map<string, number> }> {
  const rng = new Rng(seed);
  const frames = Array.from({ length: FRAMES_PER_TARGET }, () => fuzzFrame(rng));
  const mismatches: string[] = [];
  const codes = new Map<string, number>();
  for (let i = 0; i < frames.length; i += 16) {
    const batch = frames.slice(i, i + 16);
    if (process.env.FUZZ_DEBUG) console.log(role, i, Date.now());
    const got = await Promise.all(batch.map((f) => probe(address, f)));
    batch.forEach((frame, j) => {
      const want = expectedCode(frame, role, limits);
      codes.set(got[j], (codes.get(got[j]) ?? 0) + 1);
      if (got[j] !== want)
        mismatches.push(`frame ${i + j} (${frame.length} bytes): got ${got[j]}, expected ${want}`);
    });
  }
  return { mismatches, codes };
}

describe('fuzzing a coordinator and a worker during training', () => {
  it(`refuses ${2 * FRAMES_PER_TARGET} bad frames with their codes and trains undisturbed`, async () => {
    let address = '';
    let peerAddress = '';
    const fuzzResults: { mismatches: string[]; codes: Map<string, number> }[] = [];
    let fuzzed: () => void = () => {};
    const fuzzing = new Promise<void>((resolve) => (fuzzed = resolve));
    const job = await serveCoordinator(
      config,
      dataset,
      join(dir, 'fuzzed'),
      {
        listen: '127.0.0.1:0',
        workers: 2,
        secret: SECRET,
        limits: LIMITS,
        onListening: (a) => (address = a),
      },
      {
        log: (line) => {
          const joined = /^worker w0 joined .*; peers reach it at (\S+)$/.exec(line);
          if (joined) peerAddress = joined[1];
        },
        onStart: () => {
          const started = Date.now();
          // the coordinator runs here with small limits; the worker process has the default ones
          void Promise.all([
            fuzz(address, 'worker', LIMITS, 1),
            fuzz(peerAddress, 'peer', DEFAULT_LIMITS, 2),
          ]).then((r) => {
            fuzzResults.push(...r);
            if (process.env.FUZZ_DEBUG) console.log(`fuzzed for ${Date.now() - started} ms`);
            job.stop(); // training ran all along; end it after the step in progress
            fuzzed();
          });
        },
      },
    );
    const workers = ['w0', 'w1'].map((name) => startWorker(address, name, { WEFT_TOKEN: SECRET }));
    const result = await job.result;
    await fuzzing;
    expect(result.interrupted).toBe(true);
    for (const w of workers) expect(await w.exited, w.output()).toBe(0);
    for (const r of fuzzResults) expect(r.mismatches.slice(0, 5)).toEqual([]);
    // every kind of refusal happened
    for (const code of [
      'WEFT_E_DECODE',
      'WEFT_E_SCHEMA',
      'WEFT_E_VERSION',
      'WEFT_E_FRAME',
      'WEFT_E_PROTOCOL',
      'WEFT_E_AUTH',
      'closed',
    ]) {
      expect(
        fuzzResults.reduce((n, r) => n + (r.codes.get(code) ?? 0), 0),
        code,
      ).toBeGreaterThan(0);
    }
    // the same steps, undisturbed: stopped the same way once step result.steps is under way
    const clean = trainWithThreads(
      config,
      dataset,
      join(dir, 'clean'),
      { workers: 1 },
      {
        onStep: (m) => {
          if (m.step === result.steps - 1) clean.stop();
        },
      },
    );
    expect((await clean.result).steps).toBe(result.steps);
    const weights = (run: string) => finalWeights(join(dir, run));
    expect(weights('fuzzed').equals(weights('clean'))).toBe(true);
  });
});
