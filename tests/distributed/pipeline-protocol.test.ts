// The coordinator machine in a pipeline run (on deep-frozen states): the grid stays whole when a
// worker leaves during rendezvous; a stage's `reduced` must carry exactly the norm blocks its
// stage owns, and its state pieces must be its stage's size, or it is refused.

import { describe, expect, it } from 'vitest';
import type { Message, MessageOf } from '../../src/distributed/messages.ts';
import { msg, statePieces } from '../../src/distributed/messages.ts';
import { partitionStages } from '../../src/distributed/pipeline/partition.ts';
import type {
  CoordinatorConfig,
  CoordinatorEvent,
  CoordinatorState,
} from '../../src/distributed/protocol/coordinator.ts';
import {
  coordinatorTransition,
  initialCoordinator,
} from '../../src/distributed/protocol/coordinator.ts';
import { stageLayout } from '../../src/model/stage.ts';
import { blockSumOfSquares, ownedBlocks } from '../../src/train/norm.ts';
import { deepFreeze } from '../helpers/freeze.ts';

const model = { nLayer: 2, nHead: 2, nEmbd: 8, blockSize: 8, vocabSize: 16 };
const spans = partitionStages(model, 2, 1, 8);
const config: CoordinatorConfig = {
  workers: 4,
  minWorkers: 4,
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
    config: { ...model },
    tokenizer: {},
    dataPath: '/data',
    dataSha256: 'abc',
    heartbeatMs: 1000,
    timeoutMs: 5000,
    exactBits: 40,
    backend: 'reference',
  },
  schedule: { lr: 1, minLr: 0, warmupSteps: 10, decaySteps: 10 },
  evalTokens: new Int32Array(0),
  firstStep: 0,
  stopAt: 2,
  ckptEvery: 1,
  initialState: null,
  pipeline: spans.map(({ firstLayer, endLayer }) => ({ firstLayer, endLayer })),
};

class Driver {
  state: CoordinatorState;
  sent: { conn: number; message: Message }[] = [];
  effects: string[] = [];
  constructor(c: CoordinatorConfig = config) {
    this.state = initialCoordinator(c);
  }
  feed(event: CoordinatorEvent): void {
    const o = coordinatorTransition(deepFreeze(this.state), event);
    this.state = o.state;
    this.sent.push(...o.send);
    this.effects.push(...o.effects.map((e) => e.type));
    for (const e of o.effects)
      if (e.type === 'planStep')
        this.feed({ type: 'stepPlanned', step: e.step, targetCount: 64, batches: null, now: 0 });
  }
  to(conn: number, type: string): Message[] {
    return this.sent.filter((s) => s.conn === conn && s.message.t === type).map((s) => s.message);
  }
  message(conn: number, message: Message): void {
    this.feed({ type: 'message', conn, message, now: 0 });
  }
  /** Four workers joined and ready (conns 10-13: stages 0, 1, 0, 1), training started. */
  static training(c: CoordinatorConfig = config): Driver {
    const d = new Driver(c);
    d.feed({ type: 'start', now: 0 });
    for (const conn of [10, 11, 12, 13])
      d.feed({ type: 'joined', conn, name: `w${conn}`, address: `a${conn}`, now: 0 });
    for (const conn of [10, 11, 12, 13])
      d.message(conn, msg('ready', { dataLocal: true, kernel: 'wasm' }));
    return d;
  }
  /** The last stages report their shards' losses. */
  computed(): void {
    for (const conn of [11, 13]) {
      const start = this.to(conn, 'start').at(-1) as MessageOf<'start'>;
      for (const shard of start.shards)
        this.message(
          conn,
          msg('shardDone', {
            step: 0,
            attempt: 0,
            shard,
            lossSum: 1,
            targets: 16,
            overflow: false,
          }),
        );
    }
  }
}

/** A stage's honest `reduced`: its owned blocks, each with a sum of squares of ones. */
function reduced(stage: number) {
  const owned = ownedBlocks(model, spans[stage]);
  const ones = new Float32Array(stageLayout(model, spans[stage]).total).fill(1);
  return msg('reduced', {
    step: 0,
    attempt: 0,
    gradNorm: 0,
    normBlocks: Int32Array.from(owned, (o) => o.index),
    normSums: Float64Array.from(owned, (o) => blockSumOfSquares(ones, o.block)),
    overflow: false,
  });
}

describe('a pipeline coordinator', () => {
  it('fills the grid when a worker leaves during rendezvous', () => {
    const d = new Driver();
    d.feed({ type: 'start', now: 0 });
    for (const conn of [10, 11, 12])
      d.feed({ type: 'joined', conn, name: `w${conn}`, address: `a${conn}`, now: 0 });
    d.feed({ type: 'closed', conn: 11, reason: 'gone', now: 0 }); // stage 1's only worker
    for (const conn of [13, 14])
      d.feed({ type: 'joined', conn, name: `w${conn}`, address: `a${conn}`, now: 0 });
    const stages = [10, 12, 13, 14].map(
      (conn) => (d.to(conn, 'assign')[0] as MessageOf<'assign'>).stage?.index,
    );
    expect(stages.sort()).toEqual([0, 0, 1, 1]);
  });

  it('commits the norm of every block, added in order, from honest stages', () => {
    const d = Driver.training();
    d.computed();
    for (const [conn, stage] of [
      [10, 0],
      [11, 1],
      [12, 0],
      [13, 1],
    ])
      d.message(conn, reduced(stage));
    const commit = d.to(10, 'commit')[0] as MessageOf<'commit'>;
    const total = stageLayout(model, spans[0]).total + stageLayout(model, spans[1]).total;
    const wte = model.vocabSize * model.nEmbd; // held by both stages, counted once
    expect(commit.gradNorm).toBe(Math.sqrt(total - wte));
  });

  it.each([
    ['no norm blocks', msg('reduced', { step: 0, attempt: 0, gradNorm: 0 })],
    [
      'blocks it does not own, twice',
      msg('reduced', {
        step: 0,
        attempt: 0,
        gradNorm: 0,
        normBlocks: Int32Array.from([-5, 7, 7, 1e9]),
        normSums: Float64Array.from([100, 1, 1, 100]),
        overflow: false,
      }),
    ],
    ['another stage’s blocks', reduced(1)],
  ])('refuses a reduced with %s, and commits nothing', (_, bad) => {
    const d = Driver.training();
    d.computed();
    d.message(10, bad);
    for (const [conn, stage] of [
      [11, 1],
      [12, 0],
      [13, 1],
    ])
      d.message(conn, reduced(stage));
    expect(d.to(10, 'commit')).toEqual([]);
    expect(d.to(10, 'reject')[0]).toMatchObject({ code: 'WEFT_E_PROTOCOL' });
  });

  it('on losing a stage: aborts, asks for the newest state, re-plans the survivors and goes on', () => {
    const d = Driver.training();
    const effects: string[] = [];
    const feed = (e: CoordinatorEvent) => {
      const before = d.sent.length;
      const o = coordinatorTransition(deepFreeze(d.state), e);
      d.state = o.state;
      d.sent.push(...o.send);
      effects.push(...o.effects.map((x) => x.type));
      return d.sent.slice(before);
    };
    const lost = feed({ type: 'closed', conn: 13, reason: 'killed', now: 0 });
    expect(lost.filter((s) => s.message.t === 'abort').map((s) => s.conn)).toEqual([10, 11, 12]);
    expect(d.state.phase).toBe('replanning');
    // both stages are still held (by replica 0): their state is fetched, not a checkpoint's
    expect(lost.filter((s) => s.message.t === 'fetch').map((s) => s.conn)).toEqual([10, 11]);
    for (const [conn, stage] of [
      [10, 0],
      [11, 1],
    ]) {
      const size = stageLayout(model, spans[stage]).total;
      const part = () => new Float32Array(size);
      const fetch = (
        lost.find((x) => x.conn === conn && x.message.t === 'fetch')?.message as MessageOf<'fetch'>
      ).id;
      for (const piece of statePieces({ params: part(), m: part(), v: part(), adamSteps: 0 }))
        feed({ type: 'message', conn, message: { ...piece, fetch }, now: 0 });
    }
    expect(effects).toContain('recovered');
    expect(effects).not.toContain('rollback');
    // the shell answers with that state (here, the seed's: null) at the step it is of
    const replanned = feed({ type: 'rolledBack', step: 0, state: null, now: 0 });
    const assigns = replanned.filter((s) => s.message.t === 'assign');
    expect(assigns.map((s) => s.conn)).toEqual([10, 11]); // one replica of 2 stages
    expect(assigns.map((s) => (s.message as MessageOf<'assign'>).stage?.index)).toEqual([0, 1]);
    expect(replanned.find((s) => s.message.t === 'shutdown')?.conn).toBe(12); // beyond the replica
    const plan = (assigns[0].message as MessageOf<'assign'>).plan;
    expect(plan).toBe(1);
    // a ready of an earlier plan counts for nothing; the new plan's do
    feed({
      type: 'message',
      conn: 10,
      message: msg('ready', { dataLocal: true, kernel: 'wasm' }),
      now: 0,
    });
    expect(d.state.workers.get(10)?.ready).toBe(false);
    for (const conn of [10, 11])
      feed({
        type: 'message',
        conn,
        message: msg('ready', { dataLocal: true, kernel: 'wasm', plan }),
        now: 0,
      });
    // planStep is answered, and the step starts again with an attempt above every earlier one
    const planned = feed({ type: 'stepPlanned', step: 0, targetCount: 64, batches: null, now: 0 });
    const start = planned.find((s) => s.message.t === 'start')?.message as MessageOf<'start'>;
    expect(start).toMatchObject({ step: 0, attempt: 1 });
  });

  it("losing a stage's only worker rolls back to the newest checkpoint", () => {
    const d = Driver.training();
    d.feed({ type: 'closed', conn: 13, reason: 'killed', now: 0 }); // stage 1, replica 1
    const o = coordinatorTransition(deepFreeze(d.state), {
      type: 'closed',
      conn: 11, // stage 1, replica 0: no worker holds stage 1 now
      reason: 'killed',
      now: 0,
    });
    // the survivors' fetch is abandoned (one sender is gone): the checkpoint it is
    expect(o.effects.map((e) => e.type)).toContain('rollback');
  });

  it("refuses a stage's state pieces of another size than its stage's", () => {
    const d = Driver.training();
    d.computed();
    for (const [conn, stage] of [
      [10, 0],
      [11, 1],
      [12, 0],
      [13, 1],
    ])
      d.message(conn, reduced(stage));
    expect(d.to(10, 'fetch')).toHaveLength(1); // ckptEvery 1: the first replica's stages send
    const tiny = {
      params: Float32Array.of(1),
      m: Float32Array.of(1),
      v: Float32Array.of(1),
      adamSteps: 1,
    };
    const fetch = (d.to(10, 'fetch')[0] as MessageOf<'fetch'>).id;
    for (const piece of statePieces(tiny)) d.message(10, { ...piece, fetch });
    expect(d.to(10, 'reject')[0]).toMatchObject({ code: 'WEFT_E_PROTOCOL' });
  });

  describe('re-planning after a loss (cases from a review)', () => {
    const stageOf: Record<number, number> = { 10: 0, 11: 1, 12: 0, 13: 1 };
    const effects = (d: Driver) => d.effects;
    /** Completes the current step on the full 2 x 2 grid. */
    const step = (d: Driver) => {
      const { step: s, attempt } = d.state;
      for (const conn of [11, 13]) {
        const start = d.to(conn, 'start').at(-1) as MessageOf<'start'>;
        for (const shard of start.shards)
          d.message(
            conn,
            msg('shardDone', { step: s, attempt, shard, lossSum: 1, targets: 16, overflow: false }),
          );
      }
      for (const conn of [10, 11, 12, 13])
        d.message(conn, { ...reduced(stageOf[conn]), step: s, attempt });
    };
    /** `conn`'s answer to the last fetch it got: its stage's state in pieces. */
    const answer = (d: Driver, conn: number, stage: number) => {
      const fetch = (d.to(conn, 'fetch').at(-1) as MessageOf<'fetch'>).id;
      const part = () => new Float32Array(stageLayout(model, spans[stage]).total);
      return statePieces({ params: part(), m: part(), v: part(), adamSteps: 0 }).map((p) => ({
        ...p,
        fetch,
      }));
    };
    const ready = (d: Driver, conn: number) => {
      const plan = (d.to(conn, 'assign').at(-1) as MessageOf<'assign'>).plan;
      d.message(conn, msg('ready', { dataLocal: true, kernel: 'wasm', plan }));
    };
    const lose = (d: Driver, conn: number) =>
      d.feed({ type: 'closed', conn, reason: 'killed', now: 0 });

    it('a sender lost during the final fetch does not train a step past the end', () => {
      const d = Driver.training();
      step(d);
      step(d);
      expect(d.state).toMatchObject({ phase: 'fetching', step: 2 });
      lose(d, 11); // a final-state sender; replica 1 still holds stage 1
      for (const [conn, stage] of [
        [10, 0],
        [13, 1],
      ])
        for (const p of answer(d, conn, stage)) d.message(conn, p);
      expect(effects(d)).toContain('recovered');
      d.feed({ type: 'rolledBack', step: 2, state: null, now: 0 });
      const before = d.sent.length;
      for (const conn of [10, 12]) ready(d, conn); // 13 is beyond one replica: let go
      expect(d.sent.slice(before).filter((x) => x.message.t === 'start')).toEqual([]);
      expect(d.state.phase).toBe('fetching'); // the final state, from the new grid
    });

    it('a re-assigned worker lost, before or after the others are ready: planned again', () => {
      for (const readyFirst of [false, true]) {
        const d = Driver.training();
        lose(d, 13);
        for (const [conn, stage] of [
          [10, 0],
          [11, 1],
        ])
          for (const p of answer(d, conn, stage)) d.message(conn, p);
        d.feed({ type: 'rolledBack', step: 0, state: null, now: 0 });
        if (readyFirst) ready(d, 10);
        lose(d, 11); // the re-assigned stage 1 (12 was let go: beyond one replica)
        expect(d.state.phase).toBe('replanning');
        // planned again over 10 alone, from the same state: the whole model
        const assigned = d.to(10, 'assign').at(-1) as MessageOf<'assign'>;
        expect([assigned.plan, assigned.stage]).toEqual([2, undefined]);
        ready(d, 10);
        expect(d.to(10, 'start').at(-1)).toMatchObject({ step: 0 });
        expect(d.state.phase).toBe('training');
      }
    });

    it('a checkpoint still arriving when a worker is lost: its late pieces are dropped, not refused', () => {
      const d = Driver.training({ ...config, ckptEvery: 1, stopAt: 3, steps: 3 });
      step(d); // the checkpoint after step 1 is fetched from 10 and 11
      const old = answer(d, 10, 0);
      d.message(10, old[0]);
      lose(d, 13); // the survivors' state is fetched from 10 and 11 anew
      for (const p of old.slice(1)) d.message(10, p);
      for (const p of answer(d, 10, 0)) d.message(10, p);
      expect(d.to(10, 'reject')).toEqual([]);
    });

    it('every worker lost while re-planning fails the run, naming it', () => {
      const d = Driver.training();
      lose(d, 13);
      lose(d, 11); // a sender of the survivors' state: the checkpoint, then
      for (const conn of [10, 12]) lose(d, conn);
      expect(d.state.phase).toBe('failed');
    });
  });
});
