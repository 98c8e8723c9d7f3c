// GPT-2 model configuration: the five numbers that fix the architecture, and their checks.

import { check } from '../util/errors.ts';

export interface GPTConfig {
  /** Transformer blocks (L). */
  nLayer: number;
  /** Attention heads per block (NH); nEmbd must divide evenly among them. */
  nHead: number;
  /** Channels of the residual stream (C). */
  nEmbd: number;
  /** Longest sequence the position embedding covers (maxT). */
  blockSize: number;
  /** Vocabulary size (V). */
  vocabSize: number;
  /**
   * What the model is trained for (train/objectives.ts); 'reward' gives it a score head
   * (score.weight [1, C]) besides the tied LM head. Absent: a language model.
   */
  objective?: string;
}

export const MODEL_KEYS = ['nLayer', 'nHead', 'nEmbd', 'blockSize', 'vocabSize'] as const;

/** GPT-2 small, as released by OpenAI (124M parameters). */
export const GPT2_124M: GPTConfig = {
  nLayer: 12,
  nHead: 12,
  nEmbd: 768,
  blockSize: 1024,
  vocabSize: 50257,
};

/** Throws WEFT_E_CONFIG naming the bad value unless `config` describes a buildable GPT-2. */
export function validateConfig(config: GPTConfig): GPTConfig {
  for (const key of MODEL_KEYS) {
    const value = config[key];
    check(
      Number.isSafeInteger(value) && value > 0,
      'WEFT_E_CONFIG',
      `model config ${key}=${String(value)} must be a positive integer`,
    );
  }
  check(
    config.nEmbd % config.nHead === 0,
    'WEFT_E_CONFIG',
    `model config nEmbd=${config.nEmbd} is not divisible by nHead=${config.nHead}; choose nEmbd as a multiple of nHead`,
  );
  return config;
}

/** Channels per attention head (hs = C / NH). */
export function headSize(config: GPTConfig): number {
  return config.nEmbd / config.nHead;
}

/** Rows of the score head: 1 for a reward model (one label, as Hugging Face's), else 0. */
export function scoreLabels(config: GPTConfig): number {
  return config.objective === 'reward' ? 1 : 0;
}
