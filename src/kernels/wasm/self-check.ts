// Whether the wasm-fma backend works here, checked once per process before it is chosen by
// default: its module compiles (relaxed SIMD), the CPU fuses (the constructor's probe), and a
// small product on both of its paths (gemm, and gemv for a single row) agrees with the reference
// kernels within float tolerance. A few milliseconds.

import { referenceBackend } from '../backend.ts';
import { WasmBackend } from './backend.ts';

let verdict: { ok: boolean; why: string } | null = null;

/** Deterministic values in [-0.5, 0.5). */
function values(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

function check(): { ok: boolean; why: string } {
  let backend: WasmBackend;
  try {
    backend = new WasmBackend({ variant: 'fma', threads: 1 });
  } catch (e) {
    return { ok: false, why: (e as Error).message };
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
          return { ok: false, why: `its product of ${N} row(s) is off by ${got[i] - want[i]}` };
      }
    }
    return { ok: true, why: '' };
  } finally {
    void backend.dispose();
  }
}

/** { ok: true } when wasm-fma works here; else why not, in a few words. Cached. */
export function wasmFmaWorks(): { ok: boolean; why: string } {
  verdict ??= check();
  return verdict;
}
