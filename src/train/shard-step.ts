// The data-parallel training step, split where the all-reduce goes:
//   1. shardGradient, for each shard a worker holds: forward + backward of that micro-batch, with
//      the loss normalised by the step's global target count, added exactly into `acc`;
//   2. (the all-reduce of `acc` across workers, leaving the summed gradient in model.grads);
//   3. applyUpdate: clip to the global norm and take the AdamW step.
// With one worker, step 2 is fromExact(model.grads, acc). Every worker count gives the same bits.

import type { Batch } from '../data/loader.ts';
import type { GPT2 } from '../model/gpt2.ts';
import type { AdamW } from './adamw.ts';
import { clipGradNorm } from './clip.ts';

export interface ShardResult {
  /** Sum of the shard's per-target losses (nats) and how many targets it has. */
  lossSum: number;
  targets: number;
  /** A gradient value too large for the exact grid. */
  overflow: boolean;
}

/** Count of targets (not -1) in a batch. */
export function countTargets(batch: Batch): number {
  let n = 0;
  for (const t of batch.targets) if (t !== -1) n++;
  return n;
}

export function shardGradient(
  model: GPT2,
  batch: Batch,
  globalTargets: number,
  acc: Float64Array,
  bits: number,
  shards: number,
): ShardResult {
  model.zeroGrad();
  const { lossSum, targetCount } = model.forward(batch.idx, batch.B, batch.T, batch.targets);
  if (targetCount === 0) return { lossSum: 0, targets: 0, overflow: false };
  model.backward(globalTargets);
  const overflow = model.backend.accumulateExact(acc, model.grads, bits, shards);
  return { lossSum, targets: targetCount, overflow };
}

/** Clips model.grads (the summed gradient) to `gradClip` and steps AdamW; returns the norm before clipping. */
export function applyUpdate(model: GPT2, optimizer: AdamW, lr: number, gradClip: number): number {
  const norm = clipGradNorm(model.grads, gradClip);
  optimizer.step(model.params, model.grads, lr);
  return norm;
}
