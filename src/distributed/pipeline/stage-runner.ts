// One pipeline stage's part of a step: its schedule's actions (schedule.ts) in order, on its
// training step (a GPT2 holding the stage's blocks), with the activations and their gradients
// going to and coming from the neighbouring stages through `links`. The same code runs a stage of
// a pipeline in one process (local.ts, links in memory) and a stage worker (links over the
// workers' peer connections). Every backward pass goes into the step's exact accumulator; the
// reduction, the norm and the update come after, from the caller.

import type { Batch } from '../../data/loader.ts';
import type { HeadGradient } from '../../train/objectives.ts';
import { objectiveForward } from '../../train/objectives.ts';
import type { TrainingStep } from '../../train/step.ts';
import type { ScheduleKind } from './schedule.ts';
import { pipelineSchedule, simulate } from './schedule.ts';

/** One turn of the event loop (awaiting a settled promise would not give it one). */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** What flows between neighbouring stages: a micro-batch's activation forward, its gradient back. */
export type StageTraffic = 'act' | 'grad';

export interface StageLinks {
  /**
   * Hands `data` (B, T, C) to the next stage ('act') or the previous one ('grad'). It is a view
   * of the stage's buffers, overwritten later: the link copies it (or has it out) before returning.
   */
  send(what: StageTraffic, mb: number, data: Float32Array): void;
  /** The activation from the previous stage ('act') or the gradient from the next ('grad'). */
  receive(what: StageTraffic, mb: number): Promise<Float32Array>;
}

export interface StageResult {
  /**
   * Per micro-batch, the sum of its unit losses, its unit count (targets or pairs) and the
   * objective's metric sums (the last stage's; 0 elsewhere).
   */
  losses: { lossSum: number; targets: number; sums: number[] }[];
  overflow: boolean;
  /** Time in forward and backward passes, and waiting for a neighbour's activation or gradient (the bubble). */
  computeMs: number;
  waitMs: number;
}

/**
 * Runs stage `s` of `P` through one step over `batches` (its replica's micro-batches, in order:
 * stage 0 reads their tokens, the last stage their targets). `globalTargets` counts the targets
 * of the whole step, across replicas.
 */
export async function runStage(
  step: TrainingStep,
  kind: ScheduleKind,
  s: number,
  P: number,
  batches: Batch[],
  globalTargets: number,
  links: StageLinks,
): Promise<StageResult> {
  const { model } = step;
  const schedules = pipelineSchedule(kind, P, batches.length);
  // activation slots: micro-batch mb uses mb % held (the micro-batches held are consecutive)
  const held = simulate(schedules).peakHeld[s];
  const losses = batches.map(() => ({ lossSum: 0, targets: 0, sums: [] as number[] }));
  // the last stage: what each micro-batch's backward pass starts from (objectives.ts)
  const heads: (HeadGradient | null)[] = batches.map(() => null);
  const { objective = 'lm', beta = 0.1 } = step.options;
  let overflow = false;
  let computeMs = 0;
  let waitMs = 0;
  const timed = async <T>(work: () => Promise<T>): Promise<T> => {
    const start = performance.now();
    const value = await work();
    waitMs += performance.now() - start;
    return value;
  };
  let received: Float32Array | undefined;
  let output: Float32Array | undefined;
  for (const a of schedules[s]) {
    const batch = batches[a.mb];
    switch (a.op) {
      case 'recvActivation':
        received = await timed(() => links.receive('act', a.mb));
        break;
      case 'recvGradient':
        received = await timed(() => links.receive('grad', a.mb));
        break;
      case 'forward': {
        const start = performance.now();
        model.useSlot(a.mb % held);
        if (s === P - 1) {
          const options = { objective, beta, input: received };
          const r = objectiveForward(model, batch, globalTargets, options);
          losses[a.mb] = { lossSum: r.lossSum, targets: r.units, sums: r.sums };
          heads[a.mb] = r.head;
        } else {
          output = model.forward(batch.idx, batch.B, batch.T, undefined, {
            input: received,
          }).output;
        }
        received = undefined;
        computeMs += performance.now() - start;
        await turn(); // heartbeats and sends go out between passes
        break;
      }
      case 'sendActivation':
        links.send('act', a.mb, output as Float32Array);
        await turn();
        break;
      case 'backward': {
        const start = performance.now();
        model.useSlot(a.mb % held);
        const stages = step.backwardInStages(globalTargets, received, heads[a.mb]);
        for (let r = stages.next(); ; r = stages.next())
          if (r.done) {
            overflow ||= r.value;
            break;
          }
        received = undefined;
        computeMs += performance.now() - start;
        await turn();
        break;
      }
      case 'sendGradient':
        links.send('grad', a.mb, model.inputGrad);
        await turn();
        break;
      default:
        return a.op satisfies never;
    }
  }
  return { losses, overflow, computeMs, waitMs };
}
