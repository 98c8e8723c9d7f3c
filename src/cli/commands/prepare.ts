// `weft prepare`: text -> token files, tokenizer.json and dataset.json. `--config NAME` takes the
// tokenizer and validation fraction from a run config, so the dataset fits that config's model.

import type { Command } from 'commander';
import { prepareDataset } from '../../data/prepare.ts';
import { loadRunConfig } from '../../train/config.ts';
import { resolveConfigPath } from '../paths.ts';
import { numberFlag } from './options.ts';

interface PrepareFlags {
  input: string;
  out: string;
  config?: string;
  tokenizer?: string;
  valFraction?: string;
}

export function registerPrepare(program: Command): void {
  program
    .command('prepare')
    .description('tokenize a text file or a directory of text files into a dataset')
    .requiredOption('--input <path>', 'text file, or directory of text files (UTF-8)')
    .requiredOption('--out <dir>', 'dataset directory to write')
    .option(
      '--config <file>',
      'take --tokenizer and --val-fraction from this run config or preset (what training it needs)',
    )
    .option(
      '--tokenizer <spec>',
      "gpt2, byte, or bpe:N (learn N tokens from the train split); default: the config's, else gpt2",
    )
    .option(
      '--val-fraction <f>',
      "fraction of each document held out for validation; default: the config's, else 0.1",
    )
    .action((flags: PrepareFlags) => {
      const config = flags.config ? loadRunConfig(resolveConfigPath(flags.config)) : null;
      const tokenizer = flags.tokenizer ?? config?.tokenizer ?? 'gpt2';
      const valFraction =
        flags.valFraction === undefined
          ? (config?.valFraction ?? 0.1)
          : numberFlag('--val-fraction', flags.valFraction, { min: 0 });
      const started = performance.now();
      const manifest = prepareDataset(flags.input, flags.out, {
        tokenizer,
        valFraction,
        log: (line) => console.log(line),
      });
      const { train, val } = manifest.splits;
      console.log(
        `wrote ${flags.out}: ${train.tokens.toLocaleString('en-US')} train + ${val.tokens.toLocaleString('en-US')} val tokens, ` +
          `${manifest.files.length} files (${((performance.now() - started) / 1000).toFixed(1)} s)`,
      );
    });
}
