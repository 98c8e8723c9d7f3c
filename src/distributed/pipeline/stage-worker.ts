// A worker's part of a pipeline run (the worker shell calls these when its assign names a stage):
// the step's schedule with the neighbouring stages of its replica over the peer links, and the
// exact reduction afterwards:
//   wte      among the first and last stages of every replica (stage 0 holds the embeddings'
//            part, the last stage the head's), so both copies get the whole gradient;
//   the rest among the same stage of every replica;
// then the sums of squares of the norm's blocks it owns, for the coordinator's global norm.
// Replica r of a stage is the r-th of its workers by rank (the coordinator's grid).

import type { Batch } from '../../data/loader.ts';
import type { StageSpan } from '../../model/stage.ts';
import type { RunConfig } from '../../train/config.ts';
import { blockSumOfSquares, ownedBlocks } from '../../train/norm.ts';
import type { TrainingStep } from '../../train/step.ts';
import { WeftError } from '../../util/errors.ts';
import type { Mailbox, RingLinks } from '../collectives.ts';
import { exactAllReduce } from '../collectives.ts';
import type { Member, MessageOf } from '../messages.ts';
import { msg } from '../messages.ts';
import type { Connection } from '../transport.ts';
import type { ScheduleKind } from './schedule.ts';
import type { StageLinks, StageResult } from './stage-runner.ts';
import { runStage } from './stage-runner.ts';

/** The wte reduction's buckets are tagged from here on, apart from the stage group's. */
const WTE_BUCKETS = 2 ** 20;

/** Activations and gradients that arrived from neighbouring stages, until the schedule takes them. */
export class ActivationBox {
  private readonly arrived = new Map<string, Float32Array>();
  private readonly waiting = new Map<
    string,
    { resolve: (d: Float32Array) => void; reject: (e: Error) => void }
  >();
  /** Why the step in progress cannot get its inputs (a neighbour's link closed), until the next one. */
  private failure: WeftError | null = null;
  private step = -1;

  private static key(step: number, attempt: number, what: string, mb: number): string {
    return `${step}/${attempt}/${what}/${mb}`;
  }

  /** A new step: what arrived for earlier ones is dropped, and an earlier failure forgotten. */
  begin(step: number): void {
    this.step = step;
    this.failure = null;
    for (const key of [...this.arrived.keys()])
      if (Number(key.split('/')[0]) < step) this.arrived.delete(key);
  }

  deliver(m: MessageOf<'act'>): void {
    if (m.step < this.step) return; // a step that is over
    const key = ActivationBox.key(m.step, m.attempt, m.what, m.mb);
    const waiter = this.waiting.get(key);
    if (waiter) {
      this.waiting.delete(key);
      waiter.resolve(m.data);
    } else this.arrived.set(key, m.data);
  }

  take(step: number, attempt: number, what: string, mb: number): Promise<Float32Array> {
    const key = ActivationBox.key(step, attempt, what, mb);
    const data = this.arrived.get(key);
    this.arrived.delete(key);
    if (data) return Promise.resolve(data);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiting.set(key, { resolve, reject }));
  }

  /** Fails every waiting take, and the step's later ones (a neighbour is gone, or the worker ends). */
  abort(reason: string): void {
    this.failure = new WeftError('WEFT_E_NETWORK', reason);
    for (const w of this.waiting.values()) w.reject(this.failure);
    this.waiting.clear();
  }
}

/** Per link watched, the box its closing aborts: the latest step's (a re-plan makes a new box). */
const watched = new WeakMap<Connection, ActivationBox>();

/** Aborts the waiting takes of the box last given for `link` when it closes. */
function watchClose(link: Connection, box: ActivationBox): void {
  const first = !watched.has(link);
  watched.set(link, box);
  if (!first) return;
  const before = link.onClose;
  link.onClose = (reason) => {
    before?.(reason);
    watched.get(link)?.abort(`the link to a neighbouring pipeline stage closed: ${reason}`);
  };
}

/** The members holding stage `stage`, by rank: replica r is the r-th. */
function holders(members: Member[], stage: number): Member[] {
  return members.filter((m) => m.stage === stage);
}

export interface StageContext {
  config: RunConfig;
  step: TrainingStep;
  span: StageSpan;
  stage: number;
  stages: number;
  rank: number;
  link: (member: Member) => Promise<Connection>;
}

/** Runs this stage's schedule for step `stepIndex` over its replica's `batches`. */
export async function runStageStep(
  ctx: StageContext,
  members: Member[],
  stepIndex: number,
  attempt: number,
  batches: Batch[],
  globalTargets: number,
  box: ActivationBox,
): Promise<StageResult> {
  const mine = holders(members, ctx.stage);
  const replica = mine.findIndex((m) => m.rank === ctx.rank);
  const neighbour = (stage: number) =>
    stage >= 0 && stage < ctx.stages ? ctx.link(holders(members, stage)[replica]) : null;
  box.begin(stepIndex);
  const [prev, next] = await Promise.all([neighbour(ctx.stage - 1), neighbour(ctx.stage + 1)]);
  // a neighbour's link closing means its activations or gradients will never come
  for (const link of [prev, next]) if (link) watchClose(link, box);
  const links: StageLinks = {
    send: (what, mb, data) => {
      const to = (what === 'act' ? next : prev) as Connection;
      // a copy: the view is overwritten by the stage's next micro-batch
      to.send(msg('act', { step: stepIndex, attempt, what, mb, data: data.slice() }));
    },
    receive: (what, mb) => box.take(stepIndex, attempt, what, mb),
  };
  const kind = ctx.config.pipelineSchedule as ScheduleKind;
  return runStage(ctx.step, kind, ctx.stage, ctx.stages, batches, globalTargets, links);
}

/**
 * The stage's exact reduction (wte among the first and last stages, the rest among its own stage
 * of every replica) into its gradient; returns the sums of squares of the norm's blocks it owns.
 */
export async function reduceStage(
  ctx: StageContext,
  members: Member[],
  options: {
    mailbox: Mailbox;
    work: Float64Array;
    bits: number;
    stepIndex: number;
    attempt: number;
    cancelled: () => boolean;
    fromExact: (out: Float32Array, acc: Float64Array) => void;
  },
): Promise<{ blocks: Int32Array; sums: Float64Array }> {
  const { step } = ctx;
  const { work } = options;
  const grads = step.model.grads;
  work.set(step.acc);
  /** All-reduces work[begin, end) among `group` (by rank) into grads[begin, end). */
  const reduce = async (group: Member[], begin: number, end: number, firstBucket: number) => {
    const sums = work.subarray(begin, end);
    const out = grads.subarray(begin, end);
    if (group.length === 1) return options.fromExact(out, sums);
    const position = group.findIndex((m) => m.rank === ctx.rank);
    const next = await ctx.link(group[(position + 1) % group.length]);
    await ctx.link(group[(position - 1 + group.length) % group.length]);
    const ring: RingLinks = {
      position,
      size: group.length,
      ranks: group.map((m) => m.rank),
      send: (_, chunk) => next.send(chunk),
      flushed: () => next.flushed?.() ?? Promise.resolve(),
    };
    await exactAllReduce({
      ring,
      mailbox: options.mailbox,
      sums,
      out,
      toFp32: (o, s, b, e) => options.fromExact(o.subarray(b, e), s.subarray(b, e)),
      step: options.stepIndex,
      attempt: options.attempt,
      cancelled: options.cancelled,
      firstBucket,
    });
  };
  const wte = step.model.layout.byKey.wte;
  const last = ctx.stages - 1;
  if (wte.size > 0) {
    const group = members.filter((m) => m.stage === 0 || m.stage === last);
    await reduce(group, wte.offset, wte.offset + wte.size, WTE_BUCKETS);
  }
  // the rest of the buffer: everything after wte (wte comes first in every stage's layout)
  await reduce(holders(members, ctx.stage), wte.offset + wte.size, grads.length, 0);
  const owned = ownedBlocks(ctx.config, ctx.span);
  return {
    blocks: Int32Array.from(owned, (o) => o.index),
    sums: Float64Array.from(owned, (o) => blockSumOfSquares(grads, o.block)),
  };
}
