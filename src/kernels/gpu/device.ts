// The gpu backend's device side: matrix products as gpu.js kernels (the one file that imports
// gpu.js). It runs in the device thread (thread.ts). Where a WebGPU adapter exists (Dawn through
// the `webgpu` package) gpu.js compiles the kernels to WGSL compute shaders; elsewhere it uses its
// default selection (headless GL, then its own WebAssembly, then plain JavaScript), slowly but
// correctly. Weights are uploaded once and kept on the device (gpu.js pipeline buffers) until the
// caller says they changed.
//
// One kernel covers every product training needs through strides (and a mode) baked in as integer
// constants:
//   C (M x J) = [prev +] [bias +] sum_k A(i,k) B(k,j),  A(i,k) = a[i*ai + k*ak], B(k,j) = b[k*bk + j*bj]
// Output is 2-D [J, M] (thread.x = j, thread.y = i); index arithmetic stays in i32 in WGSL
// (tests/kernels/gpu-wgsl.test.ts checks the generated shader).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import gpujs from 'gpu.js';

const { GPU } = gpujs;

export type GemmMode = 'set' | 'bias' | 'acc';

export interface GemmShape {
  M: number;
  K: number;
  J: number;
  ai: number;
  ak: number;
  bk: number;
  bj: number;
  mode: GemmMode;
}

/** The kernel in gpu.js's JavaScript subset; `this` is gpu.js's kernel context. */
interface GemmThis {
  thread: { x: number; y: number };
  constants: { K: number; J: number; ai: number; ak: number; bk: number; bj: number; mode: number };
}
type F32 = Float32Array;

/** `extra` is the bias (mode 1), the previous C (mode 2), or unused (mode 0). */
function gemm(this: GemmThis, a: F32, b: F32, extra: F32): number {
  let s = 0;
  for (let k = 0; k < this.constants.K; k++) {
    s +=
      a[this.thread.y * this.constants.ai + k * this.constants.ak] *
      b[k * this.constants.bk + this.thread.x * this.constants.bj];
  }
  if (this.constants.mode === 1) return extra[this.thread.x] + s;
  if (this.constants.mode === 2) return extra[this.thread.y * this.constants.J + this.thread.x] + s;
  return s;
}

function copy(this: { thread: { x: number } }, a: F32): number {
  return a[this.thread.x];
}

const GEMM_SOURCE = gemm.toString();
const MODE_NUMBER: Record<GemmMode, number> = { set: 0, bias: 1, acc: 2 };
/** Stands in for `extra` in mode 'set'. */
const UNUSED = new Float32Array(1);

const INTEGER_CONSTANTS = {
  K: 'Integer',
  J: 'Integer',
  ai: 'Integer',
  ak: 'Integer',
  bk: 'Integer',
  bj: 'Integer',
  mode: 'Integer',
};

/** gpu.js kernel settings for one product shape. */
export function gemmSettings(shape: GemmShape): Record<string, unknown> {
  const { M, K, J, ai, ak, bk, bj } = shape;
  return {
    output: [J, M],
    constants: { K, J, ai, ak, bk, bj, mode: MODE_NUMBER[shape.mode] },
    constantTypes: INTEGER_CONSTANTS,
    tactic: 'precision',
  };
}

/**
 * The WGSL gpu.js generates for a product shape, without a device (gpu.js translates before it
 * touches the adapter). For tests.
 */
export function gemmWgsl(shape: GemmShape): string {
  const require = createRequire(import.meta.url);
  const { WebGPUKernel } = require('gpu.js/src/backend/web-gpu/kernel.js') as {
    WebGPUKernel: new (source: string, settings: unknown) => WgslKernel;
  };
  const kernel = new WebGPUKernel(GEMM_SOURCE, gemmSettings(shape));
  const args = [
    new Float32Array(shape.M * shape.K),
    new Float32Array(shape.K * shape.J),
    new Float32Array(shape.mode === 'set' ? 1 : shape.M * shape.J),
  ];
  kernel.setupConstants();
  kernel.setupArguments(args);
  kernel.threadDim = [shape.J, shape.M, 1];
  kernel.translateSource();
  kernel.paramsLayout = kernel.computeParamsLayout();
  return kernel.assembleWGSL();
}

interface WgslKernel {
  setupConstants(): void;
  setupArguments(args: unknown[]): void;
  translateSource(): void;
  computeParamsLayout(): unknown;
  assembleWGSL(): string;
  threadDim: number[];
  paramsLayout: unknown;
}

type Kernel = ((...args: unknown[]) => unknown) & { destroy?: () => void };
type Result = F32 | F32[];
interface Handle {
  delete(): void;
}

const GPU_NODES = ['/dev/nvidiactl', '/dev/dri', '/dev/kfd'];

/**
 * Installs Dawn's `navigator.gpu` and WebGPU globals when an adapter is found; else says why not.
 */
async function installWebGpu(): Promise<string | null> {
  // On Linux a GPU shows up as a device node; without one, skip Dawn's slow and noisy probe.
  if (process.platform === 'linux' && !GPU_NODES.some((path) => existsSync(path)))
    return `no GPU device node (${GPU_NODES.join(', ')})`;
  try {
    const webgpu = (await import('webgpu')) as unknown as {
      create: (options: string[]) => { requestAdapter(): Promise<unknown> };
      globals: Record<string, unknown>;
    };
    Object.assign(globalThis, webgpu.globals);
    const gpu = webgpu.create([]);
    const adapter = await gpu.requestAdapter();
    if (!adapter) return 'Dawn found no WebGPU adapter (is libvulkan.so.1 installed?)';
    Object.defineProperty(globalThis, 'navigator', {
      value: { ...((globalThis as { navigator?: object }).navigator ?? {}), gpu },
      configurable: true,
    });
    return null;
  } catch (error) {
    return `the webgpu package did not load: ${error instanceof Error ? error.message : 'unknown error'}`;
  }
}

export class GpuDevice {
  private readonly kernels = new Map<string, Kernel>();
  /** Weights on the device: WebGPU buffers, or host copies in the CPU modes (same semantics). */
  private readonly weights = new Map<string, Handle | F32>();
  /** Upload kernels by length: each call returns a new device buffer (immutable pipeline). */
  private readonly uploaders = new Map<number, Kernel>();

  private constructor(
    private readonly gpu: InstanceType<typeof GPU>,
    /** 'webgpu', or the mode gpu.js chose: 'headlessgl', 'webasm', 'cpu', ... */
    readonly mode: string,
    /** Why WebGPU is not in use ('' when it is). */
    readonly whyNotWebGpu: string,
  ) {}

  /** WebGPU where an adapter exists (unless `fallback`), else gpu.js's default selection. */
  static async open(fallback = false): Promise<GpuDevice> {
    const why = fallback ? 'the CPU fallback was asked for' : await installWebGpu();
    if (why === null) return new GpuDevice(new GPU({ mode: 'webgpu' }), 'webgpu', '');
    const gpu = new GPU();
    const probe = gpu.createKernel(copy.toString(), { output: [1] }) as unknown as Kernel;
    probe(new Float32Array(1));
    const mode = (probe as unknown as { kernel: { constructor: { mode?: string } } }).kernel
      .constructor.mode;
    return new GpuDevice(gpu, mode ?? 'cpu', why);
  }

  /** Forgets the device copies of the weights (they changed on the host). */
  invalidateWeights(): void {
    for (const handle of this.weights.values())
      if (!(handle instanceof Float32Array)) handle.delete();
    this.weights.clear();
  }

  /** C = product (see the header); `b` is a weight to keep on the device under `bKey`. */
  async gemm(out: F32, shape: GemmShape, a: F32, b: F32, extra: F32 | null, bKey: string | null) {
    // a kernel is built for its arguments' kinds: a weight arrives as a device buffer
    const kernel = this.kernelFor(shape, bKey !== null);
    const bArg = bKey === null ? this.host(b) : await this.weight(bKey, b);
    const result = await kernel(this.host(a), bArg, extra ? this.host(extra) : UNUSED);
    writeResult(out, result as Result, shape.J);
  }

  /**
   * The operand as WebGPU may upload it: the shared memory's views are copied into ordinary
   * arrays (a WebGPU implementation need not accept SharedArrayBuffer sources). The CPU modes
   * read the views in place.
   */
  private host(view: F32): F32 {
    return this.mode === 'webgpu' ? view.slice() : view;
  }

  destroy(): void {
    this.invalidateWeights();
    void (this.gpu as unknown as { destroy(): unknown }).destroy();
  }

  private kernelFor(shape: GemmShape, weight: boolean): Kernel {
    const key = `${JSON.stringify(shape)}${weight ? ' weight' : ''}`;
    let kernel = this.kernels.get(key);
    if (!kernel) {
      kernel = this.gpu.createKernel(GEMM_SOURCE, gemmSettings(shape));
      this.kernels.set(key, kernel);
    }
    return kernel;
  }

  private async weight(key: string, b: F32): Promise<Handle | F32> {
    const known = this.weights.get(key);
    if (known) return known;
    if (this.mode !== 'webgpu') {
      const copy = b.slice();
      this.weights.set(key, copy);
      return copy;
    }
    let upload = this.uploaders.get(b.length);
    if (!upload) {
      upload = this.gpu.createKernel(copy.toString(), {
        output: [b.length],
        pipeline: true,
        immutable: true,
      });
      this.uploaders.set(b.length, upload);
    }
    const handle = (await upload(this.host(b))) as Handle;
    this.weights.set(key, handle);
    return handle;
  }
}

/** Copies a gpu.js result (flat, or rows of J) into `out`. */
function writeResult(out: F32, result: Result, J: number): void {
  if (result instanceof Float32Array) {
    out.set(result.subarray(0, out.length));
    return;
  }
  for (let i = 0; i < result.length; i++) out.set(result[i], i * J);
}
