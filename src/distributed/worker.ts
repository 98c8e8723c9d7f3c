// The worker shell: drives the worker state machine (protocol/worker.ts) and does the work its
// effects name: builds the model, optimizer and training step (train/step.ts), reads the data
// (or takes streamed batches), runs the step's parts (each shard into the exact accumulator, the
// all-reduce with its peers as the step's reducer, the update), evaluates, and sends the
// weights. Heavy work runs after yielding to the event loop, so heartbeats and aborts are read
// between shards.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Dataset } from '../data/dataset.ts';
import { loadDataset } from '../data/dataset.ts';
import type { Batch } from '../data/loader.ts';
import { TokenWindowLoader } from '../data/loader.ts';
import type { Backend } from '../kernels/backend.ts';
import { bitsIdentity } from '../kernels/backend.ts';
import { createBackend } from '../kernels/select.ts';
import { GPT2 } from '../model/gpt2.ts';
import type { StageSpan } from '../model/stage.ts';
import { tokenizerFromJSON } from '../tokenizer/index.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { AdamW } from '../train/adamw.ts';
import type { RunConfig } from '../train/config.ts';
import { DEFAULT_RUN_CONFIG, mergeConfig, validateRunConfig } from '../train/config.ts';
import { evaluate } from '../train/evaluate.ts';
import { TrainingStep, localReducer } from '../train/step.ts';
import { WeftError } from '../util/errors.ts';
import { readBytes, sha256 } from '../util/files.ts';
import { Mailbox, ringReducer } from './collectives.ts';
import type { StageContext } from './pipeline/stage-worker.ts';
import { ActivationBox, reduceStage, runStageStep } from './pipeline/stage-worker.ts';
import type { Exchange } from './shared-reduce.ts';
import { StepClock } from './step-clock.ts';
import { reductionSeq, sharedReducer, threadSlots } from './shared-reduce.ts';
import type { Member, Message, MessageOf } from './messages.ts';
import { msg, statePieces } from './messages.ts';
import type { PeerMesh } from './peers.ts';
import type { WorkerEffect, WorkerEvent, WorkerState } from './protocol/worker.ts';
import { initialWorker, workerTransition } from './protocol/worker.ts';
import type { Connection } from './transport.ts';

export interface WorkerOptions {
  name: string;
  log?: (line: string) => void;
  /** Elements per all-reduce bucket (default collectives.DEFAULT_BUCKET_ELEMS). */
  bucketElems?: number;
  /** Kernel threads of this worker (the backend itself is the coordinator's choice). */
  threads?: number;
  /** Shared memory with the other threads of this process, for the all-reduce among them. */
  exchange?: Exchange | null;
  /** Start a ring all-reduce during the step's last backward pass (default true). */
  overlap?: boolean;
  /** Test-only: each shard's compute takes this many ms longer (a straggler, for the status tests). */
  slowdownMs?: number;
}

/** Blocks this thread for `ms` (a test's deliberately slow worker). */
function blockFor(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

interface Prepared {
  config: RunConfig;
  backend: Backend;
  tokenizer: Tokenizer;
  model: GPT2;
  optimizer: AdamW;
  step: TrainingStep;
  /** The all-reduce's work buffer (the accumulator is copied there), made when a ring first needs it. */
  work: Float64Array | null;
  /** Its fp32 results in backward order, while they wait to be copied into the gradient. */
  staged: Float32Array | null;
  dataset: Dataset | null;
  loader: TokenWindowLoader | null;
  /** A pipeline stage's context (null: this worker holds the whole model). */
  stage: StageContext | null;
  /** The coordinator's heartbeat timeout (ms). */
  timeoutMs: number;
}

type ComputeEffect = Extract<WorkerEffect, { type: 'compute' }>;

interface Reduction {
  step: number;
  attempt: number;
  /** The global gradient norm, once the gradient is reduced. */
  result: Promise<number>;
  cancelled: () => boolean;
  settled: boolean;
  /** A pipeline stage's sums of squares of the norm's blocks it owns, once reduced. */
  norm?: { blocks: Int32Array; sums: Float64Array };
}

export class WorkerShell {
  private state: WorkerState = initialWorker();
  private prepared: Prepared | null = null;
  private mailbox = new Mailbox();
  /** A pipeline stage's incoming activations and gradients. */
  private activations = new ActivationBox();
  /** Bumped by a re-plan: a pipeline step of an earlier plan ends quietly. */
  private plan = 0;
  private reduceGeneration = 0;
  /** Where this step's time goes (sent to the coordinator after each update). */
  private readonly clock = new StepClock();
  /** The reduction started last (it may have begun before its reduce effect: overlap). */
  private reduction: Reduction | null = null;
  private saidShared = false;
  private readonly queue: WorkerEvent[] = [];
  private busy = false;
  private lastHeard = Date.now();
  private lastCheck = Date.now();
  private timer: NodeJS.Timeout | null = null;
  private settle: { resolve: (reason: string) => void; reject: (err: Error) => void } | null = null;

  constructor(
    private readonly coordinator: Connection,
    private readonly peers: PeerMesh,
    private readonly options: WorkerOptions,
  ) {}

  /** Deliver a peer's message (wired as the peer mesh's sink). */
  onPeerMessage(fromRank: number, message: Message): void {
    if (message.t === 'chunk') this.mailbox.deliver(fromRank, message);
    else if (message.t === 'act') this.activations.deliver(message);
  }

  /** Runs until the coordinator shuts the worker down (resolves) or something fails (rejects). */
  run(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
      // before the handlers: setting them delivers what arrived already (an assign, whose own
      // heartbeat must replace this one, or the link's close)
      this.startHeartbeat(2000, 60_000);
      this.coordinator.onMessage = (message) => {
        this.lastHeard = Date.now();
        this.dispatch({ type: 'message', message });
      };
      this.coordinator.onClose = (reason) => this.dispatch({ type: 'coordinatorLost', reason });
    });
  }

  private log(line: string): void {
    this.options.log?.(`[${this.options.name}] ${line}`);
  }

  private dispatch(event: WorkerEvent): void {
    this.queue.push(event);
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0) {
        const out = workerTransition(this.state, this.queue.shift() as WorkerEvent);
        this.state = out.state;
        // a reduction begun early (overlap) for an attempt the coordinator has since replaced
        const r = this.reduction;
        if (r && !r.settled && (r.step !== this.state.step || r.attempt !== this.state.attempt))
          this.cancelReduction('replanned', r.step, r.attempt);
        for (const m of out.send) this.coordinator.send(m);
        for (const effect of out.effects) this.perform(effect);
      }
    } catch (err) {
      this.fail(err as Error);
    } finally {
      this.busy = false;
    }
  }

  /** Runs `work` after the event loop has had a turn; its result becomes an event. */
  private later(work: () => WorkerEvent | null): void {
    setImmediate(() => {
      if (this.state.phase === 'done') return;
      try {
        const event = work();
        if (event) this.dispatch(event);
      } catch (err) {
        this.fail(err as Error);
      }
    });
  }

  private perform(effect: WorkerEffect): void {
    switch (effect.type) {
      case 'prepare':
        // synchronous: the state pieces of a resumed run, right behind assign, need the model
        this.queue.push(this.prepare(effect.assign));
        this.clock.restart();
        return;
      case 'loadState':
        return this.loadState(effect.piece);
      case 'newStep':
        (this.prepared as Prepared).step.begin();
        return;
      case 'compute':
        if (
          effect.reduceAfter &&
          this.options.overlap !== false &&
          this.ringPath(effect.reduceAfter.members)
        )
          return void setImmediate(() => void this.computeOverlapped(effect));
        return this.later(() => this.compute(effect));
      case 'reduce':
        return this.reduce(effect.step, effect.attempt, effect.members);
      case 'cancelReduce':
        return this.cancelReduction(effect.reason, effect.step, effect.attempt);
      case 'pipeline': {
        const plan = this.plan; // a re-plan before it runs makes it stale
        return void setImmediate(() => {
          if (plan === this.plan) void this.runPipeline(effect);
        });
      }
      case 'replan': {
        // the step under way stops; what arrives for it from now on goes nowhere
        this.plan++;
        this.reduceGeneration++;
        this.reduction = null;
        this.mailbox.abort('re-planned', Number.MAX_SAFE_INTEGER, 0);
        this.activations.abort('re-planned');
        this.mailbox = new Mailbox();
        this.activations = new ActivationBox();
        const old = this.prepared;
        this.prepared = null;
        if (old) void old.backend.dispose?.();
        return;
      }
      case 'apply': {
        const p = this.prepared as Prepared;
        if (effect.gradNorm !== undefined) p.step.setNorm(effect.gradNorm);
        this.clock.time('optim', () => p.step.apply(effect.lr, effect.skip));
        const times = this.clock.finish();
        this.coordinator.send(msg('stepTime', { step: this.state.step + 1, ...times }));
        return;
      }
      case 'evaluate':
        return this.later(() => this.evaluate(effect.step, effect.maxWindows, effect.tokens));
      case 'sendState':
        return this.sendState(effect.fetch);
      case 'exit':
        return this.exit(effect.code, effect.reason, effect.resumable);
      default:
        return effect satisfies never;
    }
  }

  private prepare(assign: MessageOf<'assign'>): WorkerEvent {
    const config = validateRunConfig(
      mergeConfig(DEFAULT_RUN_CONFIG, assign.config, 'the assign message'),
    );
    const tokenizer = tokenizerFromJSON(assign.tokenizer, 'the assign message');
    this.peers.identify(assign.rank, assign.runId);
    this.startHeartbeat(assign.heartbeatMs, assign.timeoutMs);
    const dataset = this.localDataset(assign.dataPath, assign.dataSha256);
    const backend = createBackend(assign.backend, { threads: this.options.threads ?? 1 });
    // a resumed run's weights arrive next; there is no point drawing the initial ones
    if (assign.stage) {
      const { index, stages, firstLayer, endLayer } = assign.stage;
      if (!(index >= 0 && index < stages && firstLayer < endLayer && endLayer <= config.nLayer))
        throw new WeftError(
          'WEFT_E_PROTOCOL',
          `assign names an impossible pipeline stage ${index} of ${stages}`,
        );
    }
    const stage: StageSpan | undefined = assign.stage && {
      firstLayer: assign.stage.firstLayer,
      endLayer: assign.stage.endLayer,
      embeddings: assign.stage.index === 0,
      head: assign.stage.index === assign.stage.stages - 1,
    };
    const model = assign.resume
      ? new GPT2(config, { backend, stage })
      : GPT2.init(config, config.seed, { backend, stage });
    const optimizer = new AdamW(model.layout, config, backend);
    this.prepared = {
      config,
      backend,
      tokenizer,
      model,
      optimizer,
      step: new TrainingStep(model, optimizer, {
        bits: assign.exactBits,
        shards: config.shards,
        gradClip: config.gradClip,
        objective: config.objective,
        beta: config.beta,
      }),
      work: null,
      staged: null,
      stage: null,
      timeoutMs: assign.timeoutMs,
      dataset,
      loader: dataset
        ? new TokenWindowLoader(
            dataset.train,
            config.seqLen,
            config.batchSize,
            config.seed,
            config.shards,
          )
        : null,
    };
    const p = this.prepared;
    if (stage && assign.stage)
      p.stage = {
        config,
        step: p.step,
        span: stage,
        stage: assign.stage.index,
        stages: assign.stage.stages,
        rank: assign.rank,
        link: (member) => this.peers.link(member),
      };
    const what = assign.stage
      ? `pipeline stage ${assign.stage.index} (blocks ${stage?.firstLayer}-${(stage?.endLayer ?? 0) - 1}): `
      : '';
    this.log(
      `rank ${assign.rank}: ${what}${model.paramCount.toLocaleString('en-US')} parameters, ${backend.name} backend${backend.device ? ` (${backend.device})` : ''} with ${backend.threads} thread(s), data ${dataset ? `read from ${assign.dataPath}` : 'streamed'}`,
    );
    return { type: 'prepared', dataLocal: dataset !== null, kernel: bitsIdentity(backend) };
  }

  /** The dataset at `path` if this worker can read it and it is the coordinator's; else null. */
  private localDataset(path: string, manifestSha256: string): Dataset | null {
    const manifest = join(path, 'dataset.json');
    if (path === '' || !existsSync(manifest)) return null;
    try {
      if (sha256(readBytes(manifest)) !== manifestSha256) return null;
      return loadDataset(path);
    } catch {
      return null;
    }
  }

  private batchOf(effect: Pick<ComputeEffect, 'step' | 'shard' | 'batch'>): Batch {
    const p = this.prepared as Prepared;
    return effect.batch
      ? {
          idx: effect.batch.idx,
          targets: effect.batch.targets,
          B: effect.batch.idx.length / p.config.seqLen,
          T: p.config.seqLen,
          ...(effect.batch.refLogps ? { refLogps: effect.batch.refLogps } : {}),
        }
      : (p.loader as TokenWindowLoader).shardBatch(effect.step, effect.shard);
  }

  private compute(effect: ComputeEffect): WorkerEvent {
    const p = this.prepared as Prepared;
    const batch = this.clock.time('data', () => this.batchOf(effect));
    const result = this.clock.time('compute', () => {
      blockFor(this.options.slowdownMs ?? 0);
      return p.step.addShard(batch, effect.targetCount);
    });
    return { type: 'computed', step: effect.step, shard: effect.shard, ...result };
  }

  /**
   * The step's last shard with its reduction under way: the backward pass yields to the event
   * loop after each stage, so the ring sends and adds the buckets already final meanwhile.
   */
  private async computeOverlapped(effect: ComputeEffect): Promise<void> {
    if (this.state.phase === 'done') return;
    const p = this.prepared as Prepared;
    const { attempt, members } = effect.reduceAfter as NonNullable<ComputeEffect['reduceAfter']>;
    try {
      const batch = this.clock.time('data', () => this.batchOf(effect));
      const start = performance.now();
      blockFor(this.options.slowdownMs ?? 0);
      const stages = p.step.addShardInStages(batch, effect.targetCount);
      this.startReduction(effect.step, attempt, members); // waits for each bucket's stages
      for (let next = stages.next(); ; next = stages.next()) {
        if (next.done) {
          this.clock.add('compute', start);
          this.dispatch({
            type: 'computed',
            step: effect.step,
            shard: effect.shard,
            ...next.value,
          });
          return;
        }
        await new Promise((resolve) => setImmediate(resolve)); // (a worker shut down meanwhile ignores the result)
      }
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /** A pipeline stage's step: its schedule over its replica's shards, with its neighbours. */
  private async runPipeline(effect: Extract<WorkerEffect, { type: 'pipeline' }>): Promise<void> {
    if (this.state.phase === 'done') return;
    const p = this.prepared as Prepared;
    const ctx = p.stage as StageContext;
    const plan = this.plan;
    try {
      const batches = this.clock.time('data', () =>
        effect.shards.map((shard) =>
          this.batchOf({
            step: effect.step,
            shard,
            batch: effect.batches.find((b) => b.shard === shard) ?? null,
          }),
        ),
      );
      const r = await runStageStep(
        ctx,
        effect.members,
        effect.step,
        effect.attempt,
        batches,
        effect.targetCount,
        this.activations,
      );
      this.clock.computed(r.computeMs); // the waits for neighbours (the bubble) count as waiting
      if (plan !== this.plan) return; // re-planned meanwhile: this step is gone
      const last = ctx.stage === ctx.stages - 1;
      const results = last ? effect.shards.map((shard, i) => ({ shard, ...r.losses[i] })) : [];
      this.dispatch({ type: 'pipelined', step: effect.step, results, overflow: r.overflow });
    } catch (err) {
      if (this.ended() || plan !== this.plan) return; // re-planned meanwhile
      if (!(err instanceof WeftError && err.code === 'WEFT_E_NETWORK'))
        return this.fail(err as Error);
      // a neighbour gone: the coordinator re-plans if it lost it; else (only the link broke) this
      // worker leaves after the heartbeat timeout, and the coordinator re-plans without it
      setTimeout(() => {
        if (!this.ended() && plan === this.plan) this.fail(err);
      }, p.timeoutMs).unref();
    }
  }

  /** Whether the worker has ended (read across awaits, where a field's narrowing does not hold). */
  private ended(): boolean {
    return this.state.phase === 'done';
  }

  /** True when a reduction among `members` runs over the ring (the one path that overlaps). */
  private ringPath(members: Member[]): boolean {
    const p = this.prepared as Prepared;
    const exchange = this.options.exchange;
    const shared =
      exchange &&
      threadSlots(members.map((m) => m.address)) !== null &&
      exchange.params === p.model.paramCount;
    return members.length > 1 && !shared;
  }

  /** Cancels the reduction in progress (an abort, a new attempt, or the end). */
  private cancelReduction(reason: string, step: number, attempt: number): void {
    this.reduceGeneration++;
    this.reduction = null;
    this.mailbox.abort(reason, step, attempt + 1);
  }

  /** The reduce effect: reports the reduction of (step, attempt), started now or earlier. */
  private reduce(step: number, attempt: number, members: Member[]): void {
    const r = this.reduction;
    const current = r && r.step === step && r.attempt === attempt ? r : null;
    const reduction = current ?? this.startReduction(step, attempt, members);
    const { result, cancelled } = reduction;
    result.then(
      (gradNorm) => {
        if (!cancelled())
          this.dispatch({ type: 'reducedLocally', step, attempt, gradNorm, norm: reduction.norm });
      },
      (err: Error) => {
        // a cancelled attempt fails by design; the coordinator replans after a peer is lost
        if (!cancelled())
          this.log(`all-reduce of step ${step + 1} attempt ${attempt} stopped: ${err.message}`);
      },
    );
  }

  private startReduction(step: number, attempt: number, members: Member[]): Reduction {
    const p = this.prepared as Prepared;
    const generation = ++this.reduceGeneration;
    const cancelled = () => generation !== this.reduceGeneration || this.state.phase === 'done';
    this.mailbox.reopen();
    const ranks = members.map((m) => m.rank);
    const position = ranks.indexOf(this.state.rank);
    const n = members.length;
    const run = async () => {
      // a pipeline stage: wte and the rest among their groups; the norm is the coordinator's
      if (p.stage) {
        const bits = p.step.options.bits;
        const norm = await reduceStage(p.stage, members, {
          mailbox: this.mailbox,
          work: (p.work ??= new Float64Array(p.model.paramCount)),
          bits,
          stepIndex: step,
          attempt,
          cancelled,
          fromExact: (out, acc) => p.backend.fromExact(out, acc, bits),
        });
        reduction.norm = norm;
        return 0;
      }
      // alone: the accumulator is the sum (no copy, no work buffer)
      if (n === 1) return p.step.reduce(localReducer(p.model, p.step.options.bits));
      // all threads of this process: through their shared memory
      const exchange = this.options.exchange;
      const slots = threadSlots(members.map((m) => m.address));
      if (!this.ringPath(members) && exchange && slots) {
        if (!this.saidShared) this.log(`all-reduce among ${n} threads: shared memory`);
        this.saidShared = true;
        return p.step.reduce(
          sharedReducer({
            exchange,
            slot: slots[position],
            members: slots,
            seq: reductionSeq(step, attempt),
            bits: p.step.options.bits,
            cancelled,
          }),
        );
      }
      const next = members[(position + 1) % n];
      const prev = members[(position - 1 + n) % n];
      const links = await Promise.all([this.peers.link(next), this.peers.link(prev)]);
      const ring = {
        position,
        size: n,
        ranks,
        send: (_: number, chunk: Message) => links[0].send(chunk),
        flushed: () => links[0].flushed?.() ?? Promise.resolve(),
      };
      const reducer = ringReducer({
        ring,
        mailbox: this.mailbox,
        work: (p.work ??= new Float64Array(p.model.paramCount)),
        staged: () => (p.staged ??= new Float32Array(p.model.paramCount)),
        backend: p.backend,
        bits: p.step.options.bits,
        step,
        attempt,
        cancelled,
        bucketElems: this.options.bucketElems,
      });
      return p.step.reduce(reducer);
    };
    this.clock.reductionStarted();
    const reduction: Reduction = { step, attempt, result: run(), cancelled, settled: false };
    // reported by the reduce effect, if it still wants this reduction
    reduction.result.then(
      () => {
        reduction.settled = true;
        if (!cancelled()) this.clock.reductionEnded();
      },
      () => (reduction.settled = true),
    );
    this.reduction = reduction;
    return reduction;
  }

  /** Evaluates on the streamed tokens, or on the local validation split when none came. */
  private evaluate(step: number, maxWindows: number, streamed: Int32Array): WorkerEvent {
    const p = this.prepared as Prepared;
    const source = streamed.length > 0 ? streamed : p.dataset?.val;
    if (!source || source.length < 2)
      throw new WeftError('WEFT_E_STATE', 'no validation tokens to evaluate on');
    const result = evaluate(p.model, source, p.tokenizer, {
      seqLen: p.config.seqLen,
      batchSize: p.config.batchSize,
      maxWindows,
    });
    this.clock.restart(); // the next step's time starts after the evaluation
    return { type: 'evaluated', step, result };
  }

  /** The model's weights and AdamW moments, as copies, in pieces to the coordinator (for fetch `id`). */
  private sendState(id?: number): void {
    const { model, optimizer } = this.prepared as Prepared;
    const state = {
      params: model.params,
      m: optimizer.m,
      v: optimizer.v,
      adamSteps: optimizer.stepCount,
    };
    for (const piece of statePieces(state))
      this.coordinator.send(id === undefined ? piece : { ...piece, fetch: id });
  }

  /** One piece of a resumed run's state into the model and optimizer. */
  private loadState(piece: MessageOf<'state'>): void {
    const { model, optimizer } = this.prepared as Prepared;
    const target =
      piece.what === 'params' ? model.params : piece.what === 'm' ? optimizer.m : optimizer.v;
    if (
      piece.total !== target.length ||
      piece.offset < 0 ||
      piece.offset + piece.data.length > target.length
    ) {
      throw new WeftError(
        'WEFT_E_PROTOCOL',
        `state piece ${piece.what}[${piece.offset}..] does not fit a model of ${target.length} parameters`,
      );
    }
    target.set(piece.data, piece.offset);
    model.backend.weightsChanged?.();
    optimizer.stepCount = piece.adamSteps;
  }

  private startHeartbeat(intervalMs: number, timeoutMs: number): void {
    if (this.timer) clearInterval(this.timer);
    this.lastCheck = Date.now();
    this.timer = setInterval(() => {
      const now = Date.now();
      const lagged = now - this.lastCheck > 2 * intervalMs; // we were busy computing: let I/O catch up first
      this.lastCheck = now;
      this.coordinator.send(msg('ping', {}));
      if (!lagged && now - this.lastHeard > timeoutMs) {
        this.dispatch({
          type: 'coordinatorLost',
          reason: `no message for ${Math.round((now - this.lastHeard) / 1000)} s`,
        });
      }
    }, intervalMs);
    this.timer.unref();
  }

  private exit(code: 'ok' | 'error', reason: string, resumable = false): void {
    if (this.timer) clearInterval(this.timer);
    void this.prepared?.backend.dispose?.();
    this.reduceGeneration++;
    this.mailbox.abort(reason, Number.MAX_SAFE_INTEGER, 0);
    this.activations.abort(reason);
    this.peers.close();
    this.coordinator.close(reason);
    if (code === 'ok') this.settle?.resolve(reason);
    else this.settle?.reject(new WeftError('WEFT_E_CLUSTER', reason, { resumable }));
    this.settle = null;
  }

  private fail(err: Error): void {
    const reason =
      err instanceof WeftError
        ? `${err.message} [${err.code}]`
        : `internal error: ${err.stack ?? err.message}`;
    this.log(reason);
    this.coordinator.send(msg('leave', { reason }));
    this.state = { ...this.state, phase: 'done' };
    this.exit('error', reason);
  }
}
