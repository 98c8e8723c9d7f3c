// Batch loaders, stateless: the global batch of step t is S virtual shards of B/S sequences;
// shard s of step t holds global sequences g = t*B + s*(B/S) + j, and sequence g reads item
// sampler.item(g) (sampler.ts: epoch-by-epoch permutations). So a shard depends only on (seed,
// step, shard), never on which worker reads it or in what order, and resuming at step t needs
// nothing but t. Subclasses say how an item fills one row:
//   TokenWindowLoader  pre-training: non-overlapping windows of T+1 tokens of a token stream
//   SftLoader          (sft.ts) one chat example per row, targets only on assistant tokens
//   PairLoader         (pairs.ts) one preference pair per two rows (chosen, rejected)

import { check } from '../util/errors.ts';
import { EpochSampler } from './sampler.ts';
import type { TokenArray } from './token-file.ts';

export interface Batch {
  /** Token ids (B, T). */
  idx: Int32Array;
  /** Next-token targets (B, T); -1 = ignored. */
  targets: Int32Array;
  B: number;
  T: number;
  /** dpo: the reference model's log-prob of each row's targets (B values; train/objectives.ts). */
  refLogps?: Float64Array;
}

export abstract class BatchLoader {
  readonly seqLen: number;
  readonly batchSize: number;
  readonly shards: number;
  readonly sampler: EpochSampler;

  constructor(items: number, seqLen: number, batchSize: number, seed: number, shards: number) {
    check(
      Number.isSafeInteger(shards) && shards > 0 && batchSize % shards === 0,
      'WEFT_E_CONFIG',
      `batchSize=${batchSize} must divide evenly into shards=${shards}`,
    );
    this.seqLen = seqLen;
    this.batchSize = batchSize;
    this.shards = shards;
    this.sampler = new EpochSampler(items, seed);
  }

  /** Rows each item fills (a preference pair: 2, its chosen and its rejected sequence). */
  protected get rowsPerItem(): number {
    return 1;
  }

  /**
   * Writes item `item` into `rowsPerItem` rows from row `row` (T entries per row, at row*T) of idx
   * and targets.
   */
  protected abstract fillRow(item: number, idx: Int32Array, targets: Int32Array, row: number): void;

  /** The items of shard `shard` of step `step`: B/S of them. */
  protected shardItems(step: number, shard: number): number[] {
    const n = this.batchSize / this.shards;
    return Array.from({ length: n }, (_, j) => this.sampler.item(step * this.batchSize + shard * n + j));
  }

  /** Shard `shard` of step `step`: B/S items, rowsPerItem rows each. */
  shardBatch(step: number, shard: number): Batch {
    const items = this.shardItems(step, shard);
    const rows = this.rowsPerItem;
    const B = items.length * rows;
    const T = this.seqLen;
    const idx = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    items.forEach((item, j) => this.fillRow(item, idx, targets, j * rows));
    return { idx, targets, B, T };
  }

  /** The whole global batch of step `step`: every shard, in order. */
  batch(step: number): Batch {
    return concatBatches(Array.from({ length: this.shards }, (_, s) => this.shardBatch(step, s)));
  }

  /** Epoch that step `step` starts in. */
  epochOf(step: number): number {
    return this.sampler.epochOf(step * this.batchSize);
  }
}

export class TokenWindowLoader extends BatchLoader {
  readonly tokens: TokenArray;

  constructor(tokens: TokenArray, seqLen: number, batchSize: number, seed: number, shards = 1) {
    check(
      tokens.length >= seqLen + 1,
      'WEFT_E_SHAPE',
      `the data has ${tokens.length} tokens, fewer than one sequence needs (seqLen + 1 = ${seqLen + 1}); use more text or a smaller seqLen`,
    );
    super(Math.floor((tokens.length - 1) / seqLen), seqLen, batchSize, seed, shards);
    this.tokens = tokens;
  }

  protected fillRow(item: number, idx: Int32Array, targets: Int32Array, row: number): void {
    const T = this.seqLen;
    const start = item * T; // window `item` covers tokens [start, start + T + 1)
    for (let t = 0; t < T; t++) {
      idx[row * T + t] = this.tokens[start + t];
      targets[row * T + t] = this.tokens[start + t + 1];
    }
  }
}

/** Stacks batches of equal T along B. */
export function concatBatches(parts: Batch[]): Batch {
  if (parts.length === 1) return parts[0];
  const T = parts[0].T;
  const B = parts.reduce((n, p) => n + p.B, 0);
  const idx = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  let at = 0;
  for (const p of parts) {
    idx.set(p.idx, at);
    targets.set(p.targets, at);
    at += p.idx.length;
  }
  if (parts.every((p) => p.refLogps === undefined)) return { idx, targets, B, T };
  const refLogps = new Float64Array(B);
  let row = 0;
  for (const p of parts) {
    refLogps.set(p.refLogps ?? new Float64Array(p.B), row);
    row += p.B;
  }
  return { idx, targets, B, T, refLogps };
}
