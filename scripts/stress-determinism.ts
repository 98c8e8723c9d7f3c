// Stress check of determinism: trains a tiny config on 1 and then 2 worker threads, again and
// again for a number of seconds, and prints the per-step loss/grad-norm of any pair whose final
// weights differ. Run several at once to load the machine.
//
// usage: npx tsx scripts/stress-determinism.ts [seconds=300] [backend=wasm] [kernel threads=2]

import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataset } from '../src/data/dataset.ts';
import { prepareDataset } from '../src/data/prepare.ts';
import { trainWithThreads } from '../src/distributed/launch.ts';
import { resolveCheckpoint } from '../src/checkpoint/read.ts';
import { DEFAULT_RUN_CONFIG } from '../src/train/config.ts';
const dir = mkdtempSync(join(tmpdir(), 'stress-'));
writeFileSync(
  join(dir, 'text.txt'),
  readFileSync('data/tinyshakespeare.txt', 'utf8').slice(0, 30_000),
);
prepareDataset(join(dir, 'text.txt'), join(dir, 'ds'), { tokenizer: 'bpe:300', valFraction: 0.1 });
const dataset = loadDataset(join(dir, 'ds'));
const config = {
  ...DEFAULT_RUN_CONFIG,
  name: 'stress',
  nLayer: 2,
  nHead: 2,
  nEmbd: 32,
  blockSize: 32,
  batchSize: 6,
  steps: 8,
  lr: 3e-3,
  warmupSteps: 2,
  evalEvery: 4,
  evalWindows: 4,
};
const w = (r: string) => readFileSync(join(resolveCheckpoint(join(dir, r)), 'model.safetensors'));
const steps = (r: string) =>
  readFileSync(join(dir, r, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; loss: number; gradNorm: number })
    .filter((m) => m.type === 'step')
    .map((m) => `${m.loss}/${m.gradNorm}`);
const end = Date.now() + Number(process.argv[2] ?? 300) * 1000;
const backend = (process.argv[3] ?? 'wasm') as 'wasm';
const threads = Number(process.argv[4] ?? 2);
let it = 0,
  fails = 0;
while (Date.now() < end) {
  for (const n of [1, 2])
    await trainWithThreads(config, dataset, join(dir, `r${it}-${n}`), {
      workers: n,
      backend,
      threads,
    }).result;
  if (!w(`r${it}-2`).equals(w(`r${it}-1`))) {
    fails++;
    console.log(`iteration ${it} differs`);
    console.log(JSON.stringify(steps(`r${it}-1`)));
    console.log(JSON.stringify(steps(`r${it}-2`)));
  }
  it++;
}
console.log(`iterations ${it} fails ${fails}`);
process.exit(0);
