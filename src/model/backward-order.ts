// The order in which the backward pass finishes the parameters' gradients, for reducing them
// while it runs (as DDP's buckets do, last layers first). The flat buffer stacks each kind over
// all layers (layout.ts), so one layer's gradient is 12 separate ranges of it; this lists the
// ranges in the order they become final, and gives each a position in that order:
//   ln_f (weight, bias)                  final after the head and the final LayerNorm
//   h.{L-1}.* ... h.0.* (12 tensors each) final after that layer's backward
//   wpe, wte                              final after the embeddings (wte also gets the tied
//                                         head's gradient, at the very start)
// A reduction walks positions 0..total in this order and copies each range where it belongs.

import type { GPTConfig } from './config.ts';
import { namedTensors } from './layout.ts';

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

export function backwardOrder(config: GPTConfig): BackwardOrder {
  const tensors = namedTensors(config);
  const byLayer = (layer: number | null) => tensors.filter((t) => t.layer === layer);
  const stages = [
    byLayer(null).filter((t) => t.key === 'lnfw' || t.key === 'lnfb'),
    ...Array.from({ length: config.nLayer }, (_, i) => byLayer(config.nLayer - 1 - i)),
    byLayer(null).filter((t) => t.key === 'wpe' || t.key === 'wte'),
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
