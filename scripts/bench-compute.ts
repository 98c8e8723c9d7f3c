// Benchmark: the compute goals in one table. Runs bench-matmul (the products of a training step)
// and bench-step (whole training steps) as child processes with --json, then prints one row per
// config, backend (wasm, wasm-fma, blas: those that run here) and thread count (1 and all cores):
// products GFLOP/s and their ratio to numpy/OpenBLAS at the same thread count, training tokens/s
// and their ratio to PyTorch's best configuration here (the fastest of its thread and
// OpenBLAS-thread settings); then a row per config naming the anchors' configurations and their
// figures, and the two goals per config: wasm-fma products >= 1.3x wasm at the same thread count,
// blas training steps >= 0.8x PyTorch's best. The children's own tables are not printed.
//
// usage: npm run bench:compute -- [--config configs/bench-s.json ...] [--steps N] [--repeats N]
//                                 [--no-torch] [--rounds N]   (each row's best of N invocations)

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BackendName } from '../src/kernels/backend.ts';
import { whyUnavailable } from '../src/kernels/select.ts';
import type { ProductRow } from './bench-matmul.ts';
import type { Row } from './bench-step.ts';

type StepRow = Row & { config: string };

const { values } = parseArgs({
  options: {
    config: { type: 'string', multiple: true },
    steps: { type: 'string' },
    repeats: { type: 'string' },
    'no-torch': { type: 'boolean', default: false },
    rounds: { type: 'string', default: '1' },
  },
});

const backends = (['wasm', 'wasm-fma', 'blas'] as BackendName[]).filter((name) => {
  const why = whyUnavailable(name);
  if (why) console.log(`${name} left out: ${why}`);
  return !why;
});

const dir = mkdtempSync(join(tmpdir(), 'weft-bench-compute-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

/** Runs scripts/NAME.ts (this process's tsx loader) with --json; the rows it wrote. */
function run<T>(name: string, args: string[]): T[] {
  const json = join(dir, `${name}.json`);
  const script = join(dirname(fileURLToPath(import.meta.url)), `${name}.ts`);
  args = [...(values.config ?? []).flatMap((c) => ['--config', c]), ...args, '--json', json];
  console.error(`running ${name} ${args.join(' ')}`);
  const child = spawnSync(process.execPath, [...process.execArgv, script, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (child.status !== 0) {
    console.log(child.stdout);
    throw new Error(`${name} failed (exit ${child.status})`);
  }
  return JSON.parse(readFileSync(json, 'utf8')) as T[];
}

/**
 * Each row's best over `rounds` invocations, weft's and the anchors' alike (on a shared machine a
 * row can catch a busy moment; the best of each side is the fair comparison).
 */
function best<T extends object>(
  rounds: T[][],
  key: (r: T) => string,
  value: (r: T) => number,
): T[] {
  const byKey = new Map<string, T>();
  for (const r of rounds.flat()) {
    const seen = byKey.get(key(r));
    if (!seen || value(r) > value(seen)) byKey.set(key(r), r);
  }
  return [...byKey.values()];
}

const rounds = Number(values.rounds);
const products = best(
  Array.from({ length: rounds }, () =>
    run<ProductRow>('bench-matmul', values.repeats ? ['--repeats', values.repeats] : []),
  ),
  (r) => `${r.config}|${r.name}`,
  (r) => r.gflops ?? 0,
);
const steps = best(
  Array.from({ length: rounds }, () =>
    run<StepRow>('bench-step', [
      '--backend',
      backends.join(','),
      ...(values.steps ? ['--steps', values.steps] : []),
      ...(values['no-torch'] ? ['--no-torch'] : []),
    ]),
  ),
  (r) => `${r.config}|${r.impl}|${r.threads}`,
  (r) => r.tokensPerSec,
);

const ratio = (a?: number | null, b?: number | null) => (a && b ? `${(a / b).toFixed(2)}x` : '-');
const num = (v: number | null | undefined, digits: number) =>
  v === null || v === undefined ? '-' : v.toFixed(digits);
const fastest = (rows: StepRow[]) =>
  rows.reduce<StepRow | undefined>(
    (a, r) => (a && a.tokensPerSec >= r.tokensPerSec ? a : r),
    undefined,
  );
const s = (threads: number) => `${threads} thread${threads > 1 ? 's' : ''}`;
const columns = [12, 9, 8, 15, 12, 11, 10, 16];
const line = (cells: string[]) =>
  console.log(
    cells.map((c, i) => (i < 3 ? c.padEnd(columns[i]) : c.padStart(columns[i]))).join(''),
  );

line([
  'config',
  'backend',
  'threads',
  'products GF/s',
  'x OpenBLAS',
  'step tok/s',
  'ms/step',
  'x PyTorch best',
]);
const configs = [...new Set([...products, ...steps].map((r) => r.config))];
const anchors: string[] = [];
const goals: string[] = [];
for (const config of configs) {
  const product = (backend: string, threads: number) =>
    products.find((r) => r.config === config && r.backend === backend && r.threads === threads);
  const step = (backend: string, threads: number) =>
    steps.find((r) => r.config === config && r.backend === backend && r.threads === threads);
  const torch = steps.filter((r) => r.config === config && r.backend === 'PyTorch');
  const best = fastest(torch);
  const threadCounts = [
    ...new Set(
      [...products, ...steps]
        .filter((r) => r.config === config && backends.includes(r.backend as BackendName))
        .map((r) => r.threads),
    ),
  ].sort((a, b) => a - b);
  for (const backend of backends) {
    for (const threads of threadCounts) {
      const p = product(backend, threads);
      const t = step(backend, threads);
      if (!p && !t) continue;
      line([
        config,
        backend,
        String(threads),
        num(p?.gflops, 1),
        ratio(p?.gflops, product('numpy/OpenBLAS', threads)?.gflops),
        num(t?.tokensPerSec, 1),
        num(t?.msPerStep, 0),
        ratio(t?.tokensPerSec, best?.tokensPerSec),
      ]);
    }
  }
  const numpy = products.filter((r) => r.config === config && r.backend === 'numpy/OpenBLAS');
  const torchBest = best
    ? `PyTorch's best of ${torch.length}: ${best.label}, ${best.tokensPerSec.toFixed(1)} tok/s, ${best.msPerStep.toFixed(0)} ms/step`
    : `PyTorch: not measured${values['no-torch'] ? ' (--no-torch)' : ' (see bench:step)'}`;
  anchors.push(
    `  ${config}: ${numpy.map((r) => `${r.name}: ${num(r.gflops, 1)} GFLOP/s`).join('; ')}; ${torchBest}`,
  );
  const fma = threadCounts.map(
    (n) => `${ratio(product('wasm-fma', n)?.gflops, product('wasm', n)?.gflops)} at ${s(n)}`,
  );
  const blas = fastest(steps.filter((r) => r.config === config && r.backend === 'blas'));
  goals.push(
    `  ${config}: wasm-fma/wasm products ${fma.join(', ')} (goal >= 1.3x); ` +
      `blas/PyTorch's best step ${ratio(blas?.tokensPerSec, best?.tokensPerSec)}` +
      `${blas ? ` at ${s(blas.threads)}` : ''} (goal >= 0.8x)`,
  );
}
console.log(`anchors (products: numpy/OpenBLAS at the same thread count; steps: PyTorch's best):`);
for (const a of anchors) console.log(a);
console.log('goals:');
for (const g of goals) console.log(g);
process.exit(0);
