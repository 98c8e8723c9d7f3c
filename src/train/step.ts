// One local training step on one batch: zero grads, forward, backward, clip, AdamW.

import type { GPT2 } from '../model/gpt2.ts';
import type { AdamW } from './adamw.ts';
import { clipGradNorm } from './clip.ts';

export interface Batch {
  /** Token ids (B, T). */
  idx: Int32Array;
  /** Next-token targets (B, T); -1 = ignored. */
  targets: Int32Array;
  B: number;
  T: number;
}

export interface StepResult {
  /** Mean loss before the update. */
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
}

export function trainStep(
  model: GPT2,
  optimizer: AdamW,
  batch: Batch,
  lr: number,
  gradClip: number,
): StepResult {
  model.zeroGrad();
  const { loss } = model.forward(batch.idx, batch.B, batch.T, batch.targets);
  model.backward();
  const gradNorm = clipGradNorm(model.grads, gradClip);
  optimizer.step(model.params, model.grads, lr);
  return { loss, gradNorm };
}
