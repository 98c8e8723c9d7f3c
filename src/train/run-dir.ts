// Opening a run directory for training: the policy every trainer follows. The CLI opens runs
// with it; a program that imports weft gets the same checks by opening the run here and handing
// the result (with its lock) to a launcher (distributed launch.ts). In order, and nothing in an
// existing run directory is changed before every check has passed:
//   1. lock the directory (one trainer per run directory: checkpoint/run-lock.ts);
//   2. a fresh run refuses a directory holding a checkpoint unless told to overwrite it; a
//      resumed run loads and verifies its latest checkpoint and refuses config changes that
//      would alter the architecture or the data order;
//   3. open the data: raw text is prepared beside the cache and swapped in only once accepted;
//      a prepared dataset must match the config's tokenizer (fresh) or the checkpoint's dataset
//      (resumed, by the sha256 of its dataset.json);
//   4. with --overwrite, the old checkpoints go only once training starts (replaceRun), and so
//      does the old data: a new preparation moves it aside (data.old-PID) rather than deleting
//      it. A start that fails (the caller closes the run before training started, or an open
//      that throws) puts it back and removes a run directory it created, so a run that never
//      starts (bad data, no worker came, a port in use) has lost and left nothing; one killed
//      before it started is put back at the next open.
// Before any of it, the config is checked against the machine (capacity.ts: worker threads,
// memory). A run directory whose run never saved a checkpoint holds nothing worth keeping: a
// plain run starts it afresh.

import type { BackendName } from '../kernels/backend.ts';
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckpointState } from '../checkpoint/format.ts';
import { CHECKPOINTS_DIR, LATEST_FILE } from '../checkpoint/format.ts';
import { loadCheckpoint, readManifest, resolveCheckpoint } from '../checkpoint/read.ts';
import type { RunLock } from '../checkpoint/run-lock.ts';
import { lockRunDir } from '../checkpoint/run-lock.ts';
import { listCheckpoints } from '../checkpoint/write.ts';
import type { Dataset } from '../data/dataset.ts';
import { datasetManifestSha256, openDataset } from '../data/open.ts';
import { tokenizerIdentity } from '../data/records.ts';
import { MODEL_KEYS } from '../model/config.ts';
import { readReference } from '../checkpoint/reference.ts';
import type { OpenOptions } from '../data/open.ts';
import { GPT2 } from '../model/gpt2.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { createTokenizer, tokenizerFromJSON } from '../tokenizer/index.ts';
import { WeftError } from '../util/errors.ts';
import type { RunConfig } from './config.ts';
import {
  DEFAULT_RUN_CONFIG,
  mergeConfig,
  resolveForData,
  sequenceLength,
  validateRunConfig,
} from './config.ts';
import { checkCapacity } from './capacity.ts';
import { initConfig, initParamsFrom, readInitModel } from './init-from.ts';
import { batchLoader } from './batches.ts';

/** Keys a resumed run must keep: the architecture, and what fixes which data each step reads. */
export const FIXED_ON_RESUME = [
  ...MODEL_KEYS,
  'seqLen',
  'batchSize',
  'shards',
  'seed',
  'objective',
  'beta',
] as const;

/** The data cache of a run directory (raw --data text is prepared into it). */
export const runDataDir = (outDir: string) => join(outDir, 'data');

export interface OpenedRun {
  config: RunConfig;
  dataset: Dataset;
  outDir: string;
  /** A fresh run started from a model (--init): its initial parameters. */
  initParams?: Float32Array;
  /** A dpo run's reference model (resumed: read back from the run directory, verified). */
  reference?: Float32Array;
  /** The checkpoint a resumed run continues from. */
  resume?: CheckpointState & { dir: string };
  /** Held until released (the process exiting releases it too); pass it to the launcher. */
  lock: RunLock;
  /** The directory's earlier checkpoints are to go when training starts (--overwrite). */
  replaceRun: boolean;
  /** Say that training has started: the data an --overwrite replaced, kept until now, goes. */
  started: () => void;
  /**
   * The run is over: if training never started, what opening it changed is undone (the data an
   * --overwrite replaced is put back, a directory it created removed); then the lock goes.
   */
  close: () => void;
}

/** The caller's side of an open: what `open` returns, before the lock and its undo are added. */
type Opened = Omit<OpenedRun, 'lock' | 'started' | 'close'>;

/** Whether `outDir` holds a checkpoint (a run worth resuming, not to be replaced silently). */
export function hasCheckpoint(outDir: string): boolean {
  const dir = join(outDir, CHECKPOINTS_DIR);
  return existsSync(join(dir, LATEST_FILE)) || listCheckpoints(dir).length > 0;
}

/** The data an --overwrite moved aside in `outDir` (openDataset's keepReplaced). */
const replacedData = (outDir: string): string[] =>
  existsSync(outDir)
    ? readdirSync(outDir)
        .filter((f) => f.startsWith('data.old-'))
        .map((f) => join(outDir, f))
    : [];

/**
 * Puts back the data an --overwrite moved aside when it is the dataset of the run's latest
 * checkpoint and data/ is not: that replacement never trained (the checkpoints go when it
 * starts), so the run it was to replace is whole again.
 */
function restoreReplacedData(outDir: string, log: (line: string) => void): void {
  const old = replacedData(outDir);
  if (old.length === 0 || !hasCheckpoint(outDir)) return;
  const sha = (dir: string) => {
    try {
      return datasetManifestSha256(dir);
    } catch {
      return null;
    }
  };
  let wanted: string;
  try {
    wanted = readManifest(resolveCheckpoint(outDir)).data.manifestSha256;
  } catch {
    return; // a damaged checkpoint is named by whatever reads it next
  }
  const data = runDataDir(outDir);
  const theirs = old.find((dir) => sha(dir) === wanted);
  // (a data/ that is missing is openDataset's to put back: an interrupted swap)
  if (!theirs || !existsSync(data) || sha(data) === wanted) return;
  rmSync(data, { recursive: true, force: true });
  renameSync(theirs, data);
  log(`put back ${data}, which an --overwrite that never started had replaced`);
}

/**
 * Runs `open` with the run directory locked. If `open` throws, or the run is closed before
 * training started, the lock goes and what the open changed is undone.
 */
function locked(outDir: string, log: (line: string) => void, open: () => Opened): OpenedRun {
  if (existsSync(outDir) && !statSync(outDir).isDirectory())
    throw new WeftError(
      'WEFT_E_CONFIG',
      `--out ${outDir} is a file, not a directory; pass a directory for the run (a new one is made)`,
    );
  const existed = existsSync(outDir);
  // (data moved aside without data/ is put back by openDataset: an interrupted swap)
  const hadData = existsSync(runDataDir(outDir)) || replacedData(outDir).length > 0;
  const lock = lockRunDir(outDir, log);
  const undo = () => {
    // the data this start set aside (data/ replaced by openDataset's keepReplaced) goes back as it
    // was, whatever its checkpoints say (another, killed start's copy was put back on opening)
    const mine = `${runDataDir(outDir)}.old-${process.pid}`;
    if (existed && existsSync(mine)) {
      rmSync(runDataDir(outDir), { recursive: true, force: true });
      renameSync(mine, runDataDir(outDir));
    } else if (existed && !hadData) rmSync(runDataDir(outDir), { recursive: true, force: true });
    lock.release();
    if (!existed) rmSync(outDir, { recursive: true, force: true });
  };
  try {
    restoreReplacedData(outDir, log); // an --overwrite killed before it started
    let trained = false;
    return {
      ...open(),
      lock,
      started: () => {
        trained = true;
        for (const dir of replacedData(outDir)) rmSync(dir, { recursive: true, force: true });
      },
      close: () => (trained ? lock.release() : undo()),
    };
  } catch (err) {
    undo();
    throw err;
  }
}

/** What both opens take besides the run. */
interface OpenRunOptions {
  log?: (line: string) => void;
  /**
   * The worker threads this process runs for the run's config (weft train's --workers; 0: a
   * coordinator whose workers run elsewhere; default 1): checked against the step's shards and
   * the machine's memory (capacity.ts) before anything is written.
   */
  workerThreads?: (config: RunConfig) => number;
  /** The workers' backend: on wasm, wasm-fma and blas a worker's buffers must fit one wasm memory. */
  backend?: BackendName;
}

export interface FreshRunOptions extends OpenRunOptions {
  config: RunConfig;
  /** Text file, directory of text files, or prepared dataset. */
  data: string;
  outDir: string;
  /** Replace a run that holds checkpoints (they are deleted once everything else has passed). */
  overwrite?: boolean;
  /** Start from this model's weights (init-from.ts): a run, checkpoint or Hugging Face directory. */
  init?: string;
  /** The user's --set values (an architecture key that differs from --init's is refused). */
  overrides?: Record<string, unknown>;
}

/** A new run in `outDir`, checked and ready to train. */
export function openFreshRun(options: FreshRunOptions): OpenedRun {
  const { outDir, overwrite = false, log = () => {} } = options;
  // the --init model is read (and refused if it is not one) before the directory is touched
  const init = options.init ? readInitModel(options.init) : null;
  const config = init
    ? validateRunConfig(initConfig(options.config, init, options.overrides ?? {}))
    : options.config;
  const records = recordsOptions(config, init?.tokenizer ?? null);
  if (init && !records)
    throw new WeftError(
      'WEFT_E_CONFIG',
      `--init starts post-training (objective sft, reward or dpo); to continue pre-training, --resume the run itself`,
    );
  checkCapacity(config, options.workerThreads?.(config) ?? 1, options.backend);
  return locked(outDir, log, () => {
    const existing = hasCheckpoint(outDir);
    if (existing && !overwrite) {
      throw new WeftError(
        'WEFT_E_CONFIG',
        `${outDir} already holds a run; pass --resume to continue it, --overwrite to replace it, or another --out`,
      );
    }
    let resolved = config;
    const dataset = openDataset(options.data, runDataDir(outDir), {
      tokenizer: config.tokenizer,
      valFraction: config.valFraction,
      log,
      records: records ?? undefined,
      // the run being replaced keeps its data until training starts (close puts it back)
      keepReplaced: existing,
      accept: (ds) => {
        checkData(ds, config, options.data);
        resolved = checkBatches(config, ds);
      },
    });
    if (init)
      log(`starting from ${init.source} (${init.config.nLayer} layers, C=${init.config.nEmbd})`);
    const initParams = init ? initParamsFrom(resolved, init) : undefined;
    const reference =
      config.objective === 'dpo'
        ? (initParams ?? GPT2.init(resolved, resolved.seed).params)
        : undefined;
    return { config, dataset, outDir, replaceRun: existing, initParams, reference };
  });
}

/**
 * What a post-training objective's --data is read as (records.ts), with `tokenizer`: the --init
 * model's, or (a run from scratch) the config's when it needs no training (gpt2, byte). Null
 * for lm: text.
 */
function recordsOptions(
  config: RunConfig,
  tokenizer: Tokenizer | null,
): OpenOptions['records'] | null {
  if (config.objective === 'lm') return null;
  const spec = config.tokenizer;
  if (!tokenizer && spec !== 'gpt2' && spec !== 'byte')
    throw new WeftError(
      'WEFT_E_CONFIG',
      `objective=${config.objective} needs a tokenizer: start from a model with --init, or set tokenizer=gpt2 or byte`,
    );
  return {
    kind: config.objective === 'sft' ? 'sft' : 'preference',
    tokenizer: tokenizer ?? createTokenizer(spec),
    seqLen: sequenceLength(config),
  };
}

/**
 * Refuses data of the wrong kind for the objective (text for lm, JSONL records otherwise), or
 * tokenized otherwise than the config says (or, given, than the `model`'s tokenizer).
 */
function checkData(dataset: Dataset, config: RunConfig, data: string, model?: Tokenizer): void {
  const kind = dataset.manifest.kind ?? 'text';
  const want =
    config.objective === 'lm' ? 'text' : config.objective === 'sft' ? 'sft' : 'preference';
  if (kind !== want)
    throw new WeftError(
      'WEFT_E_CONFIG',
      `dataset ${data} holds ${kind} data but objective=${config.objective} trains on ${want} (see docs/alignment.md)`,
    );
  if (model && tokenizerIdentity(dataset.tokenizer) !== tokenizerIdentity(model))
    throw new WeftError(
      'WEFT_E_CONFIG',
      `dataset ${data} was prepared with tokenizer ${dataset.manifest.tokenizerSpec}, not the model's (${model.name}); pass the text itself, which is tokenized with the model's tokenizer`,
    );
  if (kind === 'text' && !model) checkTokenizer(dataset, config, data);
}

/**
 * Refuses data that cannot fill the run's batches (fewer tokens than one sequence needs, no
 * usable record: the batch loader's checks, batches.ts) or whose ids the model cannot hold;
 * returns the config resolved for it.
 */
function checkBatches(config: RunConfig, dataset: Dataset): RunConfig {
  const resolved = resolveForData(config, dataset.tokenizer);
  batchLoader(resolved, dataset);
  return resolved;
}

/** Refuses a prepared dataset whose tokenizer is not the config's (the model's size follows it). */
function checkTokenizer(dataset: Dataset, config: RunConfig, data: string): void {
  const spec = dataset.manifest.tokenizerSpec;
  if (spec === config.tokenizer) return;
  throw new WeftError(
    'WEFT_E_CONFIG',
    `dataset ${data} was prepared with tokenizer ${spec} (${dataset.tokenizer.vocabSize} ids) but config ${config.name} uses ${config.tokenizer}; ` +
      `pass --set tokenizer=${spec} to train on it, or prepare it again with weft prepare --config ${config.name}`,
  );
}

export interface ResumedRunOptions extends OpenRunOptions {
  outDir: string;
  /** Config changes (--set, --steps): any key but FIXED_ON_RESUME's. */
  overrides?: Record<string, unknown>;
  /** Data to read instead of the checkpoint's (it must be the same dataset). */
  data?: string;
  /** A config the caller named: its architecture must be the checkpoint's. */
  preset?: RunConfig;
}

/** The run in `outDir` continued from its latest checkpoint, checked and ready to train. */
export function openResumedRun(options: ResumedRunOptions): OpenedRun {
  const { outDir, log = () => {} } = options;
  return locked(outDir, log, () => {
    if (!hasCheckpoint(outDir)) {
      throw new WeftError(
        'WEFT_E_CONFIG',
        `${outDir} holds no checkpoint to resume (its run never saved one); run it again without --resume`,
      );
    }
    const checkpoint = loadCheckpoint(outDir);
    const config = resumedConfig(checkpoint, options);
    checkCapacity(config, options.workerThreads?.(config) ?? 1, options.backend);
    const tokenizer = tokenizerFromJSON(checkpoint.tokenizer, checkpoint.dir);
    // a model imported with weft checkpoint import has no data of its own: it takes any data
    // tokenized with its tokenizer (raw text is tokenized with it)
    const own = checkpoint.data.manifestSha256 !== '';
    if (!own && options.data === undefined)
      throw new WeftError(
        'WEFT_E_CONFIG',
        `${outDir} has no data of its own (its checkpoint ${checkpoint.dir} was not trained by weft: an imported model); pass --data with the text to train it on`,
      );
    const data = options.data ?? checkpoint.data.path;
    const dataset = openDataset(data, runDataDir(outDir), {
      tokenizer: own ? config.tokenizer : tokenizer,
      valFraction: config.valFraction,
      log,
      records: recordsOptions(config, tokenizer) ?? undefined,
      accept: (ds, manifestSha256) => {
        if (!own) {
          checkData(ds, config, data, tokenizer);
          checkBatches(config, ds);
          return;
        }
        if (manifestSha256 === checkpoint.data.manifestSha256) return;
        throw new WeftError(
          'WEFT_E_CONFIG',
          options.data === undefined
            ? `the run's data ${data} is not the dataset checkpoint ${checkpoint.dir} was trained on (its dataset.json differs); pass the run's own data with --data`
            : `the dataset of ${data} is not the one checkpoint ${checkpoint.dir} was trained on (its dataset.json differs); resume without --data, or pass the run's own data`,
        );
      },
    });
    log(`resuming ${outDir} from ${checkpoint.dir} (step ${checkpoint.step})`);
    const reference =
      config.objective === 'dpo'
        ? readReference(outDir, checkpoint.config, checkpoint.data.referenceSha256 ?? '')
        : undefined;
    return { config, dataset, outDir, resume: checkpoint, replaceRun: false, reference };
  });
}

/** The checkpoint's config with the allowed overrides applied. */
function resumedConfig(
  checkpoint: CheckpointState & { dir: string },
  options: ResumedRunOptions,
): RunConfig {
  const saved = mergeConfig(
    DEFAULT_RUN_CONFIG,
    checkpoint.config,
    `${checkpoint.dir}/manifest.json`,
  );
  const config = validateRunConfig(mergeConfig(saved, options.overrides ?? {}, '--set'));
  // steps may equal the checkpoint's step (nothing to train: nothing is saved), not stop before it
  if (config.steps < checkpoint.step)
    throw new WeftError(
      'WEFT_E_CONFIG',
      `${options.outDir} is at step ${checkpoint.step}, past steps=${config.steps}; pass --steps above ${checkpoint.step} to train it further`,
    );
  for (const key of FIXED_ON_RESUME) {
    if (config[key] !== saved[key]) {
      throw new WeftError(
        'WEFT_E_CONFIG',
        `${key}=${String(config[key])} differs from the checkpoint's ${key}=${String(saved[key])}; a resumed run keeps its architecture and data order`,
      );
    }
  }
  const preset = options.preset;
  for (const key of preset ? MODEL_KEYS : []) {
    if (preset && preset[key] !== 0 && preset[key] !== saved[key]) {
      throw new WeftError(
        'WEFT_E_CONFIG',
        `config ${preset.name} has ${key}=${preset[key]} but the checkpoint has ${key}=${saved[key]}`,
      );
    }
  }
  return config;
}
