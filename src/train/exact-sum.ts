// Exact gradient sums (docs/design.md invariant 4). Each shard's fp32 gradient is rounded onto the
// grid 2^-G and held as an integer in a Float64Array; integers below 2^53 add exactly, so the
// sum over shards does not depend on how shards are split between workers or in which order
// partial sums arrive. A shard value with |g| >= 2^(52-G)/S could push a sum of S shards past
// 2^52; it marks the step as overflowed (the step is then skipped on every worker). The kernels
// (kernels/optim.ts, and each backend's) do the rounding and the conversion back.

export { accumulateExact, fromExact } from '../kernels/optim.ts';

export const DEFAULT_EXACT_BITS = 40;
