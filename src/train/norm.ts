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
 * The whole model's sum of squares from pipeline stages' gradients: every block of the whole
 * model taken from the first stage that holds it (wte from the first stage), added in block
 * order, so the bits are those of sumOfSquares over the whole model's gradient.
 */
export function stagedSumOfSquares(
  config: GPTConfig,
  stages: { span: StageSpan; grads: Float32Array }[],
): number {
  const located = stages.map((s) => ({ grads: s.grads, ranges: stageRanges(config, s.span) }));
  let total = 0;
  for (const block of normBlocks(config)) {
    const owner = located
      .map(({ grads, ranges }) => ({
        grads,
        r: ranges.find((r) => r.full <= block.begin && block.end <= r.full + r.size),
      }))
      .find((o) => o.r !== undefined);
    if (!owner?.r) throw new Error(`no stage holds parameters ${block.begin}..${block.end}`);
    const shift = owner.r.stage - owner.r.full;
    total += blockSumOfSquares(owner.grads, { begin: block.begin + shift, end: block.end + shift });
  }
  return total;
}
