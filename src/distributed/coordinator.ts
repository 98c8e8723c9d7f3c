// The coordinator shell: accepts worker connections (handshake first), feeds the coordinator
// state machine (protocol/coordinator.ts) with joins, messages, closes and clock ticks, and
// carries out its outputs: sends messages, writes the run directory (config.json,
// tokenizer.json, metrics.jsonl, checkpoints/; locked while the run lasts, written from the
// moment training starts) and reports progress. Checkpoints are written
// asynchronously, one after another, while training goes on.

import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CheckpointState } from '../checkpoint/format.ts';
import { CHECKPOINTS_DIR, stepDirName } from '../checkpoint/format.ts';
import type { RunLock } from '../checkpoint/run-lock.ts';
import { LOCK_FILE, lockRunDir } from '../checkpoint/run-lock.ts';
import { cleanCheckpointTemps } from '../checkpoint/write.ts';
import { CheckpointWriter } from '../checkpoint/writer.ts';
import type { Dataset } from '../data/dataset.ts';
import { datasetManifestSha256 } from '../data/open.ts';
import type { BatchLoader } from '../data/loader.ts';
import type { BackendName } from '../kernels/backend.ts';
import { createBackend, defaultBackendName } from '../kernels/select.ts';
import { GPT2 } from '../model/gpt2.ts';
import { paramCount } from '../model/layout.ts';
import type { StageSpan } from '../model/stage.ts';
import { copyStage, stageRanges } from '../model/stage.ts';
import type { RunConfig } from '../train/config.ts';
import { resolveForData } from '../train/config.ts';
import { evaluate } from '../train/evaluate.ts';
import { evaluatePairs, evaluateSft } from '../train/evaluate-records.ts';
import { writeReference } from '../checkpoint/reference.ts';
import { DEFAULT_EXACT_BITS } from '../train/step.ts';
import { objectiveMetrics } from '../train/objectives.ts';
import type { EvalMetrics, StepMetrics, WorkerMetrics } from '../train/metrics.ts';
import { WeftError, check } from '../util/errors.ts';
import type { MessageOf, TrainingState } from './messages.ts';
import { partitionStages, pipelineGrid } from './pipeline/partition.ts';
import { planner, trainLoader } from './step-plan.ts';
import { MetricsLog } from './metrics-log.ts';
import type { RunStatus } from './run-status.ts';
import { RunStatusTracker } from './run-status.ts';
import { loadCheckpoint } from '../checkpoint/read.ts';
import type {
  ConnId,
  CoordinatorEffect,
  CoordinatorEvent,
  CoordinatorState,
} from './protocol/coordinator.ts';
import { coordinatorTransition, initialCoordinator } from './protocol/coordinator.ts';
import type { Connection } from './transport.ts';
import { HANDSHAKE_TIMEOUT_MS, serverHandshake } from './transport.ts';

export const METRICS_FILE = 'metrics.jsonl';

export interface ClusterOptions {
  /** Workers to wait for. */
  workers: number;
  /** Start with this many once rendezvousMs has passed (default: workers). */
  minWorkers?: number;
  rendezvousMs?: number;
  heartbeatMs?: number;
  heartbeatTimeoutMs?: number;
  /** Shared secret for the handshake; null accepts any peer (loopback and threads only). */
  secret?: string | null;
  /** Send every worker its batches even if it could read the dataset itself. */
  streamData?: boolean;
  exactBits?: number;
  /** Continue from this checkpoint (its directory, where known) instead of initialising from the seed. */
  resume?: CheckpointState & { dir?: string };
  /**
   * The run directory's lock, held by the caller (train/run-dir.ts opens runs with it); without
   * one, the run takes the lock itself and lets go of it when it ends.
   */
  lock?: RunLock;
  /** Delete the directory's earlier checkpoints when training starts (--overwrite). */
  replaceRun?: boolean;
  /** Stop (saving a checkpoint) after this many steps of this invocation. */
  stopAfter?: number;
  /** Kernel backend of every worker (default: the fastest that works here). */
  backend?: BackendName;
  /**
   * Kernel threads of the workers this process starts (threads, in-process), and of its own
   * products (a dpo run's reference log-probs; blas's thread count is the process's).
   */
  threads?: number;
  /** A fresh run's initial parameters (--init: train/init-from.ts) instead of the seed's. */
  init?: Float32Array;
  /** A dpo run's reference model (train/run-dir.ts), whose log-probs the batches carry. */
  reference?: Float32Array;
}

export interface RunHooks {
  onStart?: (config: RunConfig, workers: number) => void;
  onStep?: (m: StepMetrics, totalSteps: number) => void;
  onEval?: (m: EvalMetrics) => void;
  /** A worker's time breakdown of a step (it arrives after that step's onStep). */
  onWorkerTime?: (m: WorkerMetrics) => void;
  log?: (line: string) => void;
}

export interface RunResult {
  model: GPT2;
  config: RunConfig;
  steps: number;
  interrupted: boolean;
  lastEval: EvalMetrics | null;
  /** The checkpoint directory holding the final state. */
  checkpoint: string;
}

const zeros = (like: Float32Array) => new Float32Array(like.length);

/** The worker's advertised peer address, with a wildcard host replaced by where it connected from. */
function peerAddress(advertised: string | undefined, remote: string): string {
  if (!advertised) return '';
  const m = /^(0\.0\.0\.0|\[::\]|::):(\d+)$/.exec(advertised);
  if (!m) return advertised;
  const host = remote.replace(/:\d+$/, '').replace(/^::ffff:/, '');
  return `${host.includes(':') ? `[${host}]` : host}:${m[2]}`;
}

/** Keeps the metrics of steps up to `step` (a resumed run rewrites what came after its checkpoint). */
function truncateMetrics(path: string, step: number): void {
  if (!existsSync(path)) return writeFileSync(path, '');
  const kept = readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .filter((line) => {
      try {
        return (JSON.parse(line) as { step: number }).step <= step;
      } catch {
        return false;
      }
    });
  writeFileSync(path, kept.map((l) => `${l}\n`).join(''));
}

export class CoordinatorShell {
  private state: CoordinatorState;
  private readonly conns = new Map<ConnId, Connection>();
  private nextConn = 0;
  private readonly started = Date.now();
  private timer: NodeJS.Timeout | null = null;
  private lastTick = Date.now();
  private lastStep: StepMetrics | null = null;
  private lastEval: EvalMetrics | null = null;
  private settle: { resolve: (r: RunResult) => void; reject: (e: Error) => void } | null = null;
  private readonly metricsPath: string;
  /** metrics.jsonl and the live status (GET /status.json) fed from the same records. */
  private readonly metrics: MetricsLog;
  private readonly tickMs: number;
  private readonly config: RunConfig;
  private readonly dataSha256: string;
  /** Checkpoint writes, one after another, on the writer thread. */
  private writes: Promise<unknown> = Promise.resolve();
  private readonly writer = new CheckpointWriter();
  /** Events fed back by effects, waiting for the transition in progress. */
  private readonly queue: CoordinatorEvent[] = [];
  private feeding = false;
  /**
   * The state being fetched (a checkpoint, or the final state): params, m and v of the whole
   * model, or of each pipeline stage, keyed by the stage's blocks.
   */
  private incoming = new Map<
    string,
    { span: StageSpan | null; parts: Partial<Record<'params' | 'm' | 'v', Float32Array>> }
  >();
  /** A pipeline run's stages (null: none). */
  private readonly spans: StageSpan[] | null;
  private readonly plan: ReturnType<typeof planner>;
  private readonly loader: BatchLoader;
  /** A dpo run's reference.safetensors sha256 (written when training starts, or the resumed run's). */
  private referenceSha256: string | undefined;
  /** Training has started (a failure from now on is the cluster's, and resumable). */
  private trained = false;
  /** What the workers' bits depend on (their ready messages'), written into each checkpoint. */
  private kernel: string | undefined;

  constructor(
    config: RunConfig,
    private readonly dataset: Dataset,
    private readonly outDir: string,
    private readonly cluster: ClusterOptions,
    private readonly hooks: RunHooks = {},
  ) {
    this.config = config = resolveForData(config, dataset.tokenizer);
    const heartbeatMs = cluster.heartbeatMs ?? 1000;
    const T = config.seqLen;
    const evalTokens = Int32Array.from(
      dataset.val.subarray(
        0,
        config.evalWindows > 0 ? config.evalWindows * T + 1 : dataset.val.length,
      ),
    );
    this.dataSha256 = datasetManifestSha256(dataset.dir);
    this.tickMs = Math.min(250, heartbeatMs);
    const resume = cluster.resume;
    const firstStep = resume?.step ?? 0;
    // a pipeline: the stages' blocks, balanced by compute for one micro-batch
    const P = config.pipelineStages;
    if (P > 1) {
      pipelineGrid(cluster.workers, P, config.shards);
      check(
        (cluster.minWorkers ?? cluster.workers) === cluster.workers,
        'WEFT_E_CONFIG',
        `a pipeline run needs all its ${cluster.workers} workers: drop --min-workers`,
      );
    }
    const spans = P > 1 ? partitionStages(config, P, config.batchSize / config.shards, T) : null;
    this.spans = spans;
    if (spans && dataset.val.length >= 2)
      hooks.log?.('a pipeline run is evaluated on the validation split at its end only');
    this.state = initialCoordinator({
      workers: cluster.workers,
      minWorkers: cluster.minWorkers ?? cluster.workers,
      rendezvousMs: cluster.rendezvousMs ?? 60_000,
      heartbeatMs,
      heartbeatTimeoutMs: cluster.heartbeatTimeoutMs ?? 30_000,
      steps: config.steps,
      shards: config.shards,
      tokensPerStep: config.batchSize * T,
      evalEvery: config.evalEvery,
      evalWindows: config.evalWindows,
      // post-training data is evaluated here at the end (evaluateRecordsHere)
      hasValidation: dataset.val.length >= 2 && spans === null && !dataset.records,
      metricNames: objectiveMetrics(config.objective),
      assign: {
        // in every peer hello, which must fit the pre-authentication frame limit
        runId: `${config.name.slice(0, 40)}-${config.seed}-${Date.now().toString(36)}`,
        config: { ...config },
        tokenizer: dataset.tokenizer.toJSON(),
        // workers read token windows themselves; other batches are built (and dpo's reference
        // log-probs computed) here
        dataPath: cluster.streamData || dataset.records ? '' : resolve(dataset.dir),
        dataSha256: this.dataSha256,
        heartbeatMs,
        timeoutMs: cluster.heartbeatTimeoutMs ?? 30_000,
        exactBits: cluster.exactBits ?? DEFAULT_EXACT_BITS,
        backend: cluster.backend ?? defaultBackendName(),
      },
      schedule: {
        lr: config.lr,
        minLr: config.minLr,
        warmupSteps: config.warmupSteps,
        decaySteps: config.steps,
      },
      evalTokens,
      firstStep,
      stopAt: Math.min(
        config.steps,
        cluster.stopAfter !== undefined ? firstStep + cluster.stopAfter : Infinity,
      ),
      ckptEvery: config.ckptEvery,
      initialState: resume
        ? { params: resume.params, m: resume.m, v: resume.v, adamSteps: resume.adamSteps }
        : cluster.init
          ? { params: cluster.init, m: zeros(cluster.init), v: zeros(cluster.init), adamSteps: 0 }
          : null,
      pipeline: spans && spans.map(({ firstLayer, endLayer }) => ({ firstLayer, endLayer })),
    });
    this.metricsPath = join(outDir, METRICS_FILE);
    const { nLayer, nHead, nEmbd, batchSize, shards } = config;
    const tracker = new RunStatusTracker(
      {
        name: config.name,
        outDir: resolve(outDir),
        objective: config.objective,
        backend: cluster.backend ?? defaultBackendName(),
        params: paramCount(config),
        steps: config.steps,
        summary: `L=${nLayer} H=${nHead} C=${nEmbd} T=${T}, B=${batchSize} in ${shards} shards`,
        startedAt: Date.now(),
      },
      () => [...this.state.workers.values()],
    );
    this.metrics = new MetricsLog(this.metricsPath, tracker);
    this.loader = trainLoader(
      config,
      dataset,
      cluster.reference,
      cluster.backend ?? defaultBackendName(),
      cluster.threads ?? 1,
    );
    this.plan = planner(config, this.loader);
  }

  /**
   * Starts the run: takes the run directory's lock unless the caller holds it (checkpoint/
   * run-lock.ts) and waits for workers. Nothing is written until training starts, so a run that
   * never trains a step leaves the directory as it was.
   */
  run(): Promise<RunResult> {
    const given = this.cluster.lock;
    if (given && resolve(given.path) !== resolve(join(this.outDir, LOCK_FILE)))
      throw new WeftError('WEFT_E_STATE', `the lock ${given.path} is not ${this.outDir}'s`);
    const ownLock = given ? null : lockRunDir(this.outDir, (l) => this.hooks.log?.(l));
    const leftovers = cleanCheckpointTemps(this.outDir, (line) => this.hooks.log?.(line));
    if (leftovers.length > 0)
      this.hooks.log?.(`removed ${leftovers.join(', ')} left by an interrupted save`);
    const result = new Promise<RunResult>((resolve, reject) => {
      this.settle = { resolve, reject };
      this.feed({ type: 'start', now: Date.now() });
      this.timer = setInterval(() => {
        const now = Date.now();
        const lagged = now - this.lastTick > 2 * this.tickMs; // the event loop was blocked: let I/O catch up first
        this.lastTick = now;
        if (!lagged) this.feed({ type: 'tick', now });
      }, this.tickMs);
    });
    // every write has settled by the time the result does (see 'finished' and 'failed')
    return result.finally(() => ownLock?.release());
  }

  /** The run directory's files besides checkpoints, written when training starts. */
  private writeRunFiles(): void {
    if (this.cluster.replaceRun) {
      rmSync(join(this.outDir, CHECKPOINTS_DIR), { recursive: true, force: true });
      this.hooks.log?.(`--overwrite: removed the earlier checkpoints in ${this.outDir}`);
    }
    writeFileSync(join(this.outDir, 'config.json'), `${JSON.stringify(this.config, null, 2)}\n`);
    writeFileSync(
      join(this.outDir, 'tokenizer.json'),
      `${JSON.stringify(this.dataset.tokenizer.toJSON())}\n`,
    );
    truncateMetrics(this.metricsPath, this.cluster.resume?.step ?? 0);
    const reference = this.cluster.reference;
    if (this.config.objective === 'dpo' && reference)
      this.referenceSha256 = this.cluster.resume
        ? this.cluster.resume.data.referenceSha256
        : writeReference(this.outDir, reference, this.config);
  }

  /**
   * Takes a new connection from a worker: handshake, then it joins the run. `handshakeTimeoutMs`:
   * how long the worker has to answer (a thread of this process: Infinity, see serverHandshake).
   */
  accept(
    conn: Connection,
    secret: string | null = this.cluster.secret ?? null,
    handshakeTimeoutMs = HANDSHAKE_TIMEOUT_MS,
  ): void {
    serverHandshake(conn, secret, 'worker', handshakeTimeoutMs).then(
      (hello) => {
        const id = this.nextConn++;
        this.conns.set(id, conn);
        conn.onMessage = (message) =>
          this.feed({ type: 'message', conn: id, message, now: Date.now() });
        conn.onClose = (reason) => {
          this.conns.delete(id);
          this.feed({ type: 'closed', conn: id, reason, now: Date.now() });
        };
        this.feed({
          type: 'joined',
          conn: id,
          name: hello.name,
          address: peerAddress(hello.peerAddress, conn.remote),
          now: Date.now(),
        });
      },
      (err: Error) => this.hooks.log?.(`refused a connection: ${err.message}`),
    );
  }

  /** The run's state for a readiness probe (launch.ts: GET /readyz). */
  readiness(): { ready: boolean; status: string; [key: string]: unknown } {
    const s = this.state;
    const workers = [...s.workers.values()].filter((w) => w.ready).length;
    const expected = s.config.workers;
    if (s.phase === 'rendezvous') return { ready: true, status: 'waiting', workers, expected };
    if (s.phase === 'done' || s.phase === 'failed') return { ready: false, status: s.phase };
    return { ready: true, status: 'training', step: s.step, steps: this.config.steps, workers };
  }

  /** The run as the live page shows it (GET /status.json). */
  status(): RunStatus {
    return this.metrics.status.status();
  }

  /** Ends the run after the step in progress, saving a checkpoint. */
  stop(): void {
    this.feed({ type: 'stop', now: Date.now() });
  }

  /** Ends the run at once with `message` (a launcher's worker died before it could join). */
  abort(message: string): void {
    if (this.settle) this.perform({ type: 'failed', code: 'WEFT_E_CLUSTER', message });
  }

  /**
   * Feeds `event` to the machine, and the events its effects feed back, one at a time: a
   * transition's messages are sent, then its effects carried out, before the next event.
   */
  private feed(event: CoordinatorEvent): void {
    this.queue.push(event);
    if (this.feeding) return;
    this.feeding = true;
    try {
      for (let next; this.settle && (next = this.queue.shift());) {
        const out = coordinatorTransition(this.state, next);
        this.state = out.state;
        this.observe(next);
        for (const { conn, message } of out.send) this.conns.get(conn)?.send(message);
        try {
          for (const effect of out.effects) this.perform(effect);
        } catch (err) {
          // an effect that cannot be carried out (the disk, the planner) ends the run, named
          const message = `the coordinator could not go on: ${(err as Error).message}`;
          this.perform({ type: 'failed', code: 'WEFT_E_CLUSTER', message });
        }
      }
    } finally {
      this.feeding = false;
      this.queue.length = 0;
    }
  }

  /** Tells the live status what the transition of `event` changed that no effect says. */
  private observe(event: CoordinatorEvent): void {
    const s = this.state;
    const status = this.metrics.status;
    // (done once the final checkpoint is saved: status.ended)
    const phase = s.phase === 'done' ? 'saving' : s.phase;
    status.setPhase(s.stopping && phase === 'training' ? 'stopping' : phase);
    const joined = event.type === 'joined' ? s.workers.get(event.conn) : undefined;
    if (joined) status.joined(joined);
  }

  /**
   * A pipeline lost a worker: the newest checkpoint on disk (once the saves under way are done),
   * else the state the run started from; the metrics after its step are dropped, as a resume's.
   */
  private rollBack(): void {
    void this.writes.then(() => {
      let step = this.cluster.resume?.step ?? 0;
      let state: TrainingState | null = this.cluster.resume ?? null;
      try {
        const saved = loadCheckpoint(this.outDir);
        if (saved.step >= step) {
          step = saved.step;
          state = saved;
        }
      } catch {
        // no checkpoint yet: from the start
      }
      this.metrics.flush();
      truncateMetrics(this.metricsPath, step);
      this.metrics.status.rolledBack(step);
      this.hooks.log?.(
        `rolling back to step ${step} (${state ? 'its checkpoint' : 'the initialisation'})`,
      );
      this.feed({ type: 'rolledBack', step, state, now: Date.now() });
    });
  }

  /** Evaluates `model` on the validation split here (as a worker would) and records it. */
  private evaluateHere(model: GPT2, step: number): void {
    const { seqLen, batchSize, evalWindows } = this.config;
    const result = evaluate(model, this.dataset.val, this.dataset.tokenizer, {
      seqLen,
      batchSize,
      maxWindows: evalWindows,
    });
    this.perform({ type: 'evalMetrics', step, result });
  }

  /** Evaluates `model` on the held-out records of an sft, reward or dpo run, and records it. */
  private evaluateRecordsHere(model: GPT2, step: number): void {
    const records = this.dataset.records;
    if (!records || records.val.length === 0) return;
    const { seqLen, objective, beta } = this.config;
    const pad = this.dataset.tokenizer.specials.endOfText;
    if (records.kind === 'sft') {
      const result = evaluateSft(model, records.val, this.dataset.tokenizer, { seqLen, pad });
      return this.perform({ type: 'evalMetrics', step, result });
    }
    const reference =
      objective === 'dpo'
        ? new GPT2(this.config, { params: this.cluster.reference, backend: model.backend })
        : undefined;
    const result = evaluatePairs(model, records.val, { seqLen, pad, reference, beta });
    // (a pair evaluation's record: pairs, accuracy, margin, loss)
    this.metrics.eval({ type: 'eval', step, split: 'val', ...result } as unknown as EvalMetrics);
    this.hooks.log?.(
      `held-out preference accuracy ${result.accuracy.toFixed(3)} over ${result.pairs} pairs (margin ${result.margin.toFixed(4)}, loss ${result.loss.toFixed(4)})`,
    );
  }

  /** Puts a piece of the state being fetched in place (the machine checked that it fits). */
  private takePiece(
    { what, total, offset, data }: MessageOf<'state'>,
    span: StageSpan | null,
  ): void {
    const key = span ? `${span.firstLayer}-${span.endLayer}` : 'whole';
    const entry = this.incoming.get(key) ?? { span, parts: {} };
    this.incoming.set(key, entry);
    (entry.parts[what] ??= new Float32Array(total)).set(data, offset);
  }

  /**
   * The state whose pieces have all arrived: the buffers handed over, or, from a pipeline's
   * stages, put together into the whole model's.
   */
  private takeState(adamSteps: number): TrainingState {
    const stages = [...this.incoming.values()];
    this.incoming = new Map();
    const whole = stages.find((e) => e.span === null)?.parts;
    if (whole) {
      const { params, m, v } = whole as Required<typeof whole>;
      return { params, m, v, adamSteps };
    }
    const size = paramCount(this.config);
    const state = {
      params: new Float32Array(size),
      m: new Float32Array(size),
      v: new Float32Array(size),
      adamSteps,
    };
    for (const { span, parts } of stages) {
      const ranges = stageRanges(this.config, span as StageSpan);
      for (const what of ['params', 'm', 'v'] as const)
        copyStage(ranges, parts[what] as Float32Array, state[what], 'full');
    }
    return state;
  }

  /**
   * Notes what the workers' bits depend on (all agree: the state machine refuses a worker that
   * differs), for the checkpoints; a resumed run on other kernels is told it will not give the
   * bytes of an uninterrupted run.
   */
  private noteKernel(): void {
    const kernel = [...this.state.workers.values()].find((w) => w.ready)?.kernel;
    const before = this.cluster.resume?.kernel;
    const trains = this.config.steps > (this.cluster.resume?.step ?? 0);
    if (trains && kernel && typeof before === 'string' && before !== kernel)
      this.hooks.log?.(
        `note: step ${this.cluster.resume?.step} was trained on ${before}, and this run computes on ${kernel}: the weights will differ in the last bits from an uninterrupted run's`,
      );
    this.kernel = kernel ?? (typeof before === 'string' ? before : undefined);
  }

  /** The full checkpoint of `state` after `step` steps. */
  private checkpointOf(step: number, state: TrainingState): CheckpointState {
    const c = this.config;
    // a resumed run carries its checkpoint's metrics until it has newer ones
    const metrics: Record<string, unknown> = { ...this.cluster.resume?.metrics };
    if (this.lastStep) {
      const { step: s, loss, lr, gradNorm } = this.lastStep;
      metrics.lastStep = { step: s, loss, lr, gradNorm };
    }
    if (this.lastEval) {
      const { step: s, loss, ppl, bpb } = this.lastEval;
      metrics.lastEval = { step: s, loss, ppl, bpb };
    }
    return {
      step,
      tokensSeen: step * c.batchSize * c.seqLen,
      config: { ...c },
      tokenizer: this.dataset.tokenizer.toJSON(),
      adamSteps: state.adamSteps,
      loader: { step, seed: c.seed, seqLen: c.seqLen, items: this.loader.sampler.itemCount },
      rng: { seed: c.seed },
      data: {
        path: resolve(this.dataset.dir),
        manifestSha256: this.dataSha256,
        ...(this.referenceSha256 ? { referenceSha256: this.referenceSha256 } : {}),
      },
      metrics,
      ...(this.kernel ? { kernel: this.kernel } : {}),
      params: state.params,
      m: state.m,
      v: state.v,
    };
  }

  /** Queues a checkpoint write on the writer thread; resolves with its directory. */
  private save(step: number, state: TrainingState): Promise<string> {
    const checkpoint = this.checkpointOf(step, state);
    const started = performance.now();
    const done = this.writes.then(() =>
      this.writer.write(this.outDir, checkpoint, this.config.keepLast, (line) =>
        this.hooks.log?.(line),
      ),
    );
    void done.then(
      (dir) => this.metrics.status.checkpointed(step, dir),
      () => {},
    );
    this.writes = done.then(
      (dir) =>
        this.hooks.log?.(
          `checkpoint ${dir} saved (${((performance.now() - started) / 1000).toFixed(2)} s)`,
        ),
      (err: Error) => this.hooks.log?.(`checkpoint at step ${step} failed: ${err.message}`),
    );
    return done;
  }

  private perform(effect: CoordinatorEffect): void {
    switch (effect.type) {
      case 'log':
        this.hooks.log?.(effect.line);
        return;
      case 'trainingStarted':
        this.trained = true;
        this.noteKernel();
        this.metrics.status.started(effect.workers);
        this.writeRunFiles();
        this.hooks.onStart?.(this.config, effect.workers);
        return;
      case 'stepMetrics': {
        const { step, loss, lr, gradNorm, tokensPerSec, metrics } = effect;
        const m: StepMetrics = {
          type: 'step',
          step,
          loss,
          lr,
          gradNorm,
          tokensPerSec,
          elapsedMs: Date.now() - this.started,
          ...metrics,
        };
        // the step's members report their times next (metrics-log.ts waits for them)
        // (every ready worker: the step's members are gone from the state by now)
        const reporting = [...this.state.workers.values()].filter((w) => w.ready);
        this.metrics.step(
          m,
          effect.skipped,
          reporting.map((w) => w.name),
        );
        this.lastStep = m;
        this.hooks.onStep?.(m, this.config.steps);
        return;
      }
      case 'workerTime': {
        const { step, ...times } = effect.times;
        const m: WorkerMetrics = {
          type: 'worker',
          step,
          worker: effect.worker,
          rank: effect.rank,
          ...times,
        };
        this.metrics.worker(m);
        this.hooks.onWorkerTime?.(m);
        return;
      }
      case 'evalMetrics': {
        const m: EvalMetrics = { type: 'eval', step: effect.step, split: 'val', ...effect.result };
        this.metrics.eval(m);
        this.lastEval = m;
        this.hooks.onEval?.(m);
        return;
      }
      case 'workerGone':
        this.metrics.status.gone(effect.worker, effect.reason, effect.lost);
        return;
      case 'close':
        this.conns.get(effect.conn)?.close(`${effect.reason} [${effect.code}]`);
        return;
      case 'planStep': {
        const { targetCount, batches } = this.plan(effect.step, effect.streamed);
        this.queue.unshift({
          type: 'stepPlanned',
          step: effect.step,
          targetCount,
          batches,
          now: Date.now(),
        });
        return;
      }
      case 'fetchState':
        this.incoming = new Map();
        return;
      case 'statePiece':
        return this.takePiece(effect.piece, effect.span);
      case 'rollback':
        return this.rollBack();
      case 'recovered': {
        // the surviving replicas' state, as of the last commit: nothing to drop from the metrics
        const state = this.takeState(effect.adamSteps);
        this.hooks.log?.(`going on from step ${effect.step} with the surviving workers' state`);
        this.queue.unshift({ type: 'rolledBack', step: effect.step, state, now: Date.now() });
        return;
      }
      case 'checkpoint': {
        this.metrics.flush(); // the checkpoint's step is in metrics.jsonl before it is saved
        const state = this.takeState(effect.adamSteps);
        void this.save(effect.step, state).catch(() => {}); // a failed periodic save is logged; training goes on
        return;
      }
      case 'finished': {
        this.metrics.flush();
        const state = this.takeState(effect.adamSteps);
        const settle = this.settle;
        this.settle = null;
        this.end();
        // the model keeps a copy (the state's buffers go to the writer thread), for sampling here
        const backend = createBackend(this.cluster.backend ?? defaultBackendName(), {
          threads: this.cluster.threads ?? 1, // the process's OpenBLAS count stays the workers'
        });
        const model = new GPT2(this.config, { params: state.params, backend });
        // no worker of a pipeline holds the whole model: the final evaluation is done here
        const trained = effect.steps > (this.cluster.resume?.step ?? 0);
        if (this.spans && this.dataset.val.length >= 2 && trained)
          this.evaluateHere(model, effect.steps);
        // post-training runs are evaluated on their held-out records here
        if (this.dataset.records && trained) this.evaluateRecordsHere(model, effect.steps);
        const interrupted = effect.steps < this.config.steps;
        // a resumed run that trained no step holds its checkpoint's state: nothing to save
        const resume = this.cluster.resume;
        const saved =
          resume?.step === effect.steps
            ? this.writes.then(
                () => resume.dir ?? join(this.outDir, CHECKPOINTS_DIR, stepDirName(resume.step)),
              )
            : this.save(effect.steps, state);
        saved
          .finally(() => this.writer.close())
          .then(
            (checkpoint) => {
              const how = interrupted ? 'stopped' : 'done';
              this.metrics.status.ended(true, `${how} at step ${effect.steps}`);
              settle?.resolve({
                model,
                config: this.config,
                steps: effect.steps,
                interrupted,
                lastEval: this.lastEval,
                checkpoint,
              });
            },
            (err: Error) => {
              this.metrics.status.ended(false, `the final checkpoint failed: ${err.message}`);
              settle?.reject(err);
            },
          );
        return;
      }
      case 'failed': {
        try {
          this.metrics.flush();
        } catch {
          // (the disk that failed the run may fail this too: the run still ends)
        }
        this.metrics.status.ended(false, effect.message);
        const settle = this.settle;
        this.settle = null;
        this.end();
        // the run ends once a checkpoint still being written is on disk (the lock covers it)
        // after training started, losing the cluster leaves a run its checkpoint resumes
        const error = new WeftError(effect.code as 'WEFT_E_CLUSTER', effect.message, {
          resumable: this.trained,
        });
        void this.writes.finally(() => this.writer.close()).finally(() => settle?.reject(error));
        return;
      }
      default:
        return effect satisfies never;
    }
  }

  private end(): void {
    if (this.timer) clearInterval(this.timer);
    // give the shutdown messages a moment to leave before closing
    setTimeout(() => {
      for (const conn of this.conns.values()) conn.close('run ended');
    }, 100).unref();
  }
}
