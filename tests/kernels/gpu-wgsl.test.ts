// The gpu backend's shaders as WebGPU would run them, checked without a GPU: gpu.js translates
// kernels to WGSL before it touches a device. Every index into a buffer must be i32 arithmetic
// (f32 indices lose exactness past 2^24, which GPT-2's logits reach), and the loop bound must be
// the integer K baked in for the shape.

import { describe, expect, it } from 'vitest';
import type { GemmShape } from '../../src/kernels/gpu/device.ts';
import { gemmWgsl } from '../../src/kernels/gpu/device.ts';

/** The index expressions of every buffer read: get_user_NAME(0, 0, INDEX). */
function indexExpressions(wgsl: string): string[] {
  const found: string[] = [];
  const re = /get_user_\w+\(0, 0, /g;
  for (let m = re.exec(wgsl); m; m = re.exec(wgsl)) {
    let depth = 1;
    let i = m.index + m[0].length;
    const start = i;
    for (; depth > 0; i++) depth += wgsl[i] === '(' ? 1 : wgsl[i] === ')' ? -1 : 0;
    found.push(wgsl.slice(start, i - 1));
  }
  return found;
}

// The products of a training step at GPT-2 124M's shapes (N = 8 x 1024 rows, C = 768, V = 50257).
const [N, C, V] = [8192, 768, 50257];
const shapes: [string, GemmShape][] = [
  ['x*W + b', { M: N, K: C, J: 3 * C, ai: C, ak: 1, bk: 3 * C, bj: 1, mode: 'bias' }],
  ['dX += dY*W^T', { M: N, K: 3 * C, J: C, ai: 3 * C, ak: 1, bk: 1, bj: 3 * C, mode: 'acc' }],
  ['dW += X^T*dY', { M: C, K: N, J: 3 * C, ai: 1, ak: C, bk: 3 * C, bj: 1, mode: 'acc' }],
  ['logits = x*wte^T', { M: N, K: C, J: V, ai: C, ak: 1, bk: 1, bj: C, mode: 'set' }],
  ['dwte += dlogits^T*x', { M: V, K: N, J: C, ai: 1, ak: V, bk: C, bj: 1, mode: 'acc' }],
];

describe.each(shapes)('gpu WGSL for %s', (_, shape) => {
  const wgsl = gemmWgsl(shape);

  it('indexes every buffer with i32 arithmetic', () => {
    const indices = indexExpressions(wgsl);
    expect(indices.length).toBe(4); // a, b, and the bias and previous-C reads of the extra operand
    for (const index of indices) {
      expect(index, index).not.toMatch(/f32|\d\.\d/);
    }
  });

  it(`loops over K as an integer`, () => {
    expect(wgsl).toContain(`(user_k<${shape.K})`);
    expect(wgsl).toMatch(/var user_k : i32 = 0;/);
  });
});
