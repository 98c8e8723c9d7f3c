// The records of metrics.jsonl: one JSON object per line, a "step" record per optimizer step, a
// "worker" record per worker and step (where its time went), and an "eval" record per
// evaluation. These key names are what tools read.

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
  /** The step's slowest worker (the most time on its own work; distributed/run-status.ts). */
  slowest?: string;
}

export interface EvalMetrics extends EvalResult {
  type: 'eval';
  step: number;
  split: 'val';
}

/** One worker's step, timed by its shell (distributed/step-clock.ts has the definitions). */
export interface WorkerMetrics {
  type: 'worker';
  step: number;
  worker: string;
  rank: number;
  computeMs: number;
  /** The all-reduce's exposed part (not hidden behind the backward pass). */
  commMs: number;
  /** The all-reduce's part hidden behind the backward pass (counted in computeMs). */
  overlapMs: number;
  waitMs: number;
  dataMs: number;
  optimMs: number;
}
