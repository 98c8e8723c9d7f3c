// Evaluation of post-training objectives on held-out records (`weft eval`, and the end of an
// sft, reward or dpo run):
//   preference pairs  {pairs, accuracy, margin, loss}: a reward model's r(chosen) > r(rejected),
//                     or a policy's implicit DPO reward beta (logp - ref logp), which needs the
//                     reference model; margin is the mean of chosen minus rejected reward
//   sft examples      the masked loss (mean over assistant tokens), perplexity and bits per
//                     byte of the assistant text the targets stand for
// Each record is evaluated alone (B = 1 pair or example), so results do not depend on batching.

import type { PreferencePair } from '../data/preference.ts';
import { pairBatch } from '../data/pairs.ts';
import { fillSftRow } from '../data/sft.ts';
import type { GPT2 } from '../model/gpt2.ts';
import type { EncodedChat } from '../tokenizer/chat.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { check } from '../util/errors.ts';
import type { EvalResult } from './evaluate.ts';
import { batchLogps, batchRewards, logSigmoid } from './objectives.ts';

export interface PairEval {
  pairs: number;
  accuracy: number;
  margin: number;
  loss: number;
}

export interface PairEvalOptions {
  seqLen: number;
  pad: number;
  /** dpo: the reference model and beta (the policy's implicit reward); absent: a reward model. */
  reference?: GPT2;
  beta?: number;
}

export function evaluatePairs(
  model: GPT2,
  pairs: PreferencePair[],
  options: PairEvalOptions,
): PairEval {
  check(pairs.length > 0, 'WEFT_E_SHAPE', 'no preference pairs to evaluate');
  let wins = 0;
  let margin = 0;
  let loss = 0;
  for (const pair of pairs) {
    const batch = pairBatch(pair, options.seqLen, options.pad);
    let chosen: number;
    let rejected: number;
    if (options.reference) {
      const beta = options.beta ?? 0.1;
      const pi = batchLogps(model, batch);
      const ref = batchLogps(options.reference, batch);
      [chosen, rejected] = [beta * (pi[0] - ref[0]), beta * (pi[1] - ref[1])];
    } else {
      [chosen, rejected] = batchRewards(model, batch).rewards;
    }
    const h = chosen - rejected;
    if (h > 0) wins++;
    margin += h;
    loss -= logSigmoid(h);
  }
  const n = pairs.length;
  return { pairs: n, accuracy: wins / n, margin: margin / n, loss: loss / n };
}

/** Masked loss and bits per byte of the assistant text of `examples` (cut to seqLen). */
export function evaluateSft(
  model: GPT2,
  examples: EncodedChat[],
  tokenizer: Tokenizer,
  options: { seqLen: number; pad: number },
): EvalResult {
  const T = options.seqLen;
  let lossSum = 0;
  let tokens = 0;
  let bytes = 0;
  for (const example of examples) {
    const idx = new Int32Array(T);
    const targets = new Int32Array(T);
    fillSftRow(example, idx, targets, 0, T, options.pad);
    if (!targets.some((t) => t !== -1)) continue;
    const r = model.forward(idx, 1, T, targets);
    lossSum += r.lossSum;
    tokens += r.targetCount;
    for (const t of targets) if (t !== -1) bytes += tokenizer.byteLength(t);
  }
  check(tokens > 0, 'WEFT_E_SHAPE', 'no assistant tokens to evaluate');
  const loss = lossSum / tokens;
  return { loss, ppl: Math.exp(loss), bpb: lossSum / Math.LN2 / Math.max(1, bytes), tokens, bytes };
}
