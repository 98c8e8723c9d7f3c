// The worker as a pure state machine (docs/design.md invariant 5):
//   workerTransition(state, event) -> { state, send, effects }
// It sequences a worker's part of each step; the shell does the work the effects name
// (prepare the model and data, compute a shard, run the all-reduce, apply the update, evaluate,
// send the weights) and reports back with events. It never changes the state it is given (every
// field it sets is on a copy; arrays are replaced, not pushed to) and holds no closures. The
// contract for shells: send `send` to the coordinator, then carry out `effects`, in order, before
// the next event; an effect whose work finishes later feeds its event back then.
//
//   assign -> prepare [-> load the streamed state of a resumed run] -> ready;
//   start(step, attempt) -> compute each new shard (a pipeline stage: its replica's whole
//   schedule at once, one `pipeline` effect) -> reduce ->
//   reduced; commit -> apply -> idle. The last shard's compute names the reduction that follows
//   it, which the shell may begin while that shard's backward pass runs (the attempt it names is
//   the state's until a start or abort changes it). abort(step, attempt) cancels the reduction; the shards
//   already computed in that step stay in the accumulator, and the next attempt adds only the
//   shards this worker has not done yet.

import type { EvalResult } from '../../train/evaluate.ts';
import type { Member, Message, MessageOf } from '../messages.ts';
import { msg } from '../messages.ts';

export interface WorkerState {
  phase:
    'joining' | 'preparing' | 'loading' | 'idle' | 'computing' | 'reducing' | 'committing' | 'done';
  /** A resumed run: elements of state (params, m and v) still to arrive before ready. */
  stateToLoad: number;
  dataLocal: boolean;
  /** What this worker's sums depend on (kernels/backend.ts bitsIdentity), told in ready. */
  kernel: string;
  rank: number;
  /** Step and attempt of the last start message. */
  step: number;
  attempt: number;
  lr: number;
  targetCount: number;
  members: Member[];
  /** Shards computed into the accumulator for `step`. */
  done: number[];
  /** Shards of the current attempt still to compute, with their streamed batches if any. */
  todo: number[];
  batches: MessageOf<'start'>['batches'];
  /** A pipeline stage's index (-1: no pipeline), and whether its step overflowed the exact grid. */
  stage: number;
  /** The plan of the last assign (0 unless a pipeline was re-planned). */
  plan: number;
  overflow: boolean;
}

export type WorkerEvent =
  | { type: 'message'; message: Message }
  | { type: 'prepared'; dataLocal: boolean; kernel: string }
  | {
      type: 'computed';
      step: number;
      shard: number;
      lossSum: number;
      targets: number;
      overflow: boolean;
      /** The objective's metric sums (empty: none). */
      sums?: number[];
    }
  | {
      type: 'reducedLocally';
      step: number;
      attempt: number;
      gradNorm: number;
      /** A pipeline stage: the sums of squares of the norm's blocks it owns. */
      norm?: { blocks: Int32Array; sums: Float64Array };
    }
  /** A pipeline stage ran its schedule: per shard of its replica, the last stage's losses. */
  | {
      type: 'pipelined';
      step: number;
      results: { shard: number; lossSum: number; targets: number; sums?: number[] }[];
      overflow: boolean;
    }
  | { type: 'evaluated'; step: number; result: EvalResult }
  | { type: 'coordinatorLost'; reason: string };

export type WorkerEffect =
  | { type: 'prepare'; assign: MessageOf<'assign'> }
  | { type: 'newStep'; step: number }
  | {
      type: 'compute';
      step: number;
      shard: number;
      targetCount: number;
      batch: MessageOf<'start'>['batches'][number] | null;
      /**
       * The reduction of (step, attempt, members) comes next unless a message changes the
       * attempt meanwhile: the shell may start it while this shard's backward pass runs.
       */
      reduceAfter: { attempt: number; members: Member[] } | null;
    }
  /** A pipeline stage's step: its schedule over its replica's shards, with its neighbours. */
  | {
      type: 'pipeline';
      step: number;
      attempt: number;
      shards: number[];
      targetCount: number;
      batches: MessageOf<'start'>['batches'];
      members: Member[];
    }
  | { type: 'reduce'; step: number; attempt: number; members: Member[] }
  | { type: 'cancelReduce'; step: number; attempt: number; reason: string }
  /** gradNorm: a pipeline's global norm, from the coordinator. */
  | { type: 'apply'; lr: number; skip: boolean; gradNorm?: number }
  | { type: 'evaluate'; step: number; maxWindows: number; tokens: Int32Array }
  | { type: 'loadState'; piece: MessageOf<'state'> }
  | { type: 'sendState'; fetch?: number }
  /** resumable: the coordinator was lost (not a refusal): the run can go on from its checkpoint. */
  | { type: 'exit'; code: 'ok' | 'error'; reason: string; resumable?: boolean }
  /** A re-plan: stop the step under way (its compute, its reduction) before preparing anew. */
  | { type: 'replan' };

export interface WorkerOutput {
  state: WorkerState;
  send: Message[];
  effects: WorkerEffect[];
}

export function initialWorker(): WorkerState {
  return {
    phase: 'joining',
    stateToLoad: 0,
    dataLocal: false,
    kernel: '',
    rank: -1,
    step: -1,
    attempt: 0,
    lr: 0,
    targetCount: 0,
    members: [],
    done: [],
    todo: [],
    batches: [],
    stage: -1,
    plan: 0,
    overflow: false,
  };
}

/** The plan field of ready: only after a re-plan (so a first ready is as it always was). */
function planOf(s: WorkerState): { plan?: number } {
  return s.plan > 0 ? { plan: s.plan } : {};
}

export function workerTransition(state: WorkerState, event: WorkerEvent): WorkerOutput {
  const s: WorkerState = { ...state };
  const send: Message[] = [];
  const effects: WorkerEffect[] = [];
  const protocolError = (what: string) => {
    send.push(msg('leave', { reason: `protocol error: ${what}` }));
    effects.push({ type: 'exit', code: 'error', reason: `protocol error: ${what}` });
    s.phase = 'done';
  };
  /** Computes the next pending shard, or starts the reduction when none is left. */
  const advance = () => {
    const shard = s.todo[0];
    if (shard !== undefined) {
      s.phase = 'computing';
      const batch = s.batches.find((b) => b.shard === shard) ?? null;
      const reduceAfter = s.todo.length === 1 ? { attempt: s.attempt, members: s.members } : null;
      effects.push({
        type: 'compute',
        step: s.step,
        shard,
        targetCount: s.targetCount,
        batch,
        reduceAfter,
      });
    } else {
      s.phase = 'reducing';
      effects.push({ type: 'reduce', step: s.step, attempt: s.attempt, members: s.members });
    }
  };
  if (s.phase === 'done') return { state: s, send, effects };

  switch (event.type) {
    case 'message': {
      const m = event.message;
      switch (m.t) {
        case 'assign':
          // a second assign re-plans a pipeline that lost a worker: whatever is under way stops,
          // and the worker is prepared afresh for its new stage, from the state that follows
          if (s.phase !== 'joining') {
            if (m.rank !== s.rank)
              return (protocolError('a new assign with another rank'), { state: s, send, effects });
            effects.push({ type: 'replan' });
            s.step = -1;
            s.done = [];
            s.todo = [];
          }
          s.rank = m.rank;
          s.plan = m.plan ?? 0;
          s.stage = m.stage?.index ?? -1;
          s.phase = 'preparing';
          s.stateToLoad = m.resume ? -1 : 0; // the size is known from the first piece
          effects.push({ type: 'prepare', assign: m });
          break;
        case 'state': {
          if (s.phase !== 'loading')
            return (protocolError(`state while ${s.phase}`), { state: s, send, effects });
          if (s.stateToLoad < 0) s.stateToLoad = 3 * m.total;
          s.stateToLoad -= m.data.length;
          effects.push({ type: 'loadState', piece: m });
          if (s.stateToLoad === 0) {
            s.phase = 'idle';
            send.push(msg('ready', { dataLocal: s.dataLocal, kernel: s.kernel, ...planOf(s) }));
          }
          break;
        }
        case 'start': {
          // a new attempt of the same step may arrive mid-compute or mid-reduction (after an abort)
          const retry = m.step === s.step && m.attempt > s.attempt;
          if (s.phase === 'reducing' || s.phase === 'committing') {
            if (!retry)
              return (protocolError(`start while ${s.phase}`), { state: s, send, effects });
            effects.push({
              type: 'cancelReduce',
              step: s.step,
              attempt: s.attempt,
              reason: 'replanned',
            });
            s.phase = 'idle';
          } else if (s.phase !== 'idle' && !(s.phase === 'computing' && retry)) {
            return (protocolError(`start while ${s.phase}`), { state: s, send, effects });
          }
          if (m.step !== s.step) {
            s.done = [];
            effects.push({ type: 'newStep', step: m.step });
          }
          s.step = m.step;
          s.attempt = m.attempt;
          s.lr = m.lr;
          s.targetCount = m.targetCount;
          s.members = m.members;
          s.batches = m.batches;
          if (s.stage >= 0) {
            // a pipeline step runs whole: the coordinator never retries one
            if (retry)
              return (protocolError('a retried pipeline step'), { state: s, send, effects });
            s.phase = 'computing';
            s.overflow = false;
            effects.push({
              type: 'pipeline',
              step: m.step,
              attempt: m.attempt,
              shards: m.shards,
              targetCount: m.targetCount,
              batches: m.batches,
              members: m.members,
            });
            break;
          }
          s.todo = m.shards.filter((shard) => !s.done.includes(shard));
          if (s.phase !== 'computing') advance();
          break;
        }
        case 'abort':
          if (
            m.step === s.step &&
            m.attempt === s.attempt &&
            (s.phase === 'reducing' || s.phase === 'committing')
          ) {
            effects.push({
              type: 'cancelReduce',
              step: m.step,
              attempt: m.attempt,
              reason: m.reason,
            });
            s.phase = 'idle';
          }
          break;
        case 'commit':
          if (m.step !== s.step || m.attempt !== s.attempt || s.phase !== 'committing') {
            return (
              protocolError(`commit for step ${m.step} attempt ${m.attempt} while ${s.phase}`),
              { state: s, send, effects }
            );
          }
          effects.push({ type: 'apply', lr: s.lr, skip: m.skip, gradNorm: m.gradNorm });
          s.phase = 'idle';
          break;
        case 'evaluate':
          if (s.phase !== 'idle')
            return (protocolError(`evaluate while ${s.phase}`), { state: s, send, effects });
          effects.push({
            type: 'evaluate',
            step: m.step,
            maxWindows: m.maxWindows,
            tokens: m.tokens,
          });
          break;
        case 'fetch':
          effects.push({ type: 'sendState', fetch: m.id });
          break;
        case 'ping':
          break;
        case 'shutdown':
          s.phase = 'done';
          effects.push({ type: 'exit', code: 'ok', reason: m.reason });
          break;
        case 'reject':
          s.phase = 'done';
          effects.push({ type: 'exit', code: 'error', reason: `${m.message} [${m.code}]` });
          break;
        default:
          return (
            protocolError(`unexpected ${m.t} from the coordinator`),
            { state: s, send, effects }
          );
      }
      break;
    }
    case 'prepared':
      s.dataLocal = event.dataLocal;
      s.kernel = event.kernel;
      if (s.stateToLoad === 0) {
        s.phase = 'idle';
        send.push(msg('ready', { dataLocal: s.dataLocal, kernel: s.kernel, ...planOf(s) }));
      } else {
        s.phase = 'loading';
      }
      break;
    case 'computed':
      if (event.step !== s.step) break;
      s.done = [...s.done, event.shard];
      s.todo = s.todo.filter((shard) => shard !== event.shard);
      send.push(
        msg('shardDone', {
          step: event.step,
          attempt: s.attempt,
          shard: event.shard,
          lossSum: event.lossSum,
          targets: event.targets,
          overflow: event.overflow,
          ...(event.sums?.length ? { sums: Float64Array.from(event.sums) } : {}),
        }),
      );
      advance();
      break;
    case 'pipelined':
      if (event.step !== s.step || s.phase !== 'computing') break;
      for (const { sums, ...r } of event.results)
        send.push(
          msg('shardDone', {
            step: s.step,
            attempt: s.attempt,
            ...r,
            overflow: false,
            ...(sums?.length ? { sums: Float64Array.from(sums) } : {}),
          }),
        );
      s.overflow = event.overflow;
      s.phase = 'reducing';
      effects.push({ type: 'reduce', step: s.step, attempt: s.attempt, members: s.members });
      break;
    case 'reducedLocally': {
      if (event.step !== s.step || event.attempt !== s.attempt || s.phase !== 'reducing') break; // an aborted attempt
      s.phase = 'committing';
      const { step, attempt, gradNorm, norm } = event;
      const stage = norm
        ? { normBlocks: norm.blocks, normSums: norm.sums, overflow: s.overflow }
        : {};
      send.push(msg('reduced', { step, attempt, gradNorm, ...stage }));
      break;
    }
    case 'evaluated':
      send.push(msg('evalResult', { step: event.step, ...event.result }));
      break;
    case 'coordinatorLost':
      s.phase = 'done';
      effects.push({
        type: 'exit',
        code: 'error',
        reason: `lost the coordinator: ${event.reason}`,
        resumable: true,
      });
      break;
    default:
      return event satisfies never;
  }
  return { state: s, send, effects };
}
