// Benchmark: full training steps (zero grads, forward, backward, clip, AdamW) of weft configs,
// printing ms/step, tokens/s, achieved GFLOP/s and peak memory; when a python3 with torch is on
// the machine, the same model and batch in PyTorch (1 thread and all cores), in the same run.
//
// With --workers 1,2 it instead times whole data-parallel steps (coordinator + N worker threads,
// exact all-reduce) on tinyshakespeare tokenized to the config's vocabulary.
//
// usage: npm run bench:step -- [--config configs/bench-s.json ...] [--steps N] [--warmup N] [--no-torch]
//                              [--workers 1,2]

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadDataset } from '../src/data/dataset.ts';
import { prepareDataset } from '../src/data/prepare.ts';
import { trainWithThreads } from '../src/dist/launch.ts';
import { GPT2 } from '../src/model/gpt2.ts';
import { trainingFlops } from '../src/model/layout.ts';
import { AdamW } from '../src/train/adamw.ts';
import type { RunConfig } from '../src/train/config.ts';
import { loadRunConfig, sequenceLength } from '../src/train/config.ts';
import { trainStep } from '../src/train/step.ts';
import { Rng } from '../src/util/rng.ts';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    config: { type: 'string', multiple: true },
    steps: { type: 'string', default: '1' },
    warmup: { type: 'string', default: '0' },
    'torch-steps': { type: 'string', default: '3' },
    'no-torch': { type: 'boolean', default: false },
    workers: { type: 'string' },
  },
});
const configs = values.config ?? [
  join(root, 'configs/bench-s.json'),
  join(root, 'configs/bench-m.json'),
];
const steps = Number(values.steps);
const warmup = Number(values.warmup);

interface Row {
  impl: string;
  msPerStep: number;
  tokensPerSec: number;
  gflops: number;
  peakRssMiB: number;
}

function benchWeft(cfg: RunConfig): Row {
  const B = cfg.batchSize;
  const T = sequenceLength(cfg);
  const model = GPT2.init(cfg, cfg.seed);
  const optimizer = new AdamW(model.layout, cfg);
  const rng = new Rng(cfg.seed, 1);
  const tokens = () => Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
  const batch = { idx: tokens(), targets: tokens(), B, T };
  let peak = process.memoryUsage().rss;
  for (let i = 0; i < warmup; i++) trainStep(model, optimizer, batch, 1e-4, cfg.gradClip);
  const start = performance.now();
  for (let i = 0; i < steps; i++) {
    trainStep(model, optimizer, batch, 1e-4, cfg.gradClip);
    peak = Math.max(peak, process.memoryUsage().rss);
  }
  const ms = (performance.now() - start) / steps;
  return {
    impl: 'weft reference (1 thread)',
    msPerStep: ms,
    tokensPerSec: (B * T * 1000) / ms,
    gflops: trainingFlops(cfg, B, T) / ms / 1e6,
    peakRssMiB: peak / 2 ** 20,
  };
}

/** A python3 that can import torch: the one on PATH, else Debian's. */
function findTorchPython(): string | null {
  for (const python of ['python3', '/usr/bin/python3']) {
    const probe = spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
    if (probe.status === 0) return python;
  }
  return null;
}

function benchTorch(python: string, cfg: RunConfig, threads: number): Row | null {
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
  ];
  const env = {
    ...process.env,
    OPENBLAS_NUM_THREADS: String(threads),
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
  return { impl: `PyTorch ${r.torch} (${threads} thread${threads > 1 ? 's' : ''})`, ...r, gflops };
}

/** One line per row; later rows show their ratio to the first (weft/torch, or the speed-up). */
function print(rows: Row[], ratioOf: 'weft/torch' | 'speed-up' = 'weft/torch'): void {
  const first = rows[0];
  for (const r of rows) {
    const value =
      ratioOf === 'weft/torch'
        ? first.tokensPerSec / r.tokensPerSec
        : r.tokensPerSec / first.tokensPerSec;
    const ratio =
      r === first ? '' : `  ${ratioOf} ${value.toFixed(ratioOf === 'weft/torch' ? 4 : 2)}x`;
    console.log(
      `  ${r.impl.padEnd(28)} ${r.msPerStep.toFixed(0).padStart(8)} ms/step ${r.tokensPerSec.toFixed(1).padStart(9)} tok/s ` +
        `${r.gflops.toFixed(2).padStart(7)} GFLOP/s  peak RSS ${r.peakRssMiB.toFixed(0)} MiB${ratio}`,
    );
  }
}

/** Tokens/s of data-parallel training with `workers` threads (steps after the warm-up ones). */
async function benchWorkers(cfg: RunConfig, workers: number): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-'));
  prepareDataset(join(root, 'data/tinyshakespeare.txt'), join(dir, 'ds'), {
    tokenizer: `bpe:${cfg.vocabSize - 3}`,
    valFraction: 0,
  });
  const dataset = loadDataset(join(dir, 'ds'));
  const times: number[] = [];
  let last = performance.now();
  await trainWithThreads(
    { ...cfg, steps: warmup + steps, evalEvery: 0 },
    dataset,
    join(dir, 'run'),
    { workers },
    {
      onStep: () => {
        times.push(performance.now() - last);
        last = performance.now();
      },
    },
  ).result;
  rmSync(dir, { recursive: true, force: true });
  const timed = times.slice(warmup);
  const ms = timed.reduce((a, b) => a + b, 0) / timed.length;
  const T = sequenceLength(cfg);
  return {
    impl: `weft ${workers} worker thread${workers > 1 ? 's' : ''}`,
    msPerStep: ms,
    tokensPerSec: (cfg.batchSize * T * 1000) / ms,
    gflops: trainingFlops(cfg, cfg.batchSize, T) / ms / 1e6,
    peakRssMiB: process.memoryUsage().rss / 2 ** 20,
  };
}

if (values.workers) {
  for (const path of configs) {
    const cfg = loadRunConfig(path);
    console.log(
      `${cfg.name}: data-parallel steps, ${warmup} warm-up + ${steps} timed (first step includes thread start-up unless warmed up)`,
    );
    const rows: Row[] = [];
    for (const n of values.workers.split(',').map(Number)) rows.push(await benchWorkers(cfg, n));
    print(rows, 'speed-up');
  }
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
  const rows = [benchWeft(cfg)];
  if (python) {
    for (const threads of [...new Set([1, availableParallelism()])]) {
      const row = benchTorch(python, cfg, threads);
      if (row) rows.push(row);
    }
  }
  print(rows);
}
