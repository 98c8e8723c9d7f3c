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
//   4. with --overwrite, the old checkpoints go only once training starts (replaceRun), so a run
//      that never starts (no worker came, a port in use) has lost nothing.
// A run directory whose run never saved a checkpoint holds nothing worth keeping: a plain run
// starts it afresh.

import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckpointState } from '../checkpoint/format.ts';
import { CHECKPOINTS_DIR, LATEST_FILE } from '../checkpoint/format.ts';
import { loadCheckpoint } from '../checkpoint/read.ts';
import type { RunLock } from '../checkpoint/run-lock.ts';
import { lockRunDir } from '../checkpoint/run-lock.ts';
import { listCheckpoints } from '../checkpoint/write.ts';
import type { Dataset } from '../data/dataset.ts';
import { openDataset } from '../data/open.ts';
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
import { initConfig, initParamsFrom, readInitModel } from './init-from.ts';

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
}

/** Whether `outDir` holds a checkpoint (a run worth resuming, not to be replaced silently). */
export function hasCheckpoint(outDir: string): boolean {
  const dir = join(outDir, CHECKPOINTS_DIR);
  return existsSync(join(dir, LATEST_FILE)) || listCheckpoints(dir).length > 0;
}

/** Runs `open` with the run directory locked; if `open` throws, the lock goes, and so does a directory it made. */
function locked(
  outDir: string,
  log: (line: string) => void,
  open: () => Omit<OpenedRun, 'lock'>,
): OpenedRun {
  const existed = existsSync(outDir);
  const lock = lockRunDir(outDir, log);
  try {
    return { ...open(), lock };
  } catch (err) {
    lock.release();
    if (!existed) rmSync(outDir, { recursive: true, force: true });
    throw err;
  }
}

export interface FreshRunOptions {
  config: RunConfig;
  /** Text file, directory of text files, or prepared dataset. */
  data: string;
  outDir: string;
  /** Replace a run that holds checkpoints (they are deleted once everything else has passed). */
  overwrite?: boolean;
  log?: (line: string) => void;
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
  return locked(outDir, log, () => {
    const existing = hasCheckpoint(outDir);
    if (existing && !overwrite) {
      throw new WeftError(
        'WEFT_E_CONFIG',
        `${outDir} already holds a run; pass --resume to continue it, --overwrite to replace it, or another --out`,
      );
    }
    const dataset = openDataset(options.data, runDataDir(outDir), {
      tokenizer: config.tokenizer,
      valFraction: config.valFraction,
      log,
      records: records ?? undefined,
      accept: (ds) => checkData(ds, config, options.data),
    });
    if (init)
      log(`starting from ${init.source} (${init.config.nLayer} layers, C=${init.config.nEmbd})`);
    const resolved = resolveForData(config, dataset.tokenizer);
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

/** Refuses data of the wrong kind for the objective (text for lm, JSONL records otherwise). */
function checkData(dataset: Dataset, config: RunConfig, data: string): void {
  const kind = dataset.manifest.kind ?? 'text';
  const want =
    config.objective === 'lm' ? 'text' : config.objective === 'sft' ? 'sft' : 'preference';
  if (kind !== want)
    throw new WeftError(
      'WEFT_E_CONFIG',
      `dataset ${data} holds ${kind} data but objective=${config.objective} trains on ${want} (see docs/alignment.md)`,
    );
  if (kind === 'text') checkTokenizer(dataset, config, data);
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

export interface ResumedRunOptions {
  outDir: string;
  /** Config changes (--set, --steps): any key but FIXED_ON_RESUME's. */
  overrides?: Record<string, unknown>;
  /** Data to read instead of the checkpoint's (it must be the same dataset). */
  data?: string;
  /** A config the caller named: its architecture must be the checkpoint's. */
  preset?: RunConfig;
  log?: (line: string) => void;
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
    const data = options.data ?? checkpoint.data.path;
    const tokenizer = tokenizerFromJSON(checkpoint.tokenizer, checkpoint.dir);
    const dataset = openDataset(data, runDataDir(outDir), {
      tokenizer: config.tokenizer,
      valFraction: config.valFraction,
      log,
      records: recordsOptions(config, tokenizer) ?? undefined,
      accept: (_ds, manifestSha256) => {
        if (manifestSha256 === checkpoint.data.manifestSha256) return;
        throw new WeftError(
          'WEFT_E_CONFIG',
          `the dataset of ${data} is not the one checkpoint ${checkpoint.dir} was trained on (its dataset.json differs); resume without --data, or pass the run's own data`,
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
