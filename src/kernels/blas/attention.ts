// Causal self-attention for the blas backend: per head (b, h), its products as whole OpenBLAS
// calls over strided views of the (B, T, 3C) qkv buffer (q, k and v are (T, hs) with rows 3C
// apart; att is (T, T)), with the wasm module's causal softmax and its backward between them.
// The wasm backend runs the same products by blocks of 64 rows to skip the masked half; here each
// is one call (q k^T over every column, then masked by the softmax): twice the multiply-adds of
// the causal part, at OpenBLAS's speed and on its threads, and 6 calls per head instead of 6 per
// block of rows. Same shapes on any worker count, so the same bits.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Kernels } from '../backend.ts';
import { need } from '../checks.ts';
import type { WasmHeap } from '../wasm/heap.ts';
import type { Gemm, OpenBlas } from './openblas.ts';
import { sgemmAt } from './openblas.ts';

const KERNELS_PATH = fileURLToPath(new URL('../wasm/build/kernels.wasm', import.meta.url));

/** The wasm module's causal softmax kernels (assembly/nn.ts), pointers in bytes. */
interface Softmax {
  causalSoftmax(att: number, r0: number, r1: number, T: number, scale: number): void;
  causalSoftmaxBackward(
    datt: number,
    att: number,
    r0: number,
    r1: number,
    T: number,
    scale: number,
  ): void;
}

type Attention = Pick<Kernels, 'attentionForward' | 'attentionBackward'>;

/**
 * attentionForward and attentionBackward on `heap` (arrays elsewhere are copied in and out), the
 * products in `blas` with its thread count pinned by `pin` first.
 */
export function blasAttention(blas: OpenBlas, heap: WasmHeap, pin: () => void): Attention {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(KERNELS_PATH)), {
    env: {
      memory: heap.memory,
      abort: () => {
        throw new Error('a wasm kernel aborted');
      },
    },
  });
  const k = instance.exports as unknown as Softmax;
  const gemm = (g: Gemm) => sgemmAt(blas, heap.memory, g);

  /** Runs `run` on the arrays' byte offsets in the heap, staging the ones that lie elsewhere. */
  const inHeap = (arrays: Float32Array[], run: (ptrs: number[]) => void) => {
    const staged = arrays.map((a) => (heap.owns(a) ? null : heap.f32(a.length)));
    try {
      staged.forEach((s, i) => s?.set(arrays[i]));
      run(arrays.map((a, i) => (staged[i] ?? a).byteOffset));
      staged.forEach((s, i) => s && arrays[i].set(s));
    } finally {
      for (const s of staged) if (s) heap.free(s);
    }
  };

  /** Byte offsets of head bh's q, k, v in qkv (at `qkv`) and its slice of a (B, T, C) tensor. */
  const head = (qkv: number, other: number, bh: number, NH: number, T: number, C: number) => {
    const b = Math.floor(bh / NH);
    const col = (bh % NH) * (C / NH);
    const q = qkv + 4 * (b * T * 3 * C + col);
    return { q, k: q + 4 * C, v: q + 8 * C, o: other + 4 * (b * T * C + col) };
  };

  const attentionForward: Kernels['attentionForward'] = (out, att, qkv, B, T, C, NH) => {
    need(qkv, B * T * 3 * C, 'qkv');
    need(att, B * NH * T * T, 'att');
    need(out, B * T * C, 'out');
    const hs = C / NH;
    const ld = 3 * C;
    const scale = 1 / Math.sqrt(hs);
    pin();
    inHeap([out, att, qkv], ([o, a, qkvAt]) => {
      for (let bh = 0; bh < B * NH; bh++) {
        const h = head(qkvAt, o, bh, NH, T, C);
        const ah = a + 4 * bh * T * T;
        // att = softmax(scale q k^T), masked
        const qk = { c: ah, ldc: T, a: h.q, lda: ld, transA: false };
        gemm({ ...qk, b: h.k, ldb: ld, transB: true, M: T, N: T, K: hs, beta: 0 });
        k.causalSoftmax(a, bh * T, (bh + 1) * T, T, scale);
        // out = att v
        const av = { c: h.o, ldc: C, a: ah, lda: T, transA: false };
        gemm({ ...av, b: h.v, ldb: ld, transB: false, M: T, N: hs, K: T, beta: 0 });
      }
    });
  };

  const attentionBackward: Kernels['attentionBackward'] = (dqkv, dout, qkv, att, B, T, C, NH) => {
    need(dout, B * T * C, 'dout');
    need(dqkv, B * T * 3 * C, 'dqkv');
    need(att, B * NH * T * T, 'att');
    need(qkv, B * T * 3 * C, 'qkv');
    const hs = C / NH;
    const ld = 3 * C;
    const scale = 1 / Math.sqrt(hs);
    pin();
    const dscores = heap.f32(T * T); // one head's (T, T) gradient
    const ds = dscores.byteOffset;
    try {
      inHeap([dqkv, dout, qkv, att], ([dqkvAt, d, qkvAt, a]) => {
        for (let bh = 0; bh < B * NH; bh++) {
          const h = head(qkvAt, d, bh, NH, T, C);
          const g = head(dqkvAt, 0, bh, NH, T, C);
          const ah = a + 4 * bh * T * T;
          const rows = { M: T, N: hs, K: T, beta: 1 as const };
          // dv += att^T dout
          const dv = { c: g.v, ldc: ld, a: ah, lda: T, transA: true };
          gemm({ ...dv, b: h.o, ldb: C, transB: false, ...rows });
          // datt = dout v^T, then the softmax's backward: dscores (scaled, masked)
          const datt = { c: ds, ldc: T, a: h.o, lda: C, transA: false };
          gemm({ ...datt, b: h.v, ldb: ld, transB: true, M: T, N: T, K: hs, beta: 0 });
          k.causalSoftmaxBackward(ds, ah, 0, T, T, scale);
          // dq += ds k;  dk += ds^T q
          const dq = { c: g.q, ldc: ld, a: ds, lda: T, transA: false };
          gemm({ ...dq, b: h.k, ldb: ld, transB: false, ...rows });
          const dk = { c: g.k, ldc: ld, a: ds, lda: T, transA: true };
          gemm({ ...dk, b: h.q, ldb: ld, transB: false, ...rows });
        }
      });
    } finally {
      heap.free(dscores);
    }
  };

  return { attentionForward, attentionBackward };
}
