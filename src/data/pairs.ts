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

/** Writes `pair` into rows `row` (chosen) and `row + 1` (rejected) of idx and targets. */
function fillPair(
  { prompt, chosen, rejected }: PreferencePair,
  idx: Int32Array,
  targets: Int32Array,
  row: number,
  T: number,
  pad: number,
): void {
  fillPairRow(prompt, chosen, idx, targets, row, T, pad);
  fillPairRow(prompt, rejected, idx, targets, row + 1, T, pad);
}

/** `pair` as a batch of B = 2: its chosen row, then its rejected row. */
export function pairBatch(pair: PreferencePair, T: number, pad: number): Batch {
  const batch = { idx: new Int32Array(2 * T), targets: new Int32Array(2 * T), B: 2, T };
  fillPair(pair, batch.idx, batch.targets, 0, T, pad);
  return batch;
}

export class PairLoader extends BatchLoader {
  /**
   * dpo: how a pair's reference log-probs are computed, and those known so far, two per pair
   * (chosen, rejected), NaN until computed.
   */
  private reference: { compute: (pair: Batch) => Float64Array; logps: Float64Array } | null =
    null;

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
    fillPair(this.pairs[item], idx, targets, row, this.seqLen, this.pad);
  }

  /**
   * A dpo run's batches carry reference log-probs: `compute(batch)` gives the two of one pair's
   * rows (a batch of B = 2), each pair's computed once, alone, so its values do not depend on
   * which step first needed them (a resumed run gets the same bits).
   */
  withReference(compute: (pair: Batch) => Float64Array): void {
    this.reference = { compute, logps: new Float64Array(2 * this.pairs.length).fill(NaN) };
  }

  override shardBatch(step: number, shard: number): Batch {
    const batch = super.shardBatch(step, shard);
    const reference = this.reference;
    if (!reference) return batch;
    const { compute, logps } = reference;
    const refLogps = new Float64Array(batch.B);
    this.shardItems(step, shard).forEach((item, j) => {
      if (Number.isNaN(logps[2 * item]))
        logps.set(compute(pairBatch(this.pairs[item], this.seqLen, this.pad)), 2 * item);
      refLogps.set(logps.subarray(2 * item, 2 * item + 2), 2 * j);
    });
    return { ...batch, refLogps };
  }
}
