// The blas backend's products (OpenBLAS sgemm on the wasm memory): every form of the wasm
// backend's Matmul contract against float64 sums, the same bits wherever the operands sit in
// memory, OpenBLAS's thread count pinned per backend, and how `weft info` reports it: present,
// Debian's reference BLAS refused, missing. Skipped, with the reason, where OpenBLAS is absent
// (the kernel suite and the fixtures run it through tests/helpers/backends.ts).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it } from 'vitest';
import { blasAvailable, createBlasBackend, whyNoBlas } from '../../src/kernels/blas/backend.ts';
import { openBlas } from '../../src/kernels/blas/openblas.ts';
import type { Matmul } from '../../src/kernels/wasm/backend.ts';
import { WasmBackend } from '../../src/kernels/wasm/backend.ts';
import { bitsIdentity } from '../../src/kernels/backend.ts';
import { Rng } from '../../src/util/rng.ts';
import { runCli } from '../helpers/cli.ts';

const available = blasAvailable();
if (!available) console.log(`blas tests skipped: ${whyNoBlas()}`);

const rng = new Rng(7, 0);
const random = (n: number) => Float32Array.from({ length: n }, () => rng.uniform() - 0.5);

describe.runIf(available)('blas products', () => {
  const backends: WasmBackend[] = [];
  const make = (threads: number) => {
    const b = createBlasBackend({ threads });
    backends.push(b);
    return b;
  };
  afterAll(async () => {
    for (const b of backends) await b.dispose();
  });

  /** Copies `values` into the backend's memory `shift` floats past a fresh allocation. */
  const put = (backend: WasmBackend, values: Float32Array, shift = 0) => {
    const view = backend.allocF32(values.length + shift).subarray(shift);
    view.set(values);
    return view;
  };

  it.each([
    { form: 'A row-major, B (K, J)', transA: false, bT: false },
    { form: 'A row-major, B (J, K) transposed', transA: false, bT: true },
    { form: 'A (K, M) transposed, B (K, J)', transA: true, bT: false },
  ])('$form: set, bias, accumulate, bias + accumulate, C rows wider than J', ({ transA, bT }) => {
    const backend = make(2);
    const device = backend.matmulDevice;
    if (!device) throw new Error('the blas backend has no product device');
    const [M, K, J] = [37, 29, 23]; // ragged everywhere
    const ldc = J + 5;
    const A = random(M * K);
    const B = random(K * J);
    const bias = random(J);
    const old = random(M * ldc);
    const at = (i: number, k: number) => (transA ? A[k * M + i] : A[i * K + k]);
    const bt = (k: number, j: number) => (bT ? B[j * K + k] : B[k * J + j]);
    const a = put(backend, A);
    const b = put(backend, B);
    const bi = put(backend, bias);
    for (const [useBias, acc] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ]) {
      const c = put(backend, old);
      const p: Matmul = {
        c: c.byteOffset,
        ldc,
        a: a.byteOffset,
        ai: transA ? 1 : K,
        ak: transA ? M : 1,
        b: b.byteOffset,
        ldb: bT ? K : J,
        bT,
        bias: useBias ? bi.byteOffset : 0,
        M,
        K,
        J,
        acc,
      };
      device.matmul(p);
      let worst = 0;
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < ldc; j++) {
          let want = old[i * ldc + j]; // past J: untouched
          if (j < J) {
            let sum = 0;
            for (let k = 0; k < K; k++) sum += at(i, k) * bt(k, j);
            want = sum + (useBias ? bias[j] : 0) + (acc ? old[i * ldc + j] : 0);
          }
          worst = Math.max(worst, Math.abs(c[i * ldc + j] - want));
        }
      }
      expect(worst, `bias ${useBias}, acc ${acc}`).toBeLessThan(1e-5);
      backend.free(c);
    }
  });

  /** One threaded-size product (256 x 256 x 384) on `backend`, with operands `shift` floats in. */
  const product = (backend: WasmBackend, A: Float32Array, B: Float32Array, shift = 0) => {
    const [a, b] = [put(backend, A, shift), put(backend, B, shift)];
    const c = put(backend, new Float32Array(256 * 384), shift);
    backend.matmul({ kind: 'nn', c, a, b, M: 256, K: 256, J: 384 });
    return Buffer.from(c.slice().buffer);
  };

  it('gives the same bits wherever the operands sit in memory', () => {
    const backend = make(2);
    const [A, B] = [random(256 * 256), random(256 * 384)];
    const first = product(backend, A, B);
    for (const shift of [1, 2, 3, 5, 16])
      expect(product(backend, A, B, shift).equals(first), `shifted ${shift}`).toBe(true);
  });

  it("pins each backend's OpenBLAS thread count before its products (the count is process-wide)", () => {
    const blas = openBlas();
    const [one, two] = [make(1), make(2)];
    const [A, B] = [random(256 * 256), random(256 * 384)];
    const bits1 = product(one, A, B);
    expect(blas?.getThreads()).toBe(1);
    const bits2 = product(two, A, B);
    expect(blas?.getThreads()).toBe(2);
    // interleaved, each backend keeps its own bits (on this product they differ by thread count
    // on some CPUs: OpenBLAS's threads split it into pieces with their own edge kernels)
    for (let r = 0; r < 2; r++) {
      expect(product(one, A, B).equals(bits1)).toBe(true);
      expect(product(two, A, B).equals(bits2)).toBe(true);
    }
    console.log(
      `OpenBLAS ${blas?.core}: 256x256x384 on 1 and 2 threads ${bits1.equals(bits2) ? 'agree' : 'differ'} bitwise`,
    );
  });
});

describe.runIf(available)('koffi and the wasm memory', () => {
  it('passes a view of a shared wasm memory as its own address (no copy), stable as it grows', () => {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    let libc: ReturnType<typeof koffi.load>;
    try {
      libc = koffi.load('libc.so.6');
    } catch {
      console.log('skipped: no glibc to ask for addresses');
      return;
    }
    // memmove returns its destination: the pointer koffi passed
    const memmove = libc.func('void *memmove(void *, void *, size_t)') as (
      d: ArrayBufferView,
      s: ArrayBufferView,
      n: number,
    ) => unknown;
    const address = (view: ArrayBufferView) => koffi.address(memmove(view, view, 0));
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 1024, shared: true });
    const base = address(new Uint8Array(memory.buffer));
    expect(address(new Float32Array(memory.buffer, 4096, 4)) - base).toBe(4096n);
    memory.grow(64);
    expect(address(new Float32Array(memory.buffer, 8192)) - base).toBe(8192n);
  });
});

describe('what the bits depend on (bitsIdentity, which workers must agree on)', () => {
  it.runIf(available)(
    'blas: its OpenBLAS and thread count; wasm: its name, whatever its threads',
    async () => {
      const [one, two] = [1, 2].map((threads) => createBlasBackend({ threads }));
      expect(bitsIdentity(one)).toMatch(/^blas \(OpenBLAS \d+\.\d+\.\d+ \w+, 1 thread\)$/);
      expect(bitsIdentity(two)).toMatch(/^blas \(OpenBLAS \d+\.\d+\.\d+ \w+, 2 threads\)$/);
      const wasm = new WasmBackend({ threads: 2 });
      expect(bitsIdentity(wasm)).toBe('wasm');
      await Promise.all([one, two, wasm].map((b) => b.dispose()));
    },
  );
});

describe('weft info and the blas backend', () => {
  it.runIf(available)('names the OpenBLAS in use', () => {
    const r = runCli(['info', '--config', 'tiny']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^backends {4}reference, wasm.*, blas \(OpenBLAS \d+\.\d+\.\d+ \w+\)/m,
    );
    // the fastest, once its self-check passes
    expect(r.stdout).toMatch(/^default {5}blas: the fastest that works here$/m);
  });

  it('refuses a BLAS that is not OpenBLAS (Debian reference BLAS), and a missing one, in one line', () => {
    const reference = '/usr/lib/x86_64-linux-gnu/blas/libblas.so.3'; // libblas3, where installed
    const cases: [string, RegExp][] = [
      [
        '/nonexistent/libopenblas.so.0',
        /^ {2}blas {6}not available: WEFT_OPENBLAS=\S+ does not load$/m,
      ],
    ];
    if (existsSync(reference))
      cases.push([
        reference,
        /^ {2}blas {6}not available: .*libblas\.so\.3: not OpenBLAS \(.*\)$/m,
      ]);
    for (const [path, why] of cases) {
      const r = runCli(['info', '--config', 'tiny'], { env: { WEFT_OPENBLAS: path } });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).not.toMatch(/^backends .*blas/m);
      expect(r.stdout).toMatch(why);
      // the default is the next fastest, saying why blas is not
      expect(r.stdout).toMatch(
        /^default {5}(wasm-fma|wasm): the fastest that works here; blas: .+$/m,
      );
    }
    const train = runCli(['train', '--config', 'tiny', '--data', 'x', '--backend', 'blas'], {
      env: { WEFT_OPENBLAS: '/nonexistent/libopenblas.so.0' },
    });
    expect(train.status).toBe(1);
    expect(train.stderr.trim()).toMatch(
      /^weft: --backend blas does not run here: WEFT_OPENBLAS=.*$/,
    );
  });
});
