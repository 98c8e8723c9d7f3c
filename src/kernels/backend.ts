// The Backend interface: every kernel the model, the optimizer and the exact gradient sums need,
// plus allocation of the buffers the kernels work on in place (a fast backend may need them in
// its own memory). A backend object is checked against it with `satisfies Backend`, so one that
// lacks a kernel does not compile. The reference backend wraps reference.ts and optim.ts.

import * as optim from './optim.ts';
import * as reference from './reference.ts';

export type BackendName = 'reference' | 'wasm' | 'wasm-fma' | 'gpu' | 'blas';
export const BACKEND_NAMES: readonly BackendName[] = [
  'reference',
  'wasm',
  'wasm-fma',
  'gpu',
  'blas',
];

/**
 * Every kernel's signature, declared here once: implementations are typed as Kernels[name]
 * (reference.ts and optim.ts over F = Float32Array | Float64Array, for float64 gradient checks).
 */
export interface Kernels<F extends Float32Array | Float64Array = Float32Array> {
  encoderForward(out: F, idx: Int32Array, wte: F, wpe: F, B: number, T: number, C: number): void;
  encoderBackward(
    dwte: F,
    dwpe: F,
    dout: F,
    idx: Int32Array,
    B: number,
    T: number,
    C: number,
  ): void;
  layernormForward(
    out: F,
    mean: F,
    rstd: F,
    inp: F,
    weight: F,
    bias: F,
    N: number,
    C: number,
  ): void;
  layernormBackward(
    dinp: F,
    dweight: F,
    dbias: F,
    dout: F,
    inp: F,
    weight: F,
    mean: F,
    rstd: F,
    N: number,
    C: number,
  ): void;
  matmulForward(out: F, inp: F, weight: F, bias: F | null, N: number, C: number, OC: number): void;
  matmulBackward(
    dinp: F,
    dweight: F,
    dbias: F | null,
    dout: F,
    inp: F,
    weight: F,
    N: number,
    C: number,
    OC: number,
  ): void;
  lmHeadForward(logits: F, inp: F, wte: F, N: number, C: number, V: number): void;
  lmHeadBackward(
    dinp: F,
    dwte: F,
    dlogits: F,
    inp: F,
    wte: F,
    N: number,
    C: number,
    V: number,
  ): void;
  attentionForward(out: F, att: F, qkv: F, B: number, T: number, C: number, NH: number): void;
  attentionBackward(
    dqkv: F,
    dout: F,
    qkv: F,
    att: F,
    B: number,
    T: number,
    C: number,
    NH: number,
  ): void;
  geluForward(out: F, inp: F, N: number): void;
  geluBackward(dinp: F, inp: F, dout: F, N: number): void;
  residualForward(out: F, inp1: F, inp2: F, N: number): void;
  residualBackward(dinp1: F, dinp2: F, dout: F, N: number): void;
  crossEntropyForward(
    losses: F,
    probs: F,
    logits: F,
    targets: Int32Array,
    N: number,
    V: number,
  ): number;
  crossEntropyBackward(
    dlogits: F,
    probs: F,
    targets: Int32Array,
    dloss: number,
    N: number,
    V: number,
  ): void;
  adamwUpdate(
    params: F,
    grads: F,
    m: F,
    v: F,
    begin: number,
    end: number,
    keep: number,
    beta1: number,
    beta2: number,
    stepSize: number,
    bc2Sqrt: number,
    eps: number,
  ): void;
  accumulateExact(acc: Float64Array, grads: F, bits: number, shards: number): boolean;
  fromExact(out: F, acc: Float64Array, bits: number, begin?: number, end?: number): void;
}

export interface Backend extends Kernels {
  readonly name: BackendName;
  /** Threads each kernel may use. */
  readonly threads: number;
  /** What the kernels run on where the name does not say it (the gpu backend: 'webgpu', ...). */
  readonly device?: string;
  /** The thread count changes the results' bits (OpenBLAS's products: blas); else only speed. */
  readonly threadsChangeBits?: boolean;
  /** A zeroed buffer the kernels can work on in place. */
  allocF32(n: number): Float32Array;
  allocF64(n: number): Float64Array;
  /**
   * Says that `params` (from allocF32) holds a model's parameters (`false`: no longer), so views
   * into it are weights: a backend may keep copies of them between kernels (the gpu backend keeps
   * them on the device). Optional.
   */
  markParameters?(params: Float32Array, live: boolean): void;
  /**
   * Says that parameter values were written (an optimizer step, a load into a model that has run):
   * copies a backend keeps of them are stale. Optional.
   */
  weightsChanged?(): void;
  /** Returns a buffer from allocF32/allocF64 (a no-op where the garbage collector does it). */
  free(buffer: Float32Array | Float64Array): void;
  /** Releases what the backend holds beyond memory (helper threads); optional. */
  dispose?(): Promise<void>;
}

/**
 * What a backend's bits depend on beyond its inputs, in words: 'wasm-fma', 'blas (OpenBLAS 0.3.21
 * Zen, 2 threads)', 'gpu (webgpu)'. Workers of one run must all say the same, or their sums differ.
 */
export function bitsIdentity(backend: Backend): string {
  const n = backend.threads;
  const threads = backend.threadsChangeBits ? `, ${n} thread${n === 1 ? '' : 's'}` : '';
  return backend.device ? `${backend.name} (${backend.device}${threads})` : backend.name;
}

export const referenceBackend = {
  name: 'reference',
  threads: 1,
  allocF32: (n: number) => new Float32Array(n),
  allocF64: (n: number) => new Float64Array(n),
  free: () => {},
  ...reference,
  ...optim,
} satisfies Backend;
