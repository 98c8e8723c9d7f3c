// a * b + c on four f32 lanes, the one operation the two builds of the kernels differ in:
// kernels-fma.wasm (built with relaxed SIMD) computes it as one fused multiply-add, rounded once;
// kernels.wasm (plain SIMD) multiplies, rounds, adds and rounds again. ASC_FEATURE_RELAXED_SIMD
// is a compile-time constant, so each build holds only its own branch.

/** a * b + c, four lanes: fused in the relaxed-SIMD build. */
@inline
export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

/** a * b + c on one value: fused in the relaxed-SIMD build (through lane 0). */
@inline
export function madd1(a: f32, b: f32, c: f32): f32 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.extract_lane(f32x4.relaxed_madd(f32x4.splat(a), f32x4.splat(b), f32x4.splat(c)), 0);
  return c + a * b;
}

/**
 * madd1 as an export, so the backend can ask whether this CPU fuses: kernels-fma.wasm must (a
 * CPU without FMA makes V8 multiply and add), kernels.wasm must not.
 */
export function maddProbe(a: f32, b: f32, c: f32): f32 {
  return madd1(a, b, c);
}
