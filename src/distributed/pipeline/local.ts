// One data-parallel replica's pipeline in this process: P stage models (each a GPT2 holding its
// blocks, its own training step and AdamW state), each running its schedule (stage-runner.ts)
// concurrently with the others, activations and their gradients handed over in memory. The reference that stage
// workers are checked against, and a pipeline's numbers without a network. Its weights after
// each step are the bytes of one worker training the whole model on the same micro-batches:
//   - every stage runs the same kernels on the same numbers as the whole model would;
//   - the tied wte's two parts (stage 0's embeddings, the last stage's head) are put on the exact
//     grid separately (as TrainingStep always does) and summed exactly into both copies;
//   - the norm adds every block's sum of squares in the whole model's order (norm.ts).

import type { Batch } from '../../data/loader.ts';
import type { Backend } from '../../kernels/backend.ts';
import { GPT2 } from '../../model/gpt2.ts';
import type { StageRange } from '../../model/stage.ts';
import { copyStage, stageRanges } from '../../model/stage.ts';
import { paramCount } from '../../model/layout.ts';
import { AdamW } from '../../train/adamw.ts';
import type { RunConfig } from '../../train/config.ts';
import { stagedSumOfSquares } from '../../train/norm.ts';
import { TrainingStep, countTargets, localReducer } from '../../train/step.ts';
import { partitionStages } from './partition.ts';
import type { ScheduleKind } from './schedule.ts';
import type { StageLinks } from './stage-runner.ts';
import { runStage } from './stage-runner.ts';

export interface LocalPipelineOptions {
  stages: number;
  schedule: ScheduleKind;
  backend?: Backend;
  /** Exact-grid bits G. */
  bits: number;
}

export class LocalPipeline {
  readonly steps: TrainingStep[];
  private readonly ranges: StageRange[][];

  constructor(
    readonly config: RunConfig,
    readonly options: LocalPipelineOptions,
  ) {
    const P = options.stages;
    const spans = partitionStages(config, P, 1, config.seqLen || config.blockSize);
    const shards = config.shards || config.batchSize;
    this.steps = spans.map((span) => {
      const model = GPT2.init(config, config.seed, { stage: span, backend: options.backend });
      const optimizer = new AdamW(model.layout, config, options.backend);
      return new TrainingStep(model, optimizer, {
        bits: options.bits,
        shards,
        gradClip: config.gradClip,
      });
    });
    this.ranges = this.steps.map((s) => stageRanges(config, s.model.span));
  }

  /** The whole model's parameters, gathered from the stages. */
  params(): Float32Array {
    const whole = new Float32Array(paramCount(this.config));
    this.steps.forEach((s, i) => copyStage(this.ranges[i], s.model.params, whole, 'full'));
    return whole;
  }

  /** One optimizer step over `batches` (the micro-batches, in order). */
  async step(
    batches: Batch[],
    lr: number,
  ): Promise<{ lossSum: number; gradNorm: number; overflow: boolean }> {
    const { steps } = this;
    const P = steps.length;
    const globalTargets = batches.reduce((n, b) => n + countTargets(b), 0);
    for (const s of steps) s.begin();
    // the links: what stage s sends to stage t waits in a mailbox of t until t takes it
    const mailboxes = steps.map(() => new Map<string, Float32Array>());
    const waiting = steps.map(() => new Map<string, (data: Float32Array) => void>());
    const linksOf = (s: number): StageLinks => ({
      send: (what, mb, data) => {
        const to = what === 'act' ? s + 1 : s - 1;
        const key = `${what}/${mb}`;
        const copy = data.slice();
        const taker = waiting[to].get(key);
        if (taker) {
          waiting[to].delete(key);
          taker(copy);
        } else mailboxes[to].set(key, copy);
      },
      receive: (what, mb) => {
        const key = `${what}/${mb}`;
        const ready = mailboxes[s].get(key);
        mailboxes[s].delete(key);
        if (ready) return Promise.resolve(ready);
        return new Promise((resolve) => waiting[s].set(key, resolve));
      },
    });
    const results = await Promise.all(
      steps.map((step, s) =>
        runStage(step, this.options.schedule, s, P, batches, globalTargets, linksOf(s)),
      ),
    );
    const lossSum = results[P - 1].losses.reduce((n, r) => n + r.lossSum, 0);
    const overflow = results.some((r) => r.overflow);

    // the tied wte: its two parts summed exactly, into both copies
    if (P > 1) {
      const [first, last] = [steps[0], steps[P - 1]];
      const wte = (s: TrainingStep) => {
        const slot = s.model.layout.byKey.wte;
        return s.acc.subarray(slot.offset, slot.offset + slot.size);
      };
      const a = wte(first);
      const b = wte(last);
      for (let i = 0; i < a.length; i++) b[i] = a[i] += b[i];
    }
    for (const s of steps) await s.reduceOnly(localReducer(s.model, this.options.bits));
    const sum = stagedSumOfSquares(
      this.config,
      steps.map((s) => ({ span: s.model.span, grads: s.model.grads })),
    );
    const gradNorm = Math.sqrt(sum);
    for (const s of steps) {
      s.setNorm(gradNorm);
      s.apply(lr, overflow || globalTargets === 0);
    }
    return { lossSum, gradNorm, overflow };
  }
}
