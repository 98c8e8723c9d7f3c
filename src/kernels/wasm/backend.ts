// The wasm backend: the Backend kernels on AssemblyScript SIMD code (assembly/), over one shared
// WebAssembly.Memory that holds every buffer the model allocates. The matrix products and the
// per-head/per-row kernels split their rows over a pool of helper threads (--threads); every
// output element is still one sequential sum, so results do not depend on the thread count.
// Arrays that are not in the wasm memory (tests pass plain typed arrays) are copied in and out.
// Two builds of the same kernels: kernels.wasm (the 'wasm' backend) and kernels-fma.wasm (the
// 'wasm-fma' backend: products by fused multiply-add, which needs relaxed SIMD and a CPU with FMA).

import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WeftError } from '../../util/errors.ts';
import type { Backend, BackendName, Kernels } from '../backend.ts';
import { checkTokenIds, countTargets, need } from '../checks.ts';
import { WasmHeap } from './heap.ts';
import type { ParallelKernel } from './pool.ts';
import { Pool } from './pool.ts';
import { RELAXED_SIMD_FLAG, relaxedSimd } from './relaxed.ts';

/** 'simd': kernels.wasm; 'fma': kernels-fma.wasm, whose products use fused multiply-add. */
export type WasmVariant = 'simd' | 'fma';

const WASM_PATHS: Record<WasmVariant, string> = {
  simd: fileURLToPath(new URL('./build/kernels.wasm', import.meta.url)),
  fma: fileURLToPath(new URL('./build/kernels-fma.wasm', import.meta.url)),
};

/**
 * The kernels module's exports (assembly/index.ts). Each takes numbers only (pointers in bytes,
 * sizes, scalars); its parameter list is in assembly/ and at its one call below.
 */
type Exports = Record<
  | 'gemm'
  | 'gemmPanelRows'
  | 'gemv'
  | 'maddProbe'
  | 'colSumAdd'
  | 'encoderForward'
  | 'encoderBackward'
  | 'layernormForward'
  | 'layernormBackward'
  | 'causalSoftmax'
  | 'causalSoftmaxBackward'
  | 'geluForward'
  | 'geluBackward'
  | 'residualForward'
  | 'residualBackward'
  | 'crossEntropyForward'
  | 'crossEntropyBackward'
  | 'adamwUpdate'
  | 'accumulateExact'
  | 'fromExact',
  (...args: number[]) => number
>;

/** Where gemm's row range [i0, i1) and its scratch pointer sit in its arguments (assembly/gemm.ts). */
const GEMM_ROWS_ARG = 9;
const GEMM_SCRATCH_ARG = 14;

/**
 * A matrix product on wasm memory: C (M x J, rows `ldc` apart, default J) (+)= [bias +] A B, with
 * A(i,k) = a[i*ai + k*ak] and B(k,j) = b[k*ldb + j], or b[j*ldb + k] when bT. Pointers in bytes,
 * strides in elements; `acc` adds into C.
 */
export interface Matmul {
  c: number;
  ldc?: number;
  a: number;
  ai: number;
  ak: number;
  b: number;
  ldb: number;
  bT?: boolean;
  bias?: number;
  M: number;
  K: number;
  J: number;
  acc?: boolean;
}

/**
 * Somewhere else to run the linear layers' and the tied head's products (most of a step's
 * flops): the gpu backend's device. It shares the wasm memory; the rest stays on the wasm kernels.
 */
export interface MatmulDevice {
  /** 'webgpu', or the gpu.js mode it fell back to. */
  readonly name: string;
  matmul(p: Matmul): void;
  /** Views into `params` are weights: the device may keep them until weightsChanged. */
  markParameters(params: Float32Array, live: boolean): void;
  weightsChanged(): void;
  close(): Promise<void>;
}

export interface WasmOptions {
  /** Kernel threads (this one and pool helpers). */
  threads?: number;
  /** Which build of the kernels (default 'simd'). */
  variant?: WasmVariant;
  /** The backend's name: 'wasm' ('wasm-fma' for the fma variant), or 'gpu' with a device. */
  name?: BackendName;
  /** Runs the layers' products; made once the memory exists. */
  device?: (memory: WebAssembly.Memory, owns: (a: Float32Array) => boolean) => MatmulDevice;
}

type Arg = Float32Array | Float64Array | Int32Array | null;

/** Work below this many multiply-adds runs on one thread (a dispatch costs a few microseconds). */
const PARALLEL_MIN_WORK = 1 << 18;

/**
 * Byte offsets of head bh's (T, hs) views: q, k and v in qkv (B, T, 3C) at `qkv`, and, when
 * `other` is given, the head's slice of a (B, T, C) tensor there (out, or dout).
 */
function headOf(qkv: number, bh: number, NH: number, T: number, C: number, other = 0) {
  const b = Math.floor(bh / NH);
  const head = (bh % NH) * (C / NH);
  const qh = qkv + 4 * (b * T * 3 * C + head);
  return { qh, kh: qh + 4 * C, vh: qh + 8 * C, outh: other + 4 * (b * T * C + head) };
}

/** Row blocks [r0, r1) of a causal (T, T) matrix: row t needs columns 0..t only. */
function causalBlocks(T: number, size = 64): [number, number][] {
  const blocks: [number, number][] = [];
  for (let r0 = 0; r0 < T; r0 += size) blocks.push([r0, Math.min(T, r0 + size)]);
  return blocks;
}

export function wasmAvailable(variant: WasmVariant = 'simd'): boolean {
  return existsSync(WASM_PATHS[variant]);
}

/**
 * a*b + c where a*b = 1 + 2^-11 + 2^-24 needs 25 bits: fused, 2^-11 + 2^-24; rounded first (to
 * 1 + 2^-11, the even neighbour), 2^-11.
 */
const PROBE_A = 1 + 2 ** -12;
const PROBE_FUSED = 2 ** -11 + 2 ** -24;

/** The kernels module of `variant`, checked: the fma build must compile here and must fuse. */
function kernelsModule(variant: WasmVariant): WebAssembly.Module {
  const path = WASM_PATHS[variant];
  if (!existsSync(path)) {
    throw new WeftError(
      'WEFT_E_STATE',
      `the wasm kernels are not built (${path} is missing); run npm run build:wasm`,
    );
  }
  if (variant === 'fma' && !relaxedSimd()) {
    throw new WeftError(
      'WEFT_E_STATE',
      `the wasm-fma backend needs WebAssembly relaxed SIMD, which this runtime lacks (Node 22+ has it; Node 20 needs node ${RELAXED_SIMD_FLAG}); use --backend wasm`,
    );
  }
  return new WebAssembly.Module(readFileSync(path));
}

export class WasmBackend implements Backend {
  readonly name: BackendName;
  readonly threads: number;
  readonly heap: WasmHeap;
  /** The layers' products run here when set (the gpu backend). */
  readonly matmulDevice: MatmulDevice | null;
  private readonly k: Exports;
  /** Rows of gemm's A panels (4, or 6 in the fma build): its threads' row slices are multiples. */
  private readonly panelRows: number;
  private readonly pool: Pool | null;
  /** Per-thread scratch: offset and size in bytes (index 0 is this thread's). */
  private scratch: { offset: number; bytes: number }[] = [];

  constructor(options: WasmOptions = {}) {
    const variant = options.variant ?? 'simd';
    const module = kernelsModule(variant);
    this.name = options.name ?? (variant === 'fma' ? 'wasm-fma' : 'wasm');
    this.threads = Math.max(1, Math.floor(options.threads ?? 1));
    this.heap = new WasmHeap();
    const instance = new WebAssembly.Instance(module, {
      env: {
        memory: this.heap.memory,
        abort: () => {
          throw new WeftError('WEFT_E_STATE', 'a wasm kernel aborted');
        },
      },
    });
    this.k = instance.exports as unknown as Exports;
    this.panelRows = this.k.gemmPanelRows();
    // the same name must mean the same bits on every machine: a CPU without FMA would round twice
    if (variant === 'fma' && this.k.maddProbe(PROBE_A, PROBE_A, -1) !== PROBE_FUSED) {
      throw new WeftError(
        'WEFT_E_STATE',
        'the wasm-fma backend needs a CPU with fused multiply-add (x86-64 with FMA3, or arm64), and this one has none; use --backend wasm',
      );
    }
    this.pool = this.threads > 1 ? new Pool(this.threads - 1, this.heap.memory, module) : null;
    this.matmulDevice = options.device?.(this.heap.memory, (a) => this.heap.owns(a)) ?? null;
  }

  /** What the layers' products run on, where the name does not say it. */
  get device(): string | undefined {
    return this.matmulDevice?.name;
  }

  markParameters(params: Float32Array, live: boolean): void {
    this.matmulDevice?.markParameters(params, live);
  }

  weightsChanged(): void {
    this.matmulDevice?.weightsChanged();
  }

  allocF32(n: number): Float32Array {
    return this.heap.f32(n);
  }

  allocF64(n: number): Float64Array {
    return this.heap.f64(n);
  }

  free(buffer: Float32Array | Float64Array): void {
    this.heap.free(buffer);
  }

  /** Stops the helper threads (and the device's). */
  async dispose(): Promise<void> {
    await this.matmulDevice?.close();
    await this.pool?.terminate();
  }

  /**
   * Runs `run` with each array's byte offset in wasm memory; arrays elsewhere are copied into
   * temporary wasm buffers and, after the call, back out (outputs and accumulators included).
   */
  private with<R>(arrays: Arg[], run: (ptrs: number[]) => R): R {
    const staged: { view: Exclude<Arg, null>; temp: Exclude<Arg, null> }[] = [];
    const ptrs = arrays.map((a) => {
      if (a === null) return 0;
      if (this.heap.owns(a)) return a.byteOffset;
      const temp =
        a instanceof Float64Array
          ? this.heap.f64(a.length)
          : a instanceof Int32Array
            ? this.heap.i32(a.length)
            : this.heap.f32(a.length);
      temp.set(a);
      staged.push({ view: a, temp });
      return temp.byteOffset;
    });
    try {
      return run(ptrs);
    } finally {
      for (const { view, temp } of staged) {
        view.set(temp);
        this.heap.free(temp);
      }
    }
  }

  /** Scratch of at least `bytes` for each of `count` threads; returns their offsets. */
  private scratchFor(bytes: number, count: number): number[] {
    while (this.scratch.length < count) this.scratch.push({ offset: 0, bytes: 0 });
    return this.scratch.slice(0, count).map((s) => {
      if (s.bytes < bytes) {
        if (s.bytes > 0) this.heap.release(s.offset);
        s.offset = this.heap.alloc(bytes);
        s.bytes = bytes;
      }
      return s.offset;
    });
  }

  /**
   * Runs kernel `name` over rows [0, rows) split among the threads (in multiples of `grain`),
   * `args` holding the range at `rangeArg` and scratch of `scratchBytes` per thread at `scratchArg`.
   */
  private parallel(
    name: ParallelKernel,
    args: number[],
    rangeArg: number,
    scratchArg: number,
    rows: number,
    grain: number,
    scratchBytes: (slice: number) => number,
    work: number,
  ): void {
    const want =
      this.pool && work >= PARALLEL_MIN_WORK ? Math.min(this.threads, Math.ceil(rows / grain)) : 1;
    const per = Math.ceil(rows / want / grain) * grain;
    const slices: [number, number][] = [];
    for (let start = 0; start < rows; start += per)
      slices.push([start, Math.min(rows, start + per)]);
    const scratch = this.scratchFor(scratchBytes(per), slices.length);
    const own = [...args];
    own[rangeArg] = slices[0][0];
    own[rangeArg + 1] = slices[0][1];
    own[scratchArg] = scratch[0];
    if (slices.length > 1 && this.pool)
      this.pool.dispatch(name, args, rangeArg, scratchArg, slices.slice(1), scratch.slice(1));
    const kernel: (...a: number[]) => void = this.k[name];
    try {
      kernel(...own);
    } finally {
      // also when this thread's slice threw: the next call must not start while helpers work
      if (slices.length > 1 && this.pool) this.pool.join();
    }
  }

  /**
   * A matrix product on wasm memory, on this thread or split over the pool by rows (a few rows,
   * as in decoding, take the gemv kernel without packing: the choice depends on M only).
   */
  private matmulAt(p: Matmul): void {
    const { c, ldc = p.J, a, ai, ak, b, ldb, bT = false, bias = 0, M, K, J, acc = false } = p;
    if (M < 4 && (!bT || ak === 1)) {
      const [scratch] = this.scratchFor(4 * J, 1);
      this.k.gemv(c, ldc, a, ai, ak, b, ldb, bT ? 1 : 0, bias, M, K, J, acc ? 1 : 0, scratch);
      return;
    }
    const args = [c, ldc, a, ai, ak, b, ldb, bT ? 1 : 0, bias, 0, 0, K, J, acc ? 1 : 0, 0];
    const mr = this.panelRows;
    const scratch = (rows: number) => 32 * K + 32 * mr + 4 * mr * K * Math.ceil(rows / mr);
    this.parallel('gemm', args, GEMM_ROWS_ARG, GEMM_SCRATCH_ARG, M, mr, scratch, M * K * J);
  }

  /** The linear layers' and the tied head's products: the device's where there is one. */
  private layerMatmulAt(p: Matmul): void {
    if (this.matmulDevice) this.matmulDevice.matmul(p);
    else this.matmulAt(p);
  }

  /**
   * C (M x J) (+)= op(A) op(B) on arrays, all row-major: 'nn' A is (M,K) and B (K,J); 'nt' B is
   * stored (J,K) and used transposed; 'tn' A is stored (K,M) and used transposed. (The products
   * of the layers take this path; the benchmarks time it.)
   */
  matmul(o: {
    kind: 'nn' | 'nt' | 'tn';
    c: Float32Array;
    a: Float32Array;
    b: Float32Array;
    M: number;
    K: number;
    J: number;
    acc?: boolean;
  }): void {
    const { kind, M, K, J, acc } = o;
    this.with([o.c, o.a, o.b], ([c, a, b]) => {
      const A = kind === 'tn' ? { a, ai: 1, ak: M } : { a, ai: K, ak: 1 };
      this.layerMatmulAt({
        c,
        ...A,
        b,
        ldb: kind === 'nt' ? K : J,
        bT: kind === 'nt',
        M,
        K,
        J,
        acc,
      });
    });
  }

  // ---------------------------------------------------------------- Kernels

  encoderForward: Kernels['encoderForward'] = (out, idx, wte, wpe, B, T, C) => {
    need(idx, B * T, 'idx');
    need(wpe, T * C, 'wpe');
    need(out, B * T * C, 'out');
    checkTokenIds(idx, B * T, wte.length / C);
    this.with([out, idx, wte, wpe], ([o, i, w, p]) =>
      this.k.encoderForward(o, i, w, p, B * T, T, C),
    );
  };

  encoderBackward: Kernels['encoderBackward'] = (dwte, dwpe, dout, idx, B, T, C) => {
    need(dout, B * T * C, 'dout');
    this.with([dwte, dwpe, dout, idx], ([w, p, d, i]) =>
      this.k.encoderBackward(w, p, d, i, B * T, T, C),
    );
  };

  layernormForward: Kernels['layernormForward'] = (out, mean, rstd, inp, weight, bias, N, C) => {
    need(inp, N * C, 'inp');
    need(out, N * C, 'out');
    need(weight, C, 'weight');
    this.with([out, mean, rstd, inp, weight, bias], (p) =>
      this.k.layernormForward(p[0], p[1], p[2], p[3], p[4], p[5], N, C),
    );
  };

  layernormBackward: Kernels['layernormBackward'] = (...args) => {
    const [dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C] = args;
    need(dout, N * C, 'dout');
    this.with([dinp, dweight, dbias, dout, inp, weight, mean, rstd], (p) =>
      this.k.layernormBackward(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], N, C),
    );
  };

  matmulForward: Kernels['matmulForward'] = (out, inp, weight, bias, N, C, OC) => {
    need(inp, N * C, 'inp');
    need(weight, C * OC, 'weight');
    need(out, N * OC, 'out');
    this.with([out, inp, weight, bias], ([o, i, w, b]) =>
      this.layerMatmulAt({ c: o, a: i, ai: C, ak: 1, b: w, ldb: OC, bias: b, M: N, K: C, J: OC }),
    );
  };

  matmulBackward: Kernels['matmulBackward'] = (...args) => {
    const [dinp, dweight, dbias, dout, inp, weight, N, C, OC] = args;
    need(dout, N * OC, 'dout');
    need(dinp, N * C, 'dinp');
    need(dweight, C * OC, 'dweight');
    this.with([dinp, dweight, dbias, dout, inp, weight], ([di, dw, db, d, i, w]) => {
      // dinp (N,C) += dout (N,OC) W^T;  dW (C,OC) += inp^T (C,N) dout
      this.layerMatmulAt({
        c: di,
        a: d,
        ai: OC,
        ak: 1,
        b: w,
        ldb: OC,
        bT: true,
        M: N,
        K: OC,
        J: C,
        acc: true,
      });
      this.layerMatmulAt({
        c: dw,
        a: i,
        ai: 1,
        ak: C,
        b: d,
        ldb: OC,
        M: C,
        K: N,
        J: OC,
        acc: true,
      });
      if (db) this.k.colSumAdd(db, d, N, OC);
    });
  };

  lmHeadForward: Kernels['lmHeadForward'] = (logits, inp, wte, N, C, V) => {
    need(inp, N * C, 'inp');
    need(wte, V * C, 'wte');
    need(logits, N * V, 'logits');
    this.with([logits, inp, wte], ([l, i, w]) =>
      this.layerMatmulAt({ c: l, a: i, ai: C, ak: 1, b: w, ldb: C, bT: true, M: N, K: C, J: V }),
    );
  };

  lmHeadBackward: Kernels['lmHeadBackward'] = (dinp, dwte, dlogits, inp, wte, N, C, V) => {
    need(dlogits, N * V, 'dlogits');
    this.with([dinp, dwte, dlogits, inp, wte], ([di, dw, dl, i, w]) => {
      // dinp (N,C) += dlogits (N,V) wte (V,C);  dwte (V,C) += dlogits^T (V,N) inp (N,C)
      this.layerMatmulAt({ c: di, a: dl, ai: V, ak: 1, b: w, ldb: C, M: N, K: V, J: C, acc: true });
      this.layerMatmulAt({ c: dw, a: dl, ai: 1, ak: V, b: i, ldb: C, M: V, K: N, J: C, acc: true });
    });
  };

  // Attention per head (b, h) as matrix products over strided views of qkv (B, T, 3C): the
  // head's q, k and v are (T, hs) with rows 3C apart; its att is (T, T). The causal softmax
  // zeroes the scores above the diagonal. Products run by blocks of 64 rows and skip the part
  // above the diagonal: the terms they drop are exact zeros at the ends of each sum, so results
  // are the same bits as the full-width products.

  attentionForward: Kernels['attentionForward'] = (out, att, qkv, B, T, C, NH) => {
    need(qkv, B * T * 3 * C, 'qkv');
    need(att, B * NH * T * T, 'att');
    need(out, B * T * C, 'out');
    const hs = C / NH;
    const ld = 3 * C; // row stride of q, k and v
    const scale = 1 / Math.sqrt(hs);
    const blocks = causalBlocks(T);
    this.with([out, att, qkv], ([o, a, q]) => {
      for (let bh = 0; bh < B * NH; bh++) {
        const { qh, kh, vh, outh } = headOf(q, bh, NH, T, C, o);
        const ah = a + 4 * bh * T * T;
        // by blocks of rows, each block's scores used while they are in cache
        for (const [r0, r1] of blocks) {
          const M = r1 - r0;
          // att rows r0..r1 = q k^T, columns up to r1 (the rest are masked)
          const ab = ah + 4 * r0 * T;
          const qb = qh + 4 * r0 * ld;
          this.matmulAt({
            M,
            c: ab,
            ldc: T,
            a: qb,
            ai: ld,
            ak: 1,
            b: kh,
            ldb: ld,
            bT: true,
            K: hs,
            J: r1,
          });
          // softmax of those rows (head bh's rows of the stacked (B*NH*T, T) scores)
          this.k.causalSoftmax(a, bh * T + r0, bh * T + r1, T, scale);
          // out rows r0..r1 = att rows (nonzero up to column r1) times v rows 0..r1
          this.matmulAt({
            M,
            c: outh + 4 * r0 * C,
            ldc: C,
            a: ab,
            ai: T,
            ak: 1,
            b: vh,
            ldb: ld,
            K: r1,
            J: hs,
          });
        }
      }
    });
  };

  attentionBackward: Kernels['attentionBackward'] = (dqkv, dout, qkv, att, B, T, C, NH) => {
    need(dout, B * T * C, 'dout');
    need(dqkv, B * T * 3 * C, 'dqkv');
    need(att, B * NH * T * T, 'att');
    const hs = C / NH;
    const ld = 3 * C;
    const scale = 1 / Math.sqrt(hs);
    const blocks = causalBlocks(T);
    const dscores = this.heap.f32(T * T); // one head's (T, T) gradient
    const ds = dscores.byteOffset;
    try {
      this.with([dqkv, dout, qkv, att], ([dq, d, q, a]) => {
        for (let bh = 0; bh < B * NH; bh++) {
          const { qh, kh, vh, outh: dh } = headOf(q, bh, NH, T, C, d);
          const { qh: dqh, kh: dkh, vh: dvh } = headOf(dq, bh, NH, T, C);
          const ah = a + 4 * bh * T * T;
          for (const [r0, r1] of blocks) {
            const M = r1 - r0;
            // dv rows r0..r1 += att^T dout over positions t >= r0 (att[t, t2] is 0 for t < t2)
            const atT = { a: ah + 4 * (r0 * T + r0), ai: 1, ak: T, K: T - r0 };
            const dvRows = { M, c: dvh + 4 * r0 * ld, ldc: ld, acc: true };
            this.matmulAt({ ...dvRows, ...atT, b: dh + 4 * r0 * C, ldb: C, J: hs });
            // datt rows r0..r1 = dout v^T, columns up to r1
            const dattRows = { M, c: ds + 4 * r0 * T, ldc: T };
            this.matmulAt({
              ...dattRows,
              a: dh + 4 * r0 * C,
              ai: C,
              ak: 1,
              b: vh,
              ldb: ld,
              bT: true,
              K: hs,
              J: r1,
            });
          }
          this.k.causalSoftmaxBackward(ds, ah, 0, T, T, scale); // datt -> dscores (scaled, masked)
          for (const [r0, r1] of blocks) {
            const M = r1 - r0;
            // dq rows r0..r1 += ds k over columns up to r1
            const dqRows = { M, c: dqh + 4 * r0 * ld, ldc: ld, acc: true };
            this.matmulAt({
              ...dqRows,
              a: ds + 4 * r0 * T,
              ai: T,
              ak: 1,
              b: kh,
              ldb: ld,
              K: r1,
              J: hs,
            });
            // dk rows r0..r1 += ds^T q over positions t >= r0
            const dsT = { a: ds + 4 * (r0 * T + r0), ai: 1, ak: T, K: T - r0 };
            const dkRows = { M, c: dkh + 4 * r0 * ld, ldc: ld, acc: true };
            this.matmulAt({ ...dkRows, ...dsT, b: qh + 4 * r0 * ld, ldb: ld, J: hs });
          }
        }
      });
    } finally {
      this.heap.free(dscores);
    }
  };

  geluForward: Kernels['geluForward'] = (out, inp, N) => {
    need(inp, N, 'inp');
    need(out, N, 'out');
    this.with([out, inp], ([o, i]) => this.k.geluForward(o, i, N));
  };

  geluBackward: Kernels['geluBackward'] = (dinp, inp, dout, N) => {
    need(dout, N, 'dout');
    this.with([dinp, inp, dout], ([di, i, d]) => this.k.geluBackward(di, i, d, N));
  };

  residualForward: Kernels['residualForward'] = (out, inp1, inp2, N) => {
    need(inp1, N, 'inp1');
    need(inp2, N, 'inp2');
    this.with([out, inp1, inp2], ([o, a, b]) => this.k.residualForward(o, a, b, N));
  };

  residualBackward: Kernels['residualBackward'] = (dinp1, dinp2, dout, N) => {
    need(dout, N, 'dout');
    this.with([dinp1, dinp2, dout], ([a, b, d]) => this.k.residualBackward(a, b, d, N));
  };

  crossEntropyForward: Kernels['crossEntropyForward'] = (losses, probs, logits, targets, N, V) => {
    need(logits, N * V, 'logits');
    need(targets, N, 'targets');
    const counted = countTargets(targets, N, V);
    this.with([losses, probs, logits, targets], ([l, p, x, t]) =>
      this.parallel(
        'crossEntropyForward',
        [l, p, x, t, 0, 0, V, 0],
        4,
        7,
        N,
        1,
        () => 0,
        N * V * 8,
      ),
    );
    return counted;
  };

  crossEntropyBackward: Kernels['crossEntropyBackward'] = (...args) => {
    const [dlogits, probs, targets, dloss, N, V] = args;
    need(dlogits, N * V, 'dlogits');
    this.with([dlogits, probs, targets], ([d, p, t]) =>
      this.parallel(
        'crossEntropyBackward',
        [d, p, t, dloss, 0, 0, V, 0],
        4,
        7,
        N,
        1,
        () => 0,
        N * V,
      ),
    );
  };

  adamwUpdate: Kernels['adamwUpdate'] = (...args) => {
    const [params, grads, m, v, begin, end, keep, beta1, beta2, stepSize, bc2Sqrt, eps] = args;
    this.with([params, grads, m, v], ([p, g, mm, vv]) =>
      this.k.adamwUpdate(p, g, mm, vv, begin, end, keep, beta1, beta2, stepSize, bc2Sqrt, eps),
    );
  };

  accumulateExact: Kernels['accumulateExact'] = (acc, grads, bits, shards) => {
    return (
      this.with([acc, grads], ([a, g]) =>
        this.k.accumulateExact(a, g, grads.length, 2 ** bits, 2 ** (52 - bits) / shards),
      ) === 1
    );
  };

  fromExact: Kernels['fromExact'] = (out, acc, bits, begin = 0, end = acc.length) => {
    this.with([out, acc], ([o, a]) => this.k.fromExact(o, a, begin, end, 2 ** -bits));
  };
}
