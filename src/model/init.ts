// GPT-2 initialisation from a seeded generator: weights ~ N(0, 0.02), the two residual
// projections per block (attn.c_proj, mlp.c_proj) ~ N(0, 0.02 / sqrt(2 L)), LayerNorm weights 1,
// every bias 0. Tensors are filled in size-table order, so one seed gives the same bytes anywhere.

import { Rng } from '../util/rng.ts';
import type { GPTConfig } from './config.ts';
import type { ParamKey } from './layout.ts';
import { paramLayout } from './layout.ts';

export const INIT_STD = 0.02;

/** How each parameter kind starts: a normal's standard deviation, or a constant. */
export function initRule(key: ParamKey, config: GPTConfig): { std: number } | { value: number } {
  switch (key) {
    case 'wte':
    case 'wpe':
    case 'qkvw':
    case 'fcw':
    case 'score':
      return { std: INIT_STD };
    case 'attprojw':
    case 'fcprojw':
      return { std: INIT_STD / Math.sqrt(2 * config.nLayer) };
    case 'ln1w':
    case 'ln2w':
    case 'lnfw':
      return { value: 1 };
    case 'ln1b':
    case 'ln2b':
    case 'lnfb':
    case 'qkvb':
    case 'attprojb':
    case 'fcb':
    case 'fcprojb':
      return { value: 0 };
    default:
      return key satisfies never;
  }
}

/**
 * Fills the flat parameter buffer `params` with GPT-2's initialisation drawn from `seed`. With
 * `ranges` (model/stage.ts), `params` is a pipeline stage's buffer: every value of the whole
 * model is drawn in order, and only the stage's are kept, so it holds exactly the whole model's
 * bytes for its parts without the whole model ever being in memory.
 */
export function initParams(
  params: Float32Array,
  config: GPTConfig,
  seed: number,
  ranges?: { full: number; stage: number; size: number }[],
): void {
  const rng = new Rng(seed);
  for (const slot of paramLayout(config).slots) {
    const rule = initRule(slot.key, config);
    // where this slot's values go: all of it, or the stage's parts of it
    const parts = ranges
      ? ranges.filter((r) => r.full < slot.offset + slot.size && slot.offset < r.full + r.size)
      : [{ full: slot.offset, stage: slot.offset, size: slot.size }];
    if ('value' in rule) {
      for (const r of parts) params.fill(rule.value, r.stage, r.stage + r.size);
      continue;
    }
    let i = slot.offset;
    for (const r of parts) {
      for (; i < r.full; i++) rng.normal(); // drawn for the whole model, not kept here
      for (let at = r.stage; i < r.full + r.size; i++, at++) params[at] = rng.normal() * rule.std;
    }
    for (; i < slot.offset + slot.size; i++) rng.normal();
  }
}
