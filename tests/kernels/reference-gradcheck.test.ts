// The reference kernels against finite differences: every backward is checked in float64
// (central differences, h = 1e-5) to ~1e-7. The fast backends are then checked against these
// kernels (kernels.test.ts).

import { describe, expect, it } from 'vitest';
import * as reference from '../../src/kernels/reference.ts';
import { Rng } from '../../src/util/rng.ts';

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

describe('reference kernels match finite differences (float64)', () => {
  const k = reference;
  const rng = new Rng(42);

  describe('encoder', () => {
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

  describe('softmax cross-entropy', () => {
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
});
