// The start-up self-check a backend passes before it is chosen by default (select.ts, once per
// process): it can be made here (a wasm-fma module compiles and the CPU fuses; OpenBLAS loads), and
// a small product on both of the products' paths (gemm, and gemv for a single row) agrees with the
// reference kernels within float tolerance. A few milliseconds.

import type { Backend } from './backend.ts';
import { referenceBackend } from './backend.ts';

/** Deterministic values in [-0.5, 0.5). */
function values(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

/** '' when the backend `create` makes passes; else why not, in a few words. */
export function selfCheck(create: () => Backend): string {
  let backend: Backend;
  try {
    backend = create();
  } catch (e) {
    return (e as Error).message;
  }
  try {
    const [C, OC] = [37, 21]; // ragged: every edge of the packing
    const w = values(C * OC, 1);
    const bias = values(OC, 2);
    for (const N of [6, 1]) {
      const inp = values(N * C, 3 + N);
      const got = new Float32Array(N * OC);
      const want = new Float32Array(N * OC);
      backend.matmulForward(got, inp, w, bias, N, C, OC);
      referenceBackend.matmulForward(want, inp, w, bias, N, C, OC);
      for (let i = 0; i < want.length; i++) {
        if (!(Math.abs(got[i] - want[i]) <= 1e-5 * (1 + Math.abs(want[i]))))
          return `its product of ${N} row(s) is off by ${got[i] - want[i]}`;
      }
    }
    return '';
  } finally {
    void backend.dispose?.();
  }
}
