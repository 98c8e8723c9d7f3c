// --init: a run that starts from a model's weights instead of the seed's (fine-tuning, reward
// models, DPO), with a fresh optimizer and schedule. The source is a run directory (its latest
// checkpoint), a checkpoint directory, or a Hugging Face GPT-2 directory; its architecture and
// tokenizer become the run's: a --set of an architecture key that differs is refused. Every
// tensor the new model shares with the source is copied; what the source lacks (a reward model's
// score.weight, from a language model) keeps the seed's initialisation.

import { existsSync, statSync } from 'node:fs';
import { isHfDir, readHf } from '../checkpoint/hf.ts';
import { loadCheckpoint } from '../checkpoint/read.ts';
import type { GPTConfig } from '../model/config.ts';
import { MODEL_KEYS } from '../model/config.ts';
import { initParams } from '../model/init.ts';
import { namedTensors, paramCount } from '../model/layout.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { tokenizerFromJSON } from '../tokenizer/index.ts';
import { WeftError } from '../util/errors.ts';
import type { RunConfig } from './config.ts';
import { idsNeeded } from './config.ts';

export interface InitModel {
  /** What --init named, as given. */
  source: string;
  config: GPTConfig;
  tokenizer: Tokenizer;
  /** The source's flat parameters (its own layout). */
  params: Float32Array;
}

/** Reads the model --init names; a path that holds none is refused in one line. */
export function readInitModel(path: string): InitModel {
  if (!existsSync(path) || !statSync(path).isDirectory())
    throw new WeftError(
      'WEFT_E_CONFIG',
      `--init ${path} is not a directory; pass a run directory, a checkpoint directory or a Hugging Face GPT-2 directory`,
    );
  if (isHfDir(path)) {
    const { config, params, tokenizerJson } = readHf(path);
    return { source: path, config, params, tokenizer: tokenizerFromJSON(tokenizerJson, path) };
  }
  let state;
  try {
    state = loadCheckpoint(path);
  } catch (err) {
    throw new WeftError(
      'WEFT_E_CONFIG',
      `--init ${path} is not a model (${(err as Error).message}); pass a run directory, a checkpoint directory or a Hugging Face GPT-2 directory`,
    );
  }
  return {
    source: path,
    config: state.config,
    params: state.params,
    tokenizer: tokenizerFromJSON(state.tokenizer, state.dir),
  };
}

/**
 * The run config with the init model's architecture. `overrides` are the user's --set values:
 * one that names an architecture key with another value is refused.
 */
export function initConfig(
  config: RunConfig,
  init: InitModel,
  overrides: Record<string, unknown>,
): RunConfig {
  const out: RunConfig = { ...config };
  // a language model without rows for the chat template's tokens (GPT-2's 50257) gains them for
  // post-training, as Hugging Face's resize_token_embeddings does; they start from the seed's init
  const model = {
    ...init.config,
    vocabSize: Math.max(init.config.vocabSize, idsNeeded(config.objective, init.tokenizer)),
  };
  for (const key of MODEL_KEYS) {
    const asked = overrides[key];
    if (asked !== undefined && asked !== model[key])
      throw new WeftError(
        'WEFT_E_CONFIG',
        `--set ${key}=${JSON.stringify(asked)} differs from the --init model's ${key}=${model[key]}${model[key] === init.config[key] ? '' : ` (its ${init.config[key]} rows and the chat tokens' the run adds)`}; a run started from a model keeps its architecture`,
      );
    out[key] = model[key];
  }
  return out;
}

/**
 * The new run's initial parameters: the seed's initialisation of `config`, then every tensor it
 * shares with the init model copied over.
 */
export function initParamsFrom(config: RunConfig, init: InitModel): Float32Array {
  const params = new Float32Array(paramCount(config));
  initParams(params, config, config.seed);
  const from = new Map(namedTensors(init.config).map((t) => [t.name, t]));
  for (const t of namedTensors(config)) {
    const src = from.get(t.name);
    // the same tensor, or wte (V, C) with rows added after the source's (initConfig)
    if (src && (src.size === t.size || (t.key === 'wte' && src.size < t.size)))
      params.set(init.params.subarray(src.offset, src.offset + src.size), t.offset);
  }
  return params;
}
