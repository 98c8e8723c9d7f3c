// `weft generate`: sample a continuation of a prompt from a saved model, streamed to stdout.

import type { Command } from 'commander';
import { loadModel } from '../../checkpoint/read.ts';
import { generate } from '../../model/generate.ts';
import { streamDecoder } from '../../tokenizer/types.ts';
import type { ComputeFlags } from './compute-options.ts';
import { addComputeOptions, backendOf } from './compute-options.ts';
import { numberFlag } from './options.ts';

interface GenerateFlags extends ComputeFlags {
  checkpoint: string;
  prompt: string;
  maxTokens: string;
  temperature: string;
  topK: string;
  seed: string;
}

export function registerGenerate(program: Command): void {
  addComputeOptions(program.command('generate'))
    .description('continue a prompt with a trained model')
    .requiredOption(
      '--checkpoint <dir>',
      'run directory (its latest checkpoint) or a checkpoint directory',
    )
    .option('--prompt <text>', 'text to continue (empty: start of a document)', '')
    .option('--max-tokens <n>', 'tokens to generate', '200')
    .option('--temperature <t>', 'sampling temperature (0: greedy)', '0.8')
    .option('--top-k <k>', 'sample among the k most likely tokens (0: all)', '40')
    .option('--seed <n>', 'random seed', '1')
    .action((flags: GenerateFlags) => {
      const { model, tokenizer } = loadModel(flags.checkpoint, backendOf(flags));
      const prompt = tokenizer.encode(flags.prompt);
      const decode = streamDecoder(tokenizer);
      process.stdout.write(flags.prompt);
      generate(model, prompt.length > 0 ? prompt : [tokenizer.specials.endOfText], {
        maxTokens: numberFlag('--max-tokens', flags.maxTokens, { min: 1, integer: true }),
        temperature: numberFlag('--temperature', flags.temperature, { min: 0 }),
        topK: numberFlag('--top-k', flags.topK, { min: 0, integer: true }),
        seed: numberFlag('--seed', flags.seed, { integer: true }),
        onToken: (id) => process.stdout.write(decode(id)),
      });
      process.stdout.write('\n');
    });
}
