// One local training step on one batch: zero grads, forward, backward, clip, AdamW.

import type { Batch } from '../data/loader.ts';
import type { GPT2 } from '../model/gpt2.ts';
import type { AdamW } from './adamw.ts';
import { clipGradNorm } from './clip.ts';

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
