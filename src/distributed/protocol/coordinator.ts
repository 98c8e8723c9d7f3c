// The coordinator as a pure state machine (docs/design.md invariant 5):
//   coordinatorTransition(state, event) -> { state, send, effects }
// It owns no sockets, timers, files or closures, assembles no buffers (its state holds the data it
// was given: plans, evaluation tokens, a resumed state), and never changes the state it is given
// (the tests pass deep-frozen states): every container it changes is copied first. The shell
// feeds it events (a worker joined after the handshake, a message, a closed connection, a clock
// tick, the plan of a step it asked for) and carries out what it returns.
//
// The contract for shells: apply `send` (in order), then `effects` (in order), before the next
// event. Messages of one transition must leave before any effect feeds back an event (planStep is
// answered at once with stepPlanned, whose start messages must follow this transition's).
//
// Life of a run: rendezvous (assign ranks, wait for `workers` ready, or `minWorkers` by the
// deadline) -> per step: plan (the shell computes the step's batches: planStep -> stepPlanned;
// shards round-robin over live members by rank) -> start -> shardDone x S + reduced x members ->
// commit -> optional evaluate -> optional checkpoint (the state is fetched from the lowest rank
// while the next step runs; the shell assembles the pieces) -> next step -> at the end (or on a
// stop), evaluate, fetch the final state, shut the workers down. A resumed run streams its
// checkpoint's state to every worker after assign. A member that closes or misses heartbeats is
// named, dropped, and its shards are reassigned to the others in a new attempt of the same step;
// exact sums make the result equal to a run without the loss.

import type { EvalResult } from '../../train/evaluate.ts';
import type { LrSchedule } from '../../train/schedule.ts';
import { learningRate } from '../../train/schedule.ts';
import type { GPTConfig } from '../../model/config.ts';
import type { StageSpan } from '../../model/stage.ts';
import { stageLayout, stageRanges } from '../../model/stage.ts';
import { ownedBlocks } from '../../train/norm.ts';
import { partitionStages } from '../pipeline/partition.ts';
import type { Member, Message, MessageOf, TrainingState } from '../messages.ts';
import { msg, stageState, statePieces } from '../messages.ts';

export type ConnId = number;

/** Retries of one step's stalled all-reduce before the run fails. */
const MAX_STALLS = 3;

/** What a worker reported of one shard (shardDone). */
interface ShardResult {
  lossSum: number;
  targets: number;
  overflow: boolean;
  sums: Float64Array;
}

/** A shard's tokens, streamed to a worker that cannot read the data itself. */
export interface ShardBatch {
  idx: Int32Array;
  targets: Int32Array;
  /** dpo: the reference log-prob of each row. */
  refLogps?: Float64Array;
}

export interface CoordinatorConfig {
  workers: number;
  /** Fewest ready workers rendezvous may start with once rendezvousMs has passed. */
  minWorkers: number;
  /** How long rendezvous waits for `workers` before starting with at least minWorkers. */
  rendezvousMs: number;
  heartbeatMs: number;
  /** A worker silent this long is declared lost. */
  heartbeatTimeoutMs: number;
  steps: number;
  shards: number;
  /** Tokens per step (B * T), for tokens/s. */
  tokensPerStep: number;
  /** Evaluate every this many steps (0: only at the end); nothing is evaluated without validation data. */
  evalEvery: number;
  evalWindows: number;
  hasValidation: boolean;
  /** The objective's per-step metrics (their sums arrive with each shard; objectives.ts). */
  metricNames?: readonly string[];
  /** The assign message sent to each worker, less its rank. */
  assign: Omit<MessageOf<'assign'>, 'v' | 't' | 'rank' | 'resume'>;
  /** The learning rate of each step. */
  schedule: LrSchedule;
  /** Validation tokens for `evaluate`, sent to a worker that cannot read the data itself. */
  evalTokens: Int32Array;
  /** First step to run (0, or where a resumed run continues). */
  firstStep: number;
  /** Step after which this invocation stops (steps, or earlier with --stop-after). */
  stopAt: number;
  /** Checkpoint every this many steps (0: only at the end). */
  ckptEvery: number;
  /** The state a resumed run starts from, streamed to every worker; null for a new run. */
  initialState: TrainingState | null;
  /**
   * A pipeline run: each stage's blocks (P stages; distributed/pipeline/partition.ts). Workers
   * take stages as they join, each replica one worker of every stage; null: no pipeline.
   */
  pipeline: { firstLayer: number; endLayer: number }[] | null;
}

interface Worker {
  conn: ConnId;
  name: string;
  address: string;
  rank: number;
  /** Pipeline stage (-1: no pipeline). */
  stage: number;
  ready: boolean;
  dataLocal: boolean;
  /** What its sums depend on (kernels/backend.ts bitsIdentity), from its ready ('' before). */
  kernel: string;
  lastSeen: number;
}

export interface CoordinatorState {
  phase: 'rendezvous' | 'replanning' | 'training' | 'evaluating' | 'fetching' | 'done' | 'failed';
  /** The pipeline's stages now (config.pipeline's, or fewer after losing workers; null: none). */
  pipeline: CoordinatorConfig['pipeline'];
  /**
   * Attempts of a step start here: after a pipeline rolls back, above every attempt used before,
   * so nothing sent before the rollback is taken for what is sent after it.
   */
  attemptBase: number;
  /** The latest re-plan (0: the first plan), sent in assign and echoed in ready. */
  planId: number;
  /** The state and step a re-plan goes on from, once assigned (a further loss re-plans from it). */
  replan: { step: number; state: TrainingState | null } | null;
  /** The id of the latest fetch: state pieces answering an earlier one are dropped. */
  fetchId: number;
  config: CoordinatorConfig;
  workers: Map<ConnId, Worker>;
  nextRank: number;
  startedAt: number;
  lastPing: number;
  step: number;
  attempt: number;
  stepStartedAt: number;
  /** Time of the last start, shardDone or reduced of the current step (to notice a stalled all-reduce). */
  lastProgress: number;
  /** Attempts of this step restarted because the all-reduce stalled. */
  stalls: number;
  /** Ranks of the current attempt's members, ascending. */
  members: number[];
  /** shard -> rank computing it in the current attempt. */
  owner: Map<number, number>;
  results: Map<number, ShardResult>;
  reduced: Map<number, number>;
  /** A pipeline's reduced members: the sums of squares of the norm's blocks each owns, and its overflow. */
  normParts: Map<number, { blocks: Int32Array; sums: Float64Array; overflow: boolean }>;
  /** The current step's plan, once the shell has answered planStep (null while it is asked). */
  plan: { step: number; targetCount: number; batches: ShardBatch[] | null } | null;
  /** Rank asked to evaluate, while waiting for it. */
  askedRank: number | null;
  /**
   * A checkpoint's state arriving in pieces (final: the end of the run); the shell keeps the
   * pieces, the machine counts them and checks that each fits.
   */
  transfer: {
    /** The workers sending: one, or one per stage of a pipeline's first replica. */
    ranks: number[];
    step: number;
    final: boolean;
    /** The state a re-planned pipeline goes on from, from surviving replicas (not a checkpoint). */
    recovery?: boolean;
    /** The fetch's id, echoed by its pieces. */
    id: number;
    /** Per rank, elements of params, m and v, from their first piece. */
    totals: Record<number, Partial<Record<'params' | 'm' | 'v', number>>>;
    /** Per rank, elements of each received so far: pieces come in order, each starting where the last ended. */
    received: Record<number, Partial<Record<'params' | 'm' | 'v', number>>>;
  } | null;
  /** A stop was requested: finish after the step in progress. */
  stopping: boolean;
}

export type CoordinatorEvent =
  | { type: 'start'; now: number }
  | { type: 'joined'; conn: ConnId; name: string; address: string; now: number }
  | { type: 'message'; conn: ConnId; message: Message; now: number }
  | { type: 'closed'; conn: ConnId; reason: string; now: number }
  | { type: 'tick'; now: number }
  | { type: 'stop'; now: number }
  /** The answer to rollback: the newest state the shell has (its step; null state: the seed's). */
  | { type: 'rolledBack'; step: number; state: TrainingState | null; now: number }
  /** The answer to planStep: the step's global target count, and its batches when asked for. */
  | {
      type: 'stepPlanned';
      step: number;
      targetCount: number;
      batches: ShardBatch[] | null;
      now: number;
    };

export type CoordinatorEffect =
  | { type: 'log'; line: string }
  | { type: 'trainingStarted'; workers: number }
  | {
      type: 'stepMetrics';
      step: number;
      loss: number;
      lr: number;
      gradNorm: number;
      tokensPerSec: number;
      skipped: boolean;
      /** The objective's metrics: each shard's sums added, over the step's units. */
      metrics: Record<string, number>;
    }
  | { type: 'evalMetrics'; step: number; result: EvalResult }
  /** A worker's account of where its time went in a step (step-clock.ts). */
  | {
      type: 'workerTime';
      worker: string;
      rank: number;
      times: Omit<MessageOf<'stepTime'>, 'v' | 't'>;
    }
  /** A worker is gone: lost during the run, or left before training (the status page's card). */
  | { type: 'workerGone'; worker: string; rank: number; reason: string; lost: boolean }
  | { type: 'close'; conn: ConnId; code: string; reason: string }
  /** Plan step `step` (its batches when `streamed`: some worker reads no data) and feed stepPlanned. */
  | { type: 'planStep'; step: number; streamed: boolean }
  /** A fetch of the state begins (the shell starts its buffers afresh). */
  | { type: 'fetchState'; step: number; final: boolean }
  /** One piece of the state being fetched, checked to follow the last; the shell puts it in place (a pipeline stage's: by its stage). */
  | { type: 'statePiece'; piece: MessageOf<'state'>; span: StageSpan | null }
  /** The state fetched (every piece delivered) is the checkpoint after `step` steps. */
  | { type: 'checkpoint'; step: number; adamSteps: number }
  | { type: 'finished'; steps: number; adamSteps: number }
  /**
   * A pipeline lost a worker: the shell finds the newest checkpoint (or the run's starting state),
   * keeps the metrics up to it, and answers with rolledBack.
   */
  | { type: 'rollback' }
  /** The state fetched from surviving replicas is in: the shell answers with rolledBack at `step`. */
  | { type: 'recovered'; step: number; adamSteps: number }
  | { type: 'failed'; code: string; message: string };

export interface Output {
  state: CoordinatorState;
  send: { conn: ConnId; message: Message }[];
  effects: CoordinatorEffect[];
}

export function initialCoordinator(config: CoordinatorConfig): CoordinatorState {
  return {
    phase: 'rendezvous',
    config,
    workers: new Map(),
    nextRank: 0,
    startedAt: 0,
    lastPing: 0,
    step: config.firstStep,
    attempt: 0,
    stepStartedAt: 0,
    lastProgress: 0,
    stalls: 0,
    members: [],
    owner: new Map(),
    results: new Map(),
    reduced: new Map(),
    plan: null,
    askedRank: null,
    transfer: null,
    normParts: new Map(),
    pipeline: config.pipeline,
    attemptBase: 0,
    planId: 0,
    replan: null,
    fetchId: 0,
    stopping: false,
  };
}

/** The outputs of one event, and the state being built (a copy: see coordinatorTransition). */
class Transition {
  readonly send: Output['send'] = [];
  readonly effects: CoordinatorEffect[] = [];
  constructor(readonly s: CoordinatorState) {}

  to(conn: ConnId, message: Message): void {
    this.send.push({ conn, message });
  }
  log(line: string): void {
    this.effects.push({ type: 'log', line });
  }
  byRank(rank: number): Worker | undefined {
    for (const w of this.s.workers.values()) if (w.rank === rank) return w;
    return undefined;
  }
  live(): Worker[] {
    return [...this.s.workers.values()].filter((w) => w.ready).sort((a, b) => a.rank - b.rank);
  }
  fail(code: string, message: string): void {
    this.s.phase = 'failed';
    this.effects.push({ type: 'failed', code, message });
    for (const w of this.s.workers.values()) this.to(w.conn, msg('shutdown', { reason: message }));
  }
}

export function coordinatorTransition(state: CoordinatorState, event: CoordinatorEvent): Output {
  // every container the transition may change is a copy; the rest is shared and never changed
  const st = new Transition({
    ...state,
    workers: new Map([...state.workers].map(([k, w]) => [k, { ...w }])),
    owner: new Map(state.owner),
    results: new Map(state.results),
    reduced: new Map(state.reduced),
    normParts: new Map(state.normParts),
    transfer: state.transfer && {
      ...state.transfer,
      totals: Object.fromEntries(
        Object.entries(state.transfer.totals).map(([r, t]) => [r, { ...t }]),
      ),
      received: Object.fromEntries(
        Object.entries(state.transfer.received).map(([r, t]) => [r, { ...t }]),
      ),
    },
  });
  const s = st.s;
  if (s.phase === 'done' || s.phase === 'failed') return { state: s, send: [], effects: [] };
  switch (event.type) {
    case 'start':
      s.startedAt = event.now;
      s.lastPing = event.now;
      break;
    case 'joined':
      onJoined(st, event);
      break;
    case 'message': {
      const worker = s.workers.get(event.conn);
      if (!worker) break;
      worker.lastSeen = event.now;
      onMessage(st, worker, event.message, event.now);
      break;
    }
    case 'closed':
      if (s.workers.has(event.conn)) lose(st, event.conn, event.reason, event.now);
      break;
    case 'tick':
      onTick(st, event.now);
      break;
    case 'stepPlanned':
      // a plan for another step, or a second answer, is stale
      if (s.phase !== 'training' || s.plan !== null || event.step !== s.step) break;
      s.plan = { step: event.step, targetCount: event.targetCount, batches: event.batches };
      if (s.stopping)
        finish(st); // a stop came while the plan was asked for: the step never began
      else startAttempt(st, event.now, new Map());
      break;
    case 'rolledBack':
      if (s.phase === 'replanning') onRolledBack(st, event);
      break;
    case 'stop':
      if (s.phase === 'rendezvous') {
        st.fail('WEFT_E_CLUSTER', 'stopped before training started');
        break;
      }
      if (!s.stopping) st.log(`stopping after step ${s.step + 1}`);
      s.stopping = true;
      break;
    default:
      return event satisfies never;
  }
  return { state: s, send: st.send, effects: st.effects };
}

/** Answers a worker that cannot join with `message`, and closes its connection. */
function refuseJoin(st: Transition, conn: ConnId, message: string, reason: string): void {
  st.to(conn, msg('reject', { code: 'WEFT_E_PROTOCOL', message }));
  st.effects.push({ type: 'close', conn, code: 'WEFT_E_PROTOCOL', reason });
}

function onJoined(st: Transition, e: Extract<CoordinatorEvent, { type: 'joined' }>): void {
  const s = st.s;
  if (s.phase !== 'rendezvous')
    return refuseJoin(
      st,
      e.conn,
      'training is in progress; joining a running job is not supported yet',
      `late worker ${e.name} refused`,
    );
  if (s.workers.size >= s.config.workers)
    return refuseJoin(
      st,
      e.conn,
      `the job already has its ${s.config.workers} workers`,
      `extra worker ${e.name} refused`,
    );
  // names label the metrics, the status page and the logs: each names one worker
  if ([...s.workers.values()].some((w) => w.name === e.name))
    return refuseJoin(
      st,
      e.conn,
      `a worker named ${e.name} is already in the job; give each worker its own --name`,
      `second worker named ${e.name} refused`,
    );
  const rank = s.nextRank++;
  const { pipeline } = s;
  // a pipeline stage: the one fewest workers hold (the lowest of those), so replicas fill up
  const held = (i: number) => [...s.workers.values()].filter((w) => w.stage === i).length;
  const stage = pipeline
    ? pipeline.reduce((best, _, i) => (held(i) < held(best) ? i : best), 0)
    : -1;
  s.workers.set(e.conn, {
    conn: e.conn,
    name: e.name,
    address: e.address,
    rank,
    stage,
    ready: false,
    dataLocal: false,
    kernel: '',
    lastSeen: e.now,
  });
  const reach = e.address ? `; peers reach it at ${e.address}` : '';
  const as = pipeline ? `, pipeline stage ${stage}` : '';
  st.log(
    `worker ${e.name} joined as rank ${rank}${as} (${s.workers.size}/${s.config.workers})${reach}`,
  );
  assignWorker(st, s.workers.get(e.conn) as Worker, s.config.initialState);
}

/** Sends `w` its assign (its stage, if a pipeline) and its part of `state` (null: the seed's). */
function assignWorker(st: Transition, w: Worker, state: TrainingState | null): void {
  const { pipeline } = st.s;
  const span = pipeline && w.stage >= 0 ? stageSpan(pipeline, w.stage) : null;
  const stageField = span
    ? {
        stage: {
          index: w.stage,
          stages: (pipeline as []).length,
          firstLayer: span.firstLayer,
          endLayer: span.endLayer,
        },
      }
    : {};
  const plan = st.s.planId > 0 ? { plan: st.s.planId } : {};
  st.to(
    w.conn,
    msg('assign', {
      ...st.s.config.assign,
      ...stageField,
      ...plan,
      rank: w.rank,
      resume: state !== null,
    }),
  );
  if (state) {
    const mine = span ? stageState(state, stageRanges(modelConfig(st.s.config), span)) : state;
    for (const piece of statePieces(mine)) st.to(w.conn, piece);
  }
}

/** Stage i of a pipeline as a model/stage.ts span. */
function stageSpan(pipeline: NonNullable<CoordinatorConfig['pipeline']>, i: number): StageSpan {
  return { ...pipeline[i], embeddings: i === 0, head: i === pipeline.length - 1 };
}

/** The model's shape, from the run config every worker is assigned. */
function modelConfig(config: CoordinatorConfig): GPTConfig {
  return config.assign.config as unknown as GPTConfig;
}

/** A pipeline's grid: for each stage, its workers by rank (replica r is everyone's r-th). */
function grid(st: Transition): Worker[][] {
  const P = st.s.pipeline?.length ?? 1;
  return Array.from({ length: P }, (_, i) => st.live().filter((w) => w.stage === i));
}

/** How a lost pipeline worker is named: its stage and replica. */
function whereIn(st: Transition, w: Worker): string {
  if (w.stage < 0) return `rank ${w.rank}`;
  const replica = [...st.s.workers.values(), w].filter(
    (o) => o.stage === w.stage && o.rank < w.rank,
  ).length;
  return `rank ${w.rank}, pipeline stage ${w.stage} of replica ${replica}`;
}

function onMessage(st: Transition, w: Worker, m: Message, now: number): void {
  const s = st.s;
  switch (m.t) {
    case 'ready':
      if (s.phase === 'replanning' && !w.ready) {
        if (!s.replan || m.plan !== s.planId) return; // ready for an earlier plan
        w.ready = true;
        w.dataLocal = m.dataLocal;
        // every worker left is ready with its new stage: the run goes on (or ends, if it is due)
        if ([...s.workers.values()].every((o) => o.ready)) {
          s.replan = null;
          s.phase = 'training';
          if (s.step >= s.config.stopAt || s.stopping) return finish(st);
          startStep(st);
        }
        return;
      }
      if (s.phase !== 'rendezvous' || w.ready)
        return protocolError(st, w, `unexpected ${m.t} message`);
      // the exact sums are the same on every worker count only if every worker's kernels are
      if (refusedKernel(st, w, m.kernel)) return;
      w.ready = true;
      w.dataLocal = m.dataLocal;
      w.kernel = m.kernel;
      st.log(
        `worker ${w.name} ready (${m.dataLocal ? 'reads the data itself' : 'data streamed from the coordinator'})`,
      );
      if (st.live().length === s.config.workers) beginTraining(st);
      return;
    case 'shardDone':
      // a result is valid from the shard's current owner in any attempt of the step (the same
      // worker computed it; it may have been sent just before an abort)
      if (m.step !== s.step || s.owner.get(m.shard) !== w.rank) return;
      s.results.set(m.shard, {
        lossSum: m.lossSum,
        targets: m.targets,
        overflow: m.overflow,
        sums: m.sums ?? new Float64Array(0),
      });
      s.lastProgress = now;
      return maybeCommit(st, now);
    case 'reduced':
      if (m.step !== s.step || m.attempt !== s.attempt || !s.members.includes(w.rank)) return; // stale
      s.reduced.set(w.rank, m.gradNorm);
      if (s.pipeline) {
        // exactly the norm's blocks this worker's stage owns, each with a sum
        const owned = ownedBlocks(modelConfig(s.config), stageSpan(s.pipeline, w.stage));
        const { normBlocks: blocks, normSums: sums } = m;
        if (
          !blocks ||
          !sums ||
          blocks.length !== owned.length ||
          sums.length !== owned.length ||
          owned.some((o, i) => blocks[i] !== o.index) ||
          m.overflow === undefined
        )
          return protocolError(st, w, `reduced without the norm blocks of stage ${w.stage}`);
        s.normParts.set(w.rank, { blocks, sums, overflow: m.overflow });
      } else if (m.normBlocks || m.normSums || m.overflow !== undefined) {
        return protocolError(st, w, 'norm blocks in a run without a pipeline');
      }
      s.lastProgress = now;
      return maybeCommit(st, now);
    case 'evalResult': {
      if (s.phase !== 'evaluating' || s.askedRank !== w.rank) return;
      const { loss, ppl, bpb, tokens, bytes } = m;
      st.effects.push({
        type: 'evalMetrics',
        step: m.step,
        result: { loss, ppl, bpb, tokens, bytes },
      });
      s.askedRank = null;
      return nextStep(st);
    }
    case 'state':
      return onStatePiece(st, w, m);
    case 'stepTime': {
      const { v: _v, t: _t, ...times } = m;
      st.effects.push({ type: 'workerTime', worker: w.name, rank: w.rank, times });
      return;
    }
    case 'ping':
      return;
    case 'leave':
      return lose(st, w.conn, `left: ${m.reason}`, now);
    default:
      return protocolError(st, w, `unexpected ${m.t} message`);
  }
}

/** Refuses `w` if its kernels (`kernel`) would give other bits than a ready worker's; true if so. */
function refusedKernel(st: Transition, w: Worker, kernel: string): boolean {
  const other = st.live().find((o) => o.kernel !== kernel);
  if (!other) return false;
  const message =
    `worker ${w.name} computes on ${kernel}, but worker ${other.name} on ${other.kernel}: ` +
    'their gradients would differ in the last bits; start every worker with the same --threads ' +
    '(and, for blas, the same OpenBLAS and OPENBLAS_CORETYPE)';
  st.to(w.conn, msg('reject', { code: 'WEFT_E_CONFIG', message }));
  st.effects.push({ type: 'close', conn: w.conn, code: 'WEFT_E_CONFIG', reason: message });
  lose(st, w.conn, message, w.lastSeen);
  return true;
}

function protocolError(st: Transition, w: Worker, what: string): void {
  const reason = `protocol error from worker ${w.name} during ${st.s.phase}: ${what}`;
  st.to(w.conn, msg('reject', { code: 'WEFT_E_PROTOCOL', message: reason }));
  st.effects.push({ type: 'close', conn: w.conn, code: 'WEFT_E_PROTOCOL', reason });
  lose(st, w.conn, reason, w.lastSeen);
}

function beginTraining(st: Transition): void {
  const s = st.s;
  // workers that joined but never became ready are not part of the run
  for (const w of [...s.workers.values()]) {
    if (!w.ready) {
      st.to(w.conn, msg('shutdown', { reason: 'not ready when training started' }));
      st.effects.push({
        type: 'close',
        conn: w.conn,
        code: 'WEFT_E_PROTOCOL',
        reason: `worker ${w.name} not ready in time`,
      });
      s.workers.delete(w.conn);
    }
  }
  s.phase = 'training';
  st.effects.push({ type: 'trainingStarted', workers: s.workers.size });
  if (s.step >= s.config.stopAt) return finish(st);
  startStep(st);
}

/** A new step: its plan first (the shell answers planStep with stepPlanned, then it starts). */
function startStep(st: Transition): void {
  const s = st.s;
  s.plan = null;
  s.owner = new Map();
  s.members = [];
  const streamed = st.live().some((w) => !w.dataLocal);
  st.effects.push({ type: 'planStep', step: s.step, streamed });
}

/** Sends `start` for the current step: shards keep their previous owner if it is still live. */
function startAttempt(st: Transition, now: number, previous: Map<number, number>): void {
  const s = st.s;
  const live = st.live();
  if (live.length === 0)
    return st.fail('WEFT_E_CLUSTER', 'all workers are lost; the run cannot continue');
  s.members = live.map((w) => w.rank);
  const owner = new Map<number, number>();
  const stages = grid(st);
  const replicas = stages[0].length;
  /** Shards of the worker of rank `rank`: a pipeline's, its replica's (dealt round-robin). */
  let shardsOf: (w: Worker) => number[];
  if (s.pipeline) {
    if (stages.some((holders) => holders.length !== replicas))
      return st.fail(
        'WEFT_E_CLUSTER',
        `the pipeline's stages have ${stages.map((h) => h.length).join(', ')} workers; every stage needs as many`,
      );
    // a shard's results come from its replica's last stage
    for (let shard = 0; shard < s.config.shards; shard++)
      owner.set(shard, stages[stages.length - 1][shard % replicas].rank);
    shardsOf = (w) => {
      const replica = stages[w.stage].indexOf(w);
      return [...Array(s.config.shards).keys()].filter((shard) => shard % replicas === replica);
    };
  } else {
    let next = 0;
    for (let shard = 0; shard < s.config.shards; shard++) {
      const kept = previous.get(shard);
      if (kept !== undefined && s.members.includes(kept)) owner.set(shard, kept);
      else owner.set(shard, s.members[next++ % s.members.length]);
    }
    shardsOf = (w) => [...owner].filter(([, r]) => r === w.rank).map(([shard]) => shard);
  }
  s.owner = owner;
  s.normParts = new Map();
  s.reduced = new Map();
  for (const shard of [...s.results.keys()])
    if (!s.members.includes(previous.get(shard) ?? -1)) s.results.delete(shard);
  if (s.attempt === 0) s.stepStartedAt = now;
  s.lastProgress = now;
  const plan = s.plan as NonNullable<CoordinatorState['plan']>;
  const members: Member[] = live.map((w) => ({
    rank: w.rank,
    name: w.name,
    address: w.address,
    ...(w.stage >= 0 ? { stage: w.stage } : {}),
  }));
  for (const w of live) {
    const shards = shardsOf(w);
    // copies: a transport may transfer a message's arrays, and the plan stays in the state
    const batch = (shard: number) => {
      const b = (plan.batches as ShardBatch[])[shard];
      const ref = b.refLogps ? { refLogps: b.refLogps.slice() } : {};
      return { shard, idx: b.idx.slice(), targets: b.targets.slice(), ...ref };
    };
    const batches = w.dataLocal ? [] : shards.map(batch);
    st.to(
      w.conn,
      msg('start', {
        step: s.step,
        attempt: s.attempt,
        lr: learningRate(s.config.schedule, s.step),
        targetCount: plan.targetCount,
        members,
        shards,
        batches,
      }),
    );
  }
}

function maybeCommit(st: Transition, now: number): void {
  const s = st.s;
  if (s.results.size < s.config.shards || s.members.some((r) => !s.reduced.has(r))) return;
  let lossSum = 0;
  let targets = 0;
  let overflow = false;
  const names = s.config.metricNames ?? [];
  const sums = names.map(() => 0);
  for (let shard = 0; shard < s.config.shards; shard++) {
    const r = s.results.get(shard) as ShardResult;
    lossSum += r.lossSum; // in shard order: the same sum whoever computed which shard
    targets += r.targets;
    overflow ||= r.overflow;
    names.forEach((_, k) => (sums[k] += r.sums[k] ?? 0));
  }
  const metrics = Object.fromEntries(names.map((name, k) => [name, sums[k] / targets]));
  // a pipeline: every worker holds some of the norm's blocks; the first replica's, in block order
  let pipelineNorm: number | undefined;
  if (s.pipeline) {
    const parts = grid(st).map((holders) => s.normParts.get(holders[0].rank));
    const pairs: [number, number][] = [];
    for (const part of parts) {
      part?.blocks.forEach((b, i) => pairs.push([b, part.sums[i]]));
    }
    let total = 0;
    for (const [, sum] of pairs.sort((a, b) => a[0] - b[0])) total += sum;
    pipelineNorm = Math.sqrt(total);
    for (const part of s.normParts.values()) overflow ||= part.overflow;
  }
  const skip = overflow || targets === 0;
  const normField = pipelineNorm === undefined ? {} : { gradNorm: pipelineNorm };
  for (const rank of s.members)
    st.to(
      (st.byRank(rank) as Worker).conn,
      msg('commit', { step: s.step, attempt: s.attempt, skip, ...normField }),
    );
  if (overflow)
    st.log(
      `step ${s.step + 1}: a gradient value overflowed the exact-sum grid; the step is skipped`,
    );
  const gradNorm = pipelineNorm ?? s.reduced.get(s.members[0]) ?? NaN;
  st.effects.push({
    type: 'stepMetrics',
    step: s.step + 1,
    loss: targets > 0 ? lossSum / targets : NaN,
    lr: learningRate(s.config.schedule, s.step),
    gradNorm,
    tokensPerSec: (s.config.tokensPerStep * 1000) / Math.max(1, now - s.stepStartedAt),
    skipped: skip,
    metrics,
  });
  s.step++;
  s.attempt = s.attemptBase;
  s.stalls = 0;
  s.results = new Map();
  const { evalEvery, stopAt } = s.config;
  const due = (evalEvery > 0 && s.step % evalEvery === 0) || s.step >= stopAt || s.stopping;
  if (due && s.config.hasValidation) askForEval(st);
  else nextStep(st);
}

function askForEval(st: Transition): void {
  const s = st.s;
  const first = st.live()[0];
  if (!first) return st.fail('WEFT_E_CLUSTER', 'all workers are lost; the run cannot continue');
  s.phase = 'evaluating';
  s.askedRank = first.rank;
  const tokens = first.dataLocal ? new Int32Array(0) : s.config.evalTokens.slice();
  st.to(first.conn, msg('evaluate', { step: s.step, maxWindows: s.config.evalWindows, tokens }));
}

function nextStep(st: Transition): void {
  const s = st.s;
  s.phase = 'training';
  if (s.step >= s.config.stopAt || s.stopping) return finish(st);
  const { ckptEvery } = s.config;
  if (ckptEvery > 0 && s.step % ckptEvery === 0) requestState(st, false);
  startStep(st);
}

/** Asks the lowest rank for its state (after this step's update: messages on a link keep their order). */
function requestState(st: Transition, final: boolean): void {
  const s = st.s;
  const first = st.live()[0];
  if (!first) return st.fail('WEFT_E_CLUSTER', 'all workers are lost; the run cannot continue');
  if (s.transfer && !final) {
    st.log(
      `checkpoint at step ${s.step} skipped: the one at step ${s.transfer.step} is still arriving`,
    );
    return;
  }
  // a pipeline: every stage of the first replica sends its part
  const senders = s.pipeline ? grid(st).map((holders) => holders[0]) : [first];
  if (senders.some((w) => w === undefined))
    return st.fail(
      'WEFT_E_CLUSTER',
      'a pipeline stage has no worker left; the run cannot continue',
    );
  const ranks = senders.map((w) => w.rank);
  const empty = Object.fromEntries(ranks.map((r) => [r, {}]));
  const id = ++s.fetchId;
  s.transfer = { ranks, step: s.step, final, id, totals: { ...empty }, received: { ...empty } };
  st.effects.push({ type: 'fetchState', step: s.step, final });
  for (const w of senders) st.to(w.conn, msg('fetch', { what: 'state', id }));
}

function finish(st: Transition): void {
  st.s.phase = 'fetching';
  requestState(st, true);
}

function onStatePiece(st: Transition, w: Worker, m: MessageOf<'state'>): void {
  const s = st.s;
  const t = s.transfer;
  // (pieces of an earlier fetch, still arriving after a new one began, are dropped)
  if (!t || !t.ranks.includes(w.rank) || m.fetch !== t.id) return;
  const totals = t.totals[w.rank];
  const received = t.received[w.rank];
  // a pipeline stage's part is put into the whole model's place by place: it must be its size
  const { pipeline } = s;
  const size = pipeline && stageLayout(modelConfig(s.config), stageSpan(pipeline, w.stage)).total;
  const total = (totals[m.what] ??= m.total);
  const at = received[m.what] ?? 0;
  const wrongSize = total !== m.total || (size !== null && total !== size);
  if (wrongSize || m.offset !== at || m.offset + m.data.length > m.total) {
    return protocolError(st, w, `state piece ${m.what}[${m.offset}..] out of order or range`);
  }
  const span = s.pipeline && w.stage >= 0 ? stageSpan(s.pipeline, w.stage) : null;
  st.effects.push({ type: 'statePiece', piece: m, span });
  received[m.what] = at + m.data.length;
  const kinds = ['params', 'm', 'v'] as const;
  const complete = (r: number) =>
    kinds.every((k) => t.totals[r][k] !== undefined && t.received[r][k] === t.totals[r][k]);
  if (!t.ranks.every(complete)) return;
  s.transfer = null;
  if (t.recovery) {
    st.effects.push({ type: 'recovered', step: t.step, adamSteps: m.adamSteps });
    return;
  }
  if (!t.final) {
    st.effects.push({ type: 'checkpoint', step: t.step, adamSteps: m.adamSteps });
    return;
  }
  s.phase = 'done';
  st.effects.push({ type: 'finished', steps: s.step, adamSteps: m.adamSteps });
  for (const other of s.workers.values())
    st.to(other.conn, msg('shutdown', { reason: 'training finished' }));
}

/** Aborts the current attempt on every live worker and starts the next (shards keep live owners). */
function retryStep(st: Transition, now: number, reason: string): void {
  const s = st.s;
  for (const w of st.live())
    st.to(w.conn, msg('abort', { step: s.step, attempt: s.attempt, reason }));
  s.attempt++;
  startAttempt(st, now, s.owner);
}

/** Drops a worker; if it was part of the current step, the step restarts without it. */
function lose(st: Transition, conn: ConnId, reason: string, now: number): void {
  const s = st.s;
  const w = s.workers.get(conn) as Worker;
  s.workers.delete(conn);
  const lost = s.phase !== 'rendezvous';
  st.effects.push({ type: 'workerGone', worker: w.name, rank: w.rank, reason, lost });
  if (!lost) {
    st.log(`worker ${w.name} (rank ${w.rank}) left before training: ${reason}`);
    return;
  }
  st.log(`worker ${w.name} (${whereIn(st, w)}) lost: ${reason}`);
  // a pipeline needs every stage until the final state is in (a worker not sending it may go):
  // it rolls back to its newest checkpoint and re-plans the grid over the workers left
  const needed = s.phase !== 'fetching' || (s.transfer?.ranks.includes(w.rank) ?? false);
  if (s.pipeline && needed && s.phase !== 'replanning') return rollBack(st, reason);
  if (s.phase === 'replanning') {
    if (s.workers.size === 0)
      return st.fail('WEFT_E_CLUSTER', `all workers are lost (${reason}); the run cannot continue`);
    // a worker sending the survivors' state is gone too: the checkpoint it is
    if (s.transfer?.ranks.includes(w.rank)) {
      s.transfer = null;
      st.effects.push({ type: 'rollback' });
      return;
    }
    // assignments are out: plan again over who is left, from the same state
    const again = s.replan;
    if (again) onRolledBack(st, { type: 'rolledBack', ...again, now });
    return; // (else the shell's answer is awaited: it plans over who is left then)
  }
  // (while a plan is awaited no attempt has started: the plan's start goes to the live workers)
  if (s.phase === 'training' && s.plan !== null && s.members.includes(w.rank)) {
    retryStep(st, now, `worker ${w.name} lost`);
  } else if (s.phase === 'evaluating' && s.askedRank === w.rank) {
    askForEval(st);
  }
  if (s.transfer?.ranks.includes(w.rank)) {
    if (s.transfer.final) {
      s.transfer = null;
      finish(st);
    } else {
      st.log(`checkpoint at step ${s.transfer.step} abandoned: the worker sending it was lost`);
      s.transfer = null;
    }
  }
}

/** A pipeline lost a stage: everyone stops, and the shell is asked for the newest state. */
function rollBack(st: Transition, reason: string): void {
  const s = st.s;
  if (st.live().length === 0)
    return st.fail('WEFT_E_CLUSTER', `all workers are lost (${reason}); the run cannot continue`);
  for (const w of st.live())
    st.to(w.conn, msg('abort', { step: s.step, attempt: s.attempt, reason }));
  s.phase = 'replanning';
  s.transfer = null;
  s.plan = null;
  s.results = new Map();
  s.reduced = new Map();
  s.normParts = new Map();
  s.owner = new Map();
  s.members = [];
  // every stage still held by a live worker: its state, as of the last commit, from them;
  // else the newest checkpoint
  const holders = grid(st).map((stage) => stage[0]);
  if (holders.every((w) => w !== undefined)) {
    const ranks = holders.map((w) => w.rank);
    const empty = Object.fromEntries(ranks.map((r) => [r, {}]));
    const id = ++s.fetchId;
    s.transfer = {
      ranks,
      step: s.step,
      final: false,
      recovery: true,
      id,
      totals: { ...empty },
      received: { ...empty },
    };
    st.effects.push({ type: 'fetchState', step: s.step, final: false });
    for (const w of holders) st.to(w.conn, msg('fetch', { what: 'state', id }));
    return;
  }
  st.effects.push({ type: 'rollback' });
}

/**
 * The newest state is in: the grid re-planned over the workers left (P stages if there are P,
 * else one stage per worker, in one replica; workers beyond whole replicas are let go), each
 * assigned its stage anew with its part of the state, and the run goes on from that state's step
 * once all are ready. Exact sums make the weights those of a run that never lost anyone.
 */
function onRolledBack(st: Transition, e: Extract<CoordinatorEvent, { type: 'rolledBack' }>): void {
  const s = st.s;
  const live = [...s.workers.values()].sort((a, b) => a.rank - b.rank);
  if (live.length === 0)
    return st.fail('WEFT_E_CLUSTER', 'all workers are lost; the run cannot continue');
  s.replan = { step: e.step, state: e.state };
  s.planId++;
  const P0 = s.config.pipeline?.length ?? 1;
  const P = Math.min(P0, live.length);
  const D = Math.floor(live.length / P);
  const shards = s.config.shards;
  // the same P keeps the run's stages; fewer are split anew; none if a replica would get fewer
  // micro-batches than stages
  s.pipeline =
    P <= 1 || Math.floor(shards / D) < P
      ? null
      : P === P0
        ? s.config.pipeline
        : fewerStages(s.config, P);
  s.step = e.step;
  s.attemptBase = Math.max(s.attemptBase, s.attempt + 1); // above every attempt sent before
  s.attempt = s.attemptBase;
  const used = s.pipeline ? live.slice(0, D * P) : live;
  for (const w of live.slice(used.length)) {
    st.to(w.conn, msg('shutdown', { reason: 'not needed after the pipeline was re-planned' }));
    st.effects.push({
      type: 'close',
      conn: w.conn,
      code: 'WEFT_E_CLUSTER',
      reason: `${w.name} let go`,
    });
    s.workers.delete(w.conn);
  }
  const layout = s.pipeline
    ? `${D} replica(s) x ${P} stages`
    : `${used.length} worker(s) holding the whole model`;
  st.log(`re-planned from step ${e.step}: ${layout}`);
  used.forEach((w, i) => {
    w.ready = false;
    w.stage = s.pipeline ? i % P : -1;
    assignWorker(st, w, e.state);
  });
}

/** The run's blocks split into P stages, balanced as the shell split them for the first plan. */
function fewerStages(config: CoordinatorConfig, P: number): CoordinatorConfig['pipeline'] {
  const model = modelConfig(config);
  const T = Number(config.assign.config.seqLen) || model.blockSize;
  const B = Number(config.assign.config.batchSize) / config.shards;
  return partitionStages(model, P, B, T).map(({ firstLayer, endLayer }) => ({
    firstLayer,
    endLayer,
  }));
}

function onTick(st: Transition, now: number): void {
  const s = st.s;
  const { heartbeatMs, heartbeatTimeoutMs, rendezvousMs, minWorkers, workers } = s.config;
  for (const w of [...s.workers.values()]) {
    if (now - w.lastSeen > heartbeatTimeoutMs) {
      const reason = `no message for ${Math.round((now - w.lastSeen) / 1000)} s (heartbeat timeout)`;
      st.effects.push({ type: 'close', conn: w.conn, code: 'WEFT_E_NETWORK', reason });
      lose(st, w.conn, reason, now);
      if (s.phase === 'failed') return;
    }
  }
  // every shard is computed and some workers reduced, but not all: a link between workers broke
  const allComputed = s.results.size === s.config.shards;
  if (
    s.phase === 'training' &&
    allComputed &&
    s.reduced.size < s.members.length &&
    now - s.lastProgress > heartbeatTimeoutMs
  ) {
    if (s.pipeline)
      return st.fail(
        'WEFT_E_NETWORK',
        `the all-reduce of pipeline step ${s.step + 1} made no progress for ${Math.round((now - s.lastProgress) / 1000)} s; check that workers can reach each other's peer addresses`,
      );
    if (++s.stalls > MAX_STALLS) {
      return st.fail(
        'WEFT_E_NETWORK',
        `the all-reduce of step ${s.step + 1} stalled ${MAX_STALLS + 1} times; check that workers can reach each other's peer addresses`,
      );
    }
    st.log(
      `step ${s.step + 1}: the all-reduce made no progress for ${Math.round((now - s.lastProgress) / 1000)} s; retrying it`,
    );
    retryStep(st, now, 'all-reduce stalled');
  }
  if (now - s.lastPing >= heartbeatMs) {
    s.lastPing = now;
    for (const w of s.workers.values()) st.to(w.conn, msg('ping', {}));
  }
  if (s.phase === 'rendezvous' && now - s.startedAt >= rendezvousMs) {
    const ready = st.live().length;
    if (ready >= minWorkers && ready > 0) {
      st.log(`rendezvous timeout: starting with ${ready} of ${workers} workers`);
      beginTraining(st);
    } else {
      st.fail(
        'WEFT_E_CLUSTER',
        `only ${ready} of ${workers} workers were ready after ${Math.round(rendezvousMs / 1000)} s (--min-workers ${minWorkers})`,
      );
    }
  }
}
