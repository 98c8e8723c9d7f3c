// The pre-training loader: what a (seed, step, shard) reads is fixed no matter how many shards
// are read or in which order; no window repeats within an epoch; the cursor round-trips.

import { describe, expect, it } from 'vitest';
import { TokenWindowLoader, concatBatches } from '../../src/data/loader.ts';
import { EpochSampler } from '../../src/data/sampler.ts';
import { expectWeftError } from '../helpers/errors.ts';

const tokens = Uint16Array.from({ length: 1001 }, (_, i) => i % 997);
const T = 10; // 100 windows

describe('TokenWindowLoader', () => {
  it('gives targets shifted by one within each window', () => {
    const { idx, targets } = new TokenWindowLoader(tokens, T, 4, 1).next();
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
      for (let step = 0; step < 10; step++) {
        const { idx } = loader.next();
        for (let row = 0; row < 10; row++) starts.add(idx[row * T]); // window k starts with token 10k
      }
      expect(loader.epoch).toBe(epoch + 1);
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

  it('resumes from a serialised cursor', () => {
    const a = new TokenWindowLoader(tokens, T, 4, 9);
    for (let i = 0; i < 37; i++) a.next();
    const b = new TokenWindowLoader(tokens, T, 4, 9);
    b.resume(JSON.parse(JSON.stringify(a.cursor())) as ReturnType<typeof a.cursor>);
    for (let i = 0; i < 5; i++) expect(b.next()).toEqual(a.next());
    const other = new TokenWindowLoader(tokens, 20, 4, 9);
    expectWeftError(() => other.resume(a.cursor()), 'WEFT_E_STATE', /seqLen=10 but this data and config give seqLen=20/);
  });

  it('refuses data shorter than one sequence and shards that do not divide the batch', () => {
    expectWeftError(() => new TokenWindowLoader(tokens.subarray(0, 10), 10, 1, 1), 'WEFT_E_SHAPE', /has 10 tokens, fewer than one sequence needs \(seqLen \+ 1 = 11\)/);
    expectWeftError(() => new TokenWindowLoader(tokens, T, 6, 1, 4), 'WEFT_E_CONFIG', /batchSize=6 must divide evenly into shards=4/);
  });
});
