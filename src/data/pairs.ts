// Preference pairs as training batches (the reward and dpo objectives, train/objectives.ts): pair
// i of a shard fills rows 2i (prompt + chosen reply) and 2i+1 (prompt + rejected reply), each cut
// to T tokens and padded after its real tokens (under the causal mask padding changes nothing
// before it). Targets mark the reply: target[t] = token t+1 for p-1 <= t <= n-2 (p the prompt's
// length, n the row's real tokens), -1 elsewhere, so a reward model reads row's last real token
// one past its last target. A dpo run's loader also carries the reference model's log-prob of
// every row, which the batch hands on (Batch.refLogps).

import { check } from '../util/errors.ts';
import { BatchLoader } from './loader.ts';
import type { Batch } from './loader.ts';
import type { PreferencePair } from './preference.ts';

/** Whether the pair's prompt leaves room for at least one reply token in T columns. */
export function pairFits(pair: PreferencePair, T: number): boolean {
  return pair.prompt.length >= 1 && pair.prompt.length < T;
}

/** Writes prompt + reply (cut to T tokens) into row `row` of idx and targets; padding `pad`. */
export function fillPairRow(
  prompt: number[],
  reply: number[],
  idx: Int32Array,
  targets: Int32Array,
  row: number,
  T: number,
  pad: number,
): void {
  const p = prompt.length;
  const n = Math.min(T, p + reply.length);
  const token = (t: number) => (t < p ? prompt[t] : reply[t - p]);
  for (let t = 0; t < T; t++) {
    idx[row * T + t] = t < n ? token(t) : pad;
    targets[row * T + t] = t >= p - 1 && t <= n - 2 ? token(t + 1) : -1;
  }
}

export class PairLoader extends BatchLoader {
  /** dpo: the reference log-probs, two per pair (chosen, rejected), NaN until known. */
  private refLogps: Float64Array | null = null;

  constructor(
    readonly pairs: PreferencePair[],
    private readonly pad: number,
    seqLen: number,
    batchSize: number,
    seed: number,
    shards = 1,
  ) {
    for (const pair of pairs)
      check(pairFits(pair, seqLen), 'WEFT_E_SHAPE', `a pair's prompt does not fit T=${seqLen}`);
    super(pairs.length, seqLen, batchSize, seed, shards);
  }

  protected override get rowsPerItem(): number {
    return 2;
  }

  protected fillRow(item: number, idx: Int32Array, targets: Int32Array, row: number): void {
    const { prompt, chosen, rejected } = this.pairs[item];
    fillPairRow(prompt, chosen, idx, targets, row, this.seqLen, this.pad);
    fillPairRow(prompt, rejected, idx, targets, row + 1, this.seqLen, this.pad);
  }

  /**
   * A dpo run's batches carry reference log-probs: `compute(batch)` gives the two of one pair's
   * rows (a batch of B = 2), each pair's computed once, alone, so its values do not depend on
   * which step first needed them (a resumed run gets the same bits).
   */
  withReference(compute: (pair: Batch) => Float64Array): void {
    this.refLogps = new Float64Array(2 * this.pairs.length).fill(NaN);
    this.reference = compute;
  }

  private reference: ((pair: Batch) => Float64Array) | null = null;

  /** The reference log-probs of pair `item`'s two rows. */
  private referenceOf(item: number): Float64Array {
    const cache = this.refLogps as Float64Array;
    if (Number.isNaN(cache[2 * item])) {
      const T = this.seqLen;
      const pair: Batch = { idx: new Int32Array(2 * T), targets: new Int32Array(2 * T), B: 2, T };
      this.fillRow(item, pair.idx, pair.targets, 0);
      cache.set((this.reference as (pair: Batch) => Float64Array)(pair), 2 * item);
    }
    return cache.subarray(2 * item, 2 * item + 2);
  }

  override shardBatch(step: number, shard: number): Batch {
    const batch = super.shardBatch(step, shard);
    if (!this.reference) return batch;
    const items = this.shardItems(step, shard);
    batch.refLogps = new Float64Array(batch.B);
    items.forEach((item, j) => batch.refLogps?.set(this.referenceOf(item), 2 * j));
    return batch;
  }
}
