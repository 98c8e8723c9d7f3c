// What `weft train` and `weft coordinator` share: the run flags (config, data, out, overrides),
// opening the data, progress output, Ctrl-C handling and the closing summary with a sample.

import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Dataset } from '../../data/dataset.ts';
import { openDataset } from '../../data/open.ts';
import type { Job } from '../../dist/launch.ts';
import type { RunHooks, RunResult } from '../../dist/coordinator.ts';
import { generate } from '../../model/generate.ts';
import { paramCount } from '../../model/layout.ts';
import { streamDecoder } from '../../tokenizer/types.ts';
import type { RunConfig } from '../../train/config.ts';
import { loadRunConfig, parseOverrides } from '../../train/config.ts';
import { WeftError } from '../../util/errors.ts';
import { resolveConfigPath } from '../paths.ts';
import { Progress } from '../progress.ts';
import { collect } from './options.ts';

export interface RunFlags {
  config: string;
  data?: string;
  out?: string;
  steps?: string;
  seed?: string;
  set: string[];
  overwrite?: boolean;
}

export function addRunOptions(cmd: Command): Command {
  return cmd
    .requiredOption(
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
    .option('--overwrite', 'replace a run already in --out');
}

export interface PreparedRun {
  config: RunConfig;
  dataset: Dataset;
  outDir: string;
  progress: Progress;
}

/** Config from the preset, then --set, then --steps/--seed; the data opened (prepared if raw text). */
export function prepareRun(flags: RunFlags): PreparedRun {
  const overrides = parseOverrides(flags.set);
  if (flags.steps !== undefined) Object.assign(overrides, parseOverrides([`steps=${flags.steps}`]));
  if (flags.seed !== undefined) Object.assign(overrides, parseOverrides([`seed=${flags.seed}`]));
  const config = loadRunConfig(resolveConfigPath(flags.config), overrides);
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
      `${outDir} already holds a run; pass --overwrite to replace it, or choose another --out`,
    );
  }
  const progress = new Progress(config.logEvery);
  const dataset = openDataset(flags.data, join(outDir, 'data'), {
    tokenizer: config.tokenizer,
    valFraction: config.valFraction,
    log: (line) => progress.line(line),
  });
  return { config, dataset, outDir, progress };
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
          `${c.steps} steps on ${workers} worker${workers === 1 ? '' : 's'}; ` +
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
  progress.line(`${how}; model saved in ${outDir}`);
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
