// The run's metrics.jsonl as the coordinator writes it, and the live status fed from the same
// records (run-status.ts), so /status.json and the file agree. A step record waits for its
// workers' time records (they arrive after the update) to name the step's slowest worker; it is
// written once every worker of the step has reported, or when the next step is recorded, or at
// the end. So the file holds a step's worker records, then its step record, then its evaluation.

import { appendFileSync } from 'node:fs';
import type { EvalMetrics, StepMetrics, WorkerMetrics } from '../train/metrics.ts';
import type { RunStatusTracker } from './run-status.ts';
import { slowestWorker } from './run-status.ts';

export class MetricsLog {
  /** The step record waiting for its workers' times, who is yet to report, and what came. */
  private held: { m: StepMetrics; waiting: Set<string>; times: WorkerMetrics[] } | null = null;
  /** Records of the held step's moment (its evaluation), written after it. */
  private readonly after: EvalMetrics[] = [];

  constructor(
    private readonly path: string,
    readonly status: RunStatusTracker,
  ) {}

  private append(record: object): void {
    appendFileSync(this.path, `${JSON.stringify(record)}\n`);
  }

  /** A step's record; `workers`: the names whose time records are awaited (none: written now). */
  step(m: StepMetrics, skipped: boolean, workers: string[]): void {
    this.flush();
    this.status.stepped(m, skipped);
    this.held = { m, waiting: new Set(workers), times: [] };
    if (workers.length === 0) this.flush();
  }

  worker(m: WorkerMetrics): void {
    const held = this.held?.m.step === m.step ? this.held : null;
    this.append(m);
    held?.times.push(m);
    held?.waiting.delete(m.worker);
    this.status.workerTime(m);
    if (held && held.waiting.size === 0) this.flush();
  }

  /** An evaluation's record (after the step it follows, when that one is still held). */
  eval(m: EvalMetrics): void {
    if (this.held?.m.step === m.step) this.after.push(m);
    else {
      this.flush();
      this.append(m);
    }
    this.status.evaluated(m);
  }

  /** Writes the held step record, with the slowest of the workers that reported. */
  flush(): void {
    const held = this.held;
    if (!held) return;
    this.held = null;
    const slowest = slowestWorker(held.times);
    if (slowest) held.m.slowest = slowest; // (the status holds the same object)
    this.status.straggler(slowest);
    this.append(held.m);
    for (const m of this.after.splice(0)) this.append(m);
  }
}
