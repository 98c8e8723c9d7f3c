// The training step (docs/design.md invariant 9): one function for every worker count, every
// pipeline layout and every objective, in four parts a worker runs as its protocol says:
//   begin()                  the step's exact accumulator to zero
//   addShard(batch, targets) forward and backward of one micro-batch (the loss summed over its
//                            targets, divided by the step's global target count), rounded onto
//                            the exact grid and added into the accumulator
//   reduce(reducer)          the accumulators of all workers summed into the model's fp32
//                            gradients (one worker: the backend's fromExact; several: the exact
//                            ring all-reduce), and the global gradient norm taken once
//   apply(lr, skip)          clip to that norm, AdamW (skip: an overflowed step on every worker)
// runStep does all four for a caller that holds every shard of the step (one worker: the fixture
// tests against PyTorch, the step benchmark). Exact sums make the result independent of how the
// shards are split between workers; the norm is partition-independent too (norm.ts).

import type { Batch } from '../data/loader.ts';
import type { GPT2 } from '../model/gpt2.ts';
import type { AdamW } from './adamw.ts';
import type { HeadGradient } from './objectives.ts';
import { countUnits, objectiveForward } from './objectives.ts';
import type { BackwardOrder } from '../model/backward-order.ts';
import { backwardOrder, forEachPart } from '../model/backward-order.ts';
import { WeftError } from '../util/errors.ts';
import { clipToNorm, normBlocks, sumOfSquares } from './norm.ts';

/** Exact sums on the grid 2^-G (invariant 4): G = 40 unless a run says otherwise. */
export const DEFAULT_EXACT_BITS = 40;

/** How far the step's accumulator is final, for a reducer that starts before the last shard ends. */
export interface GradientProgress {
  order: BackwardOrder;
  /** Resolves once positions [0, end) of `order` hold every shard of this worker. */
  whenReady(end: number): Promise<void>;
}

/** Sums the workers' exact accumulators into fp32 gradients. */
export interface Reducer {
  /**
   * Sums `acc` across the workers into `grads`, the same bits on every one. `acc` must stay as it
   * is: a retried attempt of the step keeps the shards it already holds. A reducer that
   * `overlaps` reads `acc` range by range as `progress` says it is final; any other is called
   * only once the whole accumulator is.
   */
  reduce(acc: Float64Array, grads: Float32Array, progress?: GradientProgress): Promise<void>;
  overlaps?: boolean;
}

/** The reducer of a worker alone: its accumulator is the sum. */
export function localReducer(model: GPT2, bits: number): Reducer {
  return {
    reduce: (acc, grads) => Promise.resolve(model.backend.fromExact(grads, acc, bits)),
  };
}

export interface ShardResult {
  /** Sum of the shard's unit losses (nats) and how many units (targets, or pairs) it has. */
  lossSum: number;
  targets: number;
  /** Sums of the objective's metrics over the shard (objectives.ts; empty for lm, sft). */
  sums: number[];
  /** A gradient value too large for the exact grid: the step must be skipped everywhere. */
  overflow: boolean;
}

export interface StepOptions {
  /** Exact-grid bits G. */
  bits: number;
  /** Micro-batches (virtual shards) per step, across all workers. */
  shards: number;
  /** Global gradient-norm clip; 0 disables it. */
  gradClip: number;
  /** The objective (objectives.ts; default lm) and DPO's beta. */
  objective?: string;
  beta?: number;
}

/**
 * The units a batch's loss is averaged over: targets (not -1) for lm and sft, pairs for reward
 * and dpo (objectives.ts).
 */
export function countTargets(batch: Batch, objective = 'lm'): number {
  return countUnits(batch, objective);
}

export class TrainingStep {
  /** The exact accumulator: integers on the grid 2^-bits, in the backend's memory. */
  readonly acc: Float64Array;
  private readonly blocks: { begin: number; end: number }[];
  private norm = NaN;
  readonly order: BackwardOrder;
  /** Positions of `order` final in `acc`: all of them unless a shard is being added in stages. */
  private readyUpTo = Infinity;
  private waiters: { end: number; resolve: () => void }[] = [];
  readonly progress: GradientProgress;

  constructor(
    readonly model: GPT2,
    readonly optimizer: AdamW,
    readonly options: StepOptions,
  ) {
    this.acc = model.backend.allocF64(model.paramCount);
    this.blocks = model.span.head && model.span.embeddings ? normBlocks(model.config) : [];
    this.order = backwardOrder(model.config, model.span);
    this.progress = {
      order: this.order,
      whenReady: (end) =>
        end <= this.readyUpTo
          ? Promise.resolve()
          : new Promise((resolve) => this.waiters.push({ end, resolve })),
    };
  }

  begin(): void {
    this.acc.fill(0);
    this.norm = NaN;
  }

  /** Forward and backward of one micro-batch, added exactly into the accumulator. */
  addShard(batch: Batch, globalTargets: number): ShardResult {
    const stages = this.addShardInStages(batch, globalTargets);
    for (;;) {
      const next = stages.next();
      if (next.done) return next.value;
    }
  }

  /**
   * addShard in the backward pass's stages, pausing after each once its gradients are in the
   * accumulator (`progress` says how far that is, from this call on), so a reducer can work on
   * them meanwhile. Run it to the end: until then the rest of the accumulator is not ready.
   */
  addShardInStages(batch: Batch, globalTargets: number): Generator<void, ShardResult, void> {
    this.setReady(0);
    return this.stages(batch, globalTargets);
  }

  private *stages(batch: Batch, globalTargets: number): Generator<void, ShardResult, void> {
    try {
      const { objective = 'lm', beta = 0.1 } = this.options;
      const shard = objectiveForward(this.model, batch, globalTargets, { objective, beta });
      if (shard.units === 0) return { lossSum: 0, targets: 0, sums: shard.sums, overflow: false };
      const overflow = yield* this.backwardInStages(globalTargets, undefined, shard.head);
      return { lossSum: shard.lossSum, targets: shard.units, sums: shard.sums, overflow };
    } finally {
      this.setReady(Infinity);
    }
  }

  /**
   * The backward pass of the micro-batch the model last ran forward (in its current slot), added
   * exactly into the accumulator stage by stage; returns whether a value overflowed the grid. A
   * pipeline stage without the head starts from `dOutput`, its output's gradient. The tied wte's
   * two parts (the head's, then the embeddings') are put on the grid separately, as two stages
   * holding one each do, so every pipeline layout sums the same integers. `head`: what an
   * objective other than plain cross-entropy starts the backward pass from (objectives.ts).
   */
  *backwardInStages(
    globalTargets: number,
    dOutput?: Float32Array,
    head?: HeadGradient | null,
  ): Generator<void, boolean, void> {
    const { model, order } = this;
    const { bits, shards } = this.options;
    const add = (offset: number, count: number) =>
      model.backend.accumulateExact(
        this.acc.subarray(offset, offset + count),
        model.grads.subarray(offset, offset + count),
        bits,
        shards,
      );
    model.zeroGrad();
    if (head?.dScore) model.g.score.set(head.dScore);
    let overflow = false;
    const stages = model.backwardStages(globalTargets, head?.dHidden ?? dOutput, head?.rowWeights);
    for (const stage of stages) {
      const begin = stage === 0 ? 0 : order.stageEnds[stage - 1];
      forEachPart(order, begin, order.stageEnds[stage], (offset, _, count) => {
        overflow = add(offset, count) || overflow;
      });
      if (stage === 0 && model.span.head && model.span.embeddings) {
        const wte = model.layout.byKey.wte;
        overflow = add(wte.offset, wte.size) || overflow; // the head's part
        model.g.wte.fill(0);
      }
      this.setReady(order.stageEnds[stage]);
      yield;
    }
    return overflow;
  }

  private setReady(upTo: number): void {
    this.readyUpTo = upTo;
    const ready = this.waiters.filter((w) => w.end <= upTo);
    this.waiters = this.waiters.filter((w) => w.end > upTo);
    for (const w of ready) w.resolve();
  }

  /** The summed gradient into model.grads; returns the global norm (before clipping). */
  async reduce(reducer: Reducer): Promise<number> {
    await this.reduceOnly(reducer);
    this.norm = Math.sqrt(sumOfSquares(this.model.grads, this.blocks));
    return this.norm;
  }

  /**
   * The summed gradient into model.grads, without the norm: a pipeline stage holds only some of
   * the norm's blocks, and its caller sets the global norm (setNorm) from every stage's.
   */
  async reduceOnly(reducer: Reducer): Promise<void> {
    if (!reducer.overlaps) await this.progress.whenReady(this.order.total);
    await reducer.reduce(this.acc, this.model.grads, this.progress);
  }

  /** The global gradient norm apply() clips to, found across a pipeline's stages (norm.ts). */
  setNorm(norm: number): void {
    this.norm = norm;
  }

  /** Clips to the norm reduce found and takes the AdamW step (nothing when `skip`). */
  apply(lr: number, skip = false): void {
    if (skip) return;
    if (Number.isNaN(this.norm))
      throw new WeftError('WEFT_E_STATE', 'apply() before reduce(): the step has no gradient yet');
    const { model, optimizer } = this;
    clipToNorm(model.grads, this.norm, this.options.gradClip);
    optimizer.step(model.params, model.grads, lr);
    model.backend.weightsChanged?.(); // whatever backend the optimizer was given
  }
}

/**
 * One whole step over `batches` (this worker's shards, in order): begin, every shard, reduce
 * (alone unless a `reducer` is given: then `globalTargets` counts every worker's targets), apply.
 * Returns this worker's loss sum, the loss over `globalTargets`, and the norm. An overflow must
 * be agreed by every worker; alone, it skips the update.
 */
export async function runStep(
  step: TrainingStep,
  batches: Batch[],
  lr: number,
  ring: { reducer: Reducer; globalTargets: number } | null = null,
): Promise<{ lossSum: number; loss: number; gradNorm: number; overflow: boolean; sums: number[] }> {
  const objective = step.options.objective;
  const globalTargets =
    ring?.globalTargets ?? batches.reduce((n, b) => n + countTargets(b, objective), 0);
  step.begin();
  let lossSum = 0;
  let overflow = false;
  const sums: number[] = [];
  for (const batch of batches) {
    const r = step.addShard(batch, globalTargets);
    lossSum += r.lossSum;
    overflow ||= r.overflow;
    r.sums.forEach((v, k) => (sums[k] = (sums[k] ?? 0) + v));
  }
  const reducer = ring?.reducer ?? localReducer(step.model, step.options.bits);
  const gradNorm = await step.reduce(reducer);
  step.apply(lr, overflow || globalTargets === 0);
  return { lossSum, loss: lossSum / globalTargets, gradNorm, overflow, sums };
}
