// safetensors: round trips, byte-stable output, the PyTorch-written fixture, and refusal of
// malformed files with a WEFT_E_FORMAT error naming the problem.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  getFloat32,
  getInt32,
  readSafetensors,
  writeSafetensors,
} from '../../src/checkpoint/safetensors.ts';
import { FIXTURE_DIR } from '../helpers/fixtures.ts';
import { expectWeftError } from '../helpers/errors.ts';

const sample = () =>
  writeSafetensors(
    [
      { name: 'a', dtype: 'F32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) },
      { name: 'b', dtype: 'I32', shape: [3], data: Int32Array.from([-1, 0, 7]) },
    ],
    { format: 'pt' },
  );

function withHeader(header: unknown, data = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors', () => {
  it('round-trips tensors and metadata', () => {
    const st = readSafetensors(sample());
    expect(Array.from(getFloat32(st, 'a'))).toEqual([1, 2, 3, 4]);
    expect(Array.from(getInt32(st, 'b'))).toEqual([-1, 0, 7]);
    expect(st.tensors.get('a')?.shape).toEqual([2, 2]);
    expect(st.metadata).toEqual({ format: 'pt' });
  });

  it('pads the header to a multiple of 8 and writes equal bytes for equal input', () => {
    const bytes = sample();
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(headerLength % 8).toBe(0);
    expect(Buffer.from(sample()).equals(Buffer.from(bytes))).toBe(true);
  });

  it('reads the PyTorch-written fixture', () => {
    const file = readFileSync(join(FIXTURE_DIR, 'gpt2-tiny.safetensors'));
    const st = readSafetensors(file);
    expect(st.tensors.get('param/h.0.attn.c_attn.weight')?.shape).toEqual([32, 96]);
    expect(getInt32(st, 'targets').filter((t) => t === -1)).toHaveLength(3);
  });

  const bad: [string, () => Uint8Array, RegExp][] = [
    [
      'a file shorter than 8 bytes',
      () => new Uint8Array(5),
      /shorter than the 8-byte header length/,
    ],
    ['a truncated file', () => sample().subarray(0, sample().length - 4), /truncated file/],
    ['a header length past the end', () => sample().subarray(0, 20), /does not fit/],
    [
      'a header that is not JSON',
      () => withHeader('x').map((b, i) => (i === 8 ? 0x7b : b)),
      /not valid UTF-8 JSON/,
    ],
    [
      'an unknown dtype',
      () => withHeader({ a: { dtype: 'Q8', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)),
      /unknown dtype "Q8"/,
    ],
    [
      'a negative dimension',
      () =>
        withHeader({ a: { dtype: 'U8', shape: [-1], data_offsets: [0, 1] } }, new Uint8Array(1)),
      /invalid shape/,
    ],
    [
      'a size that disagrees with the shape',
      () =>
        withHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)),
      /spans 4 bytes but dtype F32 and shape \[2\] need 8/,
    ],
    [
      'overlapping tensors',
      () =>
        withHeader(
          {
            a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] },
            b: { dtype: 'U8', shape: [2], data_offsets: [1, 3] },
          },
          new Uint8Array(3),
        ),
      /overlap or hole/,
    ],
    [
      'trailing bytes',
      () => withHeader({ a: { dtype: 'U8', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(2)),
      /trailing bytes/,
    ],
  ];
  it.each(bad)('refuses %s', (_, make, message) => {
    expectWeftError(() => readSafetensors(make(), 'model.safetensors'), 'WEFT_E_FORMAT', message);
    expect(() => readSafetensors(make(), 'model.safetensors')).toThrow(/^model\.safetensors: /);
  });

  it('names a missing tensor and a wrong dtype', () => {
    const st = readSafetensors(sample());
    expect(() => getFloat32(st, 'zzz')).toThrow(/tensor zzz is missing/);
    expect(() => getFloat32(st, 'b')).toThrow(/tensor b has dtype I32, expected F32/);
  });
});
