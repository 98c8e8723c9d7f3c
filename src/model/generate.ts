// Autoregressive sampling from a GPT2: temperature, top-k, a seeded generator, stop tokens.
// This first version recomputes the whole (cropped) context for every new token; KV-cache
// decoding replaces it later with the same interface.

import { Rng } from '../util/rng.ts';
import { check } from '../util/errors.ts';
import type { GPT2 } from './gpt2.ts';

export interface SampleOptions {
  maxTokens: number;
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Keep only the k most likely tokens; 0 keeps all. */
  topK: number;
  seed: number;
  /** Generation stops after producing any of these ids (included in the output). */
  stopIds?: number[];
  /** Called with each new id as it is produced. */
  onToken?: (id: number) => void;
}

/** Picks the next id from one row of logits (length V). */
export function sampleLogits(
  logits: Float32Array,
  temperature: number,
  topK: number,
  rng: Rng,
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
  let u = rng.uniform() * sum;
  for (let v = 0; v < V; v++) {
    u -= weights[v];
    if (u < 0 && weights[v] > 0) return v;
  }
  for (let v = V - 1; v >= 0; v--) if (weights[v] > 0) return v;
  return 0;
}

/** Continues `prompt` (ids, at least one) by up to maxTokens ids; returns the new ids. */
export function generate(model: GPT2, prompt: number[], options: SampleOptions): number[] {
  check(prompt.length > 0, 'WEFT_E_SHAPE', 'generation needs a prompt of at least one token');
  check(
    options.temperature >= 0,
    'WEFT_E_CONFIG',
    `temperature=${options.temperature} must be >= 0`,
  );
  const { blockSize, vocabSize: V } = model.config;
  const rng = new Rng(options.seed, 2);
  const context = [...prompt];
  const out: number[] = [];
  const stop = new Set(options.stopIds ?? []);
  for (let i = 0; i < options.maxTokens; i++) {
    const window = context.slice(-blockSize);
    const T = window.length;
    const { logits } = model.forward(Int32Array.from(window), 1, T);
    const id = sampleLogits(
      logits.subarray((T - 1) * V, T * V),
      options.temperature,
      options.topK,
      rng,
    );
    context.push(id);
    out.push(id);
    options.onToken?.(id);
    if (stop.has(id)) break;
  }
  return out;
}
