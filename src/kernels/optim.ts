// Reference kernels of the optimizer and of exact gradient sums (plain loops; the oracle for the
// fast backends, like reference.ts). All work on a range [begin, end) of flat buffers.

/**
 * One AdamW update of params[begin..end), PyTorch's order of operations:
 *   p *= keep (1 - lr*wd for decayed tensors, else 1); m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= stepSize * m / (sqrt(v) / bc2Sqrt + eps), with stepSize = lr / (1 - b1^t), bc2Sqrt = sqrt(1 - b2^t).
 */
export function adamwUpdate(
  params: Float32Array,
  grads: Float32Array,
  m: Float32Array,
  v: Float32Array,
  begin: number,
  end: number,
  keep: number,
  beta1: number,
  beta2: number,
  stepSize: number,
  bc2Sqrt: number,
  eps: number,
): void {
  for (let i = begin; i < end; i++) {
    const g = grads[i];
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    params[i] = params[i] * keep - (stepSize * m[i]) / (Math.sqrt(v[i]) / bc2Sqrt + eps);
  }
}

/** acc[i] += round(grads[i] * 2^bits); returns true when any |grads[i]| >= 2^(52-bits) / shards. */
export function accumulateExact(
  acc: Float64Array,
  grads: Float32Array,
  bits: number,
  shards: number,
): boolean {
  const scale = 2 ** bits;
  const limit = 2 ** (52 - bits) / shards;
  let overflow = false;
  for (let i = 0; i < grads.length; i++) {
    const g = grads[i];
    if (!(Math.abs(g) < limit)) overflow = true; // also catches NaN and Infinity
    acc[i] += Math.round(g * scale);
  }
  return overflow;
}

/** out[i] = fp32(acc[i] * 2^-bits) for i in [begin, end). */
export function fromExact(
  out: Float32Array,
  acc: Float64Array,
  bits: number,
  begin = 0,
  end = acc.length,
): void {
  const scale = 2 ** -bits;
  for (let i = begin; i < end; i++) out[i] = acc[i] * scale;
}
