#!/usr/bin/env bash
# Packs what scripts/device-check.sh needs on a GPU machine that cannot reach a registry: this
# machine's node binary, the npm dependencies the gpu tests and benchmarks load (no build tools,
# linters or other platforms' Dawn builds), the built wasm kernels, and Debian's Vulkan loader.
# Writes .device/ (git-ignored; about 45 MB). Run it here, then carry .device to the GPU machine:
#   scripts/device-pack.sh && <device run> scripts/device-check.sh   (carry: .device)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f src/kernels/wasm/build/kernels.wasm ] || npm run build:wasm
rm -rf .device && mkdir -p .device
tar -C "$(dirname "$(readlink -f "$(command -v node)")")" -cf - node | xz -T0 -6 > .device/node.tar.xz
tar -cf - \
  --exclude='node_modules/binaryen' --exclude='node_modules/assemblyscript' \
  --exclude='node_modules/gl' --exclude='node_modules/typescript' \
  --exclude='node_modules/@typescript-eslint' --exclude='node_modules/eslint*' \
  --exclude='node_modules/@eslint*' --exclude='node_modules/prettier' \
  --exclude='node_modules/node-gyp' --exclude='node_modules/@types' \
  --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' \
  node_modules src/kernels/wasm/build | xz -T0 -6 > .device/modules.tar.xz
(cd .device && apt-get download libvulkan1 >/dev/null 2>&1) ||
  echo "note: could not download libvulkan1; the GPU machine must have a Vulkan loader"
du -sh .device/*
