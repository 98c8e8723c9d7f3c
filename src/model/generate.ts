// Autoregressive sampling from a GPT2: temperature, top-k, top-p, a seeded generator, stop ids.
// By default it decodes incrementally with a KV cache (decode.ts); `cache: false` recomputes the
// whole context (the newest blockSize tokens) for every token, as a check and a benchmark baseline.

import { Rng } from '../util/rng.ts';
import { check } from '../util/errors.ts';
import { KVDecoder } from './decode.ts';
import type { GPT2 } from './gpt2.ts';

export interface SamplingOptions {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Keep only the k most likely tokens; 0 keeps all. */
  topK: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all. */
  topP?: number;
  seed: number;
}

export interface SampleOptions extends SamplingOptions {
  maxTokens: number;
  /** Generation stops after producing any of these ids (included in the output). */
  stopIds?: number[];
  /** Called with each new id as it is produced; returning false stops generation. */
  onToken?: (id: number) => boolean | void;
  /** Decode with a KV cache (default true). */
  cache?: boolean;
}

export function checkSampling(options: SamplingOptions): void {
  const { temperature, topK, topP = 1 } = options;
  check(temperature >= 0, 'WEFT_E_CONFIG', `temperature=${temperature} must be >= 0`);
  check(
    Number.isInteger(topK) && topK >= 0,
    'WEFT_E_CONFIG',
    `topK=${topK} must be an integer >= 0`,
  );
  check(topP > 0 && topP <= 1, 'WEFT_E_CONFIG', `topP=${topP} must be in (0, 1]`);
}

/** Picks the next id from one row of logits (length V). */
export function sampleLogits(
  logits: Float32Array,
  temperature: number,
  topK: number,
  rng: Rng,
  topP = 1,
): number {
  const V = logits.length;
  if (temperature === 0) {
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
    return best;
  }
  let cutoff = -Infinity;
  if (topK > 0 && topK < V) cutoff = Float32Array.from(logits).sort()[V - topK];
  let max = -Infinity;
  for (let v = 0; v < V; v++) if (logits[v] > max) max = logits[v];
  const weights = new Float64Array(V);
  let sum = 0;
  for (let v = 0; v < V; v++) {
    if (logits[v] < cutoff) continue;
    weights[v] = Math.exp((logits[v] - max) / temperature);
    sum += weights[v];
  }
  if (topP < 1) sum = keepNucleus(weights, sum, topP);
  let u = rng.uniform() * sum;
  for (let v = 0; v < V; v++) {
    u -= weights[v];
    if (u < 0 && weights[v] > 0) return v;
  }
  for (let v = V - 1; v >= 0; v--) if (weights[v] > 0) return v;
  return 0;
}

/**
 * Zeroes every weight outside the nucleus: the most likely ids (ties by lower id) whose total
 * reaches topP of `sum`. Returns the total kept.
 */
function keepNucleus(weights: Float64Array, sum: number, topP: number): number {
  const order = [];
  for (let v = 0; v < weights.length; v++) if (weights[v] > 0) order.push(v);
  order.sort((a, b) => weights[b] - weights[a] || a - b);
  let kept = 0;
  let n = 0;
  while (n < order.length && kept < topP * sum) kept += weights[order[n++]];
  for (let i = n; i < order.length; i++) weights[order[i]] = 0;
  return kept;
}

/** Continues `prompt` (ids, at least one) by up to maxTokens ids; returns the new ids. */
export function generate(model: GPT2, prompt: number[], options: SampleOptions): number[] {
  check(prompt.length > 0, 'WEFT_E_SHAPE', 'generation needs a prompt of at least one token');
  checkSampling(options);
  const next = nextLogits(model, prompt, options.cache ?? true);
  const rng = new Rng(options.seed, 2);
  const out: number[] = [];
  const stop = new Set(options.stopIds ?? []);
  try {
    let logits = next.first();
    for (let i = 0; i < options.maxTokens; i++) {
      const id = sampleLogits(logits, options.temperature, options.topK, rng, options.topP);
      out.push(id);
      if (options.onToken?.(id) === false || stop.has(id) || i + 1 === options.maxTokens) break;
      logits = next.after(id);
    }
  } finally {
    next.dispose();
  }
  return out;
}

/** The logits after the prompt, then after each appended id: cached, or recomputed each time. */
export function nextLogits(model: GPT2, prompt: number[], cache: boolean) {
  if (cache) {
    const decoder = new KVDecoder(model);
    return {
      first: () => decoder.prefill(prompt),
      after: (id: number) => decoder.step(id),
      dispose: () => decoder.dispose(),
    };
  }
  const { blockSize } = model.config;
  const context = [...prompt];
  const run = () => {
    const window = context.slice(-blockSize);
    return model.forward(Int32Array.from(window), 1, window.length, undefined, { lastOnly: true })
      .logits;
  };
  return {
    first: run,
    after: (id: number) => {
      context.push(id);
      return run();
    },
    dispose: () => {},
  };
}
