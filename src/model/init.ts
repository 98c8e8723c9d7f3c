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

/** Fills the flat parameter buffer `params` with GPT-2's initialisation drawn from `seed`. */
export function initParams(params: Float32Array, config: GPTConfig, seed: number): void {
  const rng = new Rng(seed);
  for (const slot of paramLayout(config).slots) {
    const view = params.subarray(slot.offset, slot.offset + slot.size);
    const rule = initRule(slot.key, config);
    if ('value' in rule) view.fill(rule.value);
    else for (let i = 0; i < view.length; i++) view[i] = rng.normal() * rule.std;
  }
}
