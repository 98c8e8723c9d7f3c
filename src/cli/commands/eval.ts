// `weft eval`: loss, perplexity and bits per byte of a saved model on a text file.

import type { Command } from 'commander';
import { loadModel } from '../../checkpoint/read.ts';
import { evaluate } from '../../train/evaluate.ts';
import { readUtf8 } from '../../util/files.ts';
import { check } from '../../util/errors.ts';
import type { ComputeFlags } from './compute-options.ts';
import { addComputeOptions, backendOf } from './compute-options.ts';
import { numberFlag } from './options.ts';

export function registerEval(program: Command): void {
  addComputeOptions(program.command('eval'))
    .description('evaluate a trained model on a text file: loss, perplexity, bits per byte')
    .requiredOption(
      '--checkpoint <dir>',
      'run directory (its latest checkpoint) or a checkpoint directory',
    )
    .requiredOption('--data <file>', 'UTF-8 text file to evaluate on')
    .option('--batch-size <n>', 'windows per forward pass', '8')
    .option('--json', 'print {"loss","ppl","bpb","tokens","bytes"} as JSON')
    .action(
      (
        flags: ComputeFlags & {
          checkpoint: string;
          data: string;
          batchSize: string;
          json?: boolean;
        },
      ) => {
        const { model, config, tokenizer } = loadModel(flags.checkpoint, backendOf(flags));
        const text = readUtf8(flags.data, 'data file');
        const ids = tokenizer.encode(text);
        check(
          ids.length >= 2,
          'WEFT_E_SHAPE',
          `data file ${flags.data} has ${ids.length} tokens; evaluation needs at least 2`,
        );
        const seqLen =
          typeof config.seqLen === 'number' && config.seqLen > 0 ? config.seqLen : config.blockSize;
        const result = evaluate(model, Uint32Array.from(ids), tokenizer, {
          seqLen,
          batchSize: numberFlag('--batch-size', flags.batchSize, { min: 1, integer: true }),
        });
        if (flags.json) {
          console.log(JSON.stringify(result));
        } else {
          console.log(
            `loss ${result.loss.toFixed(4)} | ppl ${result.ppl.toFixed(2)} | ${result.bpb.toFixed(4)} bits/byte`,
          );
          console.log(
            `over ${result.tokens.toLocaleString('en-US')} tokens, ${result.bytes.toLocaleString('en-US')} bytes`,
          );
        }
      },
    );
}
