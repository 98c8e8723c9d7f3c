// The order in which the backward pass finishes the parameters' gradients, for reducing them
// while it runs (as DDP's buckets do, last layers first). The flat buffer stacks each kind over
// all layers (layout.ts), so one layer's gradient is 12 separate ranges of it; this lists the
// ranges in the order they become final, and gives each a position in that order:
//   score, ln_f (weight, bias)           final after the head and the final LayerNorm (score:
//                                        a reward model's head, empty otherwise)
//   h.{L-1}.* ... h.0.* (12 tensors each) final after that layer's backward
//   wpe, wte                              final after the embeddings (wte also gets the tied
//                                         head's gradient, at the very start)
// A reduction walks positions 0..total in this order and copies each range where it belongs.
// A pipeline stage's order is the same over its own blocks and ends.

import type { GPTConfig } from './config.ts';
import type { ParamKey } from './layout.ts';
import { PARAM_KEYS, isLayerParam } from './layout.ts';
import type { StageSpan } from './stage.ts';
import { stageLayout, wholeModel } from './stage.ts';

/** One tensor's gradient: `size` elements at `offset` of the flat buffer, at `position` in the order. */
export interface OrderedRange {
  offset: number;
  position: number;
  size: number;
}

export interface BackwardOrder {
  ranges: OrderedRange[];
  /** Position up to which the gradient is final after each backward stage: head, layers L-1..0, embeddings. */
  stageEnds: number[];
  total: number;
}

/**
 * The order for a model holding `span` (default the whole model), in the offsets of its own flat
 * buffer. A stage with the head but not the embeddings has wte's whole gradient (the head's part)
 * after the head; with both, wte is final only at the end.
 */
export function backwardOrder(
  config: GPTConfig,
  span: StageSpan = wholeModel(config),
): BackwardOrder {
  const layout = stageLayout(config, span);
  const L = span.endLayer - span.firstLayer;
  const whole = (key: ParamKey) => (layout.byKey[key].size > 0 ? [layout.byKey[key]] : []);
  const row = (key: ParamKey, l: number) => {
    const slot = layout.byKey[key];
    return { offset: slot.offset + (l * slot.size) / L, size: slot.size / L };
  };
  const headPart = [
    ...whole('score'),
    ...whole('lnfw'),
    ...whole('lnfb'),
    ...(span.embeddings ? [] : whole('wte')),
  ];
  const stages = [
    headPart,
    ...Array.from({ length: L }, (_, i) =>
      PARAM_KEYS.filter(isLayerParam).map((key) => row(key, L - 1 - i)),
    ),
    span.embeddings ? [...whole('wpe'), ...whole('wte')] : [],
  ];
  const ranges: OrderedRange[] = [];
  const stageEnds: number[] = [];
  let position = 0;
  for (const stage of stages) {
    for (const t of stage) {
      ranges.push({ offset: t.offset, position, size: t.size });
      position += t.size;
    }
    stageEnds.push(position);
  }
  return { ranges, stageEnds, total: position };
}

/**
 * Calls `each(offset, position, count)` for the parts of the ranges that cover positions
 * [begin, end), in order: `count` elements at `offset` of the flat buffer, at `position`.
 */
export function forEachPart(
  order: BackwardOrder,
  begin: number,
  end: number,
  each: (offset: number, position: number, count: number) => void,
): void {
  for (const r of order.ranges) {
    const from = Math.max(begin, r.position);
    const to = Math.min(end, r.position + r.size);
    if (from < to) each(r.offset + (from - r.position), from, to - from);
  }
}
