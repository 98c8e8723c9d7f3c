// The pre-training loader: what a (seed, step, shard) reads is fixed no matter how many shards
// are read or in which order; no window repeats within an epoch; a fresh loader at step t reads
// what the one that read steps 0..t-1 reads (resuming needs only the step).

import { describe, expect, it } from 'vitest';
import { TokenWindowLoader, concatBatches } from '../../src/data/loader.ts';
import { EpochSampler } from '../../src/data/sampler.ts';
import { expectWeftError } from '../helpers/errors.ts';

const tokens = Uint16Array.from({ length: 1001 }, (_, i) => i % 997);
const T = 10; // 100 windows

describe('TokenWindowLoader', () => {
  it('gives targets shifted by one within each window', () => {
    const { idx, targets } = new TokenWindowLoader(tokens, T, 4, 1).batch(0);
    for (let i = 0; i < idx.length; i++) expect(targets[i]).toBe((idx[i] + 1) % 997);
    for (let row = 0; row < 4; row++) expect(idx[row * T] % T).toBe(0); // windows start at multiples of T
  });

  it('depends only on (seed, step, shard): any shard count and read order give the same batch', () => {
    const one = new TokenWindowLoader(tokens, T, 8, 42, 1);
    const four = new TokenWindowLoader(tokens, T, 8, 42, 4);
    for (let step = 0; step < 30; step++) {
      const whole = one.shardBatch(step, 0);
      const order = [3, 1, 0, 2];
      const parts = order.map((s) => four.shardBatch(step, s));
      const sorted = order.map((_, i) => parts[order.indexOf(i)]);
      expect(concatBatches(sorted)).toEqual(whole);
    }
    expect(new TokenWindowLoader(tokens, T, 8, 43).shardBatch(0, 0)).not.toEqual(one.shardBatch(0, 0));
  });

  it('reads every window exactly once per epoch', () => {
    const loader = new TokenWindowLoader(tokens, T, 10, 7);
    for (let epoch = 0; epoch < 3; epoch++) {
      const starts = new Set<number>();
      for (let step = 10 * epoch; step < 10 * (epoch + 1); step++) {
        expect(loader.epochOf(step)).toBe(epoch);
        const { idx } = loader.batch(step);
        for (let row = 0; row < 10; row++) starts.add(idx[row * T]); // window k starts with token 10k
      }
      expect(starts.size).toBe(100);
    }
  });

  it('shuffles differently in each epoch', () => {
    const sampler = new EpochSampler(100, 5);
    const epoch0 = Array.from({ length: 100 }, (_, i) => sampler.item(i));
    const epoch1 = Array.from({ length: 100 }, (_, i) => sampler.item(100 + i));
    expect(epoch0).not.toEqual(epoch1);
    expect([...epoch1].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('resumes with nothing but the step: a fresh loader reads what a long-running one reads', () => {
    const a = new TokenWindowLoader(tokens, T, 4, 9);
    const before = Array.from({ length: 42 }, (_, step) => a.batch(step));
    const b = new TokenWindowLoader(tokens, T, 4, 9);
    for (let step = 37; step < 42; step++) expect(b.batch(step)).toEqual(before[step]);
  });

  it('refuses data shorter than one sequence and shards that do not divide the batch', () => {
    expectWeftError(() => new TokenWindowLoader(tokens.subarray(0, 10), 10, 1, 1), 'WEFT_E_SHAPE', /has 10 tokens, fewer than one sequence needs \(seqLen \+ 1 = 11\)/);
    expectWeftError(() => new TokenWindowLoader(tokens, T, 6, 1, 4), 'WEFT_E_CONFIG', /batchSize=6 must divide evenly into shards=4/);
  });
});
