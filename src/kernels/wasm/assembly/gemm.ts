// Matrix product micro-kernels for the wasm backend (AssemblyScript, SIMD f32x4):
//   C[i, j] (+)= sum_k A(i, k) * B(k, j)  (+ bias[j])    for rows i in [i0, i1)
// A(i, k) = A[i*ai + k*ak] (any strides: row-major A, or a transposed view of one);
// B(k, j) = B[k*ldb + j], or B[j*ldb + k] when bT (a transposed view). Both operands are packed
// into contiguous panels first (A: MR rows x K, B: K x 8), then an MR x 8 register-blocked kernel
// runs over every panel pair (MR = 4, or 6 with fused multiply-add). Each C element is a single
// sequential sum over k, so the result does not depend on how rows are split between threads.
// Pointers are byte offsets into the shared memory; sizes are elements. gemm and gemv take the
// same operands first (C, A, B and the bias, as the backend's Matmul describes them), written
// compactly below; then gemm's row range or gemv's row count.
// Every product term is added by madd (madd.ts): fused in kernels-fma.wasm, a multiply and an
// add in kernels.wasm; the order of the terms is the same in both.

import { madd, madd1 } from './madd';

/**
 * Rows of a packed A panel and of a tile. A fused multiply-add takes 4-5 cycles before its
 * accumulator can take the next, and a core starts two a cycle: 8 accumulators (4x8) leave it
 * idle part of the time, 12 (6x8) keep it busy (an isolated tile: 38 vs 48 GFLOP/s on one
 * thread). The separate multiply and add are not held up so, and run best as 4x8 (6x8: 26 vs 30).
 */
const MR: i32 = ASC_FEATURE_RELAXED_SIMD ? 6 : 4;

/** MR, for the backend: gemm splits rows between threads in multiples of it, and sizes scratch. */
export function gemmPanelRows(): i32 {
  return MR;
}

/**
 * 4x8 tile: c (+)= packed-A panel (K x 4) times packed-B panel (K x 8). A's four values of each k
 * are broadcast straight from memory (load32_splat: a load, where a shuffle would take one of the
 * few SIMD ports the multiplies and adds need), and the loop runs on A's pointer alone; together
 * 8% faster than shuffles and a counter (34.7 vs 32.0 GFLOP/s, one thread). Each k: 2 + 4 loads,
 * 8 multiplies, 8 adds; 8 accumulators + 6 operands + 1 temporary fill x64's 15 usable
 * registers, so unrolling k spills (measured slower).
 */
@inline
function tile(ap: usize, bp: usize, K: i32, out: usize, ldc: usize): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  const aEnd = ap + (<usize>K << 4);
  let pb = bp;
  for (let pa = ap; pa < aEnd; pa += 16) {
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
    const a0 = v128.load32_splat(pa);
    const a1 = v128.load32_splat(pa, 4);
    const a2 = v128.load32_splat(pa, 8);
    const a3 = v128.load32_splat(pa, 12);
    c00 = madd(a0, b0, c00);
    c01 = madd(a0, b1, c01);
    c10 = madd(a1, b0, c10);
    c11 = madd(a1, b1, c11);
    c20 = madd(a2, b0, c20);
    c21 = madd(a2, b1, c21);
    c30 = madd(a3, b0, c30);
    c31 = madd(a3, b1, c31);
    pb += 32;
  }
  v128.store(out, c00);
  v128.store(out, c01, 16);
  v128.store(out + ldc, c10);
  v128.store(out + ldc, c11, 16);
  v128.store(out + 2 * ldc, c20);
  v128.store(out + 2 * ldc, c21, 16);
  v128.store(out + 3 * ldc, c30);
  v128.store(out + 3 * ldc, c31, 16);
}

/**
 * 6x8 tile with fused multiply-adds (the relaxed-SIMD build): as tile, with 12 accumulators. Each
 * k: 2 loads of B, 6 broadcasts of A, 12 multiply-adds; V8 broadcasts each A value just before
 * its two multiply-adds, so 12 accumulators + 2 of B + 1 of A fit the 15 registers. It is
 * exported (index.ts) only so that binaryen keeps it a function of its own: inlined into gemm's
 * loops, V8 hoisted all six broadcasts to the top of the loop and spilled accumulators (17
 * instead of 32 GFLOP/s).
 */
export function tile6(ap: usize, bp: usize, K: i32, out: usize, ldc: usize): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  let c40 = f32x4.splat(0), c41 = f32x4.splat(0), c50 = f32x4.splat(0), c51 = f32x4.splat(0);
  const aEnd = ap + <usize>K * 24;
  let pb = bp;
  for (let pa = ap; pa < aEnd; pa += 24) {
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
    let a = v128.load32_splat(pa);
    c00 = madd(a, b0, c00);
    c01 = madd(a, b1, c01);
    a = v128.load32_splat(pa, 4);
    c10 = madd(a, b0, c10);
    c11 = madd(a, b1, c11);
    a = v128.load32_splat(pa, 8);
    c20 = madd(a, b0, c20);
    c21 = madd(a, b1, c21);
    a = v128.load32_splat(pa, 12);
    c30 = madd(a, b0, c30);
    c31 = madd(a, b1, c31);
    a = v128.load32_splat(pa, 16);
    c40 = madd(a, b0, c40);
    c41 = madd(a, b1, c41);
    a = v128.load32_splat(pa, 20);
    c50 = madd(a, b0, c50);
    c51 = madd(a, b1, c51);
    pb += 32;
  }
  v128.store(out, c00);
  v128.store(out, c01, 16);
  v128.store(out + ldc, c10);
  v128.store(out + ldc, c11, 16);
  v128.store(out + 2 * ldc, c20);
  v128.store(out + 2 * ldc, c21, 16);
  v128.store(out + 3 * ldc, c30);
  v128.store(out + 3 * ldc, c31, 16);
  v128.store(out + 4 * ldc, c40);
  v128.store(out + 4 * ldc, c41, 16);
  v128.store(out + 5 * ldc, c50);
  v128.store(out + 5 * ldc, c51, 16);
}

/**
 * Packs rows [i0, i1) of A into MR-row panels, [panel][k][MR], zero-padding the last panel.
 * Returns the bytes written.
 */
function packA(dst: usize, a: usize, ai: usize, ak: usize, i0: i32, i1: i32, K: i32): usize {
  const step = <usize>MR << 2; // bytes per k in a panel
  let d = dst;
  for (let i = i0; i < i1; i += MR) {
    const rows = min(MR, i1 - i);
    let src = a + <usize>i * ai;
    let k = 0;
    if (rows == MR && ak == 4) {
      // rows contiguous in k (A row-major): transpose 4x4 blocks (rows 4 and 5 by pairs)
      for (; k + 4 <= K; k += 4) {
        transpose4(d, src, ai, step);
        if (MR == 6) transpose2x4(d + 16, src + 4 * ai, ai, step);
        src += 16;
        d += step << 2;
      }
    } else if (rows == MR && ai == 4) {
      // the rows contiguous for each k (a transposed view of a row-major matrix)
      for (; k < K; k++) {
        v128.store(d, v128.load(src));
        if (MR == 6) store<u64>(d + 16, load<u64>(src + 16));
        src += ak;
        d += step;
      }
    }
    for (; k < K; k++) {
      for (let r = 0; r < MR; r++) store<f32>(d + (<usize>r << 2), r < rows ? load<f32>(src + <usize>r * ai) : 0);
      src += ak;
      d += step;
    }
  }
  return d - dst;
}

/** Rows 0 and 1 of src (ld bytes apart), four floats each, as pairs: dst + stride * q = (src[0][q], src[1][q]). */
@inline
function transpose2x4(dst: usize, src: usize, ld: usize, stride: usize): void {
  const r0 = v128.load(src);
  const r1 = v128.load(src + ld);
  const lo = i32x4.shuffle(r0, r1, 0, 4, 1, 5); // r0[0] r1[0] r0[1] r1[1]
  const hi = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
  v128.store64_lane(dst, lo, 0);
  v128.store64_lane(dst + stride, lo, 1);
  v128.store64_lane(dst + 2 * stride, hi, 0);
  v128.store64_lane(dst + 3 * stride, hi, 1);
}

/**
 * Rows r = 0..3 of src (ld bytes apart), four floats each, written transposed into a packed
 * panel: dst + stride * q + 4 * r = src[r][q], for q = 0..3 (four k of 4 rows or columns).
 */
@inline
function transpose4(dst: usize, src: usize, ld: usize, stride: usize): void {
  const r0 = v128.load(src);
  const r1 = v128.load(src + ld);
  const r2 = v128.load(src + 2 * ld);
  const r3 = v128.load(src + 3 * ld);
  const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5); // r0[0] r1[0] r0[1] r1[1]
  const t1 = i32x4.shuffle(r2, r3, 0, 4, 1, 5);
  const t2 = i32x4.shuffle(r0, r1, 2, 6, 3, 7); // r0[2] r1[2] r0[3] r1[3]
  const t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
  v128.store(dst, i32x4.shuffle(t0, t1, 0, 1, 4, 5));
  v128.store(dst + stride, i32x4.shuffle(t0, t1, 2, 3, 6, 7));
  v128.store(dst + 2 * stride, i32x4.shuffle(t2, t3, 0, 1, 4, 5));
  v128.store(dst + 3 * stride, i32x4.shuffle(t2, t3, 2, 3, 6, 7));
}

/** Packs columns [j, j+8) of B into [k][8], zero-padding past J. */
function packB(dst: usize, b: usize, ldb: usize, bT: bool, j: i32, J: i32, K: i32): void {
  const cols = min(8, J - j);
  let d = dst;
  if (!bT && cols == 8) {
    let src = b + (<usize>j << 2);
    for (let k = 0; k < K; k++) {
      v128.store(d, v128.load(src));
      v128.store(d, v128.load(src, 16), 16);
      src += ldb;
      d += 32;
    }
    return;
  }
  let k0 = 0;
  if (bT && cols == 8) {
    // B is (J, K) row-major: four k of each of the 8 columns are contiguous; transpose 4x4 blocks
    const col = b + <usize>j * ldb;
    for (; k0 + 4 <= K; k0 += 4) {
      const src = col + (<usize>k0 << 2);
      transpose4(d, src, ldb, 32);
      transpose4(d + 16, src + 4 * ldb, ldb, 32);
      d += 128;
    }
  }
  for (let k = k0; k < K; k++) {
    for (let c = 0; c < 8; c++) {
      let v: f32 = 0;
      if (c < cols) {
        const col = <usize>(j + c);
        v = bT ? load<f32>(b + col * ldb + (<usize>k << 2)) : load<f32>(b + <usize>k * ldb + (col << 2));
      }
      store<f32>(d + (<usize>c << 2), v);
    }
    d += 32;
  }
}

/**
 * C (+)= A B (+ bias) for rows [i0, i1). Strides aiE, akE, ldbE and ldcE are in elements; bias is
 * 0 for none. `scratch` must hold 32*K + 4*MR*K*ceil((i1-i0)/MR) + 32*MR bytes.
 */
export function gemm(
  c: usize, ldcE: i32, a: usize, aiE: i32, akE: i32, b: usize, ldbE: i32, bT: bool, bias: usize,
  i0: i32, i1: i32, K: i32, J: i32, accumulate: bool, scratch: usize,
): void {
  if (i1 <= i0) return;
  const ai = <usize>aiE << 2;
  const ak = <usize>akE << 2;
  const ldb = <usize>ldbE << 2;
  const ldc = <usize>ldcE << 2;
  const bPanel = scratch;
  const tmp = scratch + (<usize>K << 5); // one MR x 8 tile for the ragged edges
  const aPack = tmp + (<usize>MR << 5);
  packA(aPack, a, ai, ak, i0, i1, K);
  for (let j = 0; j < J; j += 8) {
    packB(bPanel, b, ldb, bT, j, J, K);
    const cols = min(8, J - j);
    let pa = aPack;
    for (let i = i0; i < i1; i += MR) {
      const rows = min(MR, i1 - i);
      if (MR == 6) tile6(pa, bPanel, K, tmp, 32);
      else tile(pa, bPanel, K, tmp, 32);
      // tmp holds the MR x 8 tile; add bias and the old C, store the valid part
      for (let r = 0; r < rows; r++) {
        const dst = c + <usize>(i + r) * ldc + (<usize>j << 2);
        const src = tmp + (<usize>r << 5);
        if (cols == 8) {
          let v0 = v128.load(src);
          let v1 = v128.load(src, 16);
          if (bias) {
            v0 = f32x4.add(v0, v128.load(bias + (<usize>j << 2)));
            v1 = f32x4.add(v1, v128.load(bias + (<usize>j << 2), 16));
          }
          if (accumulate) {
            v0 = f32x4.add(v0, v128.load(dst));
            v1 = f32x4.add(v1, v128.load(dst, 16));
          }
          v128.store(dst, v0);
          v128.store(dst, v1, 16);
        } else {
          for (let q = 0; q < cols; q++) {
            const o = <usize>q << 2;
            let v = load<f32>(src + o);
            if (bias) v += load<f32>(bias + (<usize>j << 2) + o);
            if (accumulate) v += load<f32>(dst + o);
            store<f32>(dst + o, v);
          }
        }
      }
      pa += <usize>K * (<usize>MR << 2);
    }
  }
}

/** out[j] += sum over rows n of x[n*J + j], for n in [0, N) (bias gradients). */
export function colSumAdd(out: usize, x: usize, N: i32, J: i32): void {
  const ld = <usize>J << 2;
  let j = 0;
  for (; j + 4 <= J; j += 4) {
    let acc = f32x4.splat(0);
    let p = x + (<usize>j << 2);
    for (let n = 0; n < N; n++) {
      acc = f32x4.add(acc, v128.load(p));
      p += ld;
    }
    const o = out + (<usize>j << 2);
    v128.store(o, f32x4.add(v128.load(o), acc));
  }
  for (; j < J; j++) {
    let acc: f32 = 0;
    let p = x + (<usize>j << 2);
    for (let n = 0; n < N; n++) {
      acc += load<f32>(p);
      p += ld;
    }
    store<f32>(out + (<usize>j << 2), load<f32>(out + (<usize>j << 2)) + acc);
  }
}

/**
 * C (M x J) (+)= A B (+ bias) for a few rows (M < 4, as in decoding one token), without packing:
 * B row by row when it is (K, J), one dot product per column when it is a transposed view (J, K)
 * (then A's rows must be contiguous: ak = 1). Same contract as gemm; `scratch` holds J floats.
 */
export function gemv(
  c: usize, ldcE: i32, a: usize, aiE: i32, akE: i32, b: usize, ldbE: i32, bT: bool, bias: usize,
  M: i32, K: i32, J: i32, accumulate: bool, scratch: usize,
): void {
  const ai = <usize>aiE << 2;
  const ak = <usize>akE << 2;
  const ldb = <usize>ldbE << 2;
  const ldc = <usize>ldcE << 2;
  for (let i = 0; i < M; i++) {
    const arow = a + <usize>i * ai;
    const acc = scratch;
    if (bT) {
      for (let j = 0; j < J; j++) {
        const bj = b + <usize>j * ldb;
        let v = f32x4.splat(0);
        let k = 0;
        for (; k + 4 <= K; k += 4) v = madd(v128.load(arow + (<usize>k << 2)), v128.load(bj + (<usize>k << 2)), v);
        let s = f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
        for (; k < K; k++) s = madd1(load<f32>(arow + (<usize>k << 2)), load<f32>(bj + (<usize>k << 2)), s);
        store<f32>(acc + (<usize>j << 2), s);
      }
    } else {
      // 16 columns at a time, their sums held in registers while k runs (B read once, by lines)
      let j = 0;
      for (; j + 16 <= J; j += 16) {
        let v0 = f32x4.splat(0), v1 = f32x4.splat(0), v2 = f32x4.splat(0), v3 = f32x4.splat(0);
        let pa = arow;
        let pb = b + (<usize>j << 2);
        for (let k = 0; k < K; k++) {
          const av = v128.load32_splat(pa);
          v0 = madd(av, v128.load(pb), v0);
          v1 = madd(av, v128.load(pb, 16), v1);
          v2 = madd(av, v128.load(pb, 32), v2);
          v3 = madd(av, v128.load(pb, 48), v3);
          pa += ak;
          pb += ldb;
        }
        const p = acc + (<usize>j << 2);
        v128.store(p, v0);
        v128.store(p, v1, 16);
        v128.store(p, v2, 32);
        v128.store(p, v3, 48);
      }
      for (; j < J; j++) {
        let s: f32 = 0;
        let pa = arow;
        let pb = b + (<usize>j << 2);
        for (let k = 0; k < K; k++) {
          s = madd1(load<f32>(pa), load<f32>(pb), s);
          pa += ak;
          pb += ldb;
        }
        store<f32>(acc + (<usize>j << 2), s);
      }
    }
    const crow = c + <usize>i * ldc;
    for (let j = 0; j < J; j++) {
      const o = <usize>j << 2;
      let v = load<f32>(acc + o);
      if (bias) v += load<f32>(bias + o);
      if (accumulate) v += load<f32>(crow + o);
      store<f32>(crow + o, v);
    }
  }
}
