// A saved model directory: model.safetensors (weights under Hugging Face GPT-2 names),
// config.json (the run's resolved config; its model keys fix the architecture) and
// tokenizer.json. Each file is written atomically; reading checks every file and names the
// missing or damaged one. (Full checkpoints with optimizer state build on this.)

import { join } from 'node:path';
import type { GPTConfig } from '../model/config.ts';
import { MODEL_KEYS, validateConfig } from '../model/config.ts';
import { GPT2 } from '../model/gpt2.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { tokenizerFromJSON } from '../tokenizer/index.ts';
import { check } from '../util/errors.ts';
import { readBytes, readJson, writeFileAtomic } from '../util/files.ts';
import { readSafetensors, writeSafetensors } from './safetensors.ts';
import { loadWeights, weightTensors } from './weights.ts';

export const MODEL_FILE = 'model.safetensors';
export const CONFIG_FILE = 'config.json';
export const TOKENIZER_FILE = 'tokenizer.json';

export interface SavedModel {
  model: GPT2;
  /** The whole saved config.json (model keys plus whatever the run recorded). */
  config: GPTConfig & Record<string, unknown>;
  tokenizer: Tokenizer;
}

/** Writes config.json, tokenizer.json and model.safetensors into `dir` (which must exist). */
export function saveModel(dir: string, model: GPT2, config: GPTConfig, tokenizer: Tokenizer): void {
  writeFileAtomic(join(dir, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  writeFileAtomic(join(dir, TOKENIZER_FILE), `${JSON.stringify(tokenizer.toJSON())}\n`);
  const tensors = weightTensors(model.params, model.config);
  writeFileAtomic(join(dir, MODEL_FILE), writeSafetensors(tensors, { format: 'pt' }));
}

/** Loads the model saved in `dir`. */
export function loadModel(dir: string): SavedModel {
  const configPath = join(dir, CONFIG_FILE);
  const config = readJson(configPath, 'model config') as GPTConfig & Record<string, unknown>;
  check(
    typeof config === 'object' && config !== null && MODEL_KEYS.every((k) => k in config),
    'WEFT_E_FORMAT',
    `${configPath} lacks the model keys ${MODEL_KEYS.join(', ')}`,
  );
  validateConfig(config);
  const tokenizerPath = join(dir, TOKENIZER_FILE);
  const tokenizer = tokenizerFromJSON(readJson(tokenizerPath, 'tokenizer'), tokenizerPath);
  const weightsPath = join(dir, MODEL_FILE);
  const st = readSafetensors(readBytes(weightsPath, 'model weights'), weightsPath);
  const model = new GPT2(config);
  loadWeights(model.params, model.config, st, '', weightsPath);
  return { model, config, tokenizer };
}
