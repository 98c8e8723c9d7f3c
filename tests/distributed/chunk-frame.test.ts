// A collective's pieces as binary frames (chunk-frame.ts): they decode to the numbers sent, bit
// for bit, in all three encodings (the compact one's escape path included: a gradient with a few
// very large values); and every damaged frame (cut short, grown, bytes flipped, fields out of
// range) is refused with a WeftError of a stable code, never anything else.

import { describe, expect, it } from 'vitest';
import {
  decodeChunkFrame,
  encodeChunkFrame,
  HEADER_BYTES,
} from '../../src/distributed/chunk-frame.ts';
import type { MessageOf } from '../../src/distributed/messages.ts';
import { msg } from '../../src/distributed/messages.ts';
import { CompactSums } from '../../src/distributed/compact-sums.ts';
import { WeftError } from '../../src/util/errors.ts';
import { Rng } from '../../src/util/rng.ts';

type Chunk = MessageOf<'chunk'>;
const tag = { step: 7, attempt: 2, bucket: 3, round: 1, offset: 2 ** 17 };
const frameOf = (c: Chunk) => Buffer.concat(encodeChunkFrame(c));
/** The bytes of a piece's numbers (compact sums as the float64 values they add). */
const bytesOf = (d: Float64Array | Float32Array | CompactSums) => {
  const a = d instanceof CompactSums ? d.toFloat64() : d;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
};

/** Integer partial sums on the exact grid: mostly small, `large` of them past 32 bits. */
function sums(rng: Rng, n: number, large: number): Float64Array {
  const data = Float64Array.from({ length: n }, () => Math.round(rng.normal() * 2 ** 20));
  for (let i = 0; i < large; i++)
    data[rng.int(n)] = (rng.int(2) ? 1 : -1) * (2 ** 31 + rng.int(2 ** 21)) * 2 ** rng.int(20);
  return data;
}

describe('binary piece frames', () => {
  it('round-trip sums compactly, escaping the few that need more than 32 bits', () => {
    const rng = new Rng(1);
    for (const large of [0, 1, 17]) {
      const data = sums(rng, 1000, large);
      data[3] = -(2 ** 31); // the marker's own value, escaped too
      const piece = msg('chunk', { ...tag, phase: 'rs', data });
      const parts = encodeChunkFrame(piece);
      expect(parts).toHaveLength(1); // compact: one buffer
      expect(parts[0].length).toBeLessThan(HEADER_BYTES + 4 * 1000 + 8 * (large + 2) + 8);
      const back = decodeChunkFrame(parts[0]);
      expect(back).toMatchObject({ ...tag, phase: 'rs' });
      expect(bytesOf(back.data).equals(bytesOf(data))).toBe(true);
    }
  });

  it('keep every value exactly, edge values included (-0, NaN, infinities, int32 limits)', () => {
    const edges = [
      0,
      -0,
      NaN,
      Infinity,
      -Infinity,
      2 ** 31 - 1,
      -(2 ** 31),
      -(2 ** 31) + 1,
      2 ** 31,
    ];
    const more = [-(2 ** 31) - 1, 2 ** 32 + 1, 0.5, 5e-324, 2 ** 53, -(2 ** 53)];
    const data = Float64Array.from([...edges, ...more, ...new Array<number>(100).fill(7)]);
    const frame = encodeChunkFrame(msg('chunk', { ...tag, phase: 'rs', data }));
    expect(frame).toHaveLength(1); // compact: 15 escapes of 115 values
    const back = (decodeChunkFrame(frame[0]).data as CompactSums).toFloat64();
    data.forEach((v, i) => expect(Object.is(back[i], v), `value ${i}: ${v}`).toBe(true));
  });

  it('decode from the fragments a frame arrived in, without joining them', () => {
    const values = Float32Array.from({ length: 10 }, (_, i) => i);
    const [head, numbers] = encodeChunkFrame(msg('chunk', { ...tag, phase: 'ag', data: values }));
    const back = decodeChunkFrame([head, numbers]);
    expect((back.data as Float32Array).buffer).toBe(values.buffer); // read in place
    expect(Array.from(back.data as Float32Array)).toEqual(Array.from(values));
  });

  it('send sums that would escape too often as float64, and fp32 as they are, without a copy', () => {
    const wide = Float64Array.from({ length: 100 }, (_, i) => 2 ** 40 + i);
    const parts = encodeChunkFrame(msg('chunk', { ...tag, phase: 'rs', data: wide }));
    expect(parts).toHaveLength(2);
    expect(parts[1].buffer).toBe(wide.buffer); // the numbers are a view of the sender's buffer
    expect(
      bytesOf(
        decodeChunkFrame(frameOf(msg('chunk', { ...tag, phase: 'rs', data: wide }))).data,
      ).equals(bytesOf(wide)),
    ).toBe(true);
    const values = Float32Array.from({ length: 33 }, (_, i) => i / 3);
    const back = decodeChunkFrame(frameOf(msg('chunk', { ...tag, phase: 'ag', data: values })));
    expect(back.phase).toBe('ag');
    expect(bytesOf(back.data).equals(bytesOf(values))).toBe(true);
  });

  it('decode from any byte offset (a frame inside a larger buffer, misaligned)', () => {
    const data = Float32Array.of(1, 2, 3);
    const frame = frameOf(msg('chunk', { ...tag, phase: 'ag', data }));
    const shifted = Buffer.alloc(frame.length + 3);
    frame.copy(shifted, 3);
    expect(Array.from(decodeChunkFrame(shifted.subarray(3)).data as Float32Array)).toEqual([
      1, 2, 3,
    ]);
  });

  it('refuse every damaged frame with a stable code (10,000 fuzzed frames)', () => {
    const rng = new Rng(5);
    const limits = { maxFrameBytes: 1 << 16, maxTensorElements: 4096 };
    const codes = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const rs = rng.int(2) === 0;
      const n = rng.int(600);
      const data = rs
        ? sums(rng, n, rng.int(3) * rng.int(n + 1))
        : Float32Array.from({ length: n }, () => rng.normal());
      const frame = Buffer.from(frameOf(msg('chunk', { ...tag, phase: rs ? 'rs' : 'ag', data })));
      let bad: Uint8Array;
      switch (rng.int(5)) {
        case 0:
          bad = frame.subarray(0, rng.int(frame.length)); // cut short
          break;
        case 1:
          bad = Buffer.concat([frame, Buffer.alloc(1 + rng.int(16))]); // grown
          break;
        case 2: {
          const flipped = Buffer.from(frame);
          flipped[rng.int(HEADER_BYTES)] ^= 1 << rng.int(8); // a header field out of range
          bad = flipped;
          break;
        }
        case 3:
          bad = Buffer.alloc(limits.maxFrameBytes + 1 + rng.int(100)); // oversized
          frame.copy(bad, 0, 0, HEADER_BYTES);
          break;
        default: {
          const flipped = Buffer.from(frame);
          flipped[HEADER_BYTES + rng.int(Math.max(1, frame.length - HEADER_BYTES))] ^= 0xff;
          bad = flipped; // the numbers damaged: decodes to other numbers, or an escape mismatch
        }
      }
      try {
        const piece = decodeChunkFrame(bad, limits);
        expect(piece.data.length).toBeLessThanOrEqual(limits.maxTensorElements);
        codes.set('decoded', (codes.get('decoded') ?? 0) + 1);
      } catch (err) {
        expect(err).toBeInstanceOf(WeftError);
        const code = (err as WeftError).code;
        expect(['WEFT_E_FRAME', 'WEFT_E_SCHEMA']).toContain(code);
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }
    expect(codes.get('WEFT_E_FRAME')).toBeGreaterThan(1000);
    expect(codes.get('WEFT_E_SCHEMA')).toBeGreaterThan(100);
  });
});
