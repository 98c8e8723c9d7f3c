// Every backend, for the suites that run once per backend: reference, wasm and wasm-fma (with the
// given thread counts), gpu, and blas (at the same thread counts) where OpenBLAS is installed.
// Without a GPU the gpu backend's products run on gpu.js's CPU-side mode (same
// kernels, same path through the device thread); scripts/device-check.sh sets
// WEFT_REQUIRE_WEBGPU=1 on GPU machines, so there the suites fail unless they ran on WebGPU.
// Backends are disposed after the suite.

import { afterAll } from 'vitest';
import type { Backend } from '../../src/kernels/backend.ts';
import { referenceBackend } from '../../src/kernels/backend.ts';
import { blasAvailable, createBlasBackend, whyNoBlas } from '../../src/kernels/blas/backend.ts';
import { createGpuBackend, whyNotWebGpu } from '../../src/kernels/gpu/backend.ts';
import { WasmBackend } from '../../src/kernels/wasm/backend.ts';

export function allBackends(wasmThreads: number[] = [2]): [string, Backend][] {
  const wasm = (['simd', 'fma'] as const).flatMap((variant) =>
    wasmThreads.map((n): [string, Backend] => {
      const backend = new WasmBackend({ variant, threads: n });
      const threads = wasmThreads.length > 1 ? ` (${n} thread${n > 1 ? 's' : ''})` : '';
      return [`${backend.name}${threads}`, backend];
    }),
  );
  const gpu = createGpuBackend({ threads: 2 });
  const why = whyNotWebGpu(gpu) ? ` (${whyNotWebGpu(gpu)})` : '';
  console.log(`gpu backend products run on ${gpu.device}${why}`);
  if (process.env.WEFT_REQUIRE_WEBGPU === '1' && gpu.device !== 'webgpu')
    throw new Error(`WEFT_REQUIRE_WEBGPU=1 but WebGPU is not in use: ${whyNotWebGpu(gpu)}`);
  // blas (OpenBLAS products) at the wasm thread counts, where libopenblas is installed
  const blas = blasAvailable()
    ? wasmThreads.map((n): [string, Backend] => {
        const backend = createBlasBackend({ threads: n });
        return [`blas (${backend.device}, ${n} thread${n > 1 ? 's' : ''})`, backend];
      })
    : [];
  if (!blasAvailable()) console.log(`blas backend skipped: ${whyNoBlas()}`);
  const backends: [string, Backend][] = [
    ['reference', referenceBackend],
    ...wasm,
    [`gpu (${gpu.device})`, gpu],
    ...blas,
  ];
  afterAll(async () => {
    for (const [, backend] of backends) await backend.dispose?.();
  });
  return backends;
}
