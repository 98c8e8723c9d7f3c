// Benchmark: pipeline-parallel training (one replica of P stages, each stage a worker process
// over loopback WebSocket, so each has its own memory to measure) on tinyshakespeare tokenized to
// the config's vocabulary. For P = 1, 2, 4 it prints tokens/s; per worker its stage, its peak
// resident memory and the bytes of its parameters, gradients and AdamW moments (16 per
// parameter); the bubble measured (each stage's time waiting for a neighbour over its step's
// passes and waits, metrics.jsonl's worker records) next to (P-1)/(m+P-1); and the bytes sent per
// step between stages (each micro-batch's (B, T, C) activation forward and its gradient back,
// at every stage boundary).
//
// usage: npm run bench:pipeline -- [--config configs/bench-m.json ...] [--stages 1,2,4]
//                                  [--steps N] [--warmup N] [--schedule 1f1b|gpipe]

import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { serveCoordinator } from '../src/distributed/launch.ts';
import { bubbleFraction, partitionStages } from '../src/distributed/pipeline/partition.ts';
import type { RunConfig } from '../src/train/config.ts';
import { loadRunConfig, sequenceLength } from '../src/train/config.ts';
import { benchDataset, workerProcesses, workerRecords } from './bench-workers.ts';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    config: { type: 'string', multiple: true },
    stages: { type: 'string', default: '1,2,4' },
    steps: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '1' },
    schedule: { type: 'string', default: '1f1b' },
  },
});
const configs = values.config ?? [
  join(root, 'configs/bench-m.json'),
  join(root, 'configs/bench-l.json'),
];
const steps = Number(values.steps);
const warmup = Number(values.warmup);
const MiB = 2 ** 20;

async function benchPipeline(cfg: RunConfig, P: number): Promise<void> {
  const { dir, dataset } = benchDataset(cfg);
  const config = {
    ...cfg,
    steps: warmup + steps,
    evalEvery: 0,
    pipelineStages: P,
    pipelineSchedule: values.schedule,
  };
  const times: number[] = [];
  let last = performance.now();
  let address = '';
  const stageOf = new Map<string, number>(); // worker name -> stage
  const runDir = join(dir, 'run');
  const job = await serveCoordinator(
    config,
    dataset,
    runDir,
    { listen: '127.0.0.1:0', workers: P, secret: null, onListening: (a) => (address = a) },
    {
      log: (line) => {
        const joined = /^worker (\S+) joined as rank \d+(?:, pipeline stage (\d+))?/.exec(line);
        if (joined) stageOf.set(joined[1], Number(joined[2] ?? 0));
      },
      onStep: () => {
        times.push(performance.now() - last);
        last = performance.now();
      },
    },
  );
  const exits = await Promise.all([workerProcesses(address, P), job.result]).then(([e]) => e);
  const records = workerRecords(runDir, warmup);
  rmSync(dir, { recursive: true, force: true });

  const T = sequenceLength(cfg);
  const shards = cfg.shards || cfg.batchSize;
  const B = cfg.batchSize / shards;
  const ms = times.slice(warmup).reduce((a, b) => a + b, 0) / steps;
  const spans = partitionStages(cfg, P, B, T);
  const bubbles = spans.map((_, s) => {
    const mine = records.filter((r) => stageOf.get(r.worker) === s);
    const compute = mine.reduce((n, r) => n + r.computeMs, 0);
    const waited = mine.reduce((n, r) => n + r.waitMs, 0);
    return waited / (compute + waited);
  });
  const between = (P - 1) * shards * 2 * B * T * cfg.nEmbd * 4;
  console.log(
    `  P=${P}: ${ms.toFixed(0)} ms/step, ${((cfg.batchSize * T * 1000) / ms).toFixed(1)} tok/s; ` +
      `bubble measured ${(100 * (bubbles.reduce((a, b) => a + b, 0) / P)).toFixed(1)}% ` +
      `(each stage: ${bubbles.map((b) => `${(100 * b).toFixed(0)}%`).join(' ')}), ` +
      `(P-1)/(m+P-1) = ${(100 * bubbleFraction(P, shards)).toFixed(1)}%; ` +
      `${(between / MiB).toFixed(1)} MiB between stages per step`,
  );
  for (const [i, exit] of exits.entries()) {
    const s = stageOf.get(`w${i}`) ?? 0;
    const span = spans[s];
    console.log(
      `    stage ${s} (blocks ${span.firstLayer}-${span.endLayer - 1}): peak RSS ${exit.peakRssMiB.toFixed(0)} MiB, ` +
        `params + grads + AdamW m, v ${((16 * span.params) / MiB).toFixed(1)} MiB` +
        (exit.code === 0 ? '' : ` (exit code ${exit.code})`),
    );
  }
}

for (const path of configs) {
  const cfg = loadRunConfig(path);
  const T = sequenceLength(cfg);
  console.log(
    `${cfg.name}: L=${cfg.nLayer} C=${cfg.nEmbd} V=${cfg.vocabSize} B=${cfg.batchSize} T=${T}, ` +
      `${cfg.shards || cfg.batchSize} micro-batches, ${values.schedule}, ${warmup} warm-up + ${steps} timed steps`,
  );
  for (const P of values.stages.split(',').map(Number)) await benchPipeline(cfg, P);
}
process.exit(0);
