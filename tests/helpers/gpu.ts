// The gpu backend's tests run without a GPU on gpu.js's CPU mode. scripts/device-check.sh sets
// WEFT_REQUIRE_WEBGPU=1 on GPU machines, so there they fail unless the products ran on WebGPU.

import type { GpuBackend } from '../../src/kernels/gpu/backend.ts';

export function requireWebGpuIfAsked(gpu: GpuBackend): void {
  console.log(
    `gpu backend products run on ${gpu.device}${gpu.whyNotWebGpu ? ` (${gpu.whyNotWebGpu})` : ''}`,
  );
  if (process.env.WEFT_REQUIRE_WEBGPU === '1' && gpu.device !== 'webgpu') {
    throw new Error(`WEFT_REQUIRE_WEBGPU=1 but WebGPU is not in use: ${gpu.whyNotWebGpu}`);
  }
}
