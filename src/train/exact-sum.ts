// Exact gradient sums (DESIGN.md invariant 4). Each shard's fp32 gradient is rounded onto the
// grid 2^-G and held as an integer in a Float64Array; integers below 2^53 add exactly, so the
// sum over shards does not depend on how shards are split between workers or in which order
// partial sums arrive. A shard value with |g| >= 2^(52-G)/S could push a sum of S shards past
// 2^52; it marks the step as overflowed (the step is then skipped on every worker).

export const DEFAULT_EXACT_BITS = 40;

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
