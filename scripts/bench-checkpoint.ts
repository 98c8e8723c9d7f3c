// Benchmark: checkpoint save and load throughput (MB/s of checkpoint files, including fsync and
// sha256) next to the disk's own write speed (dd with fsync) in the same run, and the training
// stall a save causes: mean step time with a checkpoint after every step, against none.
//
// usage: npm run bench:checkpoint -- [--config configs/bench-m.json --config configs/gpt2-124m.json] [--stall-steps 6]

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { CheckpointState } from '../src/checkpoint/format.ts';
import { loadCheckpoint } from '../src/checkpoint/read.ts';
import { writeCheckpoint } from '../src/checkpoint/write.ts';
import { loadDataset } from '../src/data/dataset.ts';
import { prepareDataset } from '../src/data/prepare.ts';
import { trainWithThreads } from '../src/distributed/launch.ts';
import { GPT2 } from '../src/model/gpt2.ts';
import { BpeTokenizer } from '../src/tokenizer/bpe.ts';
import type { RunConfig } from '../src/train/config.ts';
import { DEFAULT_RUN_CONFIG, loadRunConfig } from '../src/train/config.ts';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    config: { type: 'string', multiple: true },
    'stall-steps': { type: 'string', default: '6' },
  },
});
const configs = values.config ?? [
  join(root, 'configs/bench-m.json'),
  join(root, 'configs/gpt2-124m.json'),
];
const work = mkdtempSync(join(tmpdir(), 'weft-bench-ckpt-'));
const MB = 1e6;

/** dd's write speed for the same amount of data, fsynced, in MB/s. */
function ddWrite(megabytes: number): number {
  const start = performance.now();
  execFileSync(
    'dd',
    ['if=/dev/zero', `of=${join(work, 'dd.bin')}`, 'bs=1M', `count=${megabytes}`, 'conv=fsync'],
    { stdio: 'ignore' },
  );
  const seconds = (performance.now() - start) / 1000;
  rmSync(join(work, 'dd.bin'));
  return (megabytes * 2 ** 20) / MB / seconds;
}

function stateOf(cfg: RunConfig): CheckpointState {
  const model = GPT2.init(cfg, 1);
  return {
    step: 1,
    tokensSeen: 0,
    config: { ...cfg },
    tokenizer: BpeTokenizer.bytes().toJSON(),
    adamSteps: 1,
    loader: {},
    rng: { seed: 1 },
    data: { path: '', manifestSha256: '' },
    metrics: {},
    params: model.params,
    m: model.params.map((x) => x * 0.1),
    v: model.params.map((x) => x * x),
  };
}

console.log(
  'checkpoint save and load (files: weights + AdamW m and v, fp32; save includes sha256 and fsync)',
);
for (const path of configs) {
  const cfg = loadRunConfig(path);
  const state = stateOf(cfg);
  const bytes = 3 * state.params.byteLength;
  const run = join(work, cfg.name);
  let start = performance.now();
  await writeCheckpoint(run, state);
  const save = (performance.now() - start) / 1000;
  start = performance.now();
  loadCheckpoint(run);
  const load = (performance.now() - start) / 1000;
  const dd = ddWrite(Math.ceil(bytes / 2 ** 20));
  console.log(
    `  ${cfg.name.padEnd(10)} ${(bytes / MB).toFixed(0).padStart(6)} MB   save ${(bytes / MB / save).toFixed(0).padStart(5)} MB/s (${save.toFixed(2)} s)` +
      `   load+verify ${(bytes / MB / load).toFixed(0).padStart(5)} MB/s (${load.toFixed(2)} s)   dd conv=fsync ${dd.toFixed(0)} MB/s`,
  );
  rmSync(run, { recursive: true, force: true });
}

// the stall: 10.5 M parameters (126 MB checkpoints) with short steps, one worker thread
const stallCfg: RunConfig = {
  ...DEFAULT_RUN_CONFIG,
  name: 'stall',
  nLayer: 2,
  nHead: 8,
  nEmbd: 512,
  blockSize: 16,
  vocabSize: 8192,
  batchSize: 2,
  seqLen: 8,
  steps: Number(values['stall-steps']),
  evalEvery: 0,
  keepLast: 2,
};
prepareDataset(join(root, 'data/tinyshakespeare.txt'), join(work, 'ds'), {
  tokenizer: 'bpe:8189',
  valFraction: 0,
});
const dataset = loadDataset(join(work, 'ds'));
async function meanStep(ckptEvery: number): Promise<number> {
  const times: number[] = [];
  let last = 0;
  await trainWithThreads(
    { ...stallCfg, ckptEvery },
    dataset,
    join(work, `stall-${ckptEvery}`),
    { workers: 1 },
    {
      onStep: () => {
        const now = performance.now();
        if (last > 0) times.push(now - last);
        last = now;
      },
    },
  ).result;
  return times.reduce((a, b) => a + b, 0) / times.length;
}
const without = await meanStep(0);
const withCkpt = await meanStep(1);
console.log(
  `\ntraining stall (${((3 * new GPT2(stallCfg).paramCount * 4) / MB).toFixed(0)} MB checkpoints, 1 worker thread): ` +
    `${without.toFixed(0)} ms/step without checkpoints, ${withCkpt.toFixed(0)} ms/step with one after every step ` +
    `(stall ${(withCkpt - without).toFixed(0)} ms per save)`,
);
rmSync(work, { recursive: true, force: true });
process.exit(0);
