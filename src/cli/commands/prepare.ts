// `weft prepare`: text -> token shards, tokenizer.json and dataset.json.

import type { Command } from 'commander';
import { prepareDataset } from '../../data/prepare.ts';
import { numberFlag } from './options.ts';

export function registerPrepare(program: Command): void {
  program
    .command('prepare')
    .description('tokenize a text file or a directory of text files into a dataset')
    .requiredOption('--input <path>', 'text file, or directory of text files (UTF-8)')
    .requiredOption('--out <dir>', 'dataset directory to write')
    .option(
      '--tokenizer <spec>',
      'gpt2, byte, or bpe:N (learn N tokens from the train split)',
      'gpt2',
    )
    .option('--val-fraction <f>', 'fraction of each document held out for validation', '0.1')
    .action((flags: { input: string; out: string; tokenizer: string; valFraction: string }) => {
      const started = performance.now();
      const manifest = prepareDataset(flags.input, flags.out, {
        tokenizer: flags.tokenizer,
        valFraction: numberFlag('--val-fraction', flags.valFraction, { min: 0 }),
        log: (line) => console.log(line),
      });
      const { train, val } = manifest.splits;
      console.log(
        `wrote ${flags.out}: ${train.tokens.toLocaleString('en-US')} train + ${val.tokens.toLocaleString('en-US')} val tokens, ` +
          `${manifest.files.length} files (${((performance.now() - started) / 1000).toFixed(1)} s)`,
      );
    });
}
