// Epoch-by-epoch sampling without replacement. The run's sequences are numbered globally
// (g = step * batchSize + position in the step's batch); sequence g is item perm_e[g mod n] of
// epoch e = floor(g / n), where perm_e is a Fisher-Yates shuffle seeded by (seed, e). So what a
// sequence reads depends only on (seed, g), and no item repeats within an epoch.

import { check } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';

/** Stream ids below this are the run's other generators; epochs use STREAM_BASE + epoch. */
const STREAM_BASE = 0x10000;

export class EpochSampler {
  readonly itemCount: number;
  readonly seed: number;
  private cache = new Map<number, Uint32Array>();

  constructor(itemCount: number, seed: number) {
    check(itemCount > 0, 'WEFT_E_SHAPE', 'nothing to sample: the data holds no complete item');
    this.itemCount = itemCount;
    this.seed = seed;
  }

  /** Item index of global sequence number `g`. */
  item(g: number): number {
    const epoch = Math.floor(g / this.itemCount);
    return this.permutation(epoch)[g - epoch * this.itemCount];
  }

  /** Epoch that global sequence number `g` belongs to. */
  epochOf(g: number): number {
    return Math.floor(g / this.itemCount);
  }

  private permutation(epoch: number): Uint32Array {
    let perm = this.cache.get(epoch);
    if (perm) return perm;
    perm = Uint32Array.from({ length: this.itemCount }, (_, i) => i);
    const rng = new Rng(this.seed, STREAM_BASE + epoch);
    for (let i = perm.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    if (this.cache.size >= 2) this.cache.delete(this.cache.keys().next().value as number);
    this.cache.set(epoch, perm);
    return perm;
  }
}
