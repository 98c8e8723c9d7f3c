// Training objectives (config key `objective`), each one micro-batch's loss and the gradient the
// one training step (step.ts) runs backward. A shard's loss is a sum over its units, divided in
// the gradient by the step's global unit count, which every worker knows before the backward
// pass (invariant 4):
//   lm, sft  units: target tokens (not -1); loss: cross-entropy. sft differs only in its data:
//            targets only on the assistant's tokens (data/sft.ts).
//   reward   units: pairs. A pair batch (data/pairs.ts) holds B/2 pairs as rows 2i (chosen) and
//            2i+1 (rejected); targets mark each row's reply tokens, so its last real token is one
//            past its last target. r = hidden[last] . score.weight (Hugging Face
//            GPT2ForSequenceClassification, one label); loss -logsigmoid(r_c - r_r).
//   dpo      units: pairs, the same batches, with the reference model's log-prob of each row
//            (`refLogps`, B values). logp = sum of log p over the targets (the reply);
//            h = beta((pi_c - ref_c) - (pi_r - ref_r)); loss -logsigmoid(h) (TRL's sigmoid loss).
// Each shard also returns its sums of TRL's metrics, which the coordinator divides by the step's
// pair count (metrics.jsonl: rewards/chosen, rewards/rejected, rewards/accuracies,
// rewards/margins, logps/chosen, logps/rejected; a reward model logs the same rewards/* names).

import type { Batch } from '../data/loader.ts';
import type { GPT2 } from '../model/gpt2.ts';
import { WeftError, check } from '../util/errors.ts';

export const OBJECTIVES = ['lm', 'sft', 'reward', 'dpo'] as const;
export type Objective = (typeof OBJECTIVES)[number];

/** Whether the objective trains on preference pairs (reward, dpo) rather than target tokens. */
export function isPairObjective(objective: string): boolean {
  return objective === 'reward' || objective === 'dpo';
}

export function parseObjective(value: string): Objective {
  check(
    (OBJECTIVES as readonly string[]).includes(value),
    'WEFT_E_CONFIG',
    `config objective="${value}" must be one of ${OBJECTIVES.join(', ')}`,
  );
  return value as Objective;
}

/** TRL's per-step metric names for the pair objectives, in the order of ShardLoss.sums. */
export const PAIR_METRICS = [
  'rewards/chosen',
  'rewards/rejected',
  'rewards/accuracies',
  'rewards/margins',
  'logps/chosen',
  'logps/rejected',
] as const;

/** The metric names (in ShardLoss.sums order) an objective logs each step. */
export function objectiveMetrics(objective: string): readonly string[] {
  if (objective === 'dpo') return PAIR_METRICS;
  return objective === 'reward' ? PAIR_METRICS.slice(0, 4) : [];
}

/** How many units the step's loss is averaged over in `batch`: targets, or pairs. */
export function countUnits(batch: Batch, objective: string): number {
  if (isPairObjective(objective)) return batch.B / 2;
  let n = 0;
  for (const t of batch.targets) if (t !== -1) n++;
  return n;
}

/** The gradient a shard's backward pass starts from (besides the LM head's cross-entropy). */
export interface HeadGradient {
  /** Per-row weights of the row's cross-entropy (dpo). */
  rowWeights?: Float64Array;
  /** Gradient of the final hidden (B, T, C) and of score.weight (reward). */
  dHidden?: Float32Array;
  dScore?: Float32Array;
}

export interface ShardLoss {
  /** Sum of the shard's unit losses (nats) and its units. */
  lossSum: number;
  units: number;
  /** Sums over the shard's pairs of PAIR_METRICS (empty for lm, sft). */
  sums: number[];
  /** What the backward pass needs beyond the normalizer (null: plain cross-entropy). */
  head: HeadGradient | null;
}

export interface ObjectiveOptions {
  objective: string;
  /** DPO's beta. */
  beta: number;
  /** The last pipeline stage: its input, the previous stage's (B, T, C) output. */
  input?: Float32Array;
}

/** log(sigmoid(x)), without overflow for either sign. */
export const logSigmoid = (x: number) =>
  x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** Per row of a pair batch, the position of its last real token: one past its last target. */
export function lastTokens(batch: Batch): Int32Array {
  const { B, T, targets } = batch;
  const last = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    let t = T - 1;
    while (t >= 0 && targets[b * T + t] === -1) t--;
    check(
      t >= 0 && t + 1 < T,
      'WEFT_E_SHAPE',
      `row ${b} of a pair batch has no reply within its ${T} columns`,
    );
    last[b] = t + 1;
  }
  return last;
}

/**
 * Forward pass of one micro-batch under `options.objective`; returns its loss and what its
 * backward pass needs, the gradient scaled by 1 / `globalUnits`.
 */
export function objectiveForward(
  model: GPT2,
  batch: Batch,
  globalUnits: number,
  options: ObjectiveOptions,
): ShardLoss {
  const { idx, targets, B, T } = batch;
  const input = options.input;
  switch (options.objective) {
    case 'lm':
    case 'sft': {
      const r = model.forward(idx, B, T, targets, { input });
      return { lossSum: r.lossSum, units: r.targetCount, sums: [], head: null };
    }
    case 'dpo':
      return dpoForward(model, batch, options.beta, input);
    case 'reward':
      return rewardForward(model, batch, globalUnits, input);
    default:
      throw new WeftError('WEFT_E_CONFIG', `unknown objective "${options.objective}"`);
  }
}

function checkPairs(batch: Batch): void {
  check(batch.B % 2 === 0, 'WEFT_E_SHAPE', `a pair batch needs an even B, got ${batch.B}`);
}

/**
 * Each row's reward under a reward model (a forward pass): its score head on the final hidden
 * state at the row's last real token; and those positions.
 */
export function batchRewards(
  model: GPT2,
  batch: Batch,
  input?: Float32Array,
): { rewards: Float64Array; last: Int32Array } {
  const { idx, B, T } = batch;
  const C = model.config.nEmbd;
  const score = model.p.score;
  check(
    score.length === C,
    'WEFT_E_CONFIG',
    'this model has no score head: it is not a reward model (objective reward)',
  );
  const last = lastTokens(batch);
  model.forward(idx, B, T, undefined, { input });
  const hidden = model.hidden;
  const rewards = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    const at = (b * T + last[b]) * C;
    let r = 0;
    for (let c = 0; c < C; c++) r += hidden[at + c] * score[c];
    rewards[b] = r;
  }
  return { rewards, last };
}

/** Each row's sum of log p(target) under `model` (a forward pass): a reference's log-probs. */
export function batchLogps(model: GPT2, batch: Batch): Float64Array {
  model.forward(batch.idx, batch.B, batch.T, batch.targets);
  return rowLogps(model, batch.B, batch.T);
}

/** Each row's sum of log p(target) in the last forward: minus its summed losses. */
function rowLogps(model: GPT2, B: number, T: number): Float64Array {
  const losses = model.losses;
  const out = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    let sum = 0;
    for (let t = b * T; t < (b + 1) * T; t++) sum += losses[t];
    out[b] = -sum;
  }
  return out;
}

function dpoForward(model: GPT2, batch: Batch, beta: number, input?: Float32Array): ShardLoss {
  checkPairs(batch);
  const { idx, targets, B, T, refLogps } = batch;
  check(
    refLogps !== undefined && refLogps.length === B,
    'WEFT_E_SHAPE',
    `a dpo batch needs the reference log-probs of its ${B} rows`,
  );
  model.forward(idx, B, T, targets, { input });
  const logps = rowLogps(model, B, T);
  const rowWeights = new Float64Array(B);
  const sums = new Array<number>(PAIR_METRICS.length).fill(0);
  let lossSum = 0;
  for (let i = 0; i < B / 2; i++) {
    const [c, r] = [2 * i, 2 * i + 1];
    const chosen = beta * (logps[c] - refLogps[c]);
    const rejected = beta * (logps[r] - refLogps[r]);
    const h = chosen - rejected;
    lossSum -= logSigmoid(h);
    // d(-logsigmoid(h))/d(logp_c) = -beta sigmoid(-h); each row loss is -logp
    const w = beta * sigmoid(-h);
    rowWeights[c] = w;
    rowWeights[r] = -w;
    const add = [chosen, rejected, chosen > rejected ? 1 : 0, h, logps[c], logps[r]];
    add.forEach((v, k) => (sums[k] += v));
  }
  return { lossSum, units: B / 2, sums, head: { rowWeights } };
}

function rewardForward(
  model: GPT2,
  batch: Batch,
  globalUnits: number,
  input?: Float32Array,
): ShardLoss {
  checkPairs(batch);
  const { B, T } = batch;
  const C = model.config.nEmbd;
  const score = model.p.score;
  const { rewards, last } = batchRewards(model, batch, input);
  const hidden = model.hidden;
  const dHidden = new Float32Array(B * T * C);
  const dScore = new Float64Array(C);
  const sums = [0, 0, 0, 0];
  let lossSum = 0;
  for (let i = 0; i < B / 2; i++) {
    const [c, r] = [2 * i, 2 * i + 1];
    const h = rewards[c] - rewards[r];
    lossSum -= logSigmoid(h);
    const dc = -sigmoid(-h) / globalUnits; // d loss / d r_c; d / d r_r is minus that
    for (const [row, dr] of [
      [c, dc],
      [r, -dc],
    ]) {
      const at = (row * T + last[row]) * C;
      for (let k = 0; k < C; k++) {
        dHidden[at + k] = dr * score[k];
        dScore[k] += dr * hidden[at + k];
      }
    }
    const add = [rewards[c], rewards[r], h > 0 ? 1 : 0, h];
    add.forEach((v, k) => (sums[k] += v));
  }
  return {
    lossSum,
    units: B / 2,
    sums,
    head: { dHidden, dScore: Float32Array.from(dScore) },
  };
}
