// GPT-2 model: size table against the published GPT-2 parameter count, initialisation,
// input validation, and gradient accumulation semantics.

import { describe, expect, it } from 'vitest';
import { GPT2_124M, validateConfig } from '../../src/model/config.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { namedTensors, paramCount, paramLayout, trainingFlops } from '../../src/model/layout.ts';
import { expectWeftError } from '../helpers/errors.ts';

const tiny = { nLayer: 2, nHead: 2, nEmbd: 8, blockSize: 8, vocabSize: 11 };

function std(a: Float32Array): number {
  let s = 0;
  let sq = 0;
  for (const x of a) {
    s += x;
    sq += x * x;
  }
  const m = s / a.length;
  return Math.sqrt(sq / a.length - m * m);
}

describe('parameter layout', () => {
  it('counts 124,439,808 parameters for GPT-2 small, as Hugging Face reports', () => {
    expect(paramCount(GPT2_124M)).toBe(124_439_808);
  });

  it('names every tensor as Hugging Face GPT-2 with Conv1D [in, out] shapes', () => {
    const tensors = namedTensors(GPT2_124M);
    expect(tensors).toHaveLength(2 + 12 * 12 + 2);
    const byName = new Map(tensors.map((t) => [t.name, t.shape]));
    expect(byName.get('wte.weight')).toEqual([50257, 768]);
    expect(byName.get('wpe.weight')).toEqual([1024, 768]);
    expect(byName.get('h.0.attn.c_attn.weight')).toEqual([768, 2304]);
    expect(byName.get('h.11.mlp.c_fc.weight')).toEqual([768, 3072]);
    expect(byName.get('h.11.mlp.c_proj.weight')).toEqual([3072, 768]);
    expect(byName.get('ln_f.bias')).toEqual([768]);
  });

  it('tiles the flat buffer exactly, without overlaps', () => {
    const tensors = namedTensors(tiny).sort((a, b) => a.offset - b.offset);
    let at = 0;
    for (const t of tensors) {
      expect(t.offset).toBe(at);
      at += t.size;
    }
    expect(at).toBe(paramLayout(tiny).total);
  });

  it('counts training FLOPs as 3x the forward (6 N per token for the matmuls)', () => {
    const [B, T] = [4, 8];
    const flops = trainingFlops(tiny, B, T);
    const matmulParams = tiny.nLayer * 12 * tiny.nEmbd ** 2 + tiny.vocabSize * tiny.nEmbd;
    const attention =
      3 * tiny.nLayer * 4 * B * tiny.nHead * ((T * (T + 1)) / 2) * (tiny.nEmbd / tiny.nHead);
    expect(flops).toBe(6 * matmulParams * B * T + attention);
  });
});

describe('initialisation', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = GPT2.init(tiny, 1234);
    const b = GPT2.init(tiny, 1234);
    const c = GPT2.init(tiny, 1235);
    expect(Buffer.from(a.params.buffer).equals(Buffer.from(b.params.buffer))).toBe(true);
    expect(Buffer.from(a.params.buffer).equals(Buffer.from(c.params.buffer))).toBe(false);
  });

  it('follows GPT-2: N(0, 0.02), residual projections 0.02/sqrt(2L), LayerNorm 1/0, biases 0', () => {
    const config = { nLayer: 4, nHead: 4, nEmbd: 64, blockSize: 64, vocabSize: 500 };
    const { p } = GPT2.init(config, 5);
    expect(std(p.wte)).toBeCloseTo(0.02, 3);
    expect(std(p.qkvw)).toBeCloseTo(0.02, 3);
    expect(std(p.fcprojw)).toBeCloseTo(0.02 / Math.sqrt(8), 3);
    expect(std(p.attprojw)).toBeCloseTo(0.02 / Math.sqrt(8), 3);
    expect(p.ln1w.every((x) => x === 1) && p.lnfw.every((x) => x === 1)).toBe(true);
    expect(p.qkvb.every((x) => x === 0) && p.lnfb.every((x) => x === 0)).toBe(true);
  });
});

describe('validation', () => {
  const idx = new Int32Array(8);

  it('rejects nEmbd not divisible by nHead, naming both', () => {
    expectWeftError(
      () => new GPT2({ ...tiny, nEmbd: 10, nHead: 4 }),
      'WEFT_E_CONFIG',
      /nEmbd=10 is not divisible by nHead=4/,
    );
  });

  it('rejects non-positive or fractional sizes', () => {
    expect(() => validateConfig({ ...tiny, nLayer: 0 })).toThrow(
      /nLayer=0 must be a positive integer/,
    );
    expect(() => validateConfig({ ...tiny, vocabSize: 2.5 })).toThrow(/vocabSize=2.5/);
  });

  it('rejects T > blockSize', () => {
    const model = GPT2.init(tiny, 1);
    expectWeftError(
      () => model.forward(new Int32Array(9), 1, 9),
      'WEFT_E_SHAPE',
      "sequence length T=9 exceeds the model's blockSize=8",
    );
  });

  it('rejects a token id >= vocab and a negative one, naming the id', () => {
    const model = GPT2.init(tiny, 1);
    const bad = Int32Array.from([1, 2, 11, 0]);
    expectWeftError(() => model.forward(bad, 1, 4), 'WEFT_E_TOKEN', /token id 11 at position 2/);
    expect(() => model.forward(Int32Array.from([-3, 0]), 1, 2)).toThrow(/token id -3/);
  });

  it('rejects idx and targets whose length is not B*T', () => {
    const model = GPT2.init(tiny, 1);
    expect(() => model.forward(idx, 3, 3)).toThrow(/idx has 8 tokens but B\*T = 3\*3 = 9/);
    expect(() => model.forward(idx, 2, 4, new Int32Array(7))).toThrow(/targets has 7 entries/);
  });

  it('rejects a parameter buffer of the wrong size', () => {
    expect(() => new GPT2(tiny, { params: new Float32Array(3) })).toThrow(
      /params buffer has 3 floats/,
    );
  });

  it('refuses backward() before a forward with targets', () => {
    const model = GPT2.init(tiny, 1);
    expectWeftError(() => model.backward(), 'WEFT_E_STATE', /needs a forward\(\) with targets/);
    model.forward(idx, 2, 4);
    expectWeftError(() => model.backward(), 'WEFT_E_STATE');
  });
});

describe('forward and backward', () => {
  const idx = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const targets = Int32Array.from([2, 3, 4, -1, 6, 7, 8, 9]);

  it('starts near log(V) loss and ignores -1 targets in the mean', () => {
    const model = GPT2.init(tiny, 3);
    const { loss, targetCount } = model.forward(idx, 2, 4, targets);
    expect(targetCount).toBe(7);
    expect(Math.abs(loss - Math.log(tiny.vocabSize))).toBeLessThan(0.1);
  });

  it('accumulates gradients across backward calls until zeroGrad', () => {
    const model = GPT2.init(tiny, 3);
    model.forward(idx, 2, 4, targets);
    model.backward();
    const once = model.grads.slice();
    model.backward();
    for (let i = 0; i < once.length; i += 97) expect(model.grads[i]).toBeCloseTo(2 * once[i], 6);
    model.zeroGrad();
    expect(model.grads.every((g) => g === 0)).toBe(true);
  });

  it('scales the gradient by 1/normalizer', () => {
    const model = GPT2.init(tiny, 3);
    model.forward(idx, 2, 4, targets);
    model.backward();
    const mean = model.grads.slice();
    model.zeroGrad();
    model.backward(14);
    for (let i = 0; i < mean.length; i += 97) expect(model.grads[i]).toBeCloseTo(mean[i] / 2, 7);
  });

  it('handles a batch shape change (reallocates activations)', () => {
    const model = GPT2.init(tiny, 3);
    const a = model.forward(idx, 2, 4, targets).loss;
    model.forward(idx.subarray(0, 3), 1, 3);
    expect(model.forward(idx, 2, 4, targets).loss).toBe(a);
  });
});
