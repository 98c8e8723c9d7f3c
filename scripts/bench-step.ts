// Benchmark: full training steps (zero grads, forward, backward, clip, AdamW) of weft configs on
// each backend and thread count, printing ms/step, tokens/s, achieved GFLOP/s, peak RSS next to
// the theoretical size of params + grads + AdamW m + v + activations; when a python3 with torch is
// on the machine, the same model and batch in PyTorch (1 thread and all cores), in the same run.
// Each weft row runs in a child process of its own, so its peak RSS is its own.
//
// With --workers 1,2 it instead times whole data-parallel steps (coordinator + N workers, exact
// all-reduce) on tinyshakespeare tokenized to the config's vocabulary, and splits each step as the
// workers measured it (metrics.jsonl's "worker" records): compute, the all-reduce's exposed part,
// its part hidden behind the backward pass, and the rest. --transport threads (default) runs
// worker threads of this process (they reduce through shared memory); --transport ws runs worker
// processes over loopback WebSocket (the ring), each count with the overlap off, then on.
//
// By default it times wasm and, where it works, wasm-fma (fused multiply-add), each against the
// other at the same thread count too, and blas (OpenBLAS products) where libopenblas is installed.
// PyTorch runs at each thread count and in its fastest CPU setting here (1 thread of its own,
// OpenBLAS on all cores); every weft row is also given as a ratio to the fastest PyTorch row.
//
// With --json FILE it also writes the measured rows there (Row[] with their config's name; a
// PyTorch row's label names its configuration); bench-compute reads them.
//
// usage: npm run bench:step -- [--config configs/bench-s.json ...] [--backend wasm,reference]
//                              [--threads 1,2] [--steps N] [--warmup N] [--no-torch] [--json FILE]
//                              [--workers 1,2 [--transport threads|ws]]
//                              [--torch-device cpu|cuda]   (cuda: the anchor for --backend gpu)

import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { serveCoordinator, trainWithThreads } from '../src/distributed/launch.ts';
import { GPT2 } from '../src/model/gpt2.ts';
import type { BackendName } from '../src/kernels/backend.ts';
import { blasAvailable } from '../src/kernels/blas/backend.ts';
import { createBackend, defaultBackendName, parseBackendName } from '../src/kernels/select.ts';
import { actGradLayout, actLayout, trainingFlops } from '../src/model/layout.ts';
import { AdamW } from '../src/train/adamw.ts';
import type { WorkerMetrics } from '../src/train/metrics.ts';
import { benchDataset, workerProcesses, workerRecords } from './bench-workers.ts';
import type { RunConfig } from '../src/train/config.ts';
import { loadRunConfig, sequenceLength } from '../src/train/config.ts';
import { DEFAULT_EXACT_BITS, TrainingStep, runStep } from '../src/train/step.ts';
import { Rng } from '../src/util/rng.ts';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    config: { type: 'string', multiple: true },
    steps: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '1' }, // as PyTorch's side: V8 and the wasm tiers warm up
    'torch-steps': { type: 'string', default: '3' },
    'no-torch': { type: 'boolean', default: false },
    'torch-device': { type: 'string', default: 'cpu' },
    workers: { type: 'string' },
    transport: { type: 'string', default: 'threads' },
    json: { type: 'string' },
    // internal: one weft row (CONFIG_PATH|BACKEND|THREADS) in this process, printed as JSON
    row: { type: 'string' },
    backend: {
      type: 'string',
      default: [
        ...new Set(['wasm', defaultBackendName(), ...(blasAvailable() ? ['blas'] : [])]),
      ].join(','),
    },
    threads: { type: 'string', default: `1,${availableParallelism()}` },
  },
});
const configs = values.config ?? [
  join(root, 'configs/bench-s.json'),
  join(root, 'configs/bench-m.json'),
];
const steps = Number(values.steps);
const warmup = Number(values.warmup);

export interface Row {
  impl: string;
  /** The weft backend, or 'PyTorch' (rows of --workers have none). */
  backend?: string;
  /** PyTorch rows: the configuration, e.g. "PyTorch 2.1, 1 torch thread, OPENBLAS_NUM_THREADS=2". */
  label?: string;
  threads: number;
  msPerStep: number;
  tokensPerSec: number;
  gflops: number;
  peakRssMiB: number;
  /** Bytes of params + grads + m + v + activations (weft rows). */
  theoryMiB?: number;
  /** Data-parallel rows: the workers' mean step split (ms). */
  split?: { computeMs: number; commMs: number; overlapMs: number; otherMs: number };
}

async function benchWeft(cfg: RunConfig, backendName: BackendName, threads: number): Promise<Row> {
  const B = cfg.batchSize;
  const T = sequenceLength(cfg);
  const backend = createBackend(backendName, { threads });
  const model = GPT2.init(cfg, cfg.seed, { backend });
  const optimizer = new AdamW(model.layout, cfg, backend);
  // the production step (train/step.ts) on one worker: the whole batch as one shard
  const step = new TrainingStep(model, optimizer, {
    bits: DEFAULT_EXACT_BITS,
    shards: 1,
    gradClip: cfg.gradClip,
  });
  const rng = new Rng(cfg.seed, 1);
  const tokens = () => Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
  const batch = { idx: tokens(), targets: tokens(), B, T };
  let peak = process.memoryUsage().rss;
  for (let i = 0; i < warmup; i++) await runStep(step, [batch], 1e-4);
  const start = performance.now();
  for (let i = 0; i < steps; i++) {
    await runStep(step, [batch], 1e-4);
    peak = Math.max(peak, process.memoryUsage().rss);
  }
  const ms = (performance.now() - start) / steps;
  void backend.dispose?.();
  const acts = actLayout(cfg, B, T).total + actGradLayout(cfg, B, T).total;
  return {
    impl: `weft ${backendName}`,
    backend: backendName,
    threads,
    msPerStep: ms,
    tokensPerSec: (B * T * 1000) / ms,
    gflops: trainingFlops(cfg, B, T) / ms / 1e6,
    peakRssMiB: peak / 2 ** 20,
    // params, grads, m, v (fp32), the exact accumulator (fp64), activations
    theoryMiB: (4 * (6 * model.paramCount + acts)) / 2 ** 20,
  };
}

/**
 * benchWeft in a child process of its own, so each row's peak RSS is its own (a backend's wasm
 * memory lives until garbage-collected, and would count in the next row's figure).
 */
function benchWeftApart(path: string, backendName: BackendName, threads: number): Row {
  const args = [...process.execArgv, fileURLToPath(import.meta.url)];
  args.push('--row', `${path}|${backendName}|${threads}`, '--steps', String(steps));
  args.push('--warmup', String(warmup));
  const run = spawnSync(process.execPath, args, { encoding: 'utf8' });
  if (run.status !== 0)
    throw new Error(`bench row ${backendName} x${threads} failed: ${run.stderr}`);
  return JSON.parse(run.stdout.trim().split('\n').pop() as string) as Row;
}

if (values.row) {
  const [path, name, threads] = values.row.split('|');
  console.log(
    JSON.stringify(await benchWeft(loadRunConfig(path), parseBackendName(name), Number(threads))),
  );
  process.exit(0);
}

/** A python3 that can import torch: the one on PATH, else Debian's. */
function findTorchPython(): string | null {
  for (const python of ['python3', '/usr/bin/python3']) {
    const probe = spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
    if (probe.status === 0) return python;
  }
  return null;
}

/** PyTorch with `threads` threads of its own and `blasThreads` in OpenBLAS (its products). */
function benchTorch(
  python: string,
  cfg: RunConfig,
  threads: number,
  blasThreads = threads,
): Row | null {
  const json = JSON.stringify({ ...cfg, seqLen: sequenceLength(cfg) });
  const script = join(root, 'scripts/bench_step_torch.py');
  const args = [
    script,
    json,
    '--steps',
    values['torch-steps'],
    '--warmup',
    '1',
    '--threads',
    String(threads),
    '--device',
    values['torch-device'],
  ];
  const env = {
    ...process.env,
    OPENBLAS_NUM_THREADS: String(blasThreads),
    OMP_NUM_THREADS: String(threads),
  };
  const run = spawnSync(python, args, { env, encoding: 'utf8' });
  if (run.status !== 0) {
    console.log(`  PyTorch (${threads} threads) failed: ${run.stderr.trim().split('\n').pop()}`);
    return null;
  }
  const r = JSON.parse(run.stdout.trim().split('\n').pop() as string) as Omit<
    Row,
    'impl' | 'gflops'
  > & { torch: string };
  const gflops = trainingFlops(cfg, cfg.batchSize, sequenceLength(cfg)) / r.msPerStep / 1e6;
  const blas = blasThreads === threads ? '' : ` + OpenBLAS x${blasThreads}`;
  const label = `PyTorch ${r.torch}, ${threads} torch thread${threads > 1 ? 's' : ''}, OPENBLAS_NUM_THREADS=${blasThreads}`;
  return { impl: `PyTorch ${r.torch}${blas}`, backend: 'PyTorch', label, ...r, threads, gflops };
}

/** One line per row: weft rows against PyTorch at the same thread count; worker rows as speed-up. */
function print(rows: Row[], mode: 'torch' | 'speed-up' = 'torch'): void {
  for (const r of rows) {
    let ratio = '';
    if (mode === 'speed-up' && r !== rows[0])
      ratio = `  speed-up ${(r.tokensPerSec / rows[0].tokensPerSec).toFixed(2)}x`;
    if (mode === 'torch' && r.impl.startsWith('weft')) {
      const torch = rows.find((t) => t.impl.startsWith('PyTorch') && t.threads === r.threads);
      if (torch)
        ratio = `  ${(r.tokensPerSec / torch.tokensPerSec).toFixed(2)}x PyTorch at ${r.threads} thread(s)`;
      const wasm = rows.find((t) => t.impl === 'weft wasm' && t.threads === r.threads);
      if (r.impl === 'weft wasm-fma' && wasm)
        ratio += `  ${(r.tokensPerSec / wasm.tokensPerSec).toFixed(2)}x wasm`;
      // and against PyTorch's fastest row, whatever its threads (the blas backend's goal: 0.8x)
      const best = Math.max(
        ...rows.filter((t) => t.impl.startsWith('PyTorch')).map((t) => t.tokensPerSec),
      );
      if (best > 0) ratio += `  ${(r.tokensPerSec / best).toFixed(2)}x PyTorch's best`;
    }
    const theory = r.theoryMiB === undefined ? '' : ` (theory ${r.theoryMiB.toFixed(0)} MiB)`;
    const name = r.split ? r.impl : `${r.impl} (${r.threads} thread${r.threads > 1 ? 's' : ''})`;
    const split = r.split
      ? `  compute ${r.split.computeMs.toFixed(0)}, comm exposed ${r.split.commMs.toFixed(0)}` +
        ` (hidden ${r.split.overlapMs.toFixed(0)}), other ${r.split.otherMs.toFixed(0)} ms`
      : `  peak RSS ${r.peakRssMiB.toFixed(0)} MiB${theory}`;
    console.log(
      `  ${name.padEnd(32)} ${r.msPerStep.toFixed(0).padStart(8)} ms/step ${r.tokensPerSec.toFixed(1).padStart(9)} tok/s ` +
        `${r.gflops.toFixed(2).padStart(7)} GFLOP/s${split}${ratio}`,
    );
  }
  const torch = rows.filter((t) => t.label);
  const best = torch.find((t) => t.tokensPerSec === Math.max(...torch.map((o) => o.tokensPerSec)));
  if (mode === 'torch' && best)
    console.log(`  PyTorch's best here (of ${torch.length}): ${best.label}`);
}

/** The rows measured so far, with their config's name: what --json writes at the end. */
const measured: (Row & { config: string })[] = [];
function writeJson(): void {
  if (values.json) writeFileSync(values.json, JSON.stringify(measured, null, 2));
}

/** The workers' mean split of the timed steps, from the run's metrics.jsonl "worker" records. */
function splitOf(runDir: string): NonNullable<Row['split']> {
  const records = workerRecords(runDir, warmup);
  const mean = (f: (m: WorkerMetrics) => number) =>
    records.reduce((a, m) => a + f(m), 0) / records.length;
  return {
    computeMs: mean((m) => m.computeMs),
    commMs: mean((m) => m.commMs),
    overlapMs: mean((m) => m.overlapMs),
    otherMs: mean((m) => m.waitMs + m.dataMs + m.optimMs),
  };
}

/**
 * Tokens/s of data-parallel training with `workers` workers (steps after the warm-up ones):
 * threads of this process, or (`overlap` given) processes over loopback WebSocket.
 */
async function benchWorkers(cfg: RunConfig, workers: number, overlap?: boolean): Promise<Row> {
  const { dir, dataset } = benchDataset(cfg);
  const times: number[] = [];
  let last = performance.now();
  const hooks = {
    onStep: () => {
      times.push(performance.now() - last);
      last = performance.now();
    },
  };
  const runConfig = { ...cfg, steps: warmup + steps, evalEvery: 0 };
  const runDir = join(dir, 'run');
  if (overlap === undefined) {
    await trainWithThreads(runConfig, dataset, runDir, { workers }, hooks).result;
  } else {
    let address = '';
    const job = await serveCoordinator(
      runConfig,
      dataset,
      runDir,
      { listen: '127.0.0.1:0', workers, secret: null, onListening: (a) => (address = a) },
      hooks,
    );
    const exited = workerProcesses(address, workers, overlap ? [] : ['--no-overlap']);
    await job.result;
    await exited;
  }
  const split = splitOf(runDir);
  rmSync(dir, { recursive: true, force: true });
  const timed = times.slice(warmup);
  const ms = timed.reduce((a, b) => a + b, 0) / timed.length;
  const T = sequenceLength(cfg);
  const how =
    overlap === undefined
      ? `thread${workers > 1 ? 's' : ''}`
      : workers === 1
        ? 'process'
        : `processes, overlap ${overlap ? 'on' : 'off'}`;
  return {
    impl: `weft, ${workers} worker ${how}`,
    threads: 1,
    msPerStep: ms,
    tokensPerSec: (cfg.batchSize * T * 1000) / ms,
    gflops: trainingFlops(cfg, cfg.batchSize, T) / ms / 1e6,
    peakRssMiB: process.memoryUsage().rss / 2 ** 20,
    split,
  };
}

if (values.workers) {
  for (const path of configs) {
    const cfg = loadRunConfig(path);
    console.log(
      `${cfg.name}: data-parallel steps, ${warmup} warm-up + ${steps} timed (first step includes thread start-up unless warmed up)`,
    );
    const rows: Row[] = [];
    for (const n of values.workers.split(',').map(Number)) {
      if (values.transport === 'threads') rows.push(await benchWorkers(cfg, n));
      else if (values.transport !== 'ws') throw new Error('--transport is threads or ws');
      else if (n === 1) rows.push(await benchWorkers(cfg, n, true));
      else for (const overlap of [false, true]) rows.push(await benchWorkers(cfg, n, overlap));
    }
    print(rows, 'speed-up');
    measured.push(...rows.map((r) => ({ config: cfg.name, ...r })));
  }
  writeJson();
  process.exit(0);
}

const python = values['no-torch'] ? null : findTorchPython();
if (!values['no-torch'] && !python)
  console.log('PyTorch not found (apt-get install python3-torch); weft only');
for (const path of configs) {
  const cfg = loadRunConfig(path);
  const T = sequenceLength(cfg);
  const gflop = trainingFlops(cfg, cfg.batchSize, T) / 1e9;
  console.log(
    `${cfg.name}: L=${cfg.nLayer} H=${cfg.nHead} C=${cfg.nEmbd} V=${cfg.vocabSize} B=${cfg.batchSize} T=${T}, ` +
      `${gflop.toFixed(1)} GFLOP/step; weft: ${warmup} warm-up + ${steps} timed step(s)`,
  );
  const threadCounts = [...new Set(values.threads.split(',').map(Number))];
  const rows: Row[] = [];
  for (const name of values.backend.split(',').map(parseBackendName)) {
    // the reference kernels are single-threaded
    for (const threads of name === 'reference' ? [1] : threadCounts)
      rows.push(benchWeftApart(path, name, threads));
  }
  if (python) {
    for (const threads of threadCounts) {
      const row = benchTorch(python, cfg, threads);
      if (row) rows.push(row);
    }
    // PyTorch's fastest CPU configuration on small machines: one thread of its own (its
    // elementwise kernels) and OpenBLAS on every core for the products
    const cores = Math.max(...threadCounts);
    if (cores > 1 && values['torch-device'] === 'cpu') {
      const row = benchTorch(python, cfg, 1, cores);
      if (row) rows.push(row);
    }
  }
  print(rows);
  measured.push(...rows.map((r) => ({ config: cfg.name, ...r })));
}
writeJson();
process.exit(0);
