// Frames and schemas: typed arrays round-trip as raw bytes; every malformed frame is refused with
// its stable code (size, msgpack, version, schema), including every truncation of a valid frame;
// the handshake's messages fit the small frame limit that holds before authentication.

import { pack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame } from '../../src/distributed/codec.ts';
import type { Message } from '../../src/distributed/messages.ts';
import {
  DEFAULT_LIMITS,
  PROTOCOL_VERSION,
  handshakeLimits,
  msg,
} from '../../src/distributed/messages.ts';
import { WeftError } from '../../src/util/errors.ts';
import { expectWeftError } from '../helpers/errors.ts';

const chunk = msg('chunk', {
  step: 3,
  attempt: 1,
  bucket: 0,
  phase: 'rs',
  round: 2,
  offset: 0,
  data: Float64Array.from([1.5, -(2 ** 52), 0]),
});
const start = msg('start', {
  step: 0,
  attempt: 0,
  lr: 1e-3,
  targetCount: 8,
  members: [{ rank: 0, name: 'a', address: '127.0.0.1:1' }],
  shards: [0, 1],
  batches: [{ shard: 0, idx: Int32Array.from([1, 2]), targets: Int32Array.from([2, -1]) }],
});

/** A raw frame: any value, packed as msgpack. */
const raw = (value: unknown) => new Uint8Array(pack(value));

describe('codec', () => {
  it('round-trips messages with typed arrays, bit for bit', () => {
    const back = decodeFrame(encodeFrame(chunk));
    expect(back).toEqual(chunk);
    expect((back as typeof chunk).data).toBeInstanceOf(Float64Array);
    expect(decodeFrame(encodeFrame(start))).toEqual(start);
    const params = msg('state', {
      what: 'params',
      offset: 0,
      total: 3,
      data: Float32Array.from([0.1, NaN, -0]),
      adamSteps: 0,
    });
    const got = decodeFrame(encodeFrame(params)) as typeof params;
    expect(
      Buffer.from(got.data.buffer, got.data.byteOffset, 12).equals(Buffer.from(params.data.buffer)),
    ).toBe(true);
  });

  it('carries a 1 M-element Float32Array as its bytes (no per-element encoding)', () => {
    const data = new Float32Array(2 ** 20);
    const frame = encodeFrame(
      msg('state', { what: 'm', offset: 0, total: data.length, data, adamSteps: 1 }),
    );
    expect(frame.length).toBeLessThan(data.byteLength + 100);
  });

  it.each([
    [
      'an oversized frame',
      () =>
        decodeFrame(encodeFrame(chunk), {
          ...DEFAULT_LIMITS,
          maxFrameBytes: 10,
          maxTensorElements: 10,
        }),
      'WEFT_E_FRAME',
      /over the limit of 10/,
    ],
    [
      'an oversized tensor',
      () =>
        decodeFrame(encodeFrame(chunk), {
          ...DEFAULT_LIMITS,
          maxFrameBytes: 1e6,
          maxTensorElements: 2,
        }),
      'WEFT_E_FRAME',
      /chunk\.data has 3 elements, over the limit of 2/,
    ],
    [
      'a frame over the handshake limit, before the handshake',
      () =>
        decodeFrame(
          encodeFrame(msg('hello', { name: 'x'.repeat(5000), role: 'peer', nonce: '', proof: '' })),
          handshakeLimits(DEFAULT_LIMITS),
        ),
      'WEFT_E_FRAME',
      /over the limit of 4096/,
    ],
    [
      'bytes that are not msgpack',
      () => decodeFrame(Uint8Array.from([0x92, 0x01])),
      'WEFT_E_DECODE',
      /not valid msgpack/,
    ],
    [
      'another protocol version',
      () => decodeFrame(raw({ v: 99, t: 'ping' })),
      'WEFT_E_VERSION',
      new RegExp(`version 99; this weft speaks ${PROTOCOL_VERSION}$`),
    ],
    [
      'a frame that is not an object',
      () => decodeFrame(raw([1, 2, 3])),
      'WEFT_E_SCHEMA',
      /not an object/,
    ],
    [
      'an unknown type',
      () => decodeFrame(raw({ v: PROTOCOL_VERSION, t: 'teleport' })),
      'WEFT_E_SCHEMA',
      /unknown message type "teleport"/,
    ],
    [
      'a missing field',
      () => decodeFrame(raw({ v: PROTOCOL_VERSION, t: 'commit', step: 1, attempt: 0 })),
      'WEFT_E_SCHEMA',
      /commit\.skip is missing/,
    ],
    [
      'a field of the wrong type',
      () =>
        decodeFrame(raw({ v: PROTOCOL_VERSION, t: 'commit', step: '1', attempt: 0, skip: false })),
      'WEFT_E_SCHEMA',
      /commit\.step must be an integer/,
    ],
    [
      'an extra field',
      () => decodeFrame(raw({ v: PROTOCOL_VERSION, t: 'ping', evil: true })),
      'WEFT_E_SCHEMA',
      /unexpected field evil/,
    ],
    [
      'a wrong tensor type',
      () => decodeFrame(raw({ ...chunk, data: [1, 2] })),
      'WEFT_E_SCHEMA',
      /chunk\.data must be one of f64, f32/,
    ],
    [
      'a bad nested member',
      () => decodeFrame(raw({ ...start, members: [{ rank: 'x', name: 'a', address: '' }] })),
      'WEFT_E_SCHEMA',
      /start\.members\[0\]\.rank must be an integer/,
    ],
    [
      'a value outside an enum',
      () =>
        decodeFrame(
          raw({ v: PROTOCOL_VERSION, t: 'hello', name: 'x', role: 'king', nonce: '', proof: '' }),
        ),
      'WEFT_E_SCHEMA',
      /hello\.role must be one of worker, peer/,
    ],
  ] as const)('refuses %s', (_, run, code, message) => {
    expectWeftError(run, code, message);
  });

  it('limits written before the handshake limit existed still get it (not an unlimited NaN)', () => {
    const old = { maxFrameBytes: 2 ** 20, maxTensorElements: 2 ** 18 };
    expect(handshakeLimits(old).maxFrameBytes).toBe(DEFAULT_LIMITS.maxHandshakeFrameBytes);
  });

  it('fits every handshake message at its largest real size well under the handshake limit', () => {
    const limits = handshakeLimits(DEFAULT_LIMITS);
    expect(limits.maxFrameBytes).toBe(4096);
    const hex = (n: number) => 'f'.repeat(n);
    const name = `${'h'.repeat(200)}-4194304`; // a long host name, and a pid
    const handshake: Message[] = [
      msg('challenge', { nonce: hex(32), auth: true }),
      msg('hello', {
        name,
        role: 'worker',
        nonce: hex(32),
        proof: hex(64),
        peerAddress: `[${'ffff:'.repeat(7)}ffff]:65535`,
      }),
      msg('hello', {
        name,
        role: 'peer',
        nonce: hex(32),
        proof: hex(64),
        rank: 65535,
        runId: `${'n'.repeat(200)}-4294967295-${Date.now().toString(36)}`, // config name, seed, time
      }),
      msg('welcome', { proof: hex(64) }),
      msg('reject', { code: 'WEFT_E_PROTOCOL', message: 'm'.repeat(200) }), // ws.ts cuts at 200
    ];
    for (const m of handshake) {
      const frame = encodeFrame(m);
      expect(frame.length, m.t).toBeLessThan(limits.maxFrameBytes / 4);
      expect(decodeFrame(frame, limits)).toEqual(m);
    }
  });

  it('refuses every truncation of a valid frame, never crashing', () => {
    for (const message of [chunk, start] as Message[]) {
      const frame = encodeFrame(message);
      for (let cut = 0; cut < frame.length; cut++) {
        let err: unknown = null;
        try {
          decodeFrame(frame.subarray(0, cut));
        } catch (e) {
          err = e;
        }
        expect(err, `prefix of ${cut} bytes`).toBeInstanceOf(WeftError);
      }
    }
  });

  it('does not let a frame set an object prototype', () => {
    const frame = Buffer.concat([
      Buffer.from([0x83]),
      Buffer.from(pack('v')),
      Buffer.from(pack(PROTOCOL_VERSION)),
      Buffer.from(pack('t')),
      Buffer.from(pack('ping')),
      Buffer.from(pack('__proto__')),
      Buffer.from(pack({ polluted: true })),
    ]);
    let decoded: unknown;
    try {
      decoded = decodeFrame(frame);
    } catch (err) {
      expect((err as WeftError).code).toBe('WEFT_E_SCHEMA');
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    if (decoded) expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
  });
});
