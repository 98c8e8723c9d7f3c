// Kernel suite: literal values and finite-difference gradient checks for every GPT-2 kernel.
// Written once over a table of kernel sets, so each fast backend added later runs the same tests.
// Gradient checks run in float64 (central differences, h = 1e-5) and must agree to ~1e-7.

import { describe, expect, it } from 'vitest';
import * as reference from '../../src/kernels/reference.ts';
import type { Floats } from '../../src/kernels/reference.ts';
import { Rng } from '../../src/util/rng.ts';
import { expectWeftError } from '../helpers/errors.ts';

const BACKENDS: [string, typeof reference][] = [['reference', reference]];

function randn(rng: Rng, n: number, scale = 1): Float64Array {
  return Float64Array.from({ length: n }, () => rng.normal() * scale);
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * Checks analytic gradients against central differences of L = sum(forward() * r) for each
 * array in `inputs`. `forward` recomputes from the current inputs; `backward` fills `grads`
 * (zeroed, same shapes as inputs) given dout = r, after a forward at the unperturbed point.
 */
function gradCheck(
  inputs: Record<string, Float64Array>,
  forward: () => Float64Array,
  backward: (grads: Record<string, Float64Array>, dout: Float64Array) => void,
  seed = 7,
): void {
  const rng = new Rng(seed);
  const r = randn(rng, forward().length);
  const grads = Object.fromEntries(
    Object.entries(inputs).map(([k, v]) => [k, new Float64Array(v.length)]),
  );
  forward();
  backward(grads, r);
  const h = 1e-5;
  for (const [name, x] of Object.entries(inputs)) {
    for (let i = 0; i < x.length; i++) {
      const saved = x[i];
      x[i] = saved + h;
      const up = dot(forward(), r);
      x[i] = saved - h;
      const down = dot(forward(), r);
      x[i] = saved;
      const numeric = (up - down) / (2 * h);
      const analytic = grads[name][i];
      const err = Math.abs(numeric - analytic) / Math.max(1, Math.abs(numeric));
      if (!(err < 1e-7)) {
        throw new Error(
          `d/d${name}[${i}]: analytic ${analytic} vs numeric ${numeric} (error ${err})`,
        );
      }
    }
  }
}

function closeTo(actual: ArrayLike<number>, expected: number[], tol = 1e-6): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++)
    expect(Math.abs(actual[i] - expected[i])).toBeLessThanOrEqual(tol);
}

describe.each(BACKENDS)('%s kernels', (_, k) => {
  const rng = new Rng(42);

  describe('encoder', () => {
    it('adds the token row and the position row', () => {
      const out = new Float32Array(4);
      const wte = Float32Array.from([1, 2, 10, 20, 100, 200]); // V=3, C=2
      const wpe = Float32Array.from([0.5, 0.25, -1, -2]); // maxT=2
      k.encoderForward(out, Int32Array.from([2, 0]), wte, wpe, 1, 2, 2);
      closeTo(out, [100.5, 200.25, 0, 0]);
    });
    it('backward matches finite differences', () => {
      const [B, T, C, V] = [2, 3, 4, 5];
      const idx = Int32Array.from([0, 3, 3, 4, 1, 0]);
      const inputs = { wte: randn(rng, V * C), wpe: randn(rng, T * C) };
      const out = new Float64Array(B * T * C);
      gradCheck(
        inputs,
        () => (k.encoderForward(out, idx, inputs.wte, inputs.wpe, B, T, C), out),
        (g, dout) => k.encoderBackward(g.wte, g.wpe, dout, idx, B, T, C),
      );
    });
  });

  describe('layernorm', () => {
    it('normalises [1, 2, 3] with eps 1e-5', () => {
      const out = new Float32Array(3);
      const mean = new Float32Array(1);
      const rstd = new Float32Array(1);
      k.layernormForward(
        out,
        mean,
        rstd,
        Float32Array.from([1, 2, 3]),
        Float32Array.from([1, 1, 1]),
        new Float32Array(3),
        1,
        3,
      );
      closeTo(out, [-1.2247356859, 0, 1.2247356859]);
      closeTo(mean, [2]);
    });
    it('applies weight and bias', () => {
      const out = new Float32Array(2);
      k.layernormForward(
        out,
        new Float32Array(1),
        new Float32Array(1),
        Float32Array.from([0, 4]),
        Float32Array.from([2, 3]),
        Float32Array.from([1, -1]),
        1,
        2,
      );
      closeTo(out, [1 - 2 * 0.99999875, -1 + 3 * 0.99999875]);
    });
    it('backward matches finite differences', () => {
      const [N, C] = [3, 5];
      const inputs = { inp: randn(rng, N * C), weight: randn(rng, C), bias: randn(rng, C) };
      const out = new Float64Array(N * C);
      const mean = new Float64Array(N);
      const rstd = new Float64Array(N);
      const fwd = () => (
        k.layernormForward(out, mean, rstd, inputs.inp, inputs.weight, inputs.bias, N, C),
        out
      );
      gradCheck(inputs, fwd, (g, dout) =>
        k.layernormBackward(
          g.inp,
          g.weight,
          g.bias,
          dout,
          inputs.inp,
          inputs.weight,
          mean,
          rstd,
          N,
          C,
        ),
      );
    });
  });

  describe('matmul', () => {
    it('multiplies [in, out] weights and adds the bias', () => {
      const out = new Float32Array(4);
      const inp = Float32Array.from([1, 2, 3, 4]);
      const weight = Float32Array.from([5, 6, 7, 8]);
      k.matmulForward(out, inp, weight, Float32Array.from([1, 1]), 2, 2, 2);
      closeTo(out, [20, 23, 44, 51]);
      k.matmulForward(out, inp, weight, null, 2, 2, 2);
      closeTo(out, [19, 22, 43, 50]);
    });
    it('backward matches finite differences', () => {
      const [N, C, OC] = [3, 4, 5];
      const inputs = { inp: randn(rng, N * C), weight: randn(rng, C * OC), bias: randn(rng, OC) };
      const out = new Float64Array(N * OC);
      gradCheck(
        inputs,
        () => (k.matmulForward(out, inputs.inp, inputs.weight, inputs.bias, N, C, OC), out),
        (g, dout) =>
          k.matmulBackward(g.inp, g.weight, g.bias, dout, inputs.inp, inputs.weight, N, C, OC),
      );
    });
  });

  describe('tied LM head', () => {
    it('multiplies by the embedding transposed', () => {
      const logits = new Float32Array(3);
      k.lmHeadForward(
        logits,
        Float32Array.from([1, 2]),
        Float32Array.from([1, 0, 0, 1, 3, -1]),
        1,
        2,
        3,
      );
      closeTo(logits, [1, 2, 1]);
    });
    it('backward matches finite differences', () => {
      const [N, C, V] = [3, 4, 7];
      const inputs = { inp: randn(rng, N * C), wte: randn(rng, V * C) };
      const out = new Float64Array(N * V);
      gradCheck(
        inputs,
        () => (k.lmHeadForward(out, inputs.inp, inputs.wte, N, C, V), out),
        (g, dout) => k.lmHeadBackward(g.inp, g.wte, dout, inputs.inp, inputs.wte, N, C, V),
      );
    });
  });

  describe('causal attention', () => {
    it('returns v at the first position and averages equal-score values', () => {
      // B=1, T=2, C=2, NH=1: q, k all equal so position 1 attends equally to both
      const qkv = Float32Array.from([1, 1, 1, 1, 10, 20, 1, 1, 1, 1, 30, 40]);
      const out = new Float32Array(4);
      const att = new Float32Array(4);
      k.attentionForward(out, att, qkv, 1, 2, 2, 1);
      closeTo(out, [10, 20, 20, 30]);
      closeTo(att, [1, 0, 0.5, 0.5]);
    });
    it('scales scores by 1/sqrt(head size)', () => {
      // T=2, C=4, NH=1, hs=4: score(1,0) = q.k0 / 2 = 2, score(1,1) = 0 -> weights softmax([2, 0])
      const qkv = Float32Array.from([
        ...[0, 0, 0, 0, 2, 2, 0, 0, 1, 0, 0, 0], // t=0: q, k, v
        ...[1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], // t=1: q, k, v
      ]);
      const out = new Float32Array(8);
      const att = new Float32Array(4);
      k.attentionForward(out, att, qkv, 1, 2, 4, 1);
      const w0 = Math.exp(2) / (Math.exp(2) + 1);
      closeTo(att, [1, 0, w0, 1 - w0]);
      closeTo(out.subarray(4), [w0, 1 - w0, 0, 0]);
    });
    it('backward matches finite differences (2 heads, causal)', () => {
      const [B, T, C, NH] = [2, 4, 6, 2];
      const inputs = { qkv: randn(rng, B * T * 3 * C) };
      const out = new Float64Array(B * T * C);
      const att = new Float64Array(B * NH * T * T);
      gradCheck(
        inputs,
        () => (k.attentionForward(out, att, inputs.qkv, B, T, C, NH), out),
        (g, dout) => k.attentionBackward(g.qkv, dout, inputs.qkv, att, B, T, C, NH),
      );
    });
    it('does not look ahead', () => {
      const [B, T, C, NH] = [1, 3, 4, 2];
      const qkv = randn(rng, B * T * 3 * C);
      const out1 = new Float64Array(B * T * C);
      const out2 = new Float64Array(B * T * C);
      const att = new Float64Array(B * NH * T * T);
      k.attentionForward(out1, att, qkv, B, T, C, NH);
      for (let i = 2 * 3 * C; i < 3 * 3 * C; i++) qkv[i] += 5; // change only the last position
      k.attentionForward(out2, att, qkv, B, T, C, NH);
      expect(Array.from(out2.subarray(0, 2 * C))).toEqual(Array.from(out1.subarray(0, 2 * C)));
    });
  });

  describe('gelu (tanh)', () => {
    it('matches tanh-GELU at known points', () => {
      const out = new Float32Array(5);
      k.geluForward(out, Float32Array.from([0, 1, -1, 3, 0.5]), 5);
      closeTo(out, [0, 0.8411919906, -0.1588080094, 2.9963626079, 0.3457140098]);
    });
    it('backward matches finite differences', () => {
      const inputs = { inp: randn(rng, 11, 2) };
      const out = new Float64Array(11);
      gradCheck(
        inputs,
        () => (k.geluForward(out, inputs.inp, 11), out),
        (g, dout) => k.geluBackward(g.inp, inputs.inp, dout, 11),
      );
    });
  });

  describe('residual', () => {
    it('adds and routes the gradient to both inputs', () => {
      const out = new Float32Array(2);
      k.residualForward(out, Float32Array.from([1, 2]), Float32Array.from([3, -5]), 2);
      closeTo(out, [4, -3]);
      const d1 = Float32Array.from([1, 1]);
      const d2 = new Float32Array(2);
      k.residualBackward(d1, d2, Float32Array.from([0.5, 2]), 2);
      closeTo(d1, [1.5, 3]);
      closeTo(d2, [0.5, 2]);
    });
  });

  describe('softmax cross-entropy', () => {
    it('gives log V for uniform logits and skips ignored targets', () => {
      const losses = new Float32Array(2);
      const probs = new Float32Array(8);
      const counted = k.crossEntropyForward(
        losses,
        probs,
        new Float32Array(8),
        Int32Array.from([3, -1]),
        2,
        4,
      );
      expect(counted).toBe(1);
      closeTo(losses, [Math.log(4), 0]);
      closeTo(probs, [0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]);
    });
    it('is stable for large logits', () => {
      const losses = new Float32Array(1);
      const probs = new Float32Array(2);
      k.crossEntropyForward(
        losses,
        probs,
        Float32Array.from([1000, 0]),
        Int32Array.from([1]),
        1,
        2,
      );
      closeTo(losses, [1000], 1e-3);
      closeTo(probs, [1, 0]);
    });
    it('backward matches finite differences of the mean loss', () => {
      const [N, V] = [4, 6];
      const targets = Int32Array.from([1, -1, 5, 0]);
      const inputs = { logits: randn(rng, N * V) };
      const losses = new Float64Array(N);
      const probs = new Float64Array(N * V);
      const dloss = 1 / 3;
      const meanLoss = new Float64Array(1);
      gradCheck(
        inputs,
        () => {
          k.crossEntropyForward(losses, probs, inputs.logits, targets, N, V);
          meanLoss[0] = losses.reduce((a, b) => a + b, 0) * dloss;
          return meanLoss;
        },
        (g, dout) => k.crossEntropyBackward(g.logits, probs, targets, dloss * dout[0], N, V),
      );
    });
  });

  describe('shape and range errors', () => {
    it('rejects a token id outside the vocabulary, naming it', () => {
      const run = () =>
        k.encoderForward(
          new Float32Array(4),
          Int32Array.from([0, 3]),
          new Float32Array(6),
          new Float32Array(4),
          1,
          2,
          2,
        );
      expect(run).toThrow(/token id 3 at position 1 is outside the vocabulary \[0, 3\)/);
    });
    it('rejects a target outside the vocabulary', () => {
      const run = () =>
        k.crossEntropyForward(
          new Float32Array(1),
          new Float32Array(2),
          new Float32Array(2),
          Int32Array.from([-2]),
          1,
          2,
        );
      expectWeftError(run, 'WEFT_E_TOKEN', /target -2 at position 0/);
    });
    it('rejects arrays too short for the shape instead of reading out of bounds', () => {
      const short: Floats = new Float32Array(3);
      const run = () =>
        k.matmulForward(new Float32Array(4), short, new Float32Array(4), null, 2, 2, 2);
      expectWeftError(run, 'WEFT_E_SHAPE', 'inp has 3 elements but the shape needs 4');
    });
  });
});
