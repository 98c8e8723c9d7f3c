// Run configuration: one flat JSON object (as nanoGPT's config files) holding the model's
// architecture and the training hyperparameters. Presets live in configs/*.json; a preset names
// only what differs from DEFAULT_RUN_CONFIG, and `key=value` overrides are checked against the
// default's type. An unknown key is an error that lists the valid ones.

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { GPTConfig } from '../model/config.ts';
import { validateConfig } from '../model/config.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { parseTokenizerSpec } from '../tokenizer/index.ts';
import { WeftError, check } from '../util/errors.ts';
import { validateAdamW } from './adamw.ts';
import { parseObjective } from './objectives.ts';
import { validateSchedule } from './schedule.ts';

export interface RunConfig extends GPTConfig {
  /** Preset name (the config file's base name unless set). */
  name: string;
  /** What the run trains for: 'lm', 'sft', 'reward' or 'dpo' (objectives.ts, docs/alignment.md). */
  objective: string;
  /** DPO's beta: how far the policy may move from the reference (TRL's default 0.1). */
  beta: number;
  /** Sequences per optimizer step (B). */
  batchSize: number;
  /** Tokens per sequence (T); 0 means blockSize. */
  seqLen: number;
  /** Optimizer steps of the run. */
  steps: number;
  seed: number;
  /** Peak learning rate, cosine-decayed to minLr after warmupSteps. */
  lr: number;
  minLr: number;
  warmupSteps: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Global gradient-norm clip; 0 disables clipping. */
  gradClip: number;
  /** Virtual shards per step (the unit of data-parallel work); 0 means batchSize (one sequence each). */
  shards: number;
  /** Pipeline stages P: the blocks split over P workers per replica (1: every worker holds the model). */
  pipelineStages: number;
  /** The pipeline's schedule: '1f1b' (Megatron-LM) or 'gpipe'. */
  pipelineSchedule: string;
  /** Tokenizer for raw-text --data: 'bpe:N', 'gpt2' or 'byte'. */
  tokenizer: string;
  /** Fraction of raw-text --data held out for validation. */
  valFraction: number;
  /** Evaluate on the validation split every this many steps (0: only at the end). */
  evalEvery: number;
  /** Validation windows per evaluation (0: the whole split). */
  evalWindows: number;
  /** Print a progress line every this many steps when output is not a terminal. */
  logEvery: number;
  /** Save a checkpoint every this many steps (0: only at the end and on a stop). */
  ckptEvery: number;
  /** Checkpoints kept on disk (0: all). */
  keepLast: number;
  /** Tokens sampled from the final model (0: none), continuing samplePrompt. */
  sampleTokens: number;
  samplePrompt: string;
  temperature: number;
  topK: number;
}

export const DEFAULT_RUN_CONFIG: RunConfig = {
  name: 'default',
  nLayer: 4,
  nHead: 4,
  nEmbd: 128,
  blockSize: 128,
  vocabSize: 0, // 0: the tokenizer's vocabulary size
  batchSize: 8,
  seqLen: 0,
  steps: 100,
  seed: 1337,
  lr: 1e-3,
  minLr: 1e-4,
  warmupSteps: 10,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  gradClip: 1.0,
  shards: 0,
  pipelineStages: 1,
  pipelineSchedule: '1f1b',
  tokenizer: 'bpe:1024',
  valFraction: 0.1,
  evalEvery: 100,
  evalWindows: 32,
  logEvery: 10,
  ckptEvery: 0,
  keepLast: 3,
  sampleTokens: 0,
  samplePrompt: '\n',
  temperature: 0.8,
  topK: 40,
  objective: 'lm',
  beta: 0.1,
};

export type ConfigKey = keyof RunConfig;
const KEYS = Object.keys(DEFAULT_RUN_CONFIG) as ConfigKey[];

function unknownKey(key: string, where: string): WeftError {
  return new WeftError(
    'WEFT_E_CONFIG',
    `unknown config key "${key}" in ${where}; valid keys: ${KEYS.join(', ')}`,
  );
}

/** Checks one value against the default's type; returns it typed. */
function typedValue(key: ConfigKey, value: unknown, where: string): RunConfig[ConfigKey] {
  const expected = typeof DEFAULT_RUN_CONFIG[key];
  check(
    typeof value === expected && (expected !== 'number' || Number.isFinite(value)),
    'WEFT_E_CONFIG',
    `config key "${key}" in ${where} must be a ${expected}, got ${JSON.stringify(value)}`,
  );
  return value as RunConfig[ConfigKey];
}

/** Applies `values` (parsed JSON) over `base`, rejecting unknown keys and mistyped values. */
export function mergeConfig(
  base: RunConfig,
  values: Record<string, unknown>,
  where: string,
): RunConfig {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(values)) {
    if (!KEYS.includes(key as ConfigKey)) throw unknownKey(key, where);
    out[key] = typedValue(key as ConfigKey, value, where);
  }
  return out as unknown as RunConfig;
}

/** Parses `key=value` overrides; values are read as the default's type (number or string). */
export function parseOverrides(pairs: string[]): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    check(eq > 0, 'WEFT_E_CONFIG', `override "${pair}" is not key=value`);
    const key = pair.slice(0, eq);
    const text = pair.slice(eq + 1);
    if (!KEYS.includes(key as ConfigKey)) throw unknownKey(key, '--set');
    if (typeof DEFAULT_RUN_CONFIG[key as ConfigKey] === 'number') {
      const value = text.trim() === '' ? NaN : Number(text);
      check(
        Number.isFinite(value),
        'WEFT_E_CONFIG',
        `--set ${key}=${text}: "${text}" is not a number`,
      );
      values[key] = value;
    } else {
      values[key] = text;
    }
  }
  return values;
}

/**
 * Reads a preset file (JSON object), merged over the defaults and then `overrides`, checked
 * unless `validate` is false (a run started from a model: its architecture replaces the
 * preset's first, then the whole is checked; train/init-from.ts).
 */
export function loadRunConfig(
  path: string,
  overrides: Record<string, unknown> = {},
  validate = true,
): RunConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new WeftError(
      'WEFT_E_CONFIG',
      `config file ${path} cannot be read; pass an existing JSON file (see configs/)`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new WeftError(
      'WEFT_E_CONFIG',
      `config file ${path} is not valid JSON (${(err as Error).message})`,
    );
  }
  check(
    typeof json === 'object' && json !== null && !Array.isArray(json),
    'WEFT_E_CONFIG',
    `config file ${path} must hold a JSON object`,
  );
  const named = { ...DEFAULT_RUN_CONFIG, name: basename(path).replace(/\.json$/, '') };
  const fromFile = mergeConfig(named, json as Record<string, unknown>, path);
  const config = mergeConfig(fromFile, overrides, '--set');
  return validate ? validateRunConfig(config) : config;
}

/** Sequence length in effect (seqLen, or blockSize when seqLen is 0). */
export function sequenceLength(config: RunConfig): number {
  return config.seqLen === 0 ? config.blockSize : config.seqLen;
}

export function validateRunConfig(config: RunConfig): RunConfig {
  // vocabSize 0 means "the tokenizer's", resolved once the data is known
  validateConfig({ ...config, vocabSize: config.vocabSize === 0 ? 1 : config.vocabSize });
  for (const key of ['batchSize', 'steps', 'logEvery'] as const) {
    const value = config[key];
    check(
      Number.isSafeInteger(value) && value > 0,
      'WEFT_E_CONFIG',
      `config ${key}=${value} must be a positive integer`,
    );
  }
  for (const key of [
    'evalEvery',
    'evalWindows',
    'sampleTokens',
    'topK',
    'warmupSteps',
    'shards',
    'ckptEvery',
    'keepLast',
  ] as const) {
    const value = config[key];
    check(
      Number.isSafeInteger(value) && value >= 0,
      'WEFT_E_CONFIG',
      `config ${key}=${value} must be a non-negative integer`,
    );
  }
  check(
    Number.isSafeInteger(config.seqLen) && config.seqLen >= 0 && config.seqLen <= config.blockSize,
    'WEFT_E_CONFIG',
    `config seqLen=${config.seqLen} must be an integer from 0 (= blockSize) to blockSize=${config.blockSize}`,
  );
  check(
    Number.isSafeInteger(config.pipelineStages) &&
      config.pipelineStages >= 1 &&
      config.pipelineStages <= config.nLayer,
    'WEFT_E_CONFIG',
    `config pipelineStages=${config.pipelineStages} must be an integer from 1 to nLayer=${config.nLayer}`,
  );
  check(
    config.pipelineSchedule === '1f1b' || config.pipelineSchedule === 'gpipe',
    'WEFT_E_CONFIG',
    `config pipelineSchedule="${config.pipelineSchedule}" must be "1f1b" or "gpipe"`,
  );
  check(
    config.shards === 0 || config.batchSize % config.shards === 0,
    'WEFT_E_CONFIG',
    `config batchSize=${config.batchSize} must divide evenly into shards=${config.shards}`,
  );
  check(
    Number.isSafeInteger(config.seed),
    'WEFT_E_CONFIG',
    `config seed=${config.seed} must be an integer`,
  );
  check(
    config.gradClip >= 0,
    'WEFT_E_CONFIG',
    `config gradClip=${config.gradClip} must be non-negative`,
  );
  check(
    config.temperature >= 0,
    'WEFT_E_CONFIG',
    `config temperature=${config.temperature} must be >= 0`,
  );
  validateAdamW(config);
  parseTokenizerSpec(config.tokenizer);
  parseObjective(config.objective);
  check(config.beta > 0, 'WEFT_E_CONFIG', `config beta=${config.beta} must be positive`);
  validateSchedule({
    lr: config.lr,
    minLr: config.minLr,
    warmupSteps: config.warmupSteps,
    decaySteps: config.warmupSteps,
  });
  return config;
}

/**
 * How many token ids a run's data can hold: text (the lm objective) holds the ordinary tokens and
 * <|endoftext|> (GPT-2's 50257), post-training data the chat template's tokens too (after them).
 */
export function idsNeeded(objective: string, tokenizer: Tokenizer): number {
  return objective === 'lm' ? tokenizer.specials.endOfText + 1 : tokenizer.vocabSize;
}

/**
 * The config with everything left to the data resolved: vocabSize from the tokenizer (when 0),
 * seqLen (0 means blockSize) and shards (0 means batchSize).
 */
export function resolveForData(config: RunConfig, tokenizer: Tokenizer): RunConfig {
  const vocab = tokenizer.vocabSize;
  const vocabSize = config.vocabSize === 0 ? vocab : config.vocabSize;
  const needed = idsNeeded(config.objective, tokenizer);
  check(
    vocabSize >= needed,
    'WEFT_E_CONFIG',
    needed === vocab && vocabSize >= tokenizer.specials.endOfText + 1
      ? `config vocabSize=${vocabSize} has no rows for the chat template's tokens (ids ${vocabSize}-${vocab - 1} of ${tokenizer.name}), which ${config.objective} data holds; set vocabSize=0 to use the tokenizer's ${vocab}`
      : `config vocabSize=${vocabSize} is smaller than the tokenizer's ${needed} ids (${tokenizer.name}); set vocabSize=0 to use the tokenizer's`,
  );
  return {
    ...config,
    vocabSize,
    seqLen: sequenceLength(config),
    shards: config.shards || config.batchSize,
  };
}
