// Evaluation of a model on a token stream: mean next-token loss over consecutive windows of T
// (the last one may be shorter), perplexity exp(loss), and bits per byte = total loss in bits /
// UTF-8 bytes of the predicted tokens, which compares models across tokenizers.

import type { GPT2 } from '../model/gpt2.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { check } from '../util/errors.ts';

export interface EvalResult {
  loss: number;
  ppl: number;
  bpb: number;
  /** Targets evaluated. */
  tokens: number;
  /** UTF-8 bytes those targets stand for. */
  bytes: number;
}

export interface EvalOptions {
  seqLen: number;
  batchSize: number;
  /** Evaluate at most this many windows (0: the whole stream). */
  maxWindows?: number;
}

export function evaluate(
  model: GPT2,
  tokens: ArrayLike<number>,
  tokenizer: Tokenizer,
  options: EvalOptions,
): EvalResult {
  check(
    tokens.length >= 2,
    'WEFT_E_SHAPE',
    `evaluation needs at least 2 tokens, got ${tokens.length}`,
  );
  const T = Math.min(options.seqLen, tokens.length - 1);
  const windows: number[] = []; // start offsets; window w predicts tokens[w+1 .. w+len]
  for (let start = 0; start + 1 < tokens.length; start += T) windows.push(start);
  const limit =
    options.maxWindows && options.maxWindows > 0
      ? Math.min(options.maxWindows, windows.length)
      : windows.length;

  let lossSum = 0;
  let count = 0;
  let bytes = 0;
  for (let w = 0; w < limit;) {
    // a batch of full windows, or the final short window on its own
    const len = Math.min(T, tokens.length - 1 - windows[w]);
    let B = 0;
    while (
      w + B < limit &&
      B < options.batchSize &&
      Math.min(T, tokens.length - 1 - windows[w + B]) === len
    )
      B++;
    const idx = new Int32Array(B * len);
    const targets = new Int32Array(B * len);
    for (let b = 0; b < B; b++) {
      const start = windows[w + b];
      for (let t = 0; t < len; t++) {
        idx[b * len + t] = tokens[start + t];
        targets[b * len + t] = tokens[start + t + 1];
        bytes += tokenizer.byteLength(tokens[start + t + 1]);
      }
    }
    const result = model.forward(idx, B, len, targets);
    lossSum += result.lossSum;
    count += result.targetCount;
    w += B;
  }
  const loss = lossSum / count;
  return {
    loss,
    ppl: Math.exp(loss),
    bpb: bytes > 0 ? lossSum / Math.LN2 / bytes : NaN,
    tokens: count,
    bytes,
  };
}
