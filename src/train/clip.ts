// Global gradient-norm clipping over the flat gradient buffer, as torch.nn.utils.clip_grad_norm_:
// when the L2 norm exceeds maxNorm, every gradient is scaled by maxNorm / (norm + 1e-6).

/** L2 norm of the whole buffer, summed in double precision. */
export function gradNorm(grads: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < grads.length; i++) sum += grads[i] * grads[i];
  return Math.sqrt(sum);
}

/** Clips `grads` in place to global norm `maxNorm` (no-op when maxNorm <= 0); returns the norm before clipping. */
export function clipGradNorm(grads: Float32Array, maxNorm: number): number {
  const norm = gradNorm(grads);
  if (maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (let i = 0; i < grads.length; i++) grads[i] *= scale;
  }
  return norm;
}
