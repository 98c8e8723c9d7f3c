// A pipeline stage's share of GPT-2: blocks [firstLayer, endLayer), with the token and position
// embeddings on the first stage, and the final LayerNorm and the head (tied to wte, so a copy of
// wte) on the last. Its flat parameter buffer has the full model's layout with only these parts:
// wte (embeddings or head), wpe (embeddings), each per-layer kind stacked over its own blocks,
// ln_f (head). The whole model is the stage with every part, and its layout is paramLayout's.

import type { GPTConfig } from './config.ts';
import type { Layout, ParamKey } from './layout.ts';
import { PARAM_KEYS, isLayerParam, makeLayout, paramLayout } from './layout.ts';

export interface StageSpan {
  /** Blocks [firstLayer, endLayer) of the model. */
  firstLayer: number;
  endLayer: number;
  /** Holds wte and wpe and embeds the tokens. */
  embeddings: boolean;
  /** Holds the final LayerNorm and the head (and wte for it), and computes the loss. */
  head: boolean;
}

/** The whole model as one stage. */
export function wholeModel(config: GPTConfig): StageSpan {
  return { firstLayer: 0, endLayer: config.nLayer, embeddings: true, head: true };
}

/** Whether `span` holds parameter kind `key`. */
export function holds(span: StageSpan, key: ParamKey): boolean {
  if (isLayerParam(key)) return span.endLayer > span.firstLayer;
  if (key === 'wte') return span.embeddings || span.head;
  if (key === 'wpe') return span.embeddings;
  return span.head; // lnfw, lnfb, score
}

/** The stage's parameter size table: the full layout's entries it holds, per-layer kinds over its blocks. */
export function stageLayout(config: GPTConfig, span: StageSpan): Layout<ParamKey> {
  const full = paramLayout(config);
  const layers = span.endLayer - span.firstLayer;
  return makeLayout<ParamKey>(
    PARAM_KEYS.map((key) => {
      const shape = full.byKey[key].shape;
      if (!holds(span, key)) return [key, [0]];
      return [key, isLayerParam(key) ? [layers, ...shape.slice(1)] : shape];
    }),
  );
}

/** One run of a stage's buffer inside the whole model's: `size` elements at `stage` and `full`. */
export interface StageRange {
  stage: number;
  full: number;
  size: number;
}

/** Where the stage's parameters sit in the whole model's flat buffer (wte of the head: the same wte). */
export function stageRanges(config: GPTConfig, span: StageSpan): StageRange[] {
  const full = paramLayout(config);
  const mine = stageLayout(config, span);
  return mine.slots
    .filter((s) => s.size > 0)
    .map((s) => {
      const rowSize = isLayerParam(s.key) ? full.byKey[s.key].size / config.nLayer : 0;
      return {
        stage: s.offset,
        full: full.byKey[s.key].offset + span.firstLayer * rowSize,
        size: s.size,
      };
    });
}

/** Copies the stage's parameters out of (`into` 'stage') or back into (`into` 'full') the whole model's buffer. */
export function copyStage(
  ranges: StageRange[],
  stageBuffer: Float32Array,
  fullBuffer: Float32Array,
  into: 'stage' | 'full',
): void {
  for (const r of ranges) {
    if (into === 'stage') stageBuffer.set(fullBuffer.subarray(r.full, r.full + r.size), r.stage);
    else fullBuffer.set(stageBuffer.subarray(r.stage, r.stage + r.size), r.full);
  }
}
