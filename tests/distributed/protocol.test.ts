// The coordinator and worker state machines, driven directly with scripted events: no sockets,
// no timers, no threads (docs/design.md invariant 5). Every state handed to a machine is
// deep-frozen first, Maps included, so a transition that changes its input throws.

import { describe, expect, it } from 'vitest';
import { deepFreeze } from '../helpers/freeze.ts';
import type { Message, MessageOf } from '../../src/distributed/messages.ts';
import { msg, statePieces } from '../../src/distributed/messages.ts';
import type {
  CoordinatorConfig,
  CoordinatorEvent,
  CoordinatorState,
  Output,
} from '../../src/distributed/protocol/coordinator.ts';
import {
  coordinatorTransition,
  initialCoordinator,
} from '../../src/distributed/protocol/coordinator.ts';
import type {
  WorkerEvent,
  WorkerOutput,
  WorkerState,
} from '../../src/distributed/protocol/worker.ts';
import { initialWorker, workerTransition } from '../../src/distributed/protocol/worker.ts';

const config: CoordinatorConfig = {
  workers: 2,
  minWorkers: 1,
  rendezvousMs: 10_000,
  heartbeatMs: 1000,
  heartbeatTimeoutMs: 5000,
  steps: 2,
  shards: 4,
  tokensPerStep: 64,
  evalEvery: 0,
  evalWindows: 4,
  hasValidation: false,
  assign: {
    runId: 'run',
    config: {},
    tokenizer: {},
    dataPath: '/data',
    dataSha256: 'abc',
    heartbeatMs: 1000,
    timeoutMs: 5000,
    exactBits: 40,
    backend: 'reference',
  },
  // warming up for 10 steps to 1: step s has lr 0.1 (s + 1)
  schedule: { lr: 1, minLr: 0, warmupSteps: 10, decaySteps: 10 },
  evalTokens: new Int32Array(0),
  firstStep: 0,
  stopAt: 2,
  ckptEvery: 0,
  initialState: null,
  pipeline: null,
};

/** Runs events through the coordinator, as a shell would, collecting everything it sends and does. */
/** The id of the last fetch sent to `conn` (state pieces answering it carry it). */
function fetchId(d: Driver, conn: number): number {
  return (d.sent(conn, 'fetch').at(-1) as MessageOf<'fetch'>).id as number;
}

class Driver {
  state: CoordinatorState;
  out: Output[] = [];
  /** Answer planStep at once (as the shell does); false leaves plans pending for a test. */
  answerPlans = true;
  constructor(c: CoordinatorConfig = config) {
    this.state = initialCoordinator(c);
  }
  feed(event: CoordinatorEvent): Output {
    const o = coordinatorTransition(deepFreeze(this.state), event);
    this.state = o.state;
    this.out.push(o);
    // the shell answers planStep at once, as CoordinatorShell does
    for (const e of o.effects) {
      if (e.type !== 'planStep' || !this.answerPlans) continue;
      const batches = e.streamed
        ? Array.from({ length: this.state.config.shards }, () => ({
            idx: new Int32Array(16),
            targets: new Int32Array(16),
          }))
        : null;
      this.feed({ type: 'stepPlanned', step: e.step, targetCount: 64, batches, now: 0 });
    }
    return o;
  }
  /** The state put together from the statePiece effects so far. */
  assembled(): Record<string, number[]> {
    const parts: Record<string, number[]> = {};
    for (const e of this.out.flatMap((o) => o.effects)) {
      if (e.type !== 'statePiece') continue;
      const { what, total, offset, data } = e.piece;
      const part = (parts[what] ??= new Array<number>(total).fill(0));
      part.splice(offset, data.length, ...data);
    }
    return parts;
  }
  sent(conn: number, type?: string): Message[] {
    return this.out.flatMap((o) =>
      o.send
        .filter((s) => s.conn === conn && (!type || s.message.t === type))
        .map((s) => s.message),
    );
  }
  logs(): string[] {
    return this.out.flatMap((o) => o.effects.flatMap((e) => (e.type === 'log' ? [e.line] : [])));
  }
  join(conn: number, name: string, now = 0, kernel = 'wasm'): Output {
    this.feed({ type: 'joined', conn, name, address: `addr-${name}`, now });
    return this.feed({
      type: 'message',
      conn,
      message: msg('ready', { dataLocal: true, kernel }),
      now,
    });
  }
  /** Worker `conn` reports every shard it was given in the last start, then reduced. */
  work(conn: number, now = 0, gradNorm = 1): void {
    const start = this.sent(conn, 'start').at(-1) as MessageOf<'start'>;
    for (const shard of start.shards) {
      this.feed({
        type: 'message',
        conn,
        message: msg('shardDone', {
          step: start.step,
          attempt: start.attempt,
          shard,
          lossSum: shard + 1,
          targets: 16,
          overflow: false,
        }),
        now,
      });
    }
    this.feed({
      type: 'message',
      conn,
      message: msg('reduced', { step: start.step, attempt: start.attempt, gradNorm }),
      now,
    });
  }
}

describe('coordinator state machine', () => {
  it('assigns ranks in join order and starts when every worker is ready', () => {
    const d = new Driver();
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    expect(d.sent(10, 'assign')).toEqual([
      msg('assign', { ...config.assign, rank: 0, resume: false }),
    ]);
    expect(d.sent(10, 'start')).toEqual([]);
    d.join(11, 'b');
    const startA = d.sent(10, 'start')[0] as MessageOf<'start'>;
    const startB = d.sent(11, 'start')[0] as MessageOf<'start'>;
    expect(startA.shards).toEqual([0, 2]);
    expect(startB.shards).toEqual([1, 3]);
    expect(startA.members.map((m) => m.name)).toEqual(['a', 'b']);
    expect(startA).toMatchObject({ step: 0, attempt: 0, lr: 0.1, targetCount: 64, batches: [] });
  });

  it('commits when all shards and all reductions are in, averaging the loss in shard order', () => {
    const d = new Driver();
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    d.join(11, 'b');
    d.work(10, 100);
    expect(d.sent(10, 'commit')).toEqual([]);
    d.work(11, 200);
    expect(d.sent(10, 'commit')).toEqual([msg('commit', { step: 0, attempt: 0, skip: false })]);
    const metrics = d.out.flatMap((o) => o.effects).find((e) => e.type === 'stepMetrics');
    expect(metrics).toMatchObject({ step: 1, loss: (1 + 2 + 3 + 4) / 64, lr: 0.1, gradNorm: 1 });
    expect((d.sent(11, 'start').at(-1) as MessageOf<'start'>).step).toBe(1);
  });

  it('evaluates every evalEvery steps and at the end, on the lowest rank', () => {
    const d = new Driver({ ...config, steps: 3, stopAt: 3, evalEvery: 2, hasValidation: true });
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    d.join(11, 'b');
    for (let step = 0; step < 3; step++) {
      d.work(10);
      d.work(11);
      const evals = d.sent(10, 'evaluate') as MessageOf<'evaluate'>[];
      if (step === 1 || step === 2) {
        const result = { loss: 1, ppl: Math.E, bpb: 2, tokens: 10, bytes: 20 };
        d.feed({
          type: 'message',
          conn: 10,
          message: msg('evalResult', { step: evals.at(-1)?.step ?? -1, ...result }),
          now: 0,
        });
      }
    }
    expect((d.sent(10, 'evaluate') as MessageOf<'evaluate'>[]).map((m) => m.step)).toEqual([2, 3]);
    expect(d.sent(11, 'evaluate')).toEqual([]);
    expect(d.out.flatMap((o) => o.effects).filter((e) => e.type === 'evalMetrics')).toHaveLength(2);
    expect(d.sent(10, 'fetch')).toHaveLength(1);
  });

  it('asks the lowest rank for the weights at the end and shuts everyone down', () => {
    const d = new Driver({ ...config, steps: 1, stopAt: 1 });
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    d.join(11, 'b');
    d.work(10);
    d.work(11);
    expect(d.sent(10, 'fetch')).toEqual([msg('fetch', { what: 'state', id: 1 })]);
    const state = {
      params: Float32Array.from([1, 2, 3]),
      m: Float32Array.from([4, 5, 6]),
      v: Float32Array.from([7, 8, 9]),
      adamSteps: 1,
    };
    for (const piece of statePieces(state))
      d.feed({ type: 'message', conn: 10, message: { ...piece, fetch: fetchId(d, 10) }, now: 0 });
    expect(d.out.at(-1)?.effects).toContainEqual({ type: 'finished', steps: 1, adamSteps: 1 });
    expect(d.assembled()).toEqual({ params: [1, 2, 3], m: [4, 5, 6], v: [7, 8, 9] });
    expect(d.sent(11, 'shutdown')).toHaveLength(1);
  });

  it('fetches a checkpoint every ckptEvery steps while the next step runs, and streams a resumed state', () => {
    const initialState = {
      params: Float32Array.from([1, 2]),
      m: Float32Array.from([3, 4]),
      v: Float32Array.from([5, 6]),
      adamSteps: 7,
    };
    const d = new Driver({
      ...config,
      steps: 4,
      stopAt: 3,
      firstStep: 1,
      ckptEvery: 2,
      initialState,
    });
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    expect(d.sent(10).map((m) => m.t)).toEqual(['assign', 'state', 'state', 'state']);
    expect(d.sent(10, 'assign')[0]).toMatchObject({ resume: true });
    d.join(11, 'b');
    expect((d.sent(10, 'start')[0] as MessageOf<'start'>).step).toBe(1);
    d.work(10);
    d.work(11);
    // after step 2 completes: fetch (for the checkpoint) goes out before the start of step 3
    expect(
      d
        .sent(10)
        .slice(-3)
        .map((m) => m.t),
    ).toEqual(['commit', 'fetch', 'start']);
    const state = {
      params: Float32Array.from([9, 9]),
      m: Float32Array.from([8, 8]),
      v: Float32Array.from([7, 7]),
      adamSteps: 8,
    };
    for (const piece of statePieces(state))
      d.feed({ type: 'message', conn: 10, message: { ...piece, fetch: fetchId(d, 10) }, now: 0 });
    expect(d.out.at(-1)?.effects).toContainEqual({ type: 'checkpoint', step: 2, adamSteps: 8 });
    expect(d.assembled()).toEqual({ params: [9, 9], m: [8, 8], v: [7, 7] });
    d.work(10);
    d.work(11);
    // stopAt 3: the final state is fetched instead of a fourth step
    expect(d.sent(10).at(-1)).toMatchObject({ t: 'fetch', what: 'state' });
  });

  it('while a plan is asked for: a lost worker is left out of its start, a stop ends the run, a second answer is ignored', () => {
    const d = new Driver({ ...config, workers: 3 });
    d.answerPlans = false;
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    d.join(11, 'b');
    d.join(12, 'c');
    const plan = (step: number) =>
      d.feed({ type: 'stepPlanned', step, targetCount: 64, batches: null, now: 0 });
    d.feed({ type: 'closed', conn: 11, reason: 'gone', now: 0 });
    expect(d.sent(10, 'abort')).toEqual([]); // nothing had started
    plan(0);
    expect((d.sent(10, 'start')[0] as MessageOf<'start'>).members.map((m) => m.name)).toEqual([
      'a',
      'c',
    ]);
    expect(d.sent(11, 'start')).toEqual([]);
    plan(0); // a second answer starts nothing
    expect(d.sent(10, 'start')).toHaveLength(1);
    d.work(10);
    d.work(12);
    d.feed({ type: 'stop', now: 0 }); // arrives while step 1's plan is pending
    plan(1);
    expect(d.sent(10, 'start')).toHaveLength(1);
    expect(d.sent(10).at(-1)).toMatchObject({ t: 'fetch', what: 'state' });
  });

  it('names a lost worker, aborts the step and gives its shards to the others', () => {
    const d = new Driver({ ...config, workers: 3 });
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    d.join(11, 'b');
    d.join(12, 'c');
    d.work(10);
    d.feed({ type: 'closed', conn: 11, reason: 'connection reset', now: 50 });
    expect(d.logs()).toContain('worker b (rank 1) lost: connection reset');
    expect(d.sent(10, 'abort')).toEqual([
      msg('abort', { step: 0, attempt: 0, reason: 'worker b lost' }),
    ]);
    const retryA = d.sent(10, 'start').at(-1) as MessageOf<'start'>;
    const retryC = d.sent(12, 'start').at(-1) as MessageOf<'start'>;
    expect(retryA.attempt).toBe(1);
    // a keeps shards 0 and 3 (already done) and takes b's shard 1; c keeps 2
    expect(retryA.shards).toEqual([0, 1, 3]);
    expect(retryC.shards).toEqual([2]);
    expect(retryA.members.map((m) => m.rank)).toEqual([0, 2]);
    // shard 0's result from attempt 0 still counts; a only reports the new shard
    d.feed({
      type: 'message',
      conn: 10,
      message: msg('shardDone', {
        step: 0,
        attempt: 1,
        shard: 1,
        lossSum: 2,
        targets: 16,
        overflow: false,
      }),
      now: 60,
    });
    d.feed({
      type: 'message',
      conn: 10,
      message: msg('reduced', { step: 0, attempt: 1, gradNorm: 1 }),
      now: 60,
    });
    d.work(12, 70);
    expect(d.sent(10, 'commit')).toEqual([msg('commit', { step: 0, attempt: 1, skip: false })]);
  });

  it('declares a silent worker lost after the heartbeat timeout, and pings the others', () => {
    const d = new Driver();
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    d.join(11, 'b');
    d.feed({ type: 'message', conn: 10, message: msg('ping', {}), now: 4000 });
    const o = d.feed({ type: 'tick', now: 5500 });
    expect(o.effects).toContainEqual(
      expect.objectContaining({ type: 'close', conn: 11, code: 'WEFT_E_NETWORK' }),
    );
    expect(d.logs().at(-1)).toMatch(
      /^worker b \(rank 1\) lost: no message for 6 s \(heartbeat timeout\)$/,
    );
    expect(o.send.filter((s) => s.message.t === 'ping').map((s) => s.conn)).toEqual([10]);
  });

  it('refuses late and extra workers', () => {
    const d = new Driver();
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    d.join(11, 'b');
    const o = d.feed({ type: 'joined', conn: 12, name: 'late', address: '', now: 0 });
    expect(o.send[0].message).toMatchObject({ t: 'reject', code: 'WEFT_E_PROTOCOL' });
    expect(o.effects).toContainEqual(expect.objectContaining({ type: 'close', conn: 12 }));
  });

  it('refuses a second worker with a name already in the job, naming it', () => {
    const d = new Driver({ ...config, workers: 3 });
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    const o = d.feed({ type: 'joined', conn: 11, name: 'a', address: '', now: 0 });
    expect(o.send[0].message).toMatchObject({
      t: 'reject',
      code: 'WEFT_E_PROTOCOL',
      message: 'a worker named a is already in the job; give each worker its own --name',
    });
    expect(o.effects).toContainEqual(expect.objectContaining({ type: 'close', conn: 11 }));
    d.join(12, 'b'); // another name still joins
    expect(d.logs()).toContainEqual(expect.stringMatching(/^worker b joined as rank 1/));
  });

  it('refuses a worker whose kernels give other bits than the others, naming both', () => {
    const d = new Driver({ ...config, workers: 2 });
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a', 0, 'blas (OpenBLAS 0.3.21 Zen, 2 threads)');
    const o = d.join(11, 'b', 0, 'blas (OpenBLAS 0.3.21 Zen, 1 thread)');
    const message =
      'worker b computes on blas (OpenBLAS 0.3.21 Zen, 1 thread), but worker a on blas ' +
      '(OpenBLAS 0.3.21 Zen, 2 threads): their gradients would differ in the last bits; start ' +
      'every worker with the same --threads (and, for blas, the same OpenBLAS and OPENBLAS_CORETYPE)';
    expect(o.send).toEqual([
      { conn: 11, message: msg('reject', { code: 'WEFT_E_CONFIG', message }) },
    ]);
    expect(o.effects).toContainEqual(expect.objectContaining({ type: 'close', conn: 11 }));
    expect(d.sent(10, 'start')).toHaveLength(0); // still waiting for its second worker
    d.join(12, 'c', 0, 'blas (OpenBLAS 0.3.21 Zen, 2 threads)'); // the same kernels join
    expect(d.sent(10, 'start')).toHaveLength(1);
    expect(d.sent(12, 'start')).toHaveLength(1);
  });

  it('starts with min-workers at the rendezvous deadline, or fails naming the shortfall', () => {
    const d = new Driver({ ...config, workers: 3, minWorkers: 2 });
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    d.join(11, 'b');
    d.feed({ type: 'message', conn: 10, message: msg('ping', {}), now: 9000 });
    d.feed({ type: 'message', conn: 11, message: msg('ping', {}), now: 9000 });
    d.feed({ type: 'tick', now: 10_000 });
    expect(d.logs()).toContain('rendezvous timeout: starting with 2 of 3 workers');
    expect(d.sent(10, 'start')).toHaveLength(1);

    const e = new Driver({ ...config, workers: 3, minWorkers: 3 });
    e.feed({ type: 'start', now: 0 });
    e.join(10, 'a');
    e.feed({ type: 'message', conn: 10, message: msg('ping', {}), now: 9000 });
    const o = e.feed({ type: 'tick', now: 10_000 });
    expect(o.effects).toContainEqual({
      type: 'failed',
      code: 'WEFT_E_CLUSTER',
      message: 'only 1 of 3 workers were ready after 10 s (--min-workers 3)',
    });
  });

  it('retries a stalled all-reduce, then gives up naming the likely cause', () => {
    const d = new Driver();
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    d.join(11, 'b');
    d.work(10, 100); // a computed and reduced; b computed but never finishes the reduction
    const startB = d.sent(11, 'start')[0] as MessageOf<'start'>;
    for (const shard of startB.shards) {
      d.feed({
        type: 'message',
        conn: 11,
        message: msg('shardDone', {
          step: 0,
          attempt: 0,
          shard,
          lossSum: 1,
          targets: 16,
          overflow: false,
        }),
        now: 100,
      });
    }
    let now = 100;
    for (let retry = 1; retry <= 3; retry++) {
      now += 5001;
      d.feed({ type: 'message', conn: 10, message: msg('ping', {}), now });
      d.feed({ type: 'message', conn: 11, message: msg('ping', {}), now });
      d.feed({ type: 'tick', now });
      expect(d.logs().at(-1)).toBe('step 1: the all-reduce made no progress for 5 s; retrying it');
      expect((d.sent(11, 'start').at(-1) as MessageOf<'start'>).attempt).toBe(retry);
      d.feed({
        type: 'message',
        conn: 10,
        message: msg('reduced', { step: 0, attempt: retry, gradNorm: 1 }),
        now,
      });
    }
    now += 5001;
    d.feed({ type: 'message', conn: 10, message: msg('ping', {}), now });
    d.feed({ type: 'message', conn: 11, message: msg('ping', {}), now });
    const o = d.feed({ type: 'tick', now });
    expect(o.effects).toContainEqual(
      expect.objectContaining({
        type: 'failed',
        code: 'WEFT_E_NETWORK',
        message: expect.stringMatching(/stalled 4 times; check that workers can reach/) as unknown,
      }),
    );
  });

  it('skips a step whose gradient overflowed the exact grid', () => {
    const d = new Driver({ ...config, workers: 1 });
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    for (let shard = 0; shard < 4; shard++) {
      d.feed({
        type: 'message',
        conn: 10,
        message: msg('shardDone', {
          step: 0,
          attempt: 0,
          shard,
          lossSum: 1,
          targets: 16,
          overflow: shard === 2,
        }),
        now: 0,
      });
    }
    d.feed({
      type: 'message',
      conn: 10,
      message: msg('reduced', { step: 0, attempt: 0, gradNorm: 1e9 }),
      now: 0,
    });
    expect(d.sent(10, 'commit')).toEqual([msg('commit', { step: 0, attempt: 0, skip: true })]);
    expect(d.logs().at(-1)).toMatch(/overflowed the exact-sum grid; the step is skipped/);
  });

  it('fails when every worker is lost', () => {
    const d = new Driver({ ...config, workers: 1 });
    d.feed({ type: 'start', now: 0 });
    d.join(10, 'a');
    const o = d.feed({ type: 'closed', conn: 10, reason: 'killed', now: 1 });
    expect(o.effects).toContainEqual({
      type: 'failed',
      code: 'WEFT_E_CLUSTER',
      message: 'all workers are lost; the run cannot continue',
    });
  });
});

/** Runs events through the worker machine. */
function run(events: WorkerEvent[], from: WorkerState = initialWorker()): WorkerOutput[] {
  const outs: WorkerOutput[] = [];
  let state = from;
  for (const e of events) {
    const o = workerTransition(deepFreeze(state), e);
    outs.push(o);
    state = o.state;
  }
  return outs;
}

const assign = msg('assign', { ...config.assign, rank: 1, resume: false });
const start = (step: number, attempt: number, shards: number[]) =>
  msg('start', {
    step,
    attempt,
    lr: 0.5,
    targetCount: 64,
    members: [
      { rank: 0, name: 'a', address: 'x' },
      { rank: 1, name: 'b', address: 'y' },
    ],
    shards,
    batches: [],
  });

describe('worker state machine', () => {
  it('prepares, computes each shard, reduces, and applies on commit', () => {
    const outs = run([
      { type: 'message', message: assign },
      { type: 'prepared', dataLocal: true, kernel: 'wasm' },
      { type: 'message', message: start(0, 0, [1, 3]) },
      { type: 'computed', step: 0, shard: 1, lossSum: 2, targets: 16, overflow: false },
      { type: 'computed', step: 0, shard: 3, lossSum: 4, targets: 16, overflow: false },
      { type: 'reducedLocally', step: 0, attempt: 0, gradNorm: 0.5 },
      { type: 'message', message: msg('commit', { step: 0, attempt: 0, skip: false }) },
    ]);
    expect(outs[0].effects).toEqual([{ type: 'prepare', assign }]);
    expect(outs[1].send).toEqual([msg('ready', { dataLocal: true, kernel: 'wasm' })]);
    expect(outs[2].effects.map((e) => e.type)).toEqual(['newStep', 'compute']);
    expect(outs[3].send[0]).toMatchObject({ t: 'shardDone', shard: 1 });
    expect(outs[4].effects).toEqual([
      { type: 'reduce', step: 0, attempt: 0, members: start(0, 0, []).members },
    ]);
    expect(outs[5].send).toEqual([msg('reduced', { step: 0, attempt: 0, gradNorm: 0.5 })]);
    expect(outs[6].effects).toEqual([{ type: 'apply', lr: 0.5, skip: false }]);
    expect(outs[6].state.phase).toBe('idle');
  });

  it('names the reduction that follows on the last shard only, so the shell may overlap it', () => {
    const outs = run([
      { type: 'message', message: assign },
      { type: 'prepared', dataLocal: true, kernel: 'wasm' },
      { type: 'message', message: start(0, 0, [1, 3]) },
      { type: 'computed', step: 0, shard: 1, lossSum: 2, targets: 16, overflow: false },
    ]);
    const members = start(0, 0, []).members;
    expect(outs[2].effects[1]).toMatchObject({ type: 'compute', shard: 1, reduceAfter: null });
    expect(outs[3].effects[0]).toMatchObject({
      type: 'compute',
      shard: 3,
      reduceAfter: { attempt: 0, members },
    });
  });

  /** Shard 1 of step 0 computed, its reduction aborted (events 0-4). */
  const computedThenAborted: WorkerEvent[] = [
    { type: 'message', message: assign },
    { type: 'prepared', dataLocal: true, kernel: 'wasm' },
    { type: 'message', message: start(0, 0, [1]) },
    { type: 'computed', step: 0, shard: 1, lossSum: 2, targets: 16, overflow: false },
    { type: 'message', message: msg('abort', { step: 0, attempt: 0, reason: 'worker a lost' }) },
  ];

  it('on abort keeps computed shards and computes only the new ones in the next attempt', () => {
    const outs = run([...computedThenAborted, { type: 'message', message: start(0, 1, [0, 1]) }]);
    expect(outs[4].effects).toEqual([
      { type: 'cancelReduce', step: 0, attempt: 0, reason: 'worker a lost' },
    ]);
    const retry = outs[5].effects;
    expect(retry.map((e) => e.type)).toEqual(['compute']); // no newStep: the accumulator is kept
    expect(retry[0]).toMatchObject({ shard: 0 });
  });

  it('ignores a reduction of an aborted attempt', () => {
    const outs = run([
      ...computedThenAborted,
      { type: 'message', message: start(0, 1, [1]) },
      { type: 'reducedLocally', step: 0, attempt: 0, gradNorm: 0.5 }, // the cancelled one, late
    ]);
    expect(outs[6].send).toEqual([]);
    expect(outs[6].state.phase).toBe('reducing');
  });

  it('leaves on a protocol error', () => {
    const outs = run([
      { type: 'message', message: assign },
      { type: 'message', message: { ...assign, rank: assign.rank + 1 } },
    ]);
    expect(outs[1].send).toEqual([
      msg('leave', { reason: 'protocol error: a new assign with another rank' }),
    ]);
    expect(outs[1].effects).toEqual([
      { type: 'exit', code: 'error', reason: 'protocol error: a new assign with another rank' },
    ]);
  });

  it('a second assign (a re-planned pipeline) stops what is under way and prepares anew', () => {
    const outs = run([
      { type: 'message', message: assign },
      { type: 'prepared', dataLocal: true, kernel: 'wasm' },
      { type: 'message', message: start(0, 0, [1]) },
      { type: 'message', message: assign },
    ]);
    expect(outs[3].effects.map((e) => e.type)).toEqual(['replan', 'prepare']);
    expect(outs[3].state).toMatchObject({ phase: 'preparing', step: -1, done: [] });
  });

  it("loads a resumed run's state before saying ready", () => {
    const state = {
      params: Float32Array.from([1, 2]),
      m: Float32Array.from([3, 4]),
      v: Float32Array.from([5, 6]),
      adamSteps: 3,
    };
    const outs = run([
      { type: 'message', message: { ...assign, resume: true } },
      { type: 'prepared', dataLocal: false, kernel: 'wasm' },
      ...statePieces(state).map((message) => ({ type: 'message' as const, message })),
    ]);
    expect(outs[1].send).toEqual([]);
    expect(outs[1].state.phase).toBe('loading');
    expect(outs.slice(2).flatMap((o) => o.effects.map((e) => e.type))).toEqual([
      'loadState',
      'loadState',
      'loadState',
    ]);
    expect(outs.at(-1)?.send).toEqual([msg('ready', { dataLocal: false, kernel: 'wasm' })]);
    expect(outs.at(-1)?.state.phase).toBe('idle');
  });

  it('exits cleanly on shutdown and with an error when the coordinator is lost', () => {
    expect(
      run([{ type: 'message', message: msg('shutdown', { reason: 'training finished' }) }])[0]
        .effects,
    ).toEqual([{ type: 'exit', code: 'ok', reason: 'training finished' }]);
    expect(run([{ type: 'coordinatorLost', reason: 'connection reset' }])[0].effects).toEqual([
      {
        type: 'exit',
        code: 'error',
        reason: 'lost the coordinator: connection reset',
        resumable: true,
      },
    ]);
  });
});
