// What the preference objectives read off the model for one sequence (B = 1, T columns):
//   logp    the sum of the log-probabilities of its target tokens (DPO, TRL's "logps"): minus the
//           cross-entropy summed over the targets (-1 elsewhere: prompt, last token, padding)
//   reward  a reward model's score (Hugging Face GPT2ForSequenceClassification with one label):
//           the final LayerNorm's output at the sequence's last real token, dotted with
//           score.weight [1, C]; the tied head is not used
// Padding follows the real tokens, so under the causal mask it changes nothing before them.

import type { GPT2 } from '../model/gpt2.ts';
import { check } from '../util/errors.ts';

/** Sum of log p(target) over the sequence's targets (a sum, not a mean). */
export function sequenceLogp(model: GPT2, idx: Int32Array, targets: Int32Array, T: number): number {
  return -model.forward(idx, 1, T, targets).lossSum;
}

/** The reward of the sequence's first `length` tokens: hidden[length - 1] . score. */
export function sequenceReward(
  model: GPT2,
  idx: Int32Array,
  length: number,
  T: number,
  score: Float32Array,
): number {
  const C = model.config.nEmbd;
  check(
    Number.isSafeInteger(length) && length >= 1 && length <= T && score.length === C,
    'WEFT_E_SHAPE',
    `a reward needs 1 <= length <= T (${length}, ${T}) and a score of ${C} values (${score.length})`,
  );
  model.forward(idx, 1, T);
  const h = model.hidden.subarray((length - 1) * C, length * C);
  let reward = 0;
  for (let c = 0; c < C; c++) reward += h[c] * score[c];
  return reward;
}
