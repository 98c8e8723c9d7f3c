// The records of metrics.jsonl: one JSON object per line, a "step" record per optimizer step and
// an "eval" record per evaluation. These key names are what tools read.

import type { EvalResult } from './evaluate.ts';

export interface StepMetrics {
  type: 'step';
  /** Optimizer steps completed, 1-based. */
  step: number;
  /** Mean loss of the step's batch, before the update (nats). */
  loss: number;
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  tokensPerSec: number;
  elapsedMs: number;
}

export interface EvalMetrics extends EvalResult {
  type: 'eval';
  step: number;
  split: 'val';
}
