// `weft train`: trains a model from a config preset on a dataset or raw text, writing the run
// directory; Ctrl-C finishes the current step, saves and exits 0 (a second Ctrl-C exits at once).

import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openDataset } from '../../data/open.ts';
import { paramCount } from '../../model/layout.ts';
import { generate } from '../../model/generate.ts';
import { streamDecoder } from '../../tokenizer/types.ts';
import type { RunConfig } from '../../train/config.ts';
import { loadRunConfig, parseOverrides } from '../../train/config.ts';
import { train } from '../../train/loop.ts';
import { WeftError } from '../../util/errors.ts';
import { resolveConfigPath } from '../paths.ts';
import { Progress } from '../progress.ts';
import { collect } from './options.ts';

interface TrainFlags {
  config: string;
  data?: string;
  out?: string;
  steps?: string;
  seed?: string;
  set: string[];
  overwrite?: boolean;
}

/** Config from the preset, then --set, then the dedicated flags (--steps, --seed). */
function runConfig(flags: TrainFlags): RunConfig {
  const overrides = parseOverrides(flags.set);
  if (flags.steps !== undefined) Object.assign(overrides, parseOverrides([`steps=${flags.steps}`]));
  if (flags.seed !== undefined) Object.assign(overrides, parseOverrides([`seed=${flags.seed}`]));
  return loadRunConfig(resolveConfigPath(flags.config), overrides);
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description(
      'train a GPT-2 model on a text file, a directory of text files, or a prepared dataset',
    )
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
    .option('--overwrite', 'replace a run already in --out')
    .action(async (flags: TrainFlags) => {
      const config = runConfig(flags);
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
      let stopRequested = false;
      const onSigint = () => {
        if (stopRequested) process.exit(130);
        stopRequested = true;
        progress.line('stopping after this step (Ctrl-C again to quit without saving)');
      };
      process.on('SIGINT', onSigint);
      process.on('SIGTERM', onSigint);
      let result;
      try {
        result = await train(config, dataset, outDir, {
          onStart: (resolved) =>
            progress.line(
              `training ${resolved.name}: ${paramCount(resolved).toLocaleString('en-US')} parameters ` +
                `(L=${resolved.nLayer} H=${resolved.nHead} C=${resolved.nEmbd} V=${resolved.vocabSize}), ` +
                `B=${resolved.batchSize} x T=${resolved.seqLen}, ${resolved.steps} steps; ` +
                `data: ${dataset.train.length.toLocaleString('en-US')} train / ${dataset.val.length.toLocaleString('en-US')} val tokens (${dataset.tokenizer.name})`,
            ),
          onStep: (m, total) => progress.step(m, total),
          onEval: (m) => progress.eval(m),
          shouldStop: () => stopRequested,
        });
      } finally {
        process.off('SIGINT', onSigint);
        process.off('SIGTERM', onSigint);
      }
      const how = result.interrupted
        ? `stopped at step ${result.steps}`
        : `done: ${result.steps} steps`;
      progress.line(`${how}; model saved in ${outDir}`);
      if (result.lastEval)
        progress.line(
          `final validation: ${result.lastEval.bpb.toFixed(4)} bits per byte (loss ${result.lastEval.loss.toFixed(4)})`,
        );
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
    });
}
