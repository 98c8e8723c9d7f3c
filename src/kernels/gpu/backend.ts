// The gpu backend: the matrix products (the linear layers forward and backward and the tied head,
// most of a step's flops) run as gpu.js kernels in a device thread (bridge.ts, device.ts); every
// other kernel, and all memory, is the wasm backend's, so buffers are shared with the device thread
// without copies. Weights (views into buffers the model marked as parameters) stay on the device
// from the first product that uses them until the next forward pass or AdamW update (both mark
// them changed); activations cross once per product.
// Without a WebGPU adapter gpu.js falls back to its CPU modes: slow but correct, so CI runs it.

import type { BackendName } from '../backend.ts';
import { need } from '../checks.ts';
import { WasmBackend } from '../wasm/backend.ts';
import { DeviceBridge } from './bridge.ts';
import type { GemmMode, GemmShape } from './device.ts';

export interface GpuOptions {
  /** Kernel threads of the wasm part (layernorm, attention, ...). */
  threads?: number;
  /** Skip WebGPU even where an adapter exists (tests of the fallback). */
  fallback?: boolean;
}

export class GpuBackend extends WasmBackend {
  override readonly name: BackendName = 'gpu';
  private readonly bridge: DeviceBridge;
  /** Bumped whenever weights may have changed on the host; the device drops its copies. */
  private epoch = 0;
  /** Byte ranges [start, end) of the wasm memory that hold parameters (markParameters). */
  private readonly parameters = new Map<number, number>();

  constructor(options: GpuOptions = {}) {
    super(options.threads ?? 1);
    this.bridge = new DeviceBridge(this.heap.memory, options.fallback ?? false);
  }

  /** 'webgpu' on a GPU; otherwise the gpu.js CPU mode in use ('gpu.js webasm', ...). */
  get device(): string {
    return this.bridge.mode === 'webgpu' ? 'webgpu' : `gpu.js ${this.bridge.mode}`;
  }

  markParameters(params: Float32Array, live: boolean): void {
    if (!this.heap.owns(params)) return;
    if (live) this.parameters.set(params.byteOffset, params.byteOffset + params.byteLength);
    else this.parameters.delete(params.byteOffset);
  }

  /** True when `view` lies in a parameter buffer: a weight the device may keep. */
  private isWeight(view: Float32Array): boolean {
    if (!this.heap.owns(view)) return false;
    const end = view.byteOffset + view.byteLength;
    for (const [start, stop] of this.parameters)
      if (view.byteOffset >= start && end <= stop) return true;
    return false;
  }

  /** Why the products do not run on WebGPU ('' when they do). */
  get whyNotWebGpu(): string {
    return this.bridge.whyNotWebGpu;
  }

  override async dispose(): Promise<void> {
    await this.bridge.close();
    await super.dispose();
  }

  /**
   * C (M x J) = [C +] [bias +] A B with A(i,k) = a[i*ai + k*ak], B(k,j) = b[k*bk + j*bj];
   * `extra` is the bias or C itself; `bIsWeight` keeps b on the device.
   */
  private onDevice(
    c: number,
    a: number,
    b: number,
    extra: number,
    shape: Omit<GemmShape, 'mode'>,
    mode: GemmMode,
    bIsWeight: boolean,
  ): void {
    const { M, K, J } = shape;
    const aLen = M * K;
    const bLen = K * J;
    this.bridge.gemm({
      epoch: this.epoch,
      shape: { ...shape, mode },
      out: [c, M * J],
      a: [a, aLen],
      b: [b, bLen],
      extra: mode === 'set' ? null : [extra, mode === 'bias' ? J : M * J],
      bKey: bIsWeight ? `${b}:${bLen}` : null,
    });
  }

  /** The wasm backend's product benchmark entry, on the device (scripts/bench-matmul.ts). */
  override product(
    kind: 'nn' | 'nt' | 'tn',
    c: Float32Array,
    a: Float32Array,
    b: Float32Array,
    M: number,
    K: number,
    J: number,
    accumulate = false,
  ): void {
    const ai = kind === 'tn' ? 1 : K;
    const ak = kind === 'tn' ? M : 1;
    const bk = kind === 'nt' ? 1 : J;
    const bj = kind === 'nt' ? K : 1;
    this.with([c, a, b], ([pc, pa, pb]) =>
      this.onDevice(pc, pa, pb, pc, { M, K, J, ai, ak, bk, bj }, accumulate ? 'acc' : 'set', false),
    );
  }

  override encoderForward(
    out: Float32Array,
    idx: Int32Array,
    wte: Float32Array,
    wpe: Float32Array,
    B: number,
    T: number,
    C: number,
  ): void {
    this.epoch++; // a forward pass begins: weights may have changed since the last one
    super.encoderForward(out, idx, wte, wpe, B, T, C);
  }

  override adamwUpdate(...args: Parameters<WasmBackend['adamwUpdate']>): void {
    this.epoch++;
    super.adamwUpdate(...args);
  }

  override matmulForward(
    out: Float32Array,
    inp: Float32Array,
    weight: Float32Array,
    bias: Float32Array | null,
    N: number,
    C: number,
    OC: number,
  ): void {
    need(inp, N * C, 'inp');
    need(weight, C * OC, 'weight');
    need(out, N * OC, 'out');
    const cached = this.isWeight(weight);
    this.with([out, inp, weight, bias], ([o, i, w, b]) => {
      const shape = { M: N, K: C, J: OC, ai: C, ak: 1, bk: OC, bj: 1 };
      this.onDevice(o, i, w, b, shape, bias ? 'bias' : 'set', cached);
    });
  }

  override matmulBackward(
    dinp: Float32Array,
    dweight: Float32Array,
    dbias: Float32Array | null,
    dout: Float32Array,
    inp: Float32Array,
    weight: Float32Array,
    N: number,
    C: number,
    OC: number,
  ): void {
    need(dout, N * OC, 'dout');
    need(dinp, N * C, 'dinp');
    need(dweight, C * OC, 'dweight');
    const cached = this.isWeight(weight);
    this.with([dinp, dweight, dbias, dout, inp, weight], ([di, dw, db, d, i, w]) => {
      // dinp (N,C) += dout (N,OC) W^T: B(k=o, j=c) = W[c*OC + o]
      this.onDevice(
        di,
        d,
        w,
        di,
        { M: N, K: OC, J: C, ai: OC, ak: 1, bk: 1, bj: OC },
        'acc',
        cached,
      );
      // dW (C,OC) += inp^T (C,N) dout (N,OC): A(i=c, k=n) = inp[n*C + c]
      this.onDevice(dw, i, d, dw, { M: C, K: N, J: OC, ai: 1, ak: C, bk: OC, bj: 1 }, 'acc', false);
      if (db) this.k.colSumAdd(db, d, N, OC);
    });
  }

  override lmHeadForward(
    logits: Float32Array,
    inp: Float32Array,
    wte: Float32Array,
    N: number,
    C: number,
    V: number,
  ): void {
    need(inp, N * C, 'inp');
    need(wte, V * C, 'wte');
    need(logits, N * V, 'logits');
    const cached = this.isWeight(wte);
    this.with([logits, inp, wte], ([l, i, w]) => {
      // logits (N,V) = inp (N,C) wte^T: B(k=c, j=v) = wte[v*C + c]
      this.onDevice(l, i, w, 0, { M: N, K: C, J: V, ai: C, ak: 1, bk: 1, bj: C }, 'set', cached);
    });
  }

  override lmHeadBackward(
    dinp: Float32Array,
    dwte: Float32Array,
    dlogits: Float32Array,
    inp: Float32Array,
    wte: Float32Array,
    N: number,
    C: number,
    V: number,
  ): void {
    need(dlogits, N * V, 'dlogits');
    need(dinp, N * C, 'dinp');
    need(dwte, V * C, 'dwte');
    const cached = this.isWeight(wte);
    this.with([dinp, dwte, dlogits, inp, wte], ([di, dw, dl, i, w]) => {
      // dinp (N,C) += dlogits (N,V) wte (V,C)
      this.onDevice(di, dl, w, di, { M: N, K: V, J: C, ai: V, ak: 1, bk: C, bj: 1 }, 'acc', cached);
      // dwte (V,C) += dlogits^T (V,N) inp (N,C): A(i=v, k=n) = dlogits[n*V + v]
      this.onDevice(dw, dl, i, dw, { M: V, K: N, J: C, ai: 1, ak: V, bk: C, bj: 1 }, 'acc', false);
    });
  }
}
