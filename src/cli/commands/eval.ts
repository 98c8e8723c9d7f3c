// `weft eval`: a saved model on held-out data.
//   text file     loss, perplexity and bits per byte
//   dataset dir   the same on its whole validation split (a run's <out>/data, from weft prepare)
//   .jsonl file   preference pairs: {"pairs","accuracy","margin","loss"} for a reward model, or a
//                 DPO policy's implicit reward with --reference (the model it was trained from);
//                 conversations (SFT): the masked loss and bits per byte of the assistant text
// Records that cannot be evaluated are counted on stderr, as training counts them.

import type { Command } from 'commander';
import { loadModel } from '../../checkpoint/read.ts';
import { scoreLabels } from '../../model/config.ts';
import { describeReport } from '../../data/jsonl.ts';
import { readRecords } from '../../data/records.ts';
import { loadDataset } from '../../data/dataset.ts';
import type { Tokenizer } from '../../tokenizer/types.ts';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { evaluate } from '../../train/evaluate.ts';
import { evaluatePairs, evaluateSft } from '../../train/evaluate-records.ts';
import { readUtf8 } from '../../util/files.ts';
import { WeftError, check } from '../../util/errors.ts';
import type { ComputeFlags } from './compute-options.ts';
import { addComputeOptions, backendOf } from './compute-options.ts';
import { numberFlag } from './options.ts';

interface EvalFlags extends ComputeFlags {
  checkpoint: string;
  data: string;
  batchSize: string;
  reference?: string;
  beta?: string;
  seqLen?: string;
  json?: boolean;
}

/** Whether the first parseable line of a JSONL text is a preference record. */
function looksLikePreferences(text: string): boolean {
  for (const line of text.split('\n')) {
    try {
      const r = JSON.parse(line) as Record<string, unknown>;
      return typeof r === 'object' && r !== null && ('chosen' in r || 'rejected' in r);
    } catch {
      // an unparseable line: look at the next
    }
  }
  return false;
}

export function registerEval(program: Command): void {
  addComputeOptions(program.command('eval'))
    .description(
      'evaluate a trained model: loss, perplexity and bits per byte on a text file; preference accuracy or masked SFT loss on a .jsonl file',
    )
    .requiredOption(
      '--checkpoint <dir>',
      'run directory (its latest checkpoint) or a checkpoint directory',
    )
    .requiredOption(
      '--data <file>',
      'UTF-8 text file, JSONL preference pairs or conversations, or a prepared dataset directory (its whole validation split)',
    )
    .option('--batch-size <n>', 'windows per forward pass (text)', '8')
    .option(
      '--seq-len <n>',
      "context per window or record (default: the run's seqLen; at most blockSize)",
    )
    .option(
      '--reference <dir>',
      'preference pairs: score a DPO policy against this reference model',
    )
    .option('--beta <x>', 'DPO beta for --reference (default: the checkpoint run’s)')
    .option('--json', 'print the result as one JSON object')
    .action((flags: EvalFlags) => {
      const backend = backendOf(flags);
      const { model, config, tokenizer } = loadModel(flags.checkpoint, backend);
      const trained =
        typeof config.seqLen === 'number' && config.seqLen > 0 ? config.seqLen : config.blockSize;
      const seqLen =
        flags.seqLen === undefined
          ? trained
          : numberFlag('--seq-len', flags.seqLen, { min: 1, integer: true });
      check(
        seqLen <= config.blockSize,
        'WEFT_E_CONFIG',
        `--seq-len ${seqLen} is longer than the model's context (blockSize ${config.blockSize})`,
      );
      const print = (json: object, human: string) =>
        console.log(flags.json ? JSON.stringify(json) : human);
      if (!flags.data.endsWith('.jsonl')) {
        check(
          flags.reference === undefined,
          'WEFT_E_CONFIG',
          '--reference applies to preference pairs (.jsonl)',
        );
        const ids = isDirectory(flags.data)
          ? validationSplit(flags.data, tokenizer)
          : Uint32Array.from(tokenizer.encode(readUtf8(flags.data, 'data file')));
        check(
          ids.length >= 2,
          'WEFT_E_SHAPE',
          `data ${flags.data} has ${ids.length} tokens; evaluation needs at least 2`,
        );
        const result = evaluate(model, ids, tokenizer, {
          seqLen,
          batchSize: numberFlag('--batch-size', flags.batchSize, { min: 1, integer: true }),
        });
        return print(
          result,
          `loss ${result.loss.toFixed(4)} | ppl ${result.ppl.toFixed(2)} | ${result.bpb.toFixed(4)} bits/byte\n` +
            `over ${result.tokens.toLocaleString('en-US')} tokens, ${result.bytes.toLocaleString('en-US')} bytes`,
        );
      }
      const text = readUtf8(flags.data, 'data file');
      const kind = looksLikePreferences(text) ? 'preference' : 'sft';
      check(
        kind === 'sft' || flags.reference !== undefined || scoreLabels(config) > 0,
        'WEFT_E_CONFIG',
        `${flags.checkpoint} has no score head: it is not a reward model; pass --reference MODEL to score a DPO policy by its implicit reward`,
      );
      const { records, report } = readRecords(flags.data, { kind, tokenizer, seqLen });
      console.error(`${flags.data}: ${describeReport(report)}`);
      const pad = tokenizer.specials.endOfText;
      if (records.kind === 'sft') {
        check(
          records.train.length > 0,
          'WEFT_E_FORMAT',
          `${flags.data} holds no usable conversations`,
        );
        const result = evaluateSft(model, records.train, tokenizer, { seqLen, pad });
        return print(
          result,
          `masked loss ${result.loss.toFixed(4)} | ${result.bpb.toFixed(4)} bits/byte of assistant text over ${result.tokens.toLocaleString('en-US')} tokens`,
        );
      }
      check(
        records.train.length > 0,
        'WEFT_E_FORMAT',
        `${flags.data} holds no usable preference pairs`,
      );
      const reference = flags.reference ? loadModel(flags.reference, backend) : undefined;
      if (reference && reference.config.vocabSize !== config.vocabSize)
        throw new WeftError(
          'WEFT_E_CONFIG',
          `--reference ${flags.reference} is not the same architecture as ${flags.checkpoint}`,
        );
      const beta =
        flags.beta !== undefined
          ? numberFlag('--beta', flags.beta, { min: 0 })
          : typeof config.beta === 'number'
            ? config.beta
            : 0.1;
      const result = evaluatePairs(model, records.train, {
        seqLen,
        pad,
        reference: reference?.model,
        beta,
      });
      const { pairs, accuracy, margin, loss } = result;
      print(
        { pairs, accuracy, margin, loss },
        `accuracy ${accuracy.toFixed(4)} over ${pairs} pairs | margin ${margin.toFixed(4)} | loss ${loss.toFixed(4)}`,
      );
    });
}

/** The whole validation split of the prepared dataset in `dir`, tokenized as the model's. */
function validationSplit(dir: string, tokenizer: Tokenizer): ArrayLike<number> {
  check(
    existsSync(join(dir, 'dataset.json')),
    'WEFT_E_CONFIG',
    `${dir} is a directory but not a prepared dataset (no dataset.json); pass a text file or a dataset directory`,
  );
  const dataset = loadDataset(dir);
  check(
    !dataset.records,
    'WEFT_E_CONFIG',
    `dataset ${dir} holds ${dataset.manifest.kind} records; evaluate their .jsonl file instead`,
  );
  const theirs = dataset.tokenizer.name;
  check(
    JSON.stringify(dataset.tokenizer.toJSON()) === JSON.stringify(tokenizer.toJSON()),
    'WEFT_E_CONFIG',
    `dataset ${dir} was tokenized with ${theirs === tokenizer.name ? `another ${theirs} tokenizer than the checkpoint's` : `${theirs}, not the checkpoint's tokenizer (${tokenizer.name})`}; evaluate on a text file or a dataset prepared for this model`,
  );
  check(
    dataset.val.length > 0,
    'WEFT_E_SHAPE',
    `dataset ${dir} has no validation split (valFraction 0)`,
  );
  return dataset.val;
}

function isDirectory(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}
