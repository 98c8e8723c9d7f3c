// What `weft train` and `weft coordinator` share: the run flags (config, data, out, overrides,
// resume), opening the data, progress output, Ctrl-C handling and the closing summary.

import type { Command } from 'commander';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckpointState } from '../../checkpoint/format.ts';
import { CHECKPOINTS_DIR } from '../../checkpoint/format.ts';
import { loadCheckpoint } from '../../checkpoint/read.ts';
import type { BackendName } from '../../kernels/backend.ts';
import { BACKEND_NAMES } from '../../kernels/backend.ts';
import { defaultBackendName, parseBackendName } from '../../kernels/select.ts';
import type { Dataset } from '../../data/dataset.ts';
import { openDataset } from '../../data/open.ts';
import type { Job } from '../../dist/launch.ts';
import type { RunHooks, RunResult } from '../../dist/coordinator.ts';
import { generate } from '../../model/generate.ts';
import { paramCount } from '../../model/layout.ts';
import { streamDecoder } from '../../tokenizer/types.ts';
import { MODEL_KEYS } from '../../model/config.ts';
import type { RunConfig } from '../../train/config.ts';
import {
  DEFAULT_RUN_CONFIG,
  loadRunConfig,
  mergeConfig,
  parseOverrides,
  validateRunConfig,
} from '../../train/config.ts';
import { WeftError } from '../../util/errors.ts';
import { readBytes, sha256 } from '../../util/files.ts';
import { resolveConfigPath } from '../paths.ts';
import { Progress } from '../progress.ts';
import { collect, numberFlag } from './options.ts';

export interface RunFlags {
  config?: string;
  data?: string;
  out?: string;
  steps?: string;
  seed?: string;
  set: string[];
  overwrite?: boolean;
  resume?: boolean;
  stopAfter?: string;
  backend?: string;
}

export function addRunOptions(cmd: Command): Command {
  return cmd
    .option(
      '--config <file>',
      'run config JSON, or a preset name from configs/ (tiny, shakespeare, ...)',
    )
    .option(
      '--data <path>',
      'text file, directory of text files, or a dataset made by weft prepare',
    )
    .option('--out <dir>', 'run directory (default: runs/<config name>)')
    .option('--steps <n>', 'optimizer steps (overrides the config)')
    .option('--seed <n>', 'random seed (overrides the config)')
    .option('--set <key=value>', 'override a config key (repeatable)', collect, [])
    .option('--overwrite', 'replace a run already in --out')
    .option(
      '--resume',
      'continue the run in --out from its latest checkpoint (--set may change all but the architecture)',
    )
    .option(
      '--stop-after <n>',
      'stop after this many steps of this invocation, saving a checkpoint',
    )
    .option(
      '--backend <name>',
      `compute backend of every worker: ${BACKEND_NAMES.join(', ')} (default: the fastest that works)`,
    );
}

export interface PreparedRun {
  config: RunConfig;
  dataset: Dataset;
  outDir: string;
  progress: Progress;
  /** The checkpoint a resumed run continues from. */
  resume?: CheckpointState;
  stopAfter?: number;
  backend: BackendName;
}

/** Keys a resumed run must keep: the architecture, and what fixes which data each step reads. */
const FIXED_ON_RESUME = [...MODEL_KEYS, 'seqLen', 'batchSize', 'shards', 'seed'] as const;

function overridesOf(flags: RunFlags): Record<string, unknown> {
  const overrides = parseOverrides(flags.set);
  if (flags.steps !== undefined) Object.assign(overrides, parseOverrides([`steps=${flags.steps}`]));
  if (flags.seed !== undefined) Object.assign(overrides, parseOverrides([`seed=${flags.seed}`]));
  return overrides;
}

/** Config from the preset, then --set, then --steps/--seed; the data opened (prepared if raw text). */
export function prepareRun(flags: RunFlags): PreparedRun {
  const stopAfter =
    flags.stopAfter === undefined
      ? undefined
      : numberFlag('--stop-after', flags.stopAfter, { min: 1, integer: true });
  const backend =
    flags.backend === undefined ? defaultBackendName() : parseBackendName(flags.backend);
  if (flags.resume) return { ...prepareResume(flags), stopAfter, backend };
  if (!flags.config)
    throw new WeftError(
      'WEFT_E_CONFIG',
      '--config is required: a config file or a preset name from configs/ (tiny, shakespeare, ...)',
    );
  const config = loadRunConfig(resolveConfigPath(flags.config), overridesOf(flags));
  if (!flags.data) {
    throw new WeftError(
      'WEFT_E_CONFIG',
      '--data is required: a text file, a directory of text files, or a dataset from weft prepare',
    );
  }
  const outDir = flags.out ?? join('runs', config.name);
  if (existsSync(join(outDir, 'config.json')) && !flags.overwrite) {
    throw new WeftError(
      'WEFT_E_CONFIG',
      `${outDir} already holds a run; pass --resume to continue it, --overwrite to replace it, or another --out`,
    );
  }
  if (flags.overwrite) rmSync(join(outDir, CHECKPOINTS_DIR), { recursive: true, force: true });
  const progress = new Progress(config.logEvery);
  const dataset = openDataset(flags.data, join(outDir, 'data'), {
    tokenizer: config.tokenizer,
    valFraction: config.valFraction,
    log: (line) => progress.line(line),
  });
  return { config, dataset, outDir, progress, stopAfter, backend };
}

/** The run in --out continued from its latest checkpoint, with --set changes that keep it the same run. */
function prepareResume(flags: RunFlags): Omit<PreparedRun, 'backend'> {
  const fromPreset = flags.config ? loadRunConfig(resolveConfigPath(flags.config)) : null;
  const outDir = flags.out ?? (fromPreset ? join('runs', fromPreset.name) : null);
  if (!outDir)
    throw new WeftError(
      'WEFT_E_CONFIG',
      '--resume needs --out DIR (or --config NAME for runs/NAME)',
    );
  const checkpoint = loadCheckpoint(outDir);
  const saved = mergeConfig(
    DEFAULT_RUN_CONFIG,
    checkpoint.config,
    `${checkpoint.dir}/manifest.json`,
  );
  const config = validateRunConfig(mergeConfig(saved, overridesOf(flags), '--set'));
  for (const key of FIXED_ON_RESUME) {
    if (config[key] !== saved[key]) {
      throw new WeftError(
        'WEFT_E_CONFIG',
        `${key}=${String(config[key])} differs from the checkpoint's ${key}=${String(saved[key])}; a resumed run keeps its architecture and data order`,
      );
    }
  }
  if (fromPreset) {
    for (const key of MODEL_KEYS) {
      if (fromPreset[key] !== 0 && fromPreset[key] !== saved[key]) {
        throw new WeftError(
          'WEFT_E_CONFIG',
          `--config ${flags.config} has ${key}=${fromPreset[key]} but the checkpoint has ${key}=${saved[key]}`,
        );
      }
    }
  }
  const progress = new Progress(config.logEvery);
  const dataPath = flags.data ?? checkpoint.data.path;
  const dataset = openDataset(dataPath, join(outDir, 'data'), {
    tokenizer: config.tokenizer,
    valFraction: config.valFraction,
    log: (line) => progress.line(line),
  });
  if (sha256(readBytes(join(dataset.dir, 'dataset.json'))) !== checkpoint.data.manifestSha256) {
    throw new WeftError(
      'WEFT_E_CONFIG',
      `the dataset at ${dataset.dir} is not the one checkpoint ${checkpoint.dir} was trained on (its dataset.json differs)`,
    );
  }
  progress.line(`resuming ${outDir} from ${checkpoint.dir} (step ${checkpoint.step})`);
  return { config, dataset, outDir, progress, resume: checkpoint };
}

/** Progress hooks that print the run's header, steps, evaluations and cluster events. */
export function progressHooks(run: PreparedRun): RunHooks {
  const { progress, dataset } = run;
  return {
    log: (line) => progress.line(line),
    onStart: (c, workers) =>
      progress.line(
        `training ${c.name}: ${paramCount(c).toLocaleString('en-US')} parameters ` +
          `(L=${c.nLayer} H=${c.nHead} C=${c.nEmbd} V=${c.vocabSize}), B=${c.batchSize} x T=${c.seqLen} in ${c.shards} shards, ` +
          `${c.steps} steps on ${workers} worker${workers === 1 ? '' : 's'} (${run.backend} backend); ` +
          `data: ${dataset.train.length.toLocaleString('en-US')} train / ${dataset.val.length.toLocaleString('en-US')} val tokens (${dataset.tokenizer.name})`,
      ),
    onStep: (m, total) => progress.step(m, total),
    onEval: (m) => progress.eval(m),
  };
}

/** Waits for the job; Ctrl-C (or SIGTERM) stops it after the current step, a second one quits. */
export async function awaitJob(job: Job, progress: Progress): Promise<RunResult> {
  let stopping = false;
  const onSignal = () => {
    if (stopping) process.exit(130);
    stopping = true;
    progress.line('stopping after this step (Ctrl-C again to quit without saving)');
    job.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await job.result;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The closing lines: where the model is, final validation, and a sample when configured. */
export function summarize(run: PreparedRun, result: RunResult): void {
  const { progress, outDir, dataset, config } = run;
  const how = result.interrupted
    ? `stopped at step ${result.steps}`
    : `done: ${result.steps} steps`;
  progress.line(
    `${how}; checkpoint saved in ${result.checkpoint} (resume with --out ${outDir} --resume)`,
  );
  if (result.lastEval) {
    progress.line(
      `final validation: ${result.lastEval.bpb.toFixed(4)} bits per byte (loss ${result.lastEval.loss.toFixed(4)})`,
    );
  }
  if (config.sampleTokens > 0 && !result.interrupted) {
    const tok = dataset.tokenizer;
    const prompt = tok.encode(config.samplePrompt);
    const decode = streamDecoder(tok);
    process.stdout.write(
      `--- sample (${config.sampleTokens} tokens, temperature ${config.temperature}) ---\n${config.samplePrompt}`,
    );
    generate(result.model, prompt.length ? prompt : [tok.specials.endOfText], {
      maxTokens: config.sampleTokens,
      temperature: config.temperature,
      topK: config.topK,
      seed: config.seed,
      onToken: (id) => process.stdout.write(decode(id)),
    });
    process.stdout.write('\n');
  }
}
