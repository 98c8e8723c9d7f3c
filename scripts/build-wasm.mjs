// Builds the wasm backend's kernels from AssemblyScript (src/kernels/wasm/assembly/) into
// src/kernels/wasm/build/: kernels.wasm (SIMD) and kernels-fma.wasm (the same source with relaxed
// SIMD enabled, so its products use fused multiply-add: assembly/madd.ts). Runs on `npm ci` (the
// prepare script); nothing binary is committed. SIMD and threads (shared memory) are enabled; the
// memory is imported, so every thread of the pool instantiates the module over the same
// WebAssembly.Memory.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'src/kernels/wasm/build');
mkdirSync(outDir, { recursive: true });
for (const [file, features] of [
  ['kernels.wasm', []],
  ['kernels-fma.wasm', ['--enable', 'relaxed-simd']],
]) {
  const out = join(outDir, file);
  const { error, stderr } = await asc.main([
    join(root, 'src/kernels/wasm/assembly/index.ts'),
    '--outFile',
    out,
    '--optimizeLevel',
    '3',
    '--shrinkLevel',
    '0',
    '--noAssert',
    '--runtime',
    'stub',
    '--enable',
    'simd',
    '--enable',
    'threads',
    ...features,
    '--importMemory',
    '--sharedMemory',
    '--initialMemory',
    '16',
    '--maximumMemory',
    '65536',
  ]);
  if (error) {
    console.error(stderr.toString());
    console.error(`build-wasm: ${error.message}`);
    process.exit(1);
  }
  console.log(`build-wasm: wrote ${out}`);
}
