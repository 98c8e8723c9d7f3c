// Every backend, for the suites that run once per backend: reference, wasm (with the given thread
// counts) and gpu. Without a GPU the gpu backend's products run on gpu.js's CPU-side mode (same
// kernels, same path through the device thread); scripts/device-check.sh sets
// WEFT_REQUIRE_WEBGPU=1 on GPU machines, so there the suites fail unless they ran on WebGPU.
// Backends are disposed after the suite.

import { afterAll } from 'vitest';
import type { Backend } from '../../src/kernels/backend.ts';
import { referenceBackend } from '../../src/kernels/backend.ts';
import { createGpuBackend, whyNotWebGpu } from '../../src/kernels/gpu/backend.ts';
import { WasmBackend } from '../../src/kernels/wasm/backend.ts';

export function allBackends(wasmThreads: number[] = [2]): [string, Backend][] {
  const wasm = wasmThreads.map((n): [string, Backend] => [
    wasmThreads.length > 1 ? `wasm (${n} thread${n > 1 ? 's' : ''})` : 'wasm',
    new WasmBackend({ threads: n }),
  ]);
  const gpu = createGpuBackend({ threads: 2 });
  const why = whyNotWebGpu(gpu) ? ` (${whyNotWebGpu(gpu)})` : '';
  console.log(`gpu backend products run on ${gpu.device}${why}`);
  if (process.env.WEFT_REQUIRE_WEBGPU === '1' && gpu.device !== 'webgpu')
    throw new Error(`WEFT_REQUIRE_WEBGPU=1 but WebGPU is not in use: ${whyNotWebGpu(gpu)}`);
  const backends: [string, Backend][] = [
    ['reference', referenceBackend],
    ...wasm,
    [`gpu (${gpu.device})`, gpu],
  ];
  afterAll(async () => {
    for (const [, backend] of backends) await backend.dispose?.();
  });
  return backends;
}
