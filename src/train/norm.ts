// The global gradient norm, computed so that how the parameters are partitioned cannot change
// its bits: the sum of squares is taken per block in float64, and the blocks' sums are added in
// one fixed order. A block is a Hugging Face tensor (`h.3.attn.c_attn.weight`: one layer's part)
// or a piece of at most NORM_BLOCK elements of one, in the order of the flat buffer. A pipeline
// stage owns whole layers, so whole blocks: each worker can sum its blocks, and adding every
// block's sum in block order gives the same norm as one worker holding all of them. (Clipping
// uses the norm, so its bits decide the weights' bits: invariant 4.)

import type { GPTConfig } from '../model/config.ts';
import { namedTensors } from '../model/layout.ts';
import type { StageSpan } from '../model/stage.ts';
import { stageRanges } from '../model/stage.ts';

/** Largest block, in elements (a tensor larger than this is cut into blocks this size). */
export const NORM_BLOCK = 2 ** 20;

export interface Block {
  /** Range [begin, end) of the flat parameter buffer. */
  begin: number;
  end: number;
}

/** The norm's blocks for a model of `config`, in flat-buffer order. */
export function normBlocks(config: GPTConfig): Block[] {
  const blocks: Block[] = [];
  for (const t of namedTensors(config)) {
    for (let begin = t.offset; begin < t.offset + t.size; begin += NORM_BLOCK)
      blocks.push({ begin, end: Math.min(t.offset + t.size, begin + NORM_BLOCK) });
  }
  return blocks.sort((a, b) => a.begin - b.begin);
}

/** Sum of squares of one block, in float64, in element order. */
export function blockSumOfSquares(g: Float32Array, { begin, end }: Block): number {
  let sum = 0;
  for (let i = begin; i < end; i++) sum += g[i] * g[i];
  return sum;
}

/** Sum of squares of `g` over `blocks`: each block's sum, added in block order. */
export function sumOfSquares(g: Float32Array, blocks: Block[]): number {
  let total = 0;
  for (const block of blocks) total += blockSumOfSquares(g, block);
  return total;
}

/**
 * Scales `g` to norm `maxNorm` when its norm `norm` exceeds it, as torch.nn.utils.clip_grad_norm_
 * does: by maxNorm / (norm + 1e-6). maxNorm 0 disables clipping.
 */
export function clipToNorm(g: Float32Array, norm: number, maxNorm: number): void {
  if (!(maxNorm > 0 && norm > maxNorm)) return;
  const scale = maxNorm / (norm + 1e-6);
  for (let i = 0; i < g.length; i++) g[i] *= scale;
}

/**
 * The norm's blocks a pipeline stage owns, in its own buffer's offsets: every block of the whole
 * model the stage holds, wte's only on the stage with the embeddings (the first), so each block
 * has one owner. `index` is the block's place in the whole model's order.
 */
export function ownedBlocks(config: GPTConfig, span: StageSpan): { index: number; block: Block }[] {
  const ranges = stageRanges(config, span);
  const wte = namedTensors(config)[0]; // wte: the first tensor of the flat buffer
  const owned: { index: number; block: Block }[] = [];
  normBlocks(config).forEach((block, index) => {
    if (!span.embeddings && block.begin < wte.offset + wte.size) return;
    const r = ranges.find((r) => r.full <= block.begin && block.end <= r.full + r.size);
    if (!r) return;
    const shift = r.stage - r.full;
    owned.push({ index, block: { begin: block.begin + shift, end: block.end + shift } });
  });
  return owned;
}

/**
 * The whole model's sum of squares from pipeline stages' gradients: every block's sum taken from
 * its owner and added in the whole model's block order, so the bits are those of sumOfSquares
 * over the whole model's gradient.
 */
export function stagedSumOfSquares(
  config: GPTConfig,
  stages: { span: StageSpan; grads: Float32Array }[],
): number {
  const sums: number[] = [];
  for (const { span, grads } of stages)
    for (const { index, block } of ownedBlocks(config, span))
      sums[index] = blockSumOfSquares(grads, block);
  let total = 0;
  for (const sum of sums) total += sum;
  return total;
}
