// Benchmark: the matrix products of a training step (x*W, dY*W^T, X^T*dY for every layer and the
// tied head) at the shapes bench-s and bench-m train with (one shard = one sequence of T rows),
// on the wasm and wasm-fma backends (unfused and fused multiply-add) with 1 thread and all
// threads, next to numpy (OpenBLAS) with 1 thread and all threads in the same run. Reports GFLOP/s
// over all the step's products. wasm-fma is left out, with the reason, where it does not work; so
// is blas (OpenBLAS called on the wasm memory) where libopenblas is not installed.
//
// With --backend gpu it also times the gpu backend (its device: WebGPU on a GPU, else gpu.js's
// CPU mode) next to PyTorch on CUDA when a python3 with a CUDA torch is there.
//
// With --json FILE it also writes the measured rows there (ProductRow[]; bench-compute reads them).
//
// usage: npm run bench:matmul -- [--config configs/bench-s.json ...] [--repeats 3] [--backend wasm,gpu]
//                                [--json FILE]

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { createBlasBackend } from '../src/kernels/blas/backend.ts';
import { createGpuBackend } from '../src/kernels/gpu/backend.ts';
import type { WasmVariant } from '../src/kernels/wasm/backend.ts';
import { WasmBackend } from '../src/kernels/wasm/backend.ts';
import { whyUnavailable } from '../src/kernels/select.ts';
import { loadRunConfig, sequenceLength } from '../src/train/config.ts';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    config: { type: 'string', multiple: true },
    repeats: { type: 'string', default: '3' },
    backend: { type: 'string', default: 'wasm' },
    json: { type: 'string' },
  },
});
const configs = values.config ?? [
  join(root, 'configs/bench-s.json'),
  join(root, 'configs/bench-m.json'),
];
const repeats = Number(values.repeats);
const cores = availableParallelism();

/** One measured row, as --json writes it: name is the printed label (an anchor's configuration). */
export interface ProductRow {
  config: string;
  name: string;
  /** A weft backend, or the anchor: 'numpy/OpenBLAS', 'PyTorch CUDA'. */
  backend: string;
  threads: number;
  gflops: number | null;
}

/** [kind, M, K, J]: C (M x J) = A (M x K) B (K x J); kind says how A and B are laid out. */
type Shape = ['nn' | 'nt' | 'tn', number, number, number];

/** The products of one training step of one sequence (per layer x L, plus the head). */
function stepShapes(T: number, C: number, V: number, L: number): Shape[] {
  const layer: Shape[] = [];
  for (const [inp, out] of [
    [C, 3 * C],
    [C, C],
    [C, 4 * C],
    [4 * C, C],
  ]) {
    layer.push(['nn', T, inp, out], ['nt', T, out, inp], ['tn', inp, T, out]);
  }
  return [
    ...Array.from({ length: L }, () => layer).flat(),
    ['nt', T, C, V],
    ['nn', T, V, C],
    ['tn', V, T, C],
  ];
}

const flopsOf = (shapes: Shape[]) => shapes.reduce((n, [, M, K, J]) => n + 2 * M * K * J, 0);

/** GFLOP/s of the wasm backend's products (or the gpu backend's, on its device). */
function benchProducts(shapes: Shape[], backend: WasmBackend): number {
  const buffers = shapes.map(([kind, M, K, J]) => {
    const a = backend.allocF32(M * K).map(() => Math.random() - 0.5);
    const b = backend.allocF32(K * J).map(() => Math.random() - 0.5);
    const c = backend.allocF32(M * J);
    const A = backend.allocF32(M * K);
    const B = backend.allocF32(K * J);
    A.set(a);
    B.set(b);
    return { kind, M, K, J, A, B, C: c };
  });
  const run = () => {
    for (const { kind, M, K, J, A, B, C } of buffers)
      backend.matmul({ kind, c: C, a: A, b: B, M, K, J, acc: kind === 'tn' });
  };
  run();
  const start = performance.now();
  for (let r = 0; r < repeats; r++) run();
  const seconds = (performance.now() - start) / 1000 / repeats;
  return flopsOf(shapes) / seconds / 1e9;
}

function benchWasm(shapes: Shape[], threads: number, variant: WasmVariant = 'simd'): number {
  const backend = new WasmBackend({ threads, variant });
  const gflops = benchProducts(shapes, backend);
  void backend.dispose();
  return gflops;
}

/** GFLOP/s of the blas backend's products (OpenBLAS sgemm on the wasm memory, pinned threads). */
function benchBlas(shapes: Shape[], threads: number): number {
  const backend = createBlasBackend({ threads });
  const gflops = benchProducts(shapes, backend);
  void backend.dispose();
  return gflops;
}

/** [label, GFLOP/s] of the gpu backend's products. */
function benchGpu(shapes: Shape[]): [string, number] {
  const backend = createGpuBackend({ threads: cores });
  const gflops = benchProducts(shapes, backend);
  void backend.dispose();
  return [`gpu (${backend.device})`, gflops];
}

/** The same products in PyTorch on CUDA (fp32, TF32 off), synchronised; null without one. */
function benchTorchCuda(shapes: Shape[]): number | null {
  const script = `
import json, sys, time
import torch
assert torch.cuda.is_available()
torch.backends.cuda.matmul.allow_tf32 = False
shapes = json.loads(sys.argv[1]); repeats = int(sys.argv[2])
ops = []
for kind, M, K, J in shapes:
    a = torch.randn((K, M) if kind == 'tn' else (M, K), device='cuda')
    b = torch.randn((J, K) if kind == 'nt' else (K, J), device='cuda')
    ops.append((kind, a, b))
def run():
    for kind, a, b in ops:
        (a @ b) if kind == 'nn' else (a @ b.t()) if kind == 'nt' else (a.t() @ b)
run(); torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(repeats): run()
torch.cuda.synchronize()
print((time.perf_counter() - t) / repeats)
`;
  return runPython(script, shapes, {});
}

function runPython(script: string, shapes: Shape[], env: Record<string, string>): number | null {
  for (const python of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(python, ['-c', script, JSON.stringify(shapes), String(repeats)], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });
    if (r.status === 0) return flopsOf(shapes) / Number(r.stdout.trim()) / 1e9;
  }
  return null;
}

function benchNumpy(shapes: Shape[], threads: number): number | null {
  const script = `
import json, sys, time
import numpy as np
shapes = json.loads(sys.argv[1]); repeats = int(sys.argv[2])
rng = np.random.default_rng(0)
ops = []
for kind, M, K, J in shapes:
    if kind == 'nn': a, b = rng.standard_normal((M, K), np.float32), rng.standard_normal((K, J), np.float32); ops.append(lambda a=a, b=b: a @ b)
    elif kind == 'nt': a, b = rng.standard_normal((M, K), np.float32), rng.standard_normal((J, K), np.float32); ops.append(lambda a=a, b=b: a @ b.T)
    else: a, b = rng.standard_normal((K, M), np.float32), rng.standard_normal((K, J), np.float32); ops.append(lambda a=a, b=b: a.T @ b)
for op in ops: op()
t = time.perf_counter()
for _ in range(repeats):
    for op in ops: op()
print((time.perf_counter() - t) / repeats)
`;
  return runPython(script, shapes, {
    OPENBLAS_NUM_THREADS: String(threads),
    OMP_NUM_THREADS: String(threads),
  });
}

const fmaWhy = whyUnavailable('wasm-fma');
if (fmaWhy) console.log(`wasm-fma left out: ${fmaWhy}`);
const blasWhy = whyUnavailable('blas');
if (blasWhy) console.log(`blas left out: ${blasWhy}`);
const measured: ProductRow[] = [];
for (const path of configs) {
  const cfg = loadRunConfig(path);
  const T = sequenceLength(cfg);
  const shapes = stepShapes(T, cfg.nEmbd, cfg.vocabSize, cfg.nLayer);
  console.log(
    `${cfg.name}: the ${shapes.length} products of one training step of one sequence (T=${T}, C=${cfg.nEmbd}, V=${cfg.vocabSize}), ${(flopsOf(shapes) / 1e9).toFixed(2)} GFLOP`,
  );
  // [name, GFLOP/s, backend, threads]
  const rows: [string, number | null, string, number][] = [];
  for (const threads of [1, cores]) {
    const label = `, ${threads} thread${threads > 1 ? 's' : ''}`;
    rows.push([`wasm${label}`, benchWasm(shapes, threads), 'wasm', threads]);
    if (!fmaWhy)
      rows.push([`wasm-fma${label}`, benchWasm(shapes, threads, 'fma'), 'wasm-fma', threads]);
    if (!blasWhy) rows.push([`blas${label}`, benchBlas(shapes, threads), 'blas', threads]);
  }
  const blas1 = benchNumpy(shapes, 1);
  rows.push(['numpy/OpenBLAS, 1 thread', blas1, 'numpy/OpenBLAS', 1]);
  rows.push([
    `numpy/OpenBLAS, ${cores} threads`,
    benchNumpy(shapes, cores),
    'numpy/OpenBLAS',
    cores,
  ]);
  if (values.backend.split(',').includes('gpu')) {
    rows.push([...benchGpu(shapes), 'gpu', cores]);
    rows.push(['PyTorch CUDA fp32', benchTorchCuda(shapes), 'PyTorch CUDA', 1]);
  }
  for (const [name, gflops, backend, threads] of rows)
    measured.push({ config: cfg.name, name, backend, threads, gflops });
  for (const [name, gflops, , threads] of rows) {
    if (gflops === null)
      console.log(
        `  ${name.padEnd(28)} not available (${name.startsWith('PyTorch') ? 'no CUDA torch here' : 'apt-get install python3-numpy libopenblas0-pthread'})`,
      );
    else {
      // a fused row also against the unfused one at its thread count
      const unfused =
        name.startsWith('wasm-fma') && rows.find(([n]) => n === name.slice(0, 4) + name.slice(8));
      const vsWasm = unfused && unfused[1] ? `  ${(gflops / unfused[1]).toFixed(2)}x wasm` : '';
      // and against numpy/OpenBLAS at its own thread count
      const anchor = rows.find(([, g, b, t]) => b === 'numpy/OpenBLAS' && t === threads && g)?.[1];
      const vsBlas = anchor ? `  ${(gflops / anchor).toFixed(2)}x OpenBLAS at ${threads}` : '';
      console.log(
        `  ${name.padEnd(28)} ${gflops.toFixed(1).padStart(7)} GFLOP/s${vsBlas}${vsWasm}`,
      );
    }
  }
}
if (values.json) writeFileSync(values.json, JSON.stringify(measured, null, 2));
process.exit(0);
