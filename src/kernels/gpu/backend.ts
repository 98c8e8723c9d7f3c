// The gpu backend: the wasm backend with a matrix-product device. The products of the linear
// layers and the tied head (most of a step's flops) run as gpu.js kernels in a device thread
// (bridge.ts, device.ts); every other kernel, and all memory, is the wasm backend's, so buffers
// are shared with the device thread without copies. Weights (views into buffers the model marked
// as parameters) stay on the device from the first product that uses them until weightsChanged
// (the optimizer's step, a load) or a new parameter buffer; activations cross once per product.
// Without a WebGPU adapter gpu.js falls back to its CPU modes: slow but correct, so CI runs it.

import type { Matmul, MatmulDevice } from '../wasm/backend.ts';
import { WasmBackend } from '../wasm/backend.ts';
import { DeviceBridge } from './bridge.ts';
import type { GemmMode, GemmShape } from './device.ts';

export interface GpuOptions {
  /** Kernel threads of the wasm part (layernorm, attention, ...). */
  threads?: number;
  /** Skip WebGPU even where an adapter exists (tests of the fallback). */
  fallback?: boolean;
}

/** The products on the device thread, over the wasm memory. */
class GpuMatmul implements MatmulDevice {
  private readonly bridge: DeviceBridge;
  /** Bumped whenever weights may have changed on the host; the device drops its copies. */
  private epoch = 0;
  /** Byte ranges [start, end) of the wasm memory that hold parameters (markParameters). */
  private readonly parameters = new Map<number, number>();

  constructor(
    memory: WebAssembly.Memory,
    private readonly inMemory: (a: Float32Array) => boolean,
    fallback: boolean,
  ) {
    this.bridge = new DeviceBridge(memory, fallback);
  }

  /** 'webgpu' on a GPU; otherwise the gpu.js CPU mode in use ('gpu.js webasm', ...). */
  get name(): string {
    return this.bridge.mode === 'webgpu' ? 'webgpu' : `gpu.js ${this.bridge.mode}`;
  }

  /** Why the products do not run on WebGPU ('' when they do). */
  get whyNotWebGpu(): string {
    return this.bridge.whyNotWebGpu;
  }

  markParameters(params: Float32Array, live: boolean): void {
    if (!this.inMemory(params)) return;
    if (live) this.parameters.set(params.byteOffset, params.byteOffset + params.byteLength);
    else this.parameters.delete(params.byteOffset);
    this.weightsChanged(); // a buffer at these bytes may have held other weights before
  }

  weightsChanged(): void {
    this.epoch++;
  }

  /** True when `floats` floats at byte `offset` lie in a parameter buffer: a weight to keep. */
  private isWeight(offset: number, floats: number): boolean {
    for (const [start, stop] of this.parameters)
      if (offset >= start && offset + 4 * floats <= stop) return true;
    return false;
  }

  matmul({ c, ldc, a, ai, ak, b, ldb, bT, bias = 0, M, K, J, acc }: Matmul): void {
    if (ldc !== undefined && ldc !== J) throw new Error('the device products write rows J apart');
    const mode: GemmMode = acc ? 'acc' : bias ? 'bias' : 'set';
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

  close(): Promise<void> {
    return this.bridge.close();
  }
}

/** The gpu backend: a wasm backend whose layers' products run on the device. */
export function createGpuBackend(options: GpuOptions = {}): WasmBackend {
  return new WasmBackend({
    name: 'gpu',
    threads: options.threads ?? 1,
    device: (memory, inMemory) => new GpuMatmul(memory, inMemory, options.fallback ?? false),
  });
}

/** Why a gpu backend's products do not run on WebGPU ('' when they do, or it has no device). */
export function whyNotWebGpu(backend: WasmBackend): string {
  const device = backend.matmulDevice;
  return device instanceof GpuMatmul ? device.whyNotWebGpu : '';
}
