// `weft generate`: continue a prompt (or a chat turn with --chat) from a saved model, streaming
// the text to stdout as it is produced, with the sampling and stop options of the Messages API.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { loadModel } from '../../checkpoint/read.ts';
import { complete } from '../../serve/complete.ts';
import { checkChatRows, encodeChat } from '../../tokenizer/chat.ts';
import { check } from '../../util/errors.ts';
import type { ComputeFlags } from './compute-options.ts';
import { addComputeOptions, backendOf } from './compute-options.ts';
import { collect, numberFlag } from './options.ts';

interface GenerateFlags extends ComputeFlags {
  checkpoint: string;
  prompt?: string;
  file?: string;
  maxTokens: string;
  temperature: string;
  topK: string;
  topP: string;
  seed: string;
  stop: string[];
  chat?: boolean;
  cache: boolean;
}

function promptText(flags: GenerateFlags): string {
  check(
    flags.prompt === undefined || flags.file === undefined,
    'WEFT_E_CONFIG',
    'give --prompt or --file, not both',
  );
  if (flags.file === undefined) return flags.prompt ?? '';
  try {
    return readFileSync(flags.file, 'utf8');
  } catch (error) {
    check(false, 'WEFT_E_CONFIG', `cannot read --file ${flags.file}: ${(error as Error).message}`);
    return '';
  }
}

export function registerGenerate(program: Command): void {
  addComputeOptions(program.command('generate'))
    .description('continue a prompt with a trained model, streaming the text')
    .requiredOption(
      '--checkpoint <dir>',
      'run directory (its latest checkpoint) or a checkpoint directory',
    )
    .option('--prompt <text>', 'text to continue (default: start of a document)')
    .option('--file <path>', 'read the prompt from a file')
    .option('--max-tokens <n>', 'tokens to generate at most', '200')
    .option('--temperature <t>', 'sampling temperature (0: greedy)', '0.8')
    .option('--top-k <k>', 'sample among the k most likely tokens (0: all)', '40')
    .option('--top-p <p>', 'sample among the most likely tokens reaching probability p', '1')
    .option('--seed <n>', 'random seed (same seed, same text)', '1')
    .option('--stop <text>', 'stop before this text (repeatable)', collect, [])
    .option('--chat', 'render the prompt as a user turn of the chat template (SFT models)')
    .option('--no-cache', 'recompute the whole context for every token (no KV cache)')
    .action(async (flags: GenerateFlags) => {
      const text = promptText(flags);
      const options = {
        maxTokens: numberFlag('--max-tokens', flags.maxTokens, { min: 1, integer: true }),
        temperature: numberFlag('--temperature', flags.temperature, { min: 0 }),
        topK: numberFlag('--top-k', flags.topK, { min: 0, integer: true }),
        topP: numberFlag('--top-p', flags.topP, { min: 0 }),
        seed: numberFlag('--seed', flags.seed, { integer: true }),
      };
      check(options.topP > 0 && options.topP <= 1, 'WEFT_E_CONFIG', '--top-p must be in (0, 1]');
      const backend = backendOf(flags);
      const { model, tokenizer, config } = loadModel(flags.checkpoint, backend);
      if (flags.chat) checkChatRows(tokenizer, config.vocabSize, flags.checkpoint);
      const ids = flags.chat
        ? encodeChat(tokenizer, [{ role: 'user', content: text }], true).ids
        : tokenizer.encode(text);
      if (!flags.chat) process.stdout.write(text);
      await complete(model, tokenizer, ids.length > 0 ? ids : [tokenizer.specials.endOfText], {
        ...options,
        stopSequences: flags.stop,
        cache: flags.cache,
        onText: (delta) => process.stdout.write(delta),
      });
      process.stdout.write('\n');
      await backend.dispose?.();
    });
}
