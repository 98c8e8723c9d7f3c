// Preference pairs as batch rows (data/pairs.ts) against the DPO fixture's own rows and targets
// (tests/fixtures/dpo-*: made by PyTorch's generator from prompt and sequence lengths), the
// loader's shards (two rows per pair, every pair once per epoch), and cutting to the context.

import { describe, expect, it } from 'vitest';
import { getInt32 } from '../../src/checkpoint/safetensors.ts';
import { PairLoader, fillPairRow, pairFits } from '../../src/data/pairs.ts';
import { loadPreferenceFixture, preferenceFixtureNames } from '../helpers/preference-fixtures.ts';

describe.each(preferenceFixtureNames('dpo'))('rows of fixture %s', (name) => {
  it('prompt + reply, padded, with targets on the reply exactly as the fixture has them', () => {
    const fx = loadPreferenceFixture(name);
    const { N, T } = fx.batch;
    const lens = fx.batch as unknown as Record<string, number[]>;
    for (const side of ['chosen', 'rejected'] as const) {
      const idx = getInt32(fx.tensors, `${side}_idx`);
      const targets = getInt32(fx.tensors, `${side}_targets`);
      for (let i = 0; i < N; i++) {
        const p = lens.promptLens[i];
        const n = lens[`${side}Lens`][i];
        const row = Array.from(idx.subarray(i * T, i * T + n));
        const [gotIdx, gotTargets] = [new Int32Array(T), new Int32Array(T)];
        fillPairRow(row.slice(0, p), row.slice(p), gotIdx, gotTargets, 0, T, 0);
        expect(Array.from(gotIdx)).toEqual(Array.from(idx.subarray(i * T, (i + 1) * T)));
        expect(Array.from(gotTargets)).toEqual(Array.from(targets.subarray(i * T, (i + 1) * T)));
      }
    }
  });
});

describe('PairLoader', () => {
  const pairs = Array.from({ length: 6 }, (_, i) => ({
    prompt: [100 + i, 101 + i],
    chosen: [1, 2, 3, 4, 5, 6, 7, 8].slice(0, 2 + i),
    rejected: [9],
  }));

  it('a shard holds batchSize/shards pairs as (chosen, rejected) rows; an epoch sees every pair once', () => {
    const loader = new PairLoader(pairs, 0, 6, 6, 7, 3);
    const seen: number[] = [];
    for (let s = 0; s < 3; s++) {
      const b = loader.shardBatch(0, s);
      expect([b.B, b.T]).toEqual([4, 6]);
      for (let r = 0; r < b.B; r += 2) {
        seen.push(b.idx[r * 6] - 100);
        expect(b.idx[r * 6]).toBe(b.idx[(r + 1) * 6]); // the same prompt on both rows
        expect(b.idx[(r + 1) * 6 + 2]).toBe(9); // the rejected reply
      }
    }
    expect(seen.sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('cuts a long reply to the context, and refuses a prompt that leaves no room for one', () => {
    const [idx, targets] = [new Int32Array(4), new Int32Array(4)];
    fillPairRow([7, 8], [1, 2, 3, 4, 5], idx, targets, 0, 4, 0);
    expect(Array.from(idx)).toEqual([7, 8, 1, 2]);
    expect(Array.from(targets)).toEqual([-1, 1, 2, -1]);
    expect(pairFits({ prompt: [1, 2, 3, 4], chosen: [1], rejected: [2] }, 4)).toBe(false);
    expect(pairFits({ prompt: [1, 2, 3], chosen: [1], rejected: [2] }, 4)).toBe(true);
    expect(() => new PairLoader([{ prompt: [1, 2, 3, 4], chosen: [1], rejected: [2] }], 0, 4, 1, 1)).toThrow(
      /does not fit T=4/,
    );
  });

  it('a dpo loader computes each pair’s reference log-probs once, alone, and hands them on', () => {
    const loader = new PairLoader(pairs, 0, 6, 6, 7, 3);
    let calls = 0;
    loader.withReference((pair) => {
      calls++;
      expect(pair.B).toBe(2);
      return Float64Array.from([-pair.idx[0], -pair.idx[6] - 0.5]);
    });
    const a = loader.shardBatch(0, 1);
    expect(Array.from(a.refLogps ?? [])).toEqual([-a.idx[0], -a.idx[0] - 0.5, -a.idx[12], -a.idx[12] - 0.5]);
    loader.shardBatch(0, 1);
    expect(calls).toBe(2);
    for (const shard of [0, 2]) loader.shardBatch(0, shard);
    expect(calls).toBe(6); // every pair once
    for (const shard of [0, 1, 2]) loader.shardBatch(1, shard); // the next epoch: all known
    expect(calls).toBe(6);
  });
});
