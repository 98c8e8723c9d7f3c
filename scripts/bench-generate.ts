// Benchmark: greedy generation from bench-s and bench-m (random weights, a random 64-token
// prompt): time to first token and generated tokens/s after it, with the KV cache and with
// recomputation of the whole context per token, on each backend and thread count; next to the
// same model in PyTorch (scripts/bench_generate_torch.py) at the same thread count, same run.
// Each figure is the best of --repeats runs on both sides (the machine may be shared).
//
// usage: npm run bench:generate -- [--config configs/bench-s.json ...] [--backend wasm]
//                                  [--threads 1,2] [--tokens 64] [--recompute-tokens 16]

import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { BackendName } from '../src/kernels/backend.ts';
import { createBackend, defaultBackendName, parseBackendName } from '../src/kernels/select.ts';
import { nextLogits, sampleLogits } from '../src/model/generate.ts';
import { GPT2 } from '../src/model/gpt2.ts';
import type { RunConfig } from '../src/train/config.ts';
import { loadRunConfig } from '../src/train/config.ts';
import { Rng } from '../src/util/rng.ts';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    config: { type: 'string', multiple: true },
    backend: { type: 'string', default: defaultBackendName() },
    threads: { type: 'string', default: `1,${availableParallelism()}` },
    prompt: { type: 'string', default: '64' },
    tokens: { type: 'string', default: '64' },
    'recompute-tokens': { type: 'string', default: '16' },
    repeats: { type: 'string', default: '3' },
  },
});
const configs = values.config ?? [
  join(root, 'configs/bench-s.json'),
  join(root, 'configs/bench-m.json'),
];
const promptLength = Number(values.prompt);
const counts = { cache: Number(values.tokens), recompute: Number(values['recompute-tokens']) };
const repeats = Number(values.repeats);

interface Timing {
  ttftMs: number;
  tokensPerSec: number;
}

/** The best of `repeats` greedy decodings (lowest time to first token, highest tokens/s). */
function decode(model: GPT2, prompt: number[], n: number, cache: boolean): Timing {
  const runs = Array.from({ length: repeats }, () => decodeOnce(model, prompt, n, cache));
  return {
    ttftMs: Math.min(...runs.map((r) => r.ttftMs)),
    tokensPerSec: Math.max(...runs.map((r) => r.tokensPerSec)),
  };
}

/** Greedy decoding of n tokens: time to the first, and tokens/s for the n - 1 after it. */
function decodeOnce(model: GPT2, prompt: number[], n: number, cache: boolean): Timing {
  const rng = new Rng(1, 2);
  const start = performance.now();
  const next = nextLogits(model, prompt, cache);
  let id = sampleLogits(next.first(), 0, 0, rng);
  const first = performance.now() - start;
  for (let i = 1; i < n; i++) id = sampleLogits(next.after(id), 0, 0, rng);
  const rest = performance.now() - start - first;
  next.dispose();
  return { ttftMs: first, tokensPerSec: ((n - 1) * 1000) / rest };
}

function benchWeft(cfg: RunConfig, name: BackendName, threads: number) {
  const backend = createBackend(name, { threads });
  const model = GPT2.init(cfg, cfg.seed, { backend });
  const rng = new Rng(cfg.seed, 3);
  const prompt = Array.from({ length: promptLength }, () => rng.int(cfg.vocabSize));
  decodeOnce(model, prompt, 4, true); // warm-up (V8 and the wasm tiers)
  const result = {
    cache: decode(model, prompt, counts.cache, true),
    recompute: decode(model, prompt, counts.recompute, false),
  };
  void backend.dispose?.();
  return result;
}

function benchTorch(cfg: RunConfig, threads: number) {
  const args = [
    join(root, 'scripts/bench_generate_torch.py'),
    JSON.stringify(cfg),
    ...['--prompt', String(promptLength), '--tokens', String(counts.cache)],
    ...['--recompute-tokens', String(counts.recompute), '--threads', String(threads)],
    ...['--repeats', String(repeats)],
  ];
  for (const python of ['python3', '/usr/bin/python3']) {
    const env = { ...process.env, OMP_NUM_THREADS: String(threads) };
    const r = spawnSync(python, args, { encoding: 'utf8', env });
    if (r.status === 0)
      return JSON.parse(r.stdout.trim().split('\n').pop() as string) as {
        torch: string;
        cache: Timing;
        recompute: Timing;
      };
  }
  return null;
}

const line = (name: string, t: Timing, anchor?: Timing) =>
  `    ${name.padEnd(30)} first token ${t.ttftMs.toFixed(1).padStart(7)} ms  ` +
  `${t.tokensPerSec.toFixed(1).padStart(8)} tok/s` +
  (anchor ? `  ${(t.tokensPerSec / anchor.tokensPerSec).toFixed(2)}x PyTorch` : '');

for (const path of configs) {
  const cfg = loadRunConfig(path);
  console.log(
    `${cfg.name}: L=${cfg.nLayer} H=${cfg.nHead} C=${cfg.nEmbd} V=${cfg.vocabSize}, prompt ${promptLength} tokens, ` +
      `greedy: ${counts.cache} tokens with the KV cache, ${counts.recompute} recomputing`,
  );
  for (const threads of [...new Set(values.threads.split(',').map(Number))]) {
    const torch = benchTorch(cfg, threads);
    console.log(`  ${threads} thread(s)`);
    for (const name of values.backend.split(',').map(parseBackendName)) {
      const weft = benchWeft(cfg, name, threads);
      console.log(line(`weft ${name}, KV cache`, weft.cache, torch?.cache));
      console.log(line(`weft ${name}, recompute`, weft.recompute, torch?.recompute));
    }
    if (torch) {
      console.log(line(`PyTorch ${torch.torch}, KV cache`, torch.cache));
      console.log(line(`PyTorch ${torch.torch}, recompute`, torch.recompute));
    } else console.log('    PyTorch not found (apt-get install python3-torch)');
  }
}
process.exit(0);
