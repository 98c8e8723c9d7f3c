// Learning-rate schedule: linear warmup from lr/warmup to lr over `warmupSteps`, then cosine
// decay to `minLr` at `decaySteps`, and `minLr` after that. Steps count from 0.

import { check } from '../util/errors.ts';

export interface LrSchedule {
  /** Peak learning rate, reached at the end of warmup. */
  lr: number;
  /** Floor of the cosine decay. */
  minLr: number;
  warmupSteps: number;
  /** Step at which the decay reaches minLr (usually the run's total steps). */
  decaySteps: number;
}

export function validateSchedule(s: LrSchedule): LrSchedule {
  check(s.lr >= 0, 'WEFT_E_CONFIG', `lr=${s.lr} must be non-negative`);
  check(
    s.minLr >= 0 && s.minLr <= s.lr,
    'WEFT_E_CONFIG',
    `minLr=${s.minLr} must be between 0 and lr=${s.lr}`,
  );
  check(
    Number.isSafeInteger(s.warmupSteps) && s.warmupSteps >= 0,
    'WEFT_E_CONFIG',
    `warmupSteps=${s.warmupSteps} must be a non-negative integer`,
  );
  check(
    s.decaySteps >= s.warmupSteps,
    'WEFT_E_CONFIG',
    `decaySteps=${s.decaySteps} must be at least warmupSteps=${s.warmupSteps}`,
  );
  return s;
}

/** The learning rate for (0-based) `step`. */
export function learningRate(s: LrSchedule, step: number): number {
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  if (step >= s.decaySteps) return s.minLr;
  const progress = (step - s.warmupSteps) / (s.decaySteps - s.warmupSteps);
  return s.minLr + 0.5 * (1 + Math.cos(Math.PI * progress)) * (s.lr - s.minLr);
}
