// Argument checks every backend runs before its kernels touch memory: array lengths against the
// shape, and token ids and targets against the vocabulary (a bad id must never read out of
// bounds or turn into NaN).

import { check } from '../util/errors.ts';

/** Throws WEFT_E_SHAPE unless `array` holds at least `size` elements. */
export function need(array: ArrayLike<number>, size: number, name: string): void {
  check(
    array.length >= size,
    'WEFT_E_SHAPE',
    `${name} has ${array.length} elements but the shape needs ${size}`,
  );
}

/** Throws WEFT_E_TOKEN naming the first id of idx[0..n) outside [0, V). */
export function checkTokenIds(idx: Int32Array, n: number, V: number): void {
  for (let i = 0; i < n; i++) {
    const token = idx[i];
    check(
      Number.isInteger(token) && token >= 0 && token < V,
      'WEFT_E_TOKEN',
      `token id ${token} at position ${i} is outside the vocabulary [0, ${V})`,
    );
  }
}

/** Checks targets[0..N) (ids in [0, V), or -1 for ignored) and returns how many are counted. */
export function countTargets(targets: Int32Array, N: number, V: number): number {
  let counted = 0;
  for (let n = 0; n < N; n++) {
    const target = targets[n];
    check(
      target === -1 || (Number.isInteger(target) && target >= 0 && target < V),
      'WEFT_E_TOKEN',
      `target ${target} at position ${n} is outside the vocabulary [0, ${V}) and is not -1 (ignored)`,
    );
    if (target !== -1) counted++;
  }
  return counted;
}
