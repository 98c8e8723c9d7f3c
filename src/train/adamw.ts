// AdamW over the flat parameter buffer, with PyTorch's semantics (torch.optim.AdamW):
// decoupled weight decay p -= lr*wd*p first (only on matrices, see isDecayed), then the Adam
// update with bias-corrected moments, p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
// The moments m and v are one Float32Array each, laid out like the parameters; the update itself
// is a backend kernel (adamwUpdate), run once per tensor range.

import type { Layout, ParamKey } from '../model/layout.ts';
import { isDecayed } from '../model/layout.ts';
import type { Backend } from '../kernels/backend.ts';
import { referenceBackend } from '../kernels/backend.ts';
import { check } from '../util/errors.ts';

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const ADAMW_DEFAULTS: AdamWConfig = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

/** Refuses hyperparameters AdamW cannot use (a run's config is checked with this up front). */
export function validateAdamW<C extends AdamWConfig>(config: C): C {
  const { beta1, beta2, eps, weightDecay } = config;
  check(beta1 >= 0 && beta1 < 1, 'WEFT_E_CONFIG', `AdamW beta1=${beta1} must be in [0, 1)`);
  check(beta2 >= 0 && beta2 < 1, 'WEFT_E_CONFIG', `AdamW beta2=${beta2} must be in [0, 1)`);
  check(eps > 0, 'WEFT_E_CONFIG', `AdamW eps=${eps} must be positive`);
  check(weightDecay >= 0, 'WEFT_E_CONFIG', `AdamW weightDecay=${weightDecay} must be non-negative`);
  return config;
}

export class AdamW {
  readonly config: AdamWConfig;
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** Completed optimizer steps (PyTorch's `step` state); bias correction uses step + 1. */
  stepCount = 0;
  private readonly ranges: { begin: number; end: number; decay: boolean }[];

  private readonly backend: Backend;

  constructor(
    layout: Layout<ParamKey>,
    config: Partial<AdamWConfig> = {},
    backend: Backend = referenceBackend,
  ) {
    this.backend = backend;
    this.config = validateAdamW({ ...ADAMW_DEFAULTS, ...config });
    this.m = backend.allocF32(layout.total);
    this.v = backend.allocF32(layout.total);
    this.ranges = layout.slots.map((s) => ({
      begin: s.offset,
      end: s.offset + s.size,
      decay: isDecayed(s.key),
    }));
  }

  /** One update of `params` from `grads` at learning rate `lr`. */
  step(params: Float32Array, grads: Float32Array, lr: number): void {
    const { beta1, beta2, eps, weightDecay } = this.config;
    const { m, v } = this;
    this.stepCount++;
    const stepSize = lr / (1 - beta1 ** this.stepCount);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.stepCount);
    for (const { begin, end, decay } of this.ranges) {
      const keep = decay ? 1 - lr * weightDecay : 1;
      this.backend.adamwUpdate(
        params,
        grads,
        m,
        v,
        begin,
        end,
        keep,
        beta1,
        beta2,
        stepSize,
        bc2Sqrt,
        eps,
      );
    }
    this.backend.weightsChanged?.();
  }
}
