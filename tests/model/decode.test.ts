// KV-cache decoding against recomputing the whole context: the same greedy tokens and the same
// per-token logits (1e-5), on every backend, with the PyTorch fixture's weights (trained-looking
// values, not a fresh init); then sampling: seeds, top-k, top-p, stop ids, and past blockSize.

import { describe, expect, it } from 'vitest';
import { loadWeights } from '../../src/checkpoint/weights.ts';
import type { Backend } from '../../src/kernels/backend.ts';
import { referenceBackend } from '../../src/kernels/backend.ts';
import { KVDecoder } from '../../src/model/decode.ts';
import { generate, nextLogits, sampleLogits } from '../../src/model/generate.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { Rng } from '../../src/util/rng.ts';
import { allBackends } from '../helpers/backends.ts';
import { loadFixture, maxAbsDiff } from '../helpers/fixtures.ts';

const fx = loadFixture('gpt2-tiny'); // L=2 H=4 C=32 T=16 V=67
const BACKENDS = allBackends();

function modelOn(backend: Backend): GPT2 {
  const model = new GPT2(fx.config, { backend });
  loadWeights(model.params, fx.config, fx.tensors, 'param/', fx.name);
  return model;
}

const prompt = [5, 17, 3, 42, 8];

describe.each(BACKENDS)('KV cache on %s', (_, backend) => {
  it('gives the full forward pass logits at every position, to 1e-5', () => {
    const model = modelOn(backend);
    const decoder = new KVDecoder(model);
    const tokens = [...prompt];
    let cached = decoder.prefill(tokens);
    const { blockSize, vocabSize: V } = model.config;
    while (tokens.length < blockSize) {
      const T = tokens.length;
      const full = new KVDecoder(modelOn(backend)).prefill(tokens).slice();
      const direct = model.forward(Int32Array.from(tokens), 1, T).logits.slice((T - 1) * V, T * V);
      expect(maxAbsDiff(full, direct)).toBeLessThanOrEqual(1e-5); // prefill: the last row only
      expect(maxAbsDiff(cached, direct)).toBeLessThanOrEqual(1e-5);
      const id = (tokens.length * 31) % V; // not the model's choice: any continuation must work
      tokens.push(id);
      cached = decoder.step(id);
    }
    decoder.dispose();
  });

  it('forward with lastOnly gives each sequence its last row of logits, to 1e-5', () => {
    const model = modelOn(backend);
    const { vocabSize: V } = model.config;
    const idx = Int32Array.from([...prompt, 9, 1, 2, 60, 33]); // B=2, T=5
    const full = model.forward(idx, 2, 5).logits.slice();
    const last = model.forward(idx, 2, 5, undefined, { lastOnly: true }).logits;
    expect(last).toHaveLength(2 * V);
    expect(maxAbsDiff(last.subarray(0, V), full.subarray(4 * V, 5 * V))).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(last.subarray(V), full.subarray(9 * V, 10 * V))).toBeLessThanOrEqual(1e-5);
  });

  it('greedy decoding gives exactly the tokens of recomputing every step', () => {
    const options = { maxTokens: 11, temperature: 0, topK: 0, seed: 1 }; // stays within blockSize
    const withCache = generate(modelOn(backend), prompt, options);
    const without = generate(modelOn(backend), prompt, { ...options, cache: false });
    expect(withCache).toHaveLength(11);
    expect(withCache).toEqual(without);
  });
});

describe('sampling', () => {
  const model = modelOn(referenceBackend);
  const sample = (seed: number, extra = {}) =>
    generate(model, prompt, { maxTokens: 30, temperature: 1, topK: 0, seed, ...extra });

  it('is reproducible from the seed and differs between seeds', () => {
    expect(sample(7)).toEqual(sample(7));
    expect(sample(7)).not.toEqual(sample(8));
  });

  it('continues past blockSize by re-prefilling the newest half', () => {
    const out = sample(3);
    expect(out).toHaveLength(30); // prompt 5 + 30 > blockSize 16
    expect(out.every((id) => id >= 0 && id < 67)).toBe(true);
  });

  it('stops after a stop id, and when onToken returns false', () => {
    const free = sample(5);
    const stopId = free[6];
    const stopped = sample(5, { stopIds: [stopId] });
    expect(stopped).toEqual(free.slice(0, free.indexOf(stopId) + 1));
    let seen = 0;
    expect(sample(5, { onToken: () => ++seen < 4 })).toHaveLength(4);
  });

  it('top-k and top-p keep only the most likely ids', () => {
    const logits = Float32Array.from([0, 3, 1, 2.9, -1]); // probabilities ~ .02 .47 .06 .43 .01
    const rng = new Rng(1, 2);
    const picks = (k: number, p: number) =>
      new Set(Array.from({ length: 300 }, () => sampleLogits(logits, 1, k, rng, p)));
    expect(picks(1, 1)).toEqual(new Set([1]));
    expect(picks(2, 1)).toEqual(new Set([1, 3]));
    expect(picks(0, 0.4)).toEqual(new Set([1])); // id 1 alone reaches 0.4
    expect(picks(0, 0.9)).toEqual(new Set([1, 3])); // .474 + .429 = .903 reaches 0.9
    expect(picks(0, 1).size).toBeGreaterThan(3);
  });

  it('the recompute path and the cache agree on sampled text too', () => {
    const a = generate(model, prompt, { maxTokens: 10, temperature: 0.8, topK: 20, seed: 2 });
    const b = generate(model, prompt, {
      maxTokens: 10,
      temperature: 0.8,
      topK: 20,
      seed: 2,
      cache: false,
    });
    expect(a).toEqual(b);
    const next = nextLogits(model, prompt, true);
    expect(next.first()).toHaveLength(67);
    next.dispose();
  });
});
