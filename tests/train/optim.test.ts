// AdamW, gradient clipping and the LR schedule on hand-computed values (the PyTorch fixture
// test covers the whole optimizer against torch.optim.AdamW).

import { describe, expect, it } from 'vitest';
import { paramLayout } from '../../src/model/layout.ts';
import { AdamW } from '../../src/train/adamw.ts';
import { clipToNorm, sumOfSquares } from '../../src/train/norm.ts';
import { learningRate, validateSchedule } from '../../src/train/schedule.ts';

describe('AdamW', () => {
  const config = { nLayer: 1, nHead: 1, nEmbd: 2, blockSize: 2, vocabSize: 3 };
  const layout = paramLayout(config);
  const matrix = layout.byKey.qkvw.offset; // decayed
  const bias = layout.byKey.qkvb.offset; // not decayed

  it('decays only matrices and applies bias-corrected Adam (two hand-computed steps)', () => {
    const opt = new AdamW(layout, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const params = new Float32Array(layout.total);
    const grads = new Float32Array(layout.total);
    params[matrix] = 1;
    params[bias] = 1;
    grads[matrix] = 0.5;
    grads[bias] = 0.5;
    opt.step(params, grads, 0.1);
    // step 1: p*(1 - 0.01) - 0.1 * (0.05/0.1) / (sqrt(0.0125/0.05) + 1e-8)
    expect(params[matrix]).toBeCloseTo(0.89, 6);
    expect(params[bias]).toBeCloseTo(0.9, 6);
    opt.step(params, grads, 0.1);
    // step 2: m = 0.095, v = 0.024375; update = (0.1/0.19) * 0.095 / (sqrt(0.024375/0.0975)) = 0.1
    expect(params[matrix]).toBeCloseTo(0.89 * 0.99 - 0.1, 6);
    expect(params[bias]).toBeCloseTo(0.8, 6);
    expect(opt.stepCount).toBe(2);
  });

  it('rejects invalid hyperparameters', () => {
    expect(() => new AdamW(layout, { beta2: 1 })).toThrow(/beta2=1 must be in \[0, 1\)/);
    expect(() => new AdamW(layout, { eps: 0 })).toThrow(/eps=0/);
  });
});

describe('gradient clipping', () => {
  const whole = (g: Float32Array) => [{ begin: 0, end: g.length }];
  it('scales to maxNorm / (norm + 1e-6) when the norm exceeds maxNorm', () => {
    const g = Float32Array.from([3, 4]);
    const norm = Math.sqrt(sumOfSquares(g, whole(g)));
    expect(norm).toBe(5);
    clipToNorm(g, norm, 1);
    const s = 1 / (5 + 1e-6);
    expect(g[0]).toBeCloseTo(3 * s, 7);
    expect(g[1]).toBeCloseTo(4 * s, 7);
    expect(Math.sqrt(sumOfSquares(g, whole(g)))).toBeCloseTo(1, 6);
  });
  it('leaves gradients alone below the threshold or when disabled', () => {
    const g = Float32Array.from([3, 4]);
    clipToNorm(g, 5, 10);
    clipToNorm(g, 5, 0);
    expect(Array.from(g)).toEqual([3, 4]);
  });
});

describe('learning-rate schedule', () => {
  const s = validateSchedule({ lr: 1, minLr: 0.1, warmupSteps: 10, decaySteps: 110 });
  it('warms up linearly', () => {
    expect(learningRate(s, 0)).toBeCloseTo(0.1, 12);
    expect(learningRate(s, 4)).toBeCloseTo(0.5, 12);
    expect(learningRate(s, 9)).toBeCloseTo(1, 12);
  });
  it('decays along a cosine to the floor and stays there', () => {
    expect(learningRate(s, 10)).toBeCloseTo(1, 12);
    expect(learningRate(s, 60)).toBeCloseTo(0.55, 12);
    expect(learningRate(s, 110)).toBeCloseTo(0.1, 12);
    expect(learningRate(s, 500)).toBeCloseTo(0.1, 12);
  });
  it('starts at the peak without warmup', () => {
    expect(learningRate({ ...s, warmupSteps: 0 }, 0)).toBe(1);
  });
  it('rejects a floor above the peak', () => {
    expect(() => validateSchedule({ ...s, minLr: 2 })).toThrow(
      /minLr=2 must be between 0 and lr=1/,
    );
  });
});
