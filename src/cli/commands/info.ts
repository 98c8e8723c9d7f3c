// `weft info`: the size of a configured model: parameters, memory, FLOPs per step; with
// --pipeline P, its split into pipeline stages (distributed/pipeline/partition.ts); and the
// compute backends that run on this machine, with the reason for each that does not.

import type { Command } from 'commander';
import { BACKEND_NAMES } from '../../kernels/backend.ts';
import { openBlas } from '../../kernels/blas/openblas.ts';
import { defaultBackendName, defaultBackendWhy, whyUnavailable } from '../../kernels/select.ts';
import { paramCount, trainingFlops } from '../../model/layout.ts';
import { loadRunConfig, parseOverrides, sequenceLength } from '../../train/config.ts';
import { specVocabSize } from '../../tokenizer/index.ts';
import { resolveConfigPath } from '../paths.ts';
import { collect, numberFlag } from './options.ts';
import {
  bubbleFraction,
  partitionStages,
  pipelineGrid,
} from '../../distributed/pipeline/partition.ts';
import type { ScheduleKind } from '../../distributed/pipeline/schedule.ts';
import { SCHEDULE_KINDS } from '../../distributed/pipeline/schedule.ts';
import type { RunConfig } from '../../train/config.ts';
import { check } from '../../util/errors.ts';

interface InfoFlags {
  config: string;
  set: string[];
  pipeline?: string;
  workers?: string;
  schedule: string;
}

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description(
      'print the size of a configured model (parameters, memory, FLOPs per step) and the backends that run here',
    )
    .requiredOption('--config <file>', 'run config JSON, or a preset name from configs/')
    .option('--set <key=value>', 'override a config key (repeatable)', collect, [])
    .option('--pipeline <P>', 'also show the model split into P pipeline stages')
    .option('--workers <n>', 'workers of the pipeline grid (default P: one replica)')
    .option('--schedule <kind>', 'pipeline schedule: 1f1b or gpipe', '1f1b')
    .action((opts: InfoFlags) => {
      const loaded = loadRunConfig(resolveConfigPath(opts.config), parseOverrides(opts.set));
      // vocabSize 0 takes the tokenizer's size, as training does once the data is prepared
      const fromTokenizer = loaded.vocabSize === 0;
      const cfg = fromTokenizer
        ? { ...loaded, vocabSize: specVocabSize(loaded.tokenizer) }
        : loaded;
      const T = sequenceLength(cfg);
      const n = paramCount(cfg);
      const flops = trainingFlops(cfg, cfg.batchSize, T);
      // a bad pipeline flag is refused before anything is printed
      const pipeline = opts.pipeline === undefined ? [] : pipelineLines(cfg, opts);
      console.log(
        `config      ${cfg.name}: nLayer=${cfg.nLayer} nHead=${cfg.nHead} nEmbd=${cfg.nEmbd} blockSize=${cfg.blockSize} vocabSize=${cfg.vocabSize}` +
          (fromTokenizer
            ? ` (tokenizer ${cfg.tokenizer}'s${cfg.tokenizer.startsWith('bpe:') ? ', at most: a small corpus learns fewer' : ''})`
            : ''),
      );
      console.log(`parameters  ${n.toLocaleString('en-US')}`);
      console.log(
        `memory      ${((n * 4 * 4) / 2 ** 20).toFixed(1)} MiB for params, grads, AdamW m and v (fp32)`,
      );
      console.log(`batch       B=${cfg.batchSize} x T=${T} = ${cfg.batchSize * T} tokens per step`);
      console.log(`compute     ${(flops / 1e9).toFixed(2)} GFLOP per training step`);
      printBackends();
      for (const line of pipeline) console.log(line);
    });
}

/** The backends that run here (blas: which OpenBLAS), the default, and why the others do not. */
function printBackends(): void {
  const why = BACKEND_NAMES.map((name) => [name, whyUnavailable(name)] as const);
  const blas = openBlas();
  const here = why
    .filter(([, reason]) => !reason)
    .map(([name]) => (name === 'blas' && blas ? `blas (${blas.version} ${blas.core})` : name));
  console.log(`backends    ${here.join(', ')}`);
  console.log(`default     ${defaultBackendName()}: ${defaultBackendWhy()}`);
  for (const [name, reason] of why)
    if (reason) console.log(`  ${name.padEnd(10)}not available: ${reason}`);
}

/** The stages of `--pipeline P` over `--workers N`: blocks, memory, compute, and the bubble. */
function pipelineLines(cfg: RunConfig, opts: InfoFlags): string[] {
  const P = numberFlag('--pipeline', opts.pipeline ?? '1', { min: 1, integer: true });
  const workers = numberFlag('--workers', opts.workers ?? String(P), { min: 1, integer: true });
  const kind = opts.schedule as ScheduleKind;
  check(
    SCHEDULE_KINDS.includes(kind),
    'WEFT_E_CONFIG',
    `--schedule ${opts.schedule} is not one of ${SCHEDULE_KINDS.join(', ')}`,
  );
  const shards = cfg.shards || cfg.batchSize;
  const { replicas, microBatches } = pipelineGrid(workers, P, shards);
  const m = Math.min(...microBatches);
  const B = cfg.batchSize / shards;
  const T = sequenceLength(cfg);
  const stages = partitionStages(cfg, P, B, T);
  const total = stages.reduce((n, s) => n + s.flops, 0);
  const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  const lines = [
    `pipeline    ${P} stage(s) x ${replicas} replica(s), ${kind}, ${m} micro-batches of B=${B} x T=${T} per replica`,
  ];
  for (const s of stages) {
    const held = kind === '1f1b' ? Math.min(P - s.index, m) : m;
    const holds = [
      s.endLayer - s.firstLayer === 1
        ? `block ${s.firstLayer}`
        : `blocks ${s.firstLayer}-${s.endLayer - 1}`,
      ...(s.embeddings ? ['embeddings'] : []),
      ...(s.head ? ['head'] : []),
    ].join(' + ');
    lines.push(
      `  stage ${s.index}   ${holds}: ${s.params.toLocaleString('en-US')} parameters (${MiB(16 * s.params)} with grads, m, v); ` +
        `activations ${MiB(s.activationBytes)} per micro-batch, ${held} held (${MiB(held * s.activationBytes)}); ` +
        `${((100 * s.flops) / total).toFixed(1)}% of the compute`,
    );
  }
  lines.push(
    `bubble      (P-1)/(m+P-1) = ${(100 * bubbleFraction(P, m)).toFixed(1)}% of each stage's step idle`,
  );
  return lines;
}
