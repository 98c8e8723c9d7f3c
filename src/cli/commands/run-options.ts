// What `weft train` and `weft coordinator` share: the run flags (config, data, out, overrides,
// resume), checked before the run directory is opened by the library's policy
// (train/run-dir.ts), progress output, Ctrl-C handling and the closing summary.

import type { Command } from 'commander';
import { join } from 'node:path';
import type { Dataset } from '../../data/dataset.ts';
import type { BackendName } from '../../kernels/backend.ts';
import { BACKEND_NAMES } from '../../kernels/backend.ts';
import {
  defaultBackendName,
  defaultBackendWhy,
  parseBackendName,
  whyUnavailable,
} from '../../kernels/select.ts';
import type { Job } from '../../distributed/launch.ts';
import { stopOnSignals } from '../../distributed/launch.ts';
import type { RunHooks, RunResult } from '../../distributed/coordinator.ts';
import { generate } from '../../model/generate.ts';
import { paramCount } from '../../model/layout.ts';
import { writeLossChart } from '../../serve/plot.ts';
import { streamDecoder } from '../../tokenizer/types.ts';
import type { RunConfig } from '../../train/config.ts';
import { DEFAULT_RUN_CONFIG, loadRunConfig, parseOverrides } from '../../train/config.ts';
import type { OpenedRun } from '../../train/run-dir.ts';
import { openFreshRun, openResumedRun } from '../../train/run-dir.ts';
import { WeftError } from '../../util/errors.ts';
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
  pipeline?: string;
  init?: string;
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
      '--init <model>',
      'start from these weights (a run, checkpoint or Hugging Face GPT-2 directory) with a fresh optimizer: fine-tuning (objective sft, reward or dpo)',
    )
    .option(
      '--resume',
      'continue the run in --out from its latest checkpoint (--set may change all but the architecture)',
    )
    .option(
      '--stop-after <n>',
      'stop after this many steps of this invocation, saving a checkpoint',
    )
    .option(
      '--pipeline <P>',
      'split the model into P pipeline stages, one worker each (workers: a multiple of P)',
    )
    .option(
      '--backend <name>',
      `compute backend of every worker: ${BACKEND_NAMES.join(', ')} (default: the fastest that works)`,
    );
}

export interface PreparedRun extends OpenedRun {
  progress: Progress;
  stopAfter?: number;
  backend: BackendName;
  /** Why this backend: 'as --backend asked' or the default's reason. */
  backendWhy: string;
}

/** --set, then --steps, --seed and --pipeline (each checked and named as the flag it came from). */
function overridesOf(flags: RunFlags): Record<string, unknown> {
  const overrides = parseOverrides(flags.set);
  if (flags.steps !== undefined)
    overrides.steps = numberFlag('--steps', flags.steps, { min: 1, integer: true });
  if (flags.seed !== undefined)
    overrides.seed = numberFlag('--seed', flags.seed, { integer: true });
  if (flags.pipeline !== undefined)
    overrides.pipelineStages = numberFlag('--pipeline', flags.pipeline, { min: 1, integer: true });
  return overrides;
}

/**
 * Every flag checked, then the run directory opened (locked, checked, data prepared) by the
 * library's policy (train/run-dir.ts). `beforeOpen` runs once the flags (and a fresh run's config,
 * which it is given) are checked and before
 * anything is written (the coordinator checks its port there). `workerThreads` says how many
 * worker threads this process runs for the run's config (0: the coordinator's workers run
 * elsewhere); the policy checks them against the step's shards and the machine's memory.
 */
export async function prepareRun(
  flags: RunFlags,
  beforeOpen: (config?: RunConfig) => Promise<void> | void = () => {},
  workerThreads: (config: RunConfig) => number = () => 0,
): Promise<PreparedRun> {
  const stopAfter =
    flags.stopAfter === undefined
      ? undefined
      : numberFlag('--stop-after', flags.stopAfter, { min: 1, integer: true });
  const backend =
    flags.backend === undefined ? defaultBackendName() : parseBackendName(flags.backend);
  const backendWhy = flags.backend === undefined ? defaultBackendWhy() : 'as --backend asked';
  // this process computes on it too (the coordinator's final evaluation), so it must run here
  const unavailable = whyUnavailable(backend);
  if (unavailable)
    throw new WeftError('WEFT_E_CONFIG', `--backend ${backend} does not run here: ${unavailable}`);
  const overrides = overridesOf(flags);
  const early = new Progress(DEFAULT_RUN_CONFIG.logEvery);
  const log = (line: string) => early.line(line);
  let opened: OpenedRun;
  if (flags.resume) {
    const preset = flags.config ? loadRunConfig(resolveConfigPath(flags.config)) : undefined;
    const outDir = flags.out ?? (preset ? join('runs', preset.name) : null);
    if (!outDir)
      throw new WeftError(
        'WEFT_E_CONFIG',
        '--resume needs --out DIR (or --config NAME for runs/NAME)',
      );
    if (flags.init)
      throw new WeftError(
        'WEFT_E_CONFIG',
        '--init starts a new run; a resumed run continues from its own checkpoint (drop --init)',
      );
    await beforeOpen();
    opened = openResumedRun({
      outDir,
      overrides,
      data: flags.data,
      preset,
      log,
      workerThreads,
      backend,
    });
  } else {
    if (!flags.config)
      throw new WeftError(
        'WEFT_E_CONFIG',
        '--config is required: a config file or a preset name from configs/ (tiny, shakespeare, ...)',
      );
    // with --init, the model's architecture comes first (train/init-from.ts), then the checks
    const config = loadRunConfig(resolveConfigPath(flags.config), overrides, !flags.init);
    if (!flags.data) {
      throw new WeftError(
        'WEFT_E_CONFIG',
        '--data is required: a text file, a directory of text files, or a dataset from weft prepare',
      );
    }
    const outDir = flags.out ?? join('runs', config.name);
    await beforeOpen(config);
    opened = openFreshRun({
      config,
      data: flags.data,
      outDir,
      overwrite: flags.overwrite,
      log,
      init: flags.init,
      overrides,
      workerThreads,
      backend,
    });
  }
  return {
    ...opened,
    progress: new Progress(opened.config.logEvery),
    stopAfter,
    backend,
    backendWhy,
  };
}

/** ", as 2 replicas x 2 pipeline stages (1f1b)" for a pipeline run; "" otherwise. */
function pipeline(c: RunConfig, workers: number): string {
  const P = c.pipelineStages;
  return P > 1
    ? `, as ${workers / P} replica(s) x ${P} pipeline stages (${c.pipelineSchedule})`
    : '';
}

/** "N train / M val tokens", or records for post-training data. */
function dataSummary({ records, train, val }: Dataset): string {
  const n = (x: number) => x.toLocaleString('en-US');
  if (records)
    return `${n(records.train.length)} train / ${n(records.val.length)} val ${records.kind === 'sft' ? 'examples' : 'pairs'}`;
  return `${n(train.length)} train / ${n(val.length)} val tokens`;
}

/** Progress hooks that print the run's header, steps, evaluations and cluster events. */
export function progressHooks(run: PreparedRun): RunHooks {
  const { progress, dataset } = run;
  return {
    log: (line) => progress.line(line),
    onStart: (c, workers) => {
      run.started();
      progress.line(
        `training ${c.name}: ${paramCount(c).toLocaleString('en-US')} parameters ` +
          `(L=${c.nLayer} H=${c.nHead} C=${c.nEmbd} V=${c.vocabSize}), B=${c.batchSize} x T=${c.seqLen} in ${c.shards} shards, ` +
          `${c.steps} steps on ${workers} worker${workers === 1 ? '' : 's'}${pipeline(c, workers)} (${run.backend} backend: ${run.backendWhy}); ` +
          `data: ${dataSummary(dataset)} (${dataset.tokenizer.name})` +
          (c.objective === 'lm' ? '' : `; objective ${c.objective}`),
      );
    },
    onStep: (m, total) => progress.step(m, total),
    onEval: (m) => progress.eval(m),
  };
}

/**
 * Starts the job (`start` calls a launcher); one that cannot start closes the run, which undoes
 * what opening it changed (train/run-dir.ts).
 */
export async function startJob(run: PreparedRun, start: () => Job | Promise<Job>): Promise<Job> {
  try {
    return await start();
  } catch (err) {
    run.close();
    throw err;
  }
}

/**
 * Waits for the job; Ctrl-C (or SIGTERM) stops it after the current step, a second one quits.
 * The run is closed when the job ends: the lock goes, and a job that never started training
 * leaves the run directory as it found it.
 */
export async function awaitJob(job: Job, run: PreparedRun): Promise<RunResult> {
  const release = stopOnSignals(job, {
    onStop: () =>
      run.progress.line('stopping after this step (Ctrl-C again to quit without saving)'),
    onSecond: () => process.exit(130),
  });
  try {
    return await job.result;
  } finally {
    release();
    run.close();
  }
}

/**
 * The closing lines: where the model is, its loss chart (<out>/loss.svg), final validation, and a
 * sample when configured.
 */
export function summarize(run: PreparedRun, result: RunResult): void {
  const { progress, outDir, dataset, config } = run;
  const how = result.interrupted
    ? `stopped at step ${result.steps}`
    : `done: ${result.steps} steps`;
  progress.line(
    `${how}; checkpoint saved in ${result.checkpoint} (resume with --out ${outDir} --resume)`,
  );
  try {
    const chart = writeLossChart(outDir);
    if (chart) progress.line(`loss curves in ${chart}`);
  } catch (err) {
    // the run is saved; a chart that cannot be drawn is reported, not a failure
    progress.line(`no loss chart: ${err instanceof Error ? err.message : String(err)}`);
  }
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
    process.stdout.write(`${decode.flush()}\n`);
  }
}
