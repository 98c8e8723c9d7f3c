// Pipeline schedules as pure data: for each stage, the ordered list of what it does in one step
// (forward or backward of micro-batch i, and the sends and receives of activations and of their
// gradients around them), and a simulator that runs the lists against each other.
//   GPipe: every micro-batch's forward, then every backward. Holds all m micro-batches'
//          activations at its peak.
//   1F1B (Megatron-LM, arXiv 2104.04473): stage s runs P-s-1 warm-up forwards, then alternates
//          one forward and one backward, then cools down with the remaining backwards; it holds
//          at most P-s micro-batches' activations.
// Both take 2(m + P - 1) slots when a forward and a backward take one slot each: the bubble (the
// idle share of every stage) is (P-1)/(m+P-1).

import { check } from '../../util/errors.ts';

export type ScheduleKind = '1f1b' | 'gpipe';
export const SCHEDULE_KINDS: readonly ScheduleKind[] = ['1f1b', 'gpipe'];

export type PipelineOp =
  'forward' | 'backward' | 'recvActivation' | 'sendActivation' | 'recvGradient' | 'sendGradient';

export interface PipelineAction {
  op: PipelineOp;
  /** Micro-batch, 0-based. */
  mb: number;
}

/** What stage `s` of `P` does in one step of `m` micro-batches. */
export function stageSchedule(
  kind: ScheduleKind,
  P: number,
  s: number,
  m: number,
): PipelineAction[] {
  check(
    Number.isSafeInteger(m) && m >= 1 && s >= 0 && s < P,
    'WEFT_E_CONFIG',
    `no schedule for stage ${s} of ${P} over ${m} micro-batches`,
  );
  const out: PipelineAction[] = [];
  const forward = (mb: number) => {
    if (s > 0) out.push({ op: 'recvActivation', mb });
    out.push({ op: 'forward', mb });
    if (s < P - 1) out.push({ op: 'sendActivation', mb });
  };
  const backward = (mb: number) => {
    if (s < P - 1) out.push({ op: 'recvGradient', mb });
    out.push({ op: 'backward', mb });
    if (s > 0) out.push({ op: 'sendGradient', mb });
  };
  if (kind === 'gpipe') {
    for (let mb = 0; mb < m; mb++) forward(mb);
    for (let mb = 0; mb < m; mb++) backward(mb);
    return out;
  }
  const warmup = Math.min(P - s - 1, m);
  for (let mb = 0; mb < warmup; mb++) forward(mb);
  for (let i = 0; i < m - warmup; i++) {
    forward(warmup + i);
    backward(i);
  }
  for (let mb = m - warmup; mb < m; mb++) backward(mb);
  return out;
}

/** Every stage's schedule for a pipeline of P stages over m micro-batches. */
export function pipelineSchedule(kind: ScheduleKind, P: number, m: number): PipelineAction[][] {
  return Array.from({ length: P }, (_, s) => stageSchedule(kind, P, s, m));
}

export interface TimedAction extends PipelineAction {
  stage: number;
  start: number;
  end: number;
}

export interface Simulation {
  /** Every forward and backward with its slot times. */
  computed: TimedAction[];
  /** When the last stage's last action ends. */
  makespan: number;
  /** Most micro-batches whose activations each stage held at once (forwarded, not yet backwarded). */
  peakHeld: number[];
}

/**
 * Runs the stages' lists against each other: a forward takes `forwardCost`, a backward
 * `backwardCost`, a send is instant and a receive waits for its send. Throws if the lists
 * deadlock (a receive whose send never comes).
 */
export function simulate(
  schedules: PipelineAction[][],
  forwardCost = 1,
  backwardCost = 1,
): Simulation {
  const P = schedules.length;
  const next = new Array<number>(P).fill(0);
  const clock = new Array<number>(P).fill(0);
  const held = new Array<number>(P).fill(0);
  const peakHeld = new Array<number>(P).fill(0);
  const sentAt = new Map<string, number>();
  const computed: TimedAction[] = [];
  const key = (kind: 'act' | 'grad', to: number, mb: number) => `${kind}/${to}/${mb}`;
  for (let progressed = true; progressed;) {
    progressed = false;
    for (let s = 0; s < P; s++) {
      for (; next[s] < schedules[s].length; next[s]++) {
        const a = schedules[s][next[s]];
        if (a.op === 'recvActivation' || a.op === 'recvGradient') {
          const at = sentAt.get(key(a.op === 'recvActivation' ? 'act' : 'grad', s, a.mb));
          if (at === undefined) break; // blocked until its sender gets there
          clock[s] = Math.max(clock[s], at);
        } else if (a.op === 'sendActivation') {
          sentAt.set(key('act', s + 1, a.mb), clock[s]);
        } else if (a.op === 'sendGradient') {
          sentAt.set(key('grad', s - 1, a.mb), clock[s]);
        } else {
          const start = clock[s];
          clock[s] += a.op === 'forward' ? forwardCost : backwardCost;
          computed.push({ ...a, stage: s, start, end: clock[s] });
          held[s] += a.op === 'forward' ? 1 : -1;
          peakHeld[s] = Math.max(peakHeld[s], held[s]);
        }
        progressed = true;
      }
    }
  }
  const stuck = next.findIndex((i, s) => i < schedules[s].length);
  if (stuck >= 0) {
    const a = schedules[stuck][next[stuck]];
    throw new Error(`pipeline schedule deadlocks: stage ${stuck} waits at ${a.op} ${a.mb}`);
  }
  return { computed, makespan: Math.max(0, ...clock), peakHeld };
}
