// Pipeline parallelism's layout (GPipe, arXiv 1811.06965; Megatron-LM, arXiv 2104.04473): the L
// transformer blocks split into P contiguous stages balanced by compute, and the workers arranged
// into a D x P grid (D data-parallel replicas of P stages). The token and position embeddings go
// with stage 0; the final LayerNorm and the head (tied to wte, so that stage holds a copy of wte
// too) with the last. Pure functions: the coordinator plans with them, `weft info` prints them.

import type { GPTConfig } from '../../model/config.ts';
import type { ActKey } from '../../model/layout.ts';
import { actLayout, namedTensors } from '../../model/layout.ts';
import { check } from '../../util/errors.ts';

export interface PipelineStage {
  index: number;
  /** Blocks [firstLayer, endLayer) of the model. */
  firstLayer: number;
  endLayer: number;
  /** Holds wte and wpe (stage 0) / the final LayerNorm and the tied head (the last stage). */
  embeddings: boolean;
  head: boolean;
  /** Training FLOPs of one micro-batch of B x T tokens on this stage (forward + backward). */
  flops: number;
  /** Parameters this stage holds (wte counted on both ends when P > 1). */
  params: number;
  /** Bytes of saved activations for one micro-batch (what the backward pass needs). */
  activationBytes: number;
}

/** Saved activations stacked over the layers (leading L), and those of the final LayerNorm and head. */
const LAYER_ACTS = [
  'ln1', 'ln1Mean', 'ln1Rstd', 'qkv', 'atty', 'att', 'attproj', 'residual2', 'ln2', 'ln2Mean',
  'ln2Rstd', 'fch', 'fchGelu', 'fcproj', 'residual3',
] as const satisfies readonly ActKey[]; // prettier-ignore
const HEAD_ACTS = ['lnf', 'lnfMean', 'lnfRstd', 'logits', 'probs', 'losses'] as const;

/** Per-token training FLOPs (forward + backward = 3x forward) of one block and of the head. */
function flopsPerToken(config: GPTConfig, T: number): { block: number; head: number } {
  const { nEmbd: C, vocabSize: V } = config;
  const matmuls = 2 * (C * 3 * C + C * C + C * 4 * C + 4 * C * C);
  const attention = 2 * 2 * ((T + 1) / 2) * C; // causal half, scores and att @ v
  return { block: 3 * (matmuls + attention), head: 3 * 2 * C * V };
}

/**
 * Splits config.nLayer blocks into `P` contiguous stages of at least one block each, minimising
 * the largest stage's compute (the head's counted on the last stage); ties go to the split that
 * puts more blocks first. B x T is one micro-batch.
 */
export function partitionStages(
  config: GPTConfig,
  P: number,
  B: number,
  T: number,
): PipelineStage[] {
  const L = config.nLayer;
  check(
    Number.isSafeInteger(P) && P >= 1 && P <= L,
    'WEFT_E_CONFIG',
    `pipeline stages P=${P} must be an integer from 1 to nLayer=${L} (each stage holds at least one block)`,
  );
  const { block, head } = flopsPerToken(config, T);
  const cost = (first: number, end: number, last: boolean) =>
    (end - first) * block + (last ? head : 0);
  // the least possible largest stage, then among the splits that reach it the most even one
  const limit = splitBlocks(L, P, cost, Math.max, Infinity).value;
  const { cuts } = splitBlocks(L, P, cost, (a, b) => a * a + b, limit);
  const tensors = namedTensors(config);
  const acts = actLayout(config, B, T);
  const sizeOf = (keys: readonly ActKey[]) => keys.reduce((n, k) => n + acts.byKey[k].size, 0);
  const perLayerActs = sizeOf(LAYER_ACTS) / L;
  const headActs = sizeOf(HEAD_ACTS);
  const stages: PipelineStage[] = [];
  for (let p = 0, l = 0; p < P; p++) {
    const end = cuts[p];
    const embeddings = p === 0;
    const isHead = p === P - 1;
    const params = tensors
      .filter(
        (t) =>
          t.layer !== null
            ? t.layer >= l && t.layer < end
            : t.key === 'wte'
              ? embeddings || isHead
              : t.key === 'wpe'
                ? embeddings
                : isHead, // lnfw, lnfb
      )
      .reduce((n, t) => n + t.size, 0);
    const actElems =
      (end - l) * perLayerActs +
      (embeddings ? acts.byKey.encoded.size : 0) +
      (isHead ? headActs : 0);
    stages.push({
      index: p,
      firstLayer: l,
      endLayer: end,
      embeddings,
      head: isHead,
      flops: cost(l, end, isHead) * B * T,
      params,
      activationBytes: 4 * actElems,
    });
    l = end;
  }
  return stages;
}

/**
 * The split of blocks 0..L into P non-empty runs that minimises the runs' costs folded with
 * `combine(stageCost, restValue)` (max: the largest stage; a*a + b: the sum of squares), with no
 * stage over `limit`. Dynamic programming over where each stage ends; ties go to the split with
 * more blocks earlier. Returns the value and each stage's end.
 */
function splitBlocks(
  L: number,
  P: number,
  cost: (first: number, end: number, last: boolean) => number,
  combine: (stage: number, rest: number) => number,
  limit: number,
): { value: number; cuts: number[] } {
  // best[p][l]: the value of stages p.. holding blocks l..; end[p][l]: where stage p ends then
  const best = Array.from({ length: P + 1 }, () => new Array<number>(L + 1).fill(Infinity));
  const end = Array.from({ length: P + 1 }, () => new Array<number>(L + 1).fill(-1));
  best[P][L] = 0;
  for (let p = P - 1; p >= 0; p--) {
    for (let l = L - (P - p); l >= p; l--) {
      for (let e = L - (P - p - 1); e > l; e--) {
        const c = cost(l, e, p === P - 1);
        if (c > limit || best[p + 1][e] === Infinity) continue;
        const value = combine(c, best[p + 1][e]);
        if (value < best[p][l]) {
          best[p][l] = value;
          end[p][l] = e;
        }
      }
    }
  }
  const cuts: number[] = [];
  for (let p = 0, l = 0; p < P; p++) cuts.push((l = end[p][l]));
  return { value: best[0][0], cuts };
}

/** The fraction of a step a stage idles in a pipeline of P stages over m micro-batches. */
export function bubbleFraction(P: number, m: number): number {
  return (P - 1) / (m + P - 1);
}

/**
 * D x P: the data-parallel replicas of `workers` workers in stages of P, and each replica's
 * micro-batches (the step's `shards` dealt round-robin over the replicas). Refuses a worker
 * count that P does not divide, naming the valid ones, and a replica with fewer micro-batches
 * than stages.
 */
export function pipelineGrid(
  workers: number,
  P: number,
  shards: number,
): { replicas: number; microBatches: number[] } {
  check(
    workers % P === 0,
    'WEFT_E_CONFIG',
    `${workers} workers do not form pipelines of ${P} stages; use a multiple of ${P} (${[1, 2, 3].map((k) => k * P).join(', ')}, ...)`,
  );
  const D = workers / P;
  const microBatches = Array.from(
    { length: D },
    (_, r) => Math.floor(shards / D) + (r < shards % D ? 1 : 0),
  );
  check(
    Math.min(...microBatches) >= P,
    'WEFT_E_CONFIG',
    `each of ${D} replica(s) gets at least ${Math.min(...microBatches)} of the step's ${shards} micro-batches (shards), fewer than its ${P} stages; raise shards (and batchSize) to at least ${D * P}, or use fewer stages`,
  );
  return { replicas: D, microBatches };
}
