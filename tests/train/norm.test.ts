// The gradient norm's blocks: they tile the parameter buffer exactly, none crosses a Hugging Face
// tensor (so a pipeline stage, which owns whole layers, owns whole blocks), none is larger than
// NORM_BLOCK; and summing per block in block order gives the same bits however the blocks are
// divided between holders.

import { describe, expect, it } from 'vitest';
import type { GPTConfig } from '../../src/model/config.ts';
import { namedTensors, paramLayout } from '../../src/model/layout.ts';
import { NORM_BLOCK, blockSumOfSquares, normBlocks, sumOfSquares } from '../../src/train/norm.ts';
import { Rng } from '../../src/util/rng.ts';

const config: GPTConfig = { nLayer: 3, nHead: 2, nEmbd: 16, blockSize: 8, vocabSize: 70_000 };

describe('norm blocks', () => {
  const blocks = normBlocks(config);
  it('tile the buffer in order, each inside one tensor and at most NORM_BLOCK long', () => {
    const tensors = namedTensors(config);
    let at = 0;
    for (const b of blocks) {
      expect(b.begin).toBe(at);
      expect(b.end - b.begin).toBeLessThanOrEqual(NORM_BLOCK);
      const t = tensors.find((x) => x.offset <= b.begin && b.begin < x.offset + x.size);
      expect(b.end).toBeLessThanOrEqual((t?.offset ?? 0) + (t?.size ?? 0));
      at = b.end;
    }
    expect(at).toBe(paramLayout(config).total);
    expect(blocks.length).toBeGreaterThan(tensors.length); // wte (1.1M elements) is cut
  });

  it('give the same bits when holders of layers sum their own blocks and combine in order', () => {
    const rng = new Rng(1);
    const g = Float32Array.from({ length: paramLayout(config).total }, () => rng.normal() * 1e-3);
    const whole = sumOfSquares(g, blocks);
    // two "stages" holding alternate blocks: each sums its own, then the sums meet in block order
    const sums = blocks.map((b, i) => ({ i, sum: blockSumOfSquares(g, b) }));
    const stageA = sums.filter((s) => s.i % 2 === 0);
    const stageB = sums.filter((s) => s.i % 2 === 1);
    const combined = [...stageA, ...stageB]
      .sort((a, b) => a.i - b.i)
      .reduce((total, s) => total + s.sum, 0);
    expect(combined).toBe(whole);
  });
});
