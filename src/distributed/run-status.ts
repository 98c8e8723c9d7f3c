// What a running job looks like from outside (GET /status.json, the live page, /metrics): the
// run's summary, progress, a card per worker, the curves, the checkpoints and an event log. The
// coordinator shell feeds a RunStatusTracker with what it writes to metrics.jsonl and what its
// state machine says about workers; status() is a plain JSON-able snapshot.
// Units: times in ms (ages too), rates per second, losses in nats, epoch times in ms.

import type { EvalMetrics, StepMetrics, WorkerMetrics } from '../train/metrics.ts';

/** One worker as the page shows it. */
export interface WorkerStatus {
  name: string;
  rank: number;
  /** Where it connected from (HOST or HOST:PORT; a thread's name for threads). */
  host: string;
  /** Pipeline stage (-1: no pipeline). */
  stage: number;
  state: 'joining' | 'ready' | 'lost' | 'left' | 'done';
  /** Since its last message, while connected (null once gone). */
  heartbeatAgeMs: number | null;
  /** Why it is lost or left. */
  reason?: string;
  /** Its latest step's time breakdown (step-clock.ts), null before its first. */
  times: Omit<WorkerMetrics, 'type' | 'worker' | 'rank'> | null;
  /** The slowest of the latest step's workers (slowestWorker: the others wait for it). */
  straggler: boolean;
}

export interface RunEvent {
  /** Epoch ms. */
  at: number;
  kind: 'start' | 'join' | 'lost' | 'left' | 'skipped' | 'checkpoint' | 'eval' | 'done' | 'failed';
  text: string;
}

export interface RunStatus {
  run: {
    name: string;
    outDir: string;
    objective: string;
    backend: string;
    params: number;
    steps: number;
    /** Model and batch summary: "L=2 H=2 C=32 T=32 B=4 in 4 shards". */
    summary: string;
    /** Epoch ms when this invocation started. */
    startedAt: number;
  };
  phase: string;
  /** Optimizer steps done. */
  step: number;
  /** The latest step record (as in metrics.jsonl), null before the first. */
  last: StepMetrics | null;
  /** Seconds left at the recent rate, null before the first step. */
  etaSeconds: number | null;
  workers: WorkerStatus[];
  /** [step, loss] of every step so far (thinned to at most MAX_POINTS). */
  loss: [number, number][];
  gradNorm: [number, number][];
  /** The eval records. */
  val: EvalMetrics[];
  checkpoints: { step: number; dir: string; at: number }[];
  skippedSteps: number;
  /** The latest events, oldest first (at most MAX_EVENTS). */
  events: RunEvent[];
  /** Epoch ms of this snapshot. */
  now: number;
}

/** What the shell knows of a connected worker (the state machine's record). */
export interface LiveWorker {
  name: string;
  rank: number;
  address: string;
  stage: number;
  ready: boolean;
  lastSeen: number;
}

const MAX_POINTS = 2000;
const MAX_EVENTS = 200;

/** Keeps every other point once a curve is too long (the page needs shape, not every step). */
function pushThinned(curve: [number, number][], point: [number, number]): void {
  curve.push(point);
  if (curve.length > MAX_POINTS) {
    const kept = curve.filter((_, i) => i % 2 === 0 || i === curve.length - 1);
    curve.splice(0, curve.length, ...kept);
  }
}

export class RunStatusTracker {
  private phase = 'rendezvous';
  private last: StepMetrics | null = null;
  /** (step, epoch ms) of the latest steps, for the rate behind the ETA. */
  private readonly recent: { step: number; at: number }[] = [];
  private readonly loss: [number, number][] = [];
  private readonly gradNorm: [number, number][] = [];
  private readonly val: EvalMetrics[] = [];
  private readonly checkpoints: RunStatus['checkpoints'] = [];
  private readonly events: RunEvent[] = [];
  private skipped = 0;
  /** Workers ever seen, by name (a rejoin under the same name replaces the card). */
  private readonly known = new Map<string, Omit<WorkerStatus, 'heartbeatAgeMs' | 'straggler'>>();
  private slowest: string | null = null;

  constructor(
    private readonly run: RunStatus['run'],
    private readonly live: () => LiveWorker[],
  ) {}

  event(kind: RunEvent['kind'], text: string, at = Date.now()): void {
    this.events.push({ at, kind, text });
    if (this.events.length > MAX_EVENTS) this.events.shift();
  }

  setPhase(phase: string): void {
    this.phase = phase;
  }

  started(workers: number): void {
    this.phase = 'training';
    this.event('start', `training started on ${workers} worker(s)`);
  }

  stepped(m: StepMetrics, skipped: boolean): void {
    this.last = m;
    this.recent.push({ step: m.step, at: Date.now() });
    if (this.recent.length > 20) this.recent.shift();
    pushThinned(this.loss, [m.step, m.loss]);
    pushThinned(this.gradNorm, [m.step, m.gradNorm]);
    if (skipped) {
      this.skipped++;
      this.event('skipped', `step ${m.step} skipped: a gradient too large for the exact sum`);
    }
  }

  evaluated(m: EvalMetrics): void {
    this.val.push(m);
    this.event('eval', `eval at step ${m.step}: val loss ${m.loss.toFixed(4)}`);
  }

  workerTime(m: WorkerMetrics): void {
    const w = this.known.get(m.worker);
    if (w) w.times = { step: m.step, ...pickTimes(m) };
  }

  /** The latest step's slowest worker (null: none reported). */
  straggler(name: string | null): void {
    this.slowest = name;
  }

  checkpointed(step: number, dir: string): void {
    this.checkpoints.push({ step, dir, at: Date.now() });
    this.event('checkpoint', `checkpoint at step ${step} saved in ${dir}`);
  }

  joined(w: LiveWorker): void {
    this.known.set(w.name, {
      name: w.name,
      rank: w.rank,
      host: w.address,
      stage: w.stage,
      state: 'joining',
      times: this.known.get(w.name)?.times ?? null,
    });
    this.event('join', `worker ${w.name} joined as rank ${w.rank}`);
  }

  gone(name: string, reason: string, lost: boolean): void {
    const w = this.known.get(name);
    if (w) Object.assign(w, { state: lost ? 'lost' : 'left', reason });
    this.event(lost ? 'lost' : 'left', `worker ${name} ${lost ? 'lost' : 'left'}: ${reason}`);
  }

  /** A pipeline rolled back to `step`: what came after it is gone (as from metrics.jsonl). */
  rolledBack(step: number): void {
    for (const curve of [this.loss, this.gradNorm])
      curve.splice(0, curve.length, ...curve.filter(([s]) => s <= step));
    this.val.splice(0, this.val.length, ...this.val.filter((m) => m.step <= step));
    if (this.last && this.last.step > step) this.last = null;
    this.recent.length = 0;
    this.slowest = null;
    this.event('lost', `rolled back to step ${step}`);
  }

  ended(ok: boolean, text: string): void {
    this.phase = ok ? 'done' : 'failed';
    this.refresh();
    for (const w of this.known.values()) if (ok && w.state === 'ready') w.state = 'done';
    this.event(ok ? 'done' : 'failed', text);
  }

  /** The workers connected now, by name, with the cards of those that became ready marked so. */
  private refresh(): Map<string, LiveWorker> {
    const live = new Map(this.live().map((w) => [w.name, w]));
    for (const w of this.known.values())
      if (w.state === 'joining' && live.get(w.name)?.ready) w.state = 'ready';
    return live;
  }

  /** The snapshot (GET /status.json). */
  status(now = Date.now()): RunStatus {
    const live = this.refresh();
    const workers = [...this.known.values()].map((w): WorkerStatus => {
      const l = live.get(w.name);
      return {
        ...w,
        host: l?.address || w.host,
        heartbeatAgeMs: l ? Math.max(0, now - l.lastSeen) : null,
        straggler: w.name === this.slowest,
      };
    });
    const m = this.last;
    const [first, latest] = [this.recent[0], this.recent[this.recent.length - 1]];
    const rate =
      first && latest.at > first.at
        ? (latest.step - first.step) / ((latest.at - first.at) / 1000)
        : 0;
    return {
      run: this.run,
      phase: this.phase,
      step: m?.step ?? 0,
      last: m,
      etaSeconds: m && rate > 0 ? Math.max(0, (this.run.steps - m.step) / rate) : null,
      workers: workers.sort((a, b) => a.rank - b.rank),
      loss: [...this.loss],
      gradNorm: [...this.gradNorm],
      val: [...this.val],
      checkpoints: [...this.checkpoints],
      skippedSteps: this.skipped,
      events: [...this.events],
      now,
    };
  }
}

/** The time fields of a worker record. */
export function pickTimes(
  m: WorkerMetrics,
): Omit<WorkerMetrics, 'type' | 'worker' | 'rank' | 'step'> {
  const { computeMs, commMs, overlapMs, waitMs, dataMs, optimMs } = m;
  return { computeMs, commMs, overlapMs, waitMs, dataMs, optimMs };
}

/**
 * The step's slowest worker: the most time on its own work (data, compute, optimizer). Not
 * communication: a fast worker's exposed reduction includes waiting for the slow one's pieces.
 */
export function slowestWorker(records: WorkerMetrics[]): string | null {
  let best: WorkerMetrics | null = null;
  const busy = (r: WorkerMetrics) => r.computeMs + r.dataMs + r.optimMs;
  for (const r of records) if (!best || busy(r) > busy(best)) best = r;
  return best?.worker ?? null;
}
