// The blas backend: the wasm backend whose linear layers' and tied head's products (most of a
// step's flops) and attention's per-head products (attention.ts) run in OpenBLAS's sgemm, on the
// same shared wasm memory (openblas.ts: no copies). The causal softmax, layernorm, GELU, softmax
// + loss, AdamW and the exact sums stay on the wasm kernels.
//
// Determinism: OpenBLAS's bits for a product depend on its thread count and its CPU kernel, not on
// anything a run's worker count changes (each shard's products are whole calls of the same shapes),
// so a run is bit-identical on 1, 2 and 3 workers for a fixed --threads. The thread count is
// process-wide in OpenBLAS; each product pins this backend's before it runs, so backends with
// different counts take turns correctly on one thread, and workers in one process must share one
// count (they do: --threads is per run).

import { WeftError } from '../../util/errors.ts';
import type { Matmul, MatmulDevice } from '../wasm/backend.ts';
import { WasmBackend } from '../wasm/backend.ts';
import type { OpenBlas } from './openblas.ts';
import { blasAttention } from './attention.ts';
import { openBlas, pinThreads, sgemmAt, whyNoBlas } from './openblas.ts';

export interface BlasOptions {
  /** OpenBLAS threads for the products (the wasm kernels run on the calling thread). */
  threads?: number;
}

/** The products in OpenBLAS, over the wasm memory. */
class BlasMatmul implements MatmulDevice {
  /** 'OpenBLAS 0.3.21 Zen' */
  readonly name: string;

  constructor(
    private readonly blas: OpenBlas,
    private readonly memory: WebAssembly.Memory,
    private readonly threads: number,
  ) {
    this.name = `${blas.version} ${blas.core}`;
  }

  /**
   * C (+)= [bias +] A B: A(i,k) = a[i*ai + k*ak] is A row-major (ak = 1, lda = ai) or a transposed
   * view (ai = 1, lda = ak); B is (K, J) or, bT, (J, K), ldb apart; accumulating is beta = 1. A
   * bias is written into C's rows first and added as beta = 1 (bias + the sum: one rounding, as
   * the wasm kernel's sum + bias).
   */
  matmul({ c, ldc, a, ai, ak, b, ldb, bT = false, bias = 0, M, K, J, acc = false }: Matmul): void {
    if (ak !== 1 && ai !== 1)
      throw new Error(`blas: A(i,k) = a[i*${ai} + k*${ak}] is neither row-major nor transposed`);
    const rowStride = ldc ?? J;
    if (bias) {
      const f32 = new Float32Array(this.memory.buffer);
      const from = bias >>> 2;
      for (let i = 0; i < M; i++) {
        const row = (c >>> 2) + i * rowStride;
        if (!acc) f32.copyWithin(row, from, from + J);
        else for (let j = 0; j < J; j++) f32[row + j] += f32[from + j]; // no layer does this
      }
    }
    pinThreads(this.blas, this.threads);
    sgemmAt(this.blas, this.memory, {
      c,
      ldc: rowStride,
      a,
      lda: ak === 1 ? ai : ak,
      transA: ak !== 1,
      b,
      ldb,
      transB: bT,
      M,
      N: J,
      K,
      beta: acc || bias ? 1 : 0,
    });
  }

  markParameters(): void {}
  weightsChanged(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** True when OpenBLAS is here (else whyNoBlas says why not). */
export function blasAvailable(): boolean {
  return openBlas() !== null;
}

export { whyNoBlas };

/**
 * The blas backend: `threads` OpenBLAS threads for the products; the wasm kernels (the causal
 * softmax, layernorm, GELU, softmax + loss, AdamW, ...) on the calling thread alone, as PyTorch's fastest CPU setting
 * on small machines runs its own kernels on one thread next to a multi-threaded OpenBLAS. (With
 * the wasm pool on 2 threads as well, a step on 2 cores was 2.2x slower whenever another process
 * was running: the pool's fine-grained barriers wait for a helper the scheduler has put aside,
 * while OpenBLAS's threads yield; quiet, it was no faster.) `threads` reports the products'.
 */
class BlasBackend extends WasmBackend {
  constructor(blas: OpenBlas, threads: number) {
    super({ name: 'blas', threads: 1, device: (memory) => new BlasMatmul(blas, memory, threads) });
    Object.defineProperty(this, 'threads', { value: threads, enumerable: true });
    Object.defineProperty(this, 'threadsChangeBits', { value: true, enumerable: true });
    const attention = blasAttention(blas, this.heap, () => pinThreads(blas, threads));
    this.attentionForward = attention.attentionForward;
    this.attentionBackward = attention.attentionBackward;
  }
}

/** The blas backend; WEFT_E_CONFIG with the reason where OpenBLAS is not installed. */
export function createBlasBackend(options: BlasOptions = {}): WasmBackend {
  const blas = openBlas();
  if (!blas)
    throw new WeftError(
      'WEFT_E_CONFIG',
      `the blas backend is not available here: ${whyNoBlas()}; use another --backend`,
    );
  // set only where it is another: other threads of this process may be in a product
  pinThreads(blas, Math.max(1, Math.floor(options.threads ?? 1)));
  // OpenBLAS caps the count (MAX_THREADS): pin what it took, or every product would set it again
  return new BlasBackend(blas, blas.getThreads());
}
