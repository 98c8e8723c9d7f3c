// Where a worker's step time goes, measured by its shell and sent to the coordinator after each
// update (the `stepTime` message, written to metrics.jsonl as a "worker" record):
//   dataMs     building or unpacking the shards' batches
//   computeMs  forward and backward passes, into the exact accumulator (with overlap: the last
//              shard's whole span, including the reduction work done between its stages; a
//              pipeline stage: its passes only, so its bubble falls in waitMs)
//   commMs     the reduction's exposed part: from the end of the compute (or its own start, if
//              later) to its end
//   overlapMs  the reduction's hidden part: while the compute still ran (counted in computeMs)
//   optimMs    clipping and AdamW
//   waitMs     the rest of the step: waiting for the coordinator and peers, cancelled attempts
// so data + compute + comm + optim + wait = the time from the last update's end to this one's.
// Evaluations are not counted: the next step's clock starts when one ends.

import type { WorkerMetrics } from '../train/metrics.ts';

export type StepTimes = Pick<
  WorkerMetrics,
  'computeMs' | 'commMs' | 'overlapMs' | 'waitMs' | 'dataMs' | 'optimMs'
>;

export class StepClock {
  private begun = performance.now();
  private dataMs = 0;
  private computeMs = 0;
  private optimMs = 0;
  private computeEnd = 0;
  private reduceStart = NaN;
  private reduceEnd = NaN;

  /** Runs `work`, counting its time as `what`. */
  time<T>(what: 'data' | 'compute' | 'optim', work: () => T): T {
    const start = performance.now();
    try {
      return work();
    } finally {
      this.add(what, start);
    }
  }

  /** Counts the time since `start` as `what` (for work that awaits). */
  add(what: 'data' | 'compute' | 'optim', start: number): void {
    const now = performance.now();
    if (what === 'data') this.dataMs += now - start;
    else if (what === 'optim') this.optimMs += now - start;
    else {
      this.computeMs += now - start;
      this.computeEnd = now;
    }
  }

  /** Counts `ms` as compute, ending now (a pipeline stage's passes, without its waits). */
  computed(ms: number): void {
    this.computeMs += ms;
    this.computeEnd = performance.now();
  }

  /** A reduction starts (a later one, for a new attempt, replaces it). */
  reductionStarted(): void {
    this.reduceStart = performance.now();
    this.reduceEnd = NaN;
  }

  reductionEnded(): void {
    this.reduceEnd = performance.now();
  }

  /** Ends the step: its times; the next step's clock starts now. */
  finish(): StepTimes {
    const now = performance.now();
    const reduced = Number.isFinite(this.reduceStart) && Number.isFinite(this.reduceEnd);
    const exposedFrom = Math.max(this.reduceStart, this.computeEnd);
    const commMs = reduced ? Math.max(0, this.reduceEnd - exposedFrom) : 0;
    const overlapMs = reduced
      ? Math.max(0, Math.min(this.reduceEnd, this.computeEnd) - this.reduceStart)
      : 0;
    const busy = this.dataMs + this.computeMs + commMs + this.optimMs;
    const times = {
      computeMs: this.computeMs,
      commMs,
      overlapMs,
      waitMs: Math.max(0, now - this.begun - busy),
      dataMs: this.dataMs,
      optimMs: this.optimMs,
    };
    this.restart();
    return times;
  }

  /** Starts the next step's clock now (after an evaluation, which no step is charged for). */
  restart(): void {
    this.begun = performance.now();
    this.dataMs = this.computeMs = this.optimMs = this.computeEnd = 0;
    this.reduceStart = this.reduceEnd = NaN;
  }
}
