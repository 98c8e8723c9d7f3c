// One data-parallel replica's pipeline in this process: P stage models (each a GPT2 holding its
// blocks, its own training step and AdamW state), the schedule's actions run in an order that
// respects it, activations and their gradients handed over in memory. The reference that stage
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
import type { PipelineAction, ScheduleKind } from './schedule.ts';
import { pipelineSchedule, simulate } from './schedule.ts';

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
    this.steps = spans.map((span) => {
      const model = GPT2.init(config, config.seed, { stage: span, backend: options.backend });
      const optimizer = new AdamW(model.layout, config, options.backend);
      const shards = config.shards || config.batchSize;
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
    const schedules = pipelineSchedule(this.options.schedule, P, batches.length);
    const { peakHeld } = simulate(schedules); // slots per stage: micro-batch mb uses mb % peak
    const globalTargets = batches.reduce((n, b) => n + countTargets(b), 0);
    for (const s of steps) s.begin();
    const inFlight = new Map<string, Float32Array>(); // sent, not yet received
    const key = (what: 'act' | 'grad', to: number, mb: number) => `${what}/${to}/${mb}`;
    let lossSum = 0;
    let overflow = false;
    let output: Float32Array | null = null;
    const perform = (s: number, a: PipelineAction): boolean => {
      const { model } = steps[s];
      const batch = batches[a.mb];
      switch (a.op) {
        case 'recvActivation':
          return inFlight.has(key('act', s, a.mb));
        case 'recvGradient':
          return inFlight.has(key('grad', s, a.mb));
        case 'forward': {
          model.useSlot(a.mb % peakHeld[s]);
          const input = take(inFlight, key('act', s, a.mb));
          const targets = s === P - 1 ? batch.targets : undefined;
          const r = model.forward(batch.idx, batch.B, batch.T, targets, { input });
          lossSum += r.lossSum;
          output = r.output ?? null;
          return true;
        }
        case 'sendActivation':
          inFlight.set(key('act', s + 1, a.mb), (output as Float32Array).slice());
          return true;
        case 'backward': {
          model.useSlot(a.mb % peakHeld[s]);
          const dOutput = take(inFlight, key('grad', s, a.mb));
          const stages = steps[s].backwardInStages(globalTargets, dOutput);
          for (let r = stages.next(); ; r = stages.next())
            if (r.done) {
              overflow ||= r.value;
              break;
            }
          return true;
        }
        case 'sendGradient':
          inFlight.set(key('grad', s - 1, a.mb), model.inputGrad.slice());
          return true;
        default:
          return a.op satisfies never;
      }
    };
    const next = new Array<number>(P).fill(0);
    for (let progressed = true; progressed;) {
      progressed = false;
      for (let s = 0; s < P; s++)
        while (next[s] < schedules[s].length && perform(s, schedules[s][next[s]])) {
          next[s]++;
          progressed = true;
        }
    }
    if (next.some((i, s) => i < schedules[s].length)) throw new Error('pipeline step deadlocked');

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

/** The value under `key`, removed; undefined when absent. */
function take(map: Map<string, Float32Array>, key: string): Float32Array | undefined {
  const value = map.get(key);
  map.delete(key);
  return value;
}
