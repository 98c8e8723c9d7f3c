// The gpu backend: the matrix products (the linear layers forward and backward and the tied head,
// most of a step's flops) run as gpu.js kernels in a device thread (bridge.ts, device.ts); every
// other kernel, and all memory, is the wasm backend's, so buffers are shared with the device thread
// without copies. Weights (views into buffers the model marked as parameters) stay on the device
// from the first product that uses them until the next forward pass or AdamW update (both mark
// them changed); activations cross once per product.
// Without a WebGPU adapter gpu.js falls back to its CPU modes: slow but correct, so CI runs it.

import type { BackendName } from '../backend.ts';
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

  /** True when `floats` floats at byte `offset` lie in a parameter buffer: a weight to keep. */
  private isWeight(offset: number, floats: number): boolean {
    for (const [start, stop] of this.parameters)
      if (offset >= start && offset + 4 * floats <= stop) return true;
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
   * The linear layers' and the tied head's products, on the device: A(i,k) = a[i*ai + k*ak],
   * B(k,j) = b[k*ldb + j] or b[j*ldb + k] when bT; a B inside a parameter buffer stays there.
   */
  protected override linear(
    c: number,
    a: number,
    ai: number,
    ak: number,
    b: number,
    ldb: number,
    bT: boolean,
    bias: number,
    M: number,
    K: number,
    J: number,
    accumulate: boolean,
  ): void {
    const mode: GemmMode = accumulate ? 'acc' : bias ? 'bias' : 'set';
    const shape: GemmShape = { M, K, J, ai, ak, bk: bT ? 1 : ldb, bj: bT ? ldb : 1, mode };
    this.bridge.gemm({
      epoch: this.epoch,
      shape,
      out: [c, M * J],
      a: [a, M * K],
      b: [b, K * J],
      extra: mode === 'set' ? null : mode === 'bias' ? [bias, J] : [c, M * J],
      bKey: this.isWeight(b, K * J) ? `${b}:${K * J}` : null,
    });
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
}
