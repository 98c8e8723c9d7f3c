// The wasm backend's helper-thread pool: a helper runs each call exactly once. Atomics.wait can
// return without a new call (a wake-up with the generation unchanged); a helper that took that
// for a call ran the last call's slice again, adding it twice into an accumulating output and
// answering the next call before doing it. That made 2-worker training differ from 1-worker
// training about once in a hundred runs. Also: a trap on a helper, and calls with fewer slices
// than helpers.

import { afterAll, describe, expect, it } from 'vitest';
import { WasmBackend, wasmAvailable } from '../../src/kernels/wasm/backend.ts';
import type { Pool } from '../../src/kernels/wasm/pool.ts';
import { Rng } from '../../src/util/rng.ts';

/** Which of the arrays hold the same bytes in both lists. */
const same = (a: Float32Array[], b: Float32Array[]) =>
  a.map((x, i) => Buffer.from(x.slice().buffer).equals(Buffer.from(b[i].slice().buffer)));
const ALL_SAME = [true, true, true, true];
const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** A linear layer's backward pass on `k` (dW and db accumulate), from seeded inputs. */
function layer(k: WasmBackend, N: number, C: number, OC: number) {
  const rng = new Rng(11);
  const [inp, w, dout] = [N * C, C * OC, N * OC].map((n) => {
    const a = k.allocF32(n);
    for (let i = 0; i < n; i++) a[i] = rng.uniform() - 0.5;
    return a;
  });
  const outs = [k.allocF32(N * C), k.allocF32(C * OC), k.allocF32(OC), k.allocF32(N * OC)];
  const [din, dw, db, out] = outs;
  return {
    outs,
    backward: () => k.matmulBackward(din, dw, db, dout, inp, w, N, C, OC),
    forwardAndBackward(steps: number) {
      for (let i = 0; i < steps; i++) {
        k.matmulForward(out, inp, w, null, N, C, OC);
        k.matmulBackward(din, dw, db, dout, inp, w, N, C, OC);
        inp[i % inp.length] += out[i % out.length] * 1e-3; // each call's inputs depend on the last
      }
    },
  };
}

describe.runIf(wasmAvailable())('wasm pool', () => {
  const backends: WasmBackend[] = [];
  const backend = (threads: number) => {
    const k = new WasmBackend({ threads });
    backends.push(k);
    return k;
  };
  afterAll(async () => {
    for (const k of backends) await k.dispose();
  });

  it('does not run a call again when a helper wakes without a new one', () => {
    const one = layer(backend(1), 64, 256, 256);
    const k = backend(2);
    const two = layer(k, 64, 256, 256);
    one.backward();
    two.backward();
    expect(same(two.outs, one.outs)).toEqual(ALL_SAME);
    // wake the helper as Atomics.wait may, with no new call (the control block's generation word)
    const control = (k as unknown as { pool: { control: Int32Array } }).pool.control;
    sleep(20); // past the helper's polling: it sleeps in Atomics.wait
    Atomics.notify(control, 0);
    sleep(100);
    expect(same(two.outs, one.outs), 'after a wake-up without a call').toEqual(ALL_SAME);
    one.backward();
    two.backward();
    expect(same(two.outs, one.outs), 'the next call').toEqual(ALL_SAME);
  });

  it('names a kernel that failed on a helper thread, and keeps working', () => {
    const k = backend(2);
    const two = layer(k, 64, 256, 256);
    const pool = (k as unknown as { pool: Pool }).pool;
    // a product whose output lies past the end of the memory: the helper's slice traps
    const args = [2 ** 32 - 64, 8, 0, 8, 1, 0, 8, 0, 0, 0, 0, 8, 8, 0, 0];
    const scratch = k.allocF32(1024).byteOffset;
    expect(() => {
      pool.dispatch('gemm', args, 9, 14, [[0, 4]], [scratch]);
      pool.join();
    }).toThrow(/the wasm kernel gemm failed on a helper thread/);
    const one = layer(backend(1), 64, 256, 256);
    one.backward();
    two.backward();
    expect(same(two.outs, one.outs)).toEqual(ALL_SAME);
  });

  it('gives the one-thread bits when helpers sit out (fewer slices than helpers)', () => {
    // 8 rows in grains of 4: two slices, so two of the three helpers get none
    const one = layer(backend(1), 8, 256, 256);
    const four = layer(backend(4), 8, 256, 256);
    one.forwardAndBackward(300);
    four.forwardAndBackward(300);
    expect(same(four.outs, one.outs)).toEqual(ALL_SAME);
  });
});
