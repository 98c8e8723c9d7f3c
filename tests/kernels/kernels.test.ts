// The kernel suite, written once and run on every backend: literal values, the range and shape
// errors, and, for each fast backend, agreement with the reference kernels (which
// reference-gradcheck.test.ts checks against finite differences) on random inputs at several
// shapes, including ragged ones (rows not a multiple of 4, columns not a multiple of 8).

import { describe, expect, it } from 'vitest';
import type { Kernels } from '../../src/kernels/backend.ts';
import { referenceBackend } from '../../src/kernels/backend.ts';
import { allBackends } from '../helpers/backends.ts';
import { Rng } from '../../src/util/rng.ts';
import { expectWeftError } from '../helpers/errors.ts';
import { maxAbsDiff } from '../helpers/fixtures.ts';

const BACKENDS = allBackends([1, 2]);
const FAST = BACKENDS.slice(1);

function closeTo(actual: ArrayLike<number>, expected: number[], tol = 1e-6): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++)
    expect(Math.abs(actual[i] - expected[i])).toBeLessThanOrEqual(tol);
}

describe.each(BACKENDS)('%s kernels', (_, k) => {
  describe('encoder', () => {
    it('adds the token row and the position row', () => {
      const out = new Float32Array(4);
      const wte = Float32Array.from([1, 2, 10, 20, 100, 200]); // V=3, C=2
      const wpe = Float32Array.from([0.5, 0.25, -1, -2]); // maxT=2
      k.encoderForward(out, Int32Array.from([2, 0]), wte, wpe, 1, 2, 2);
      closeTo(out, [100.5, 200.25, 0, 0]);
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
  });

  describe('gelu (tanh)', () => {
    it('matches tanh-GELU at known points', () => {
      const out = new Float32Array(5);
      k.geluForward(out, Float32Array.from([0, 1, -1, 3, 0.5]), 5);
      closeTo(out, [0, 0.8411919906, -0.1588080094, 2.9963626079, 0.3457140098]);
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
      const short = new Float32Array(3);
      const run = () =>
        k.matmulForward(new Float32Array(4), short, new Float32Array(4), null, 2, 2, 2);
      expectWeftError(run, 'WEFT_E_SHAPE', 'inp has 3 elements but the shape needs 4');
    });
  });
});

/** f32 array of n normals times scale. */
function randf(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** Runs `run` on copies of `arrays` with `k`; returns the arrays after the run. */
function on(
  k: Kernels,
  arrays: Float32Array[],
  run: (k: Kernels, a: Float32Array[]) => void,
): Float32Array[] {
  const copies = arrays.map((a) => a.slice());
  run(k, copies);
  return copies;
}

/** Every array after `run` agrees between the reference and `k` within `tol` (scaled by magnitude). */
function agrees(
  k: Kernels,
  arrays: Float32Array[],
  run: (k: Kernels, a: Float32Array[]) => void,
  tol = 2e-5,
): void {
  const want = on(referenceBackend, arrays, run);
  const got = on(k, arrays, run);
  want.forEach((w, i) => {
    const scale = Math.max(1, ...Array.from(w, Math.abs));
    expect(maxAbsDiff(got[i], w) / scale, `array ${i}`).toBeLessThanOrEqual(tol);
  });
}

describe.each(FAST)('%s agrees with the reference kernels', (_, k) => {
  const rng = new Rng(5);
  // [N, C, OC]: aligned, ragged rows, ragged columns, tiny, and the 1-3 rows of decoding
  const shapes: [number, number, number][] = [
    [64, 32, 96],
    [13, 20, 37],
    [5, 7, 3],
    [130, 64, 256],
    [1, 20, 37],
    [3, 64, 9],
  ];

  it.each(shapes)('matmul forward and backward at N=%i C=%i OC=%i', (N, C, OC) => {
    const arrays = [
      new Float32Array(N * OC),
      randf(rng, N * C),
      randf(rng, C * OC),
      randf(rng, OC),
    ];
    agrees(k, arrays, (kk, [out, inp, w, b]) => kk.matmulForward(out, inp, w, b, N, C, OC));
    agrees(k, arrays, (kk, [out, inp, w]) => kk.matmulForward(out, inp, w, null, N, C, OC));
    const grads = [
      randf(rng, N * C),
      randf(rng, C * OC),
      randf(rng, OC),
      randf(rng, N * OC),
      randf(rng, N * C),
      randf(rng, C * OC),
    ];
    agrees(k, grads, (kk, [di, dw, db, d, inp, w]) =>
      kk.matmulBackward(di, dw, db, d, inp, w, N, C, OC),
    );
  });

  it.each([
    [6, 16, 67],
    [33, 32, 515],
    [1, 18, 67],
    [2, 32, 41],
  ])('lm head forward and backward at N=%i C=%i V=%i', (N, C, V) => {
    agrees(k, [new Float32Array(N * V), randf(rng, N * C), randf(rng, V * C)], (kk, [l, inp, w]) =>
      kk.lmHeadForward(l, inp, w, N, C, V),
    );
    const arrays = [
      randf(rng, N * C),
      randf(rng, V * C),
      randf(rng, N * V),
      randf(rng, N * C),
      randf(rng, V * C),
    ];
    agrees(k, arrays, (kk, [di, dw, dl, inp, w]) => kk.lmHeadBackward(di, dw, dl, inp, w, N, C, V));
  });

  it.each([
    [2, 5, 12, 2],
    [1, 9, 20, 4],
    [3, 16, 64, 2],
    [2, 3, 8, 2],
  ])('attention forward and backward at B=%i T=%i C=%i NH=%i', (B, T, C, NH) => {
    const qkv = randf(rng, B * T * 3 * C);
    const [out, att] = on(
      referenceBackend,
      [new Float32Array(B * T * C), new Float32Array(B * NH * T * T)],
      (kk, [o, a]) => kk.attentionForward(o, a, qkv, B, T, C, NH),
    );
    agrees(
      k,
      [new Float32Array(B * T * C), new Float32Array(B * NH * T * T), qkv],
      (kk, [o, a, q]) => kk.attentionForward(o, a, q, B, T, C, NH),
    );
    void out;
    agrees(k, [randf(rng, B * T * 3 * C), randf(rng, B * T * C), qkv, att], (kk, [dq, d, q, a]) =>
      kk.attentionBackward(dq, d, q, a, B, T, C, NH),
    );
  });

  it('layernorm, gelu, residual and the embedding, forward and backward', () => {
    const [N, C] = [11, 24];
    const fwd = [
      new Float32Array(N * C),
      new Float32Array(N),
      new Float32Array(N),
      randf(rng, N * C, 3),
      randf(rng, C),
      randf(rng, C),
    ];
    agrees(k, fwd, (kk, [o, m, r, x, w, b]) => kk.layernormForward(o, m, r, x, w, b, N, C));
    const [, mean, rstd] = on(referenceBackend, fwd, (kk, [o, m, r, x, w, b]) =>
      kk.layernormForward(o, m, r, x, w, b, N, C),
    );
    agrees(
      k,
      [
        randf(rng, N * C),
        randf(rng, C),
        randf(rng, C),
        randf(rng, N * C),
        fwd[3],
        fwd[4],
        mean,
        rstd,
      ],
      (kk, [di, dw, db, d, x, w, m, r]) => kk.layernormBackward(di, dw, db, d, x, w, m, r, N, C),
    );
    agrees(k, [new Float32Array(N * C), randf(rng, N * C, 3)], (kk, [o, x]) =>
      kk.geluForward(o, x, N * C),
    );
    agrees(k, [randf(rng, N * C), randf(rng, N * C, 3), randf(rng, N * C)], (kk, [di, x, d]) =>
      kk.geluBackward(di, x, d, N * C),
    );
    agrees(k, [new Float32Array(N * C), randf(rng, N * C), randf(rng, N * C)], (kk, [o, a, b]) =>
      kk.residualForward(o, a, b, N * C),
    );
    agrees(k, [randf(rng, N * C), randf(rng, N * C), randf(rng, N * C)], (kk, [a, b, d]) =>
      kk.residualBackward(a, b, d, N * C),
    );
    const [B, T, V] = [2, 5, 13];
    const idx = Int32Array.from({ length: B * T }, () => rng.int(V));
    agrees(
      k,
      [new Float32Array(B * T * C), randf(rng, V * C), randf(rng, T * C)],
      (kk, [o, wte, wpe]) => kk.encoderForward(o, idx, wte, wpe, B, T, C),
    );
    agrees(
      k,
      [randf(rng, V * C), randf(rng, T * C), randf(rng, B * T * C)],
      (kk, [dwte, dwpe, d]) => kk.encoderBackward(dwte, dwpe, d, idx, B, T, C),
    );
  });

  it('cross-entropy forward and backward, with ignored targets', () => {
    const [N, V] = [9, 67];
    const targets = Int32Array.from({ length: N }, (_, i) => (i % 4 === 3 ? -1 : (i * 13) % V));
    const fwd = [new Float32Array(N), new Float32Array(N * V), randf(rng, N * V, 4)];
    agrees(k, fwd, (kk, [l, p, x]) =>
      expect(kk.crossEntropyForward(l, p, x, targets, N, V)).toBe(7),
    );
    const [, probs] = on(referenceBackend, fwd, (kk, [l, p, x]) =>
      kk.crossEntropyForward(l, p, x, targets, N, V),
    );
    agrees(k, [randf(rng, N * V), probs], (kk, [d, p]) =>
      kk.crossEntropyBackward(d, p, targets, 1 / 7, N, V),
    );
  });

  it('AdamW and the exact sums', () => {
    const n = 1003;
    const arrays = [
      randf(rng, n),
      randf(rng, n, 0.1),
      randf(rng, n, 0.01),
      randf(rng, n, 0.01).map(Math.abs),
    ];
    agrees(
      k,
      arrays,
      (kk, [p, g, m, v]) =>
        kk.adamwUpdate(p, g, m, v, 3, 1000, 0.999, 0.9, 0.95, 1e-3 / 0.1, Math.sqrt(0.05), 1e-8),
      1e-6,
    );
    const grads = randf(rng, n, 1e-3);
    const want = new Float64Array(n).fill(7);
    const got = new Float64Array(n).fill(7);
    expect(referenceBackend.accumulateExact(want, grads, 40, 8)).toBe(false);
    expect(k.accumulateExact(got, grads, 40, 8)).toBe(false);
    expect(Array.from(got)).toEqual(Array.from(want)); // exact: the same integers
    grads[500] = 600;
    expect(k.accumulateExact(got, grads, 40, 8)).toBe(true);
    const a = new Float32Array(n);
    const b = new Float32Array(n);
    referenceBackend.fromExact(a, want, 40, 2, 900);
    k.fromExact(b, want, 40, 2, 900);
    expect(Array.from(b)).toEqual(Array.from(a));
  });
});
