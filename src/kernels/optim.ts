// Reference kernels of the optimizer and of exact gradient sums (plain loops; the oracle for the
// fast backends, like reference.ts). All work on a range [begin, end) of flat buffers.

import type { Kernels } from './backend.ts';
import type { Floats } from './reference.ts';

/**
 * One AdamW update of params[begin..end), PyTorch's order of operations:
 *   p *= keep (1 - lr*wd for decayed tensors, else 1); m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= stepSize * m / (sqrt(v) / bc2Sqrt + eps), with stepSize = lr / (1 - b1^t), bc2Sqrt = sqrt(1 - b2^t).
 */
export const adamwUpdate: Kernels<Floats>['adamwUpdate'] = (...args) => {
  const [params, grads, m, v, begin, end, keep, beta1, beta2, stepSize, bc2Sqrt, eps] = args;
  for (let i = begin; i < end; i++) {
    const g = grads[i];
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    params[i] = params[i] * keep - (stepSize * m[i]) / (Math.sqrt(v[i]) / bc2Sqrt + eps);
  }
};

/** acc[i] += round(grads[i] * 2^bits); returns true when any |grads[i]| >= 2^(52-bits) / shards. */
export const accumulateExact: Kernels<Floats>['accumulateExact'] = (acc, grads, bits, shards) => {
  const scale = 2 ** bits;
  const limit = 2 ** (52 - bits) / shards;
  let overflow = false;
  for (let i = 0; i < grads.length; i++) {
    const g = grads[i];
    if (!(Math.abs(g) < limit)) overflow = true; // also catches NaN and Infinity
    acc[i] += Math.round(g * scale);
  }
  return overflow;
};

/** out[i] = fp32(acc[i] * 2^-bits) for i in [begin, end). */
export const fromExact: Kernels<Floats>['fromExact'] = (...args) => {
  const [out, acc, bits, begin = 0, end = acc.length] = args;
  const scale = 2 ** -bits;
  for (let i = begin; i < end; i++) out[i] = acc[i] * scale;
};
