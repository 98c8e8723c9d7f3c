// A fixture's batch as shards of one row each (B rows of T tokens), the unit the training step
// takes: with B shards, 1 or 2 workers split the same batch differently and must agree exactly.

import type { Batch } from '../../src/data/loader.ts';

export function fixtureRows(idx: Int32Array, targets: Int32Array, B: number, T: number): Batch[] {
  return Array.from({ length: B }, (_, b) => ({
    idx: idx.subarray(b * T, (b + 1) * T),
    targets: targets.subarray(b * T, (b + 1) * T),
    B: 1,
    T,
  }));
}
