// The Backend interface: every kernel the model, the optimizer and the exact gradient sums need,
// plus allocation of the buffers the kernels work on in place (a fast backend may need them in
// its own memory). A backend object is checked against it with `satisfies Backend`, so one that
// lacks a kernel does not compile. The reference backend wraps reference.ts and optim.ts.

import * as optim from './optim.ts';
import * as reference from './reference.ts';

export type BackendName = 'reference' | 'wasm' | 'gpu';
export const BACKEND_NAMES: readonly BackendName[] = ['reference', 'wasm', 'gpu'];

type F32 = Float32Array;

export interface Kernels {
  encoderForward(
    out: F32,
    idx: Int32Array,
    wte: F32,
    wpe: F32,
    B: number,
    T: number,
    C: number,
  ): void;
  encoderBackward(
    dwte: F32,
    dwpe: F32,
    dout: F32,
    idx: Int32Array,
    B: number,
    T: number,
    C: number,
  ): void;
  layernormForward(
    out: F32,
    mean: F32,
    rstd: F32,
    inp: F32,
    weight: F32,
    bias: F32,
    N: number,
    C: number,
  ): void;
  layernormBackward(
    dinp: F32,
    dweight: F32,
    dbias: F32,
    dout: F32,
    inp: F32,
    weight: F32,
    mean: F32,
    rstd: F32,
    N: number,
    C: number,
  ): void;
  matmulForward(
    out: F32,
    inp: F32,
    weight: F32,
    bias: F32 | null,
    N: number,
    C: number,
    OC: number,
  ): void;
  matmulBackward(
    dinp: F32,
    dweight: F32,
    dbias: F32 | null,
    dout: F32,
    inp: F32,
    weight: F32,
    N: number,
    C: number,
    OC: number,
  ): void;
  lmHeadForward(logits: F32, inp: F32, wte: F32, N: number, C: number, V: number): void;
  lmHeadBackward(
    dinp: F32,
    dwte: F32,
    dlogits: F32,
    inp: F32,
    wte: F32,
    N: number,
    C: number,
    V: number,
  ): void;
  attentionForward(out: F32, att: F32, qkv: F32, B: number, T: number, C: number, NH: number): void;
  attentionBackward(
    dqkv: F32,
    dout: F32,
    qkv: F32,
    att: F32,
    B: number,
    T: number,
    C: number,
    NH: number,
  ): void;
  geluForward(out: F32, inp: F32, N: number): void;
  geluBackward(dinp: F32, inp: F32, dout: F32, N: number): void;
  residualForward(out: F32, inp1: F32, inp2: F32, N: number): void;
  residualBackward(dinp1: F32, dinp2: F32, dout: F32, N: number): void;
  crossEntropyForward(
    losses: F32,
    probs: F32,
    logits: F32,
    targets: Int32Array,
    N: number,
    V: number,
  ): number;
  crossEntropyBackward(
    dlogits: F32,
    probs: F32,
    targets: Int32Array,
    dloss: number,
    N: number,
    V: number,
  ): void;
  adamwUpdate(
    params: F32,
    grads: F32,
    m: F32,
    v: F32,
    begin: number,
    end: number,
    keep: number,
    beta1: number,
    beta2: number,
    stepSize: number,
    bc2Sqrt: number,
    eps: number,
  ): void;
  accumulateExact(acc: Float64Array, grads: F32, bits: number, shards: number): boolean;
  fromExact(out: F32, acc: Float64Array, bits: number, begin?: number, end?: number): void;
}

export interface Backend extends Kernels {
  readonly name: BackendName;
  /** Threads each kernel may use. */
  readonly threads: number;
  /** What the kernels run on where the name does not say it (the gpu backend: 'webgpu', ...). */
  readonly device?: string;
  /** A zeroed buffer the kernels can work on in place. */
  allocF32(n: number): Float32Array;
  allocF64(n: number): Float64Array;
  /**
   * Says that `params` (from allocF32) holds a model's parameters (`false`: no longer), so views
   * into it are weights: a backend may keep copies of them between kernels (the gpu backend keeps
   * them on the device). Optional.
   */
  markParameters?(params: Float32Array, live: boolean): void;
  /** Returns a buffer from allocF32/allocF64 (a no-op where the garbage collector does it). */
  free(buffer: Float32Array | Float64Array): void;
  /** Releases what the backend holds beyond memory (helper threads); optional. */
  dispose?(): Promise<void>;
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
