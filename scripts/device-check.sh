#!/usr/bin/env bash
# The gpu backend on a GPU machine, in under 5 minutes: installs what it needs (from .device/ as
# written by scripts/device-pack.sh where there is no registry, else npm ci), shows the GPU and the
# WebGPU adapter Dawn finds, runs the gpu backend's tests requiring WebGPU (kernel suite, PyTorch
# fixtures, WGSL), then its benchmarks: the products of a training step in GFLOP/s next to PyTorch
# on CUDA, and training tokens/s on configs/bench-m.json next to PyTorch on CUDA and to wasm.
# Output goes to stdout and, where $OUT is set, to $OUT/device-check.log.
set -uo pipefail
# (no npm on such a machine: node runs vitest and tsx from node_modules directly)
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp}/device-check.log
exec > >(tee "$LOG") 2>&1
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

step install
if ! command -v node >/dev/null; then
  [ -f .device/node.tar.xz ] || { echo "no node and no .device/node.tar.xz (run scripts/device-pack.sh)"; exit 1; }
  tar -xJf .device/node.tar.xz -C /usr/local/bin
fi
node --version
if [ ! -d node_modules/gpu.js ]; then
  if [ -f .device/modules.tar.xz ]; then tar -xJf .device/modules.tar.xz; else npm ci --no-audit --no-fund; fi
fi
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .device/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
  ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; break; fi
done
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"

step GPU and WebGPU adapter
nvidia-smi -L || true
node --input-type=module -e "
import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const adapter = await create([]).requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) { console.log('no WebGPU adapter'); process.exit(1); }
const i = adapter.info ?? {};
console.log('WebGPU adapter:', i.vendor, i.architecture, i.description, 'maxStorageBufferBindingSize', adapter.limits.maxStorageBufferBindingSize);
process.exit(0);
"
ADAPTER=$?

step gpu backend tests on WebGPU
WEFT_REQUIRE_WEBGPU=$([ $ADAPTER = 0 ] && echo 1 || echo 0) timeout 100 node node_modules/vitest/vitest.mjs run \
  tests/kernels/gpu-wgsl.test.ts tests/kernels/kernels.test.ts tests/model/gpt2.fixtures.test.ts \
  tests/model/decode.test.ts -t gpu
TESTS=$?

step "matmul GFLOP/s (gpu backend vs PyTorch CUDA fp32)"
timeout 60 node node_modules/tsx/dist/cli.mjs scripts/bench-matmul.ts --backend wasm,gpu --repeats 3

step "training tokens/s on bench-m (gpu and wasm backends vs PyTorch CUDA)"
timeout 90 node node_modules/tsx/dist/cli.mjs scripts/bench-step.ts --config configs/bench-m.json --backend gpu,wasm \
  --threads "$(nproc)" --torch-steps 10 --torch-device cuda

step done
echo "adapter: $([ $ADAPTER = 0 ] && echo found || echo missing); tests exit code: $TESTS"
exit $TESTS
