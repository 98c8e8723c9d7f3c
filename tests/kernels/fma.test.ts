// The wasm-fma backend (kernels-fma.wasm): its products round a*b + c once (a fused multiply-add)
// where the wasm backend rounds the product first, on every path of the product kernels (the
// packed gemm, the gemv of one row, B plain and transposed, vector loops and scalar tails). Here
// it is the default backend; a runtime without relaxed SIMD refuses it in one line naming the
// flag, and a worker that is assigned it fails with that line.

import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/kernels/backend.ts';
import { defaultBackendName, whyUnavailable } from '../../src/kernels/select.ts';
import { WasmBackend } from '../../src/kernels/wasm/backend.ts';
import { Rng } from '../../src/util/rng.ts';
import { loadDataset } from '../../src/data/dataset.ts';
import { serveCoordinator } from '../../src/distributed/launch.ts';
import { ROOT } from '../helpers/cli.ts';
import { tinyConfig, tinyDataset } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

// Each output is -1*1 + A*A over two terms at k = 0 and k = at (zeros elsewhere). A*A is
// 1 + 2^-11 + 2^-24, which needs 25 bits: fused, the sum is exact; unfused, A*A rounds to
// 1 + 2^-11 (a tie, to even) and the 2^-24 is lost.
const A = 1 + 2 ** -12;
const FUSED = 2 ** -11 + 2 ** -24;
const UNFUSED = 2 ** -11;

/** matmulForward (B is (K, J)) or the tied head (B is (J, K), transposed), M x K x J. */
function product(k: Backend, head: boolean, M: number, K: number, J: number, at: number) {
  const a = new Float32Array(M * K);
  for (let i = 0; i < M; i++) [a[i * K], a[i * K + at]] = [-1, A];
  const b = new Float32Array(K * J);
  for (let j = 0; j < J; j++) {
    const [first, second] = head ? [j * K, j * K + at] : [j, at * J + j];
    [b[first], b[second]] = [1, A];
  }
  const out = new Float32Array(M * J);
  if (head) k.lmHeadForward(out, a, b, M, K, J);
  else k.matmulForward(out, a, b, null, M, K, J);
  return [...new Set(out)];
}

// [what, transposed B, M, K, J, at]
const PATHS: [string, boolean, number, number, number, number][] = [
  ['gemm, full and ragged tiles', false, 7, 2, 11, 1],
  ['gemm, B transposed', true, 6, 8, 9, 4],
  ['gemv, 16 columns at a time', false, 1, 2, 16, 1],
  ['gemv, the columns past 16', false, 2, 3, 3, 2],
  ['gemv transposed, four lanes', true, 1, 8, 3, 4],
  ['gemv transposed, the scalar tail', true, 3, 2, 5, 1],
];

describe('fused multiply-add', () => {
  const wasm = new WasmBackend();
  const fma = new WasmBackend({ variant: 'fma', threads: 2 });
  afterAll(() => fma.dispose());

  it.each(PATHS)('%s: wasm-fma rounds once, wasm twice', (_, head, M, K, J, at) => {
    expect(product(fma, head, M, K, J, at)).toEqual([FUSED]);
    expect(product(wasm, head, M, K, J, at)).toEqual([UNFUSED]);
  });

  it('gives the same bits on 1, 2 and 3 threads (rows split in 6-row panels, ragged ends)', () => {
    const rng = new Rng(3);
    const [N, C, OC] = [61, 64, 96]; // each product over the 2^18 multiply-adds that go parallel
    const data = [N * C, C * OC, N * OC].map((n) =>
      Float32Array.from({ length: n }, () => rng.uniform() - 0.5),
    );
    const run = (k: WasmBackend) => {
      const [inp, w, dout] = data;
      const outs = [N * OC, N * C, C * OC, OC].map((n) => new Float32Array(n));
      const [out, dinp, dw, db] = outs;
      k.matmulForward(out, inp, w, null, N, C, OC);
      k.matmulBackward(dinp, dw, db, dout, inp, w, N, C, OC);
      return Buffer.concat(outs.map((a) => Buffer.from(a.buffer)));
    };
    const one = run(new WasmBackend({ variant: 'fma', threads: 1 }));
    const three = new WasmBackend({ variant: 'fma', threads: 3 });
    expect(run(fma).equals(one)).toBe(true);
    expect(run(three).equals(one)).toBe(true);
    void three.dispose();
  });

  it('is the default backend where the runtime has relaxed SIMD and the CPU fuses (and OpenBLAS is not installed)', () => {
    expect(fma.name).toBe('wasm-fma');
    expect(defaultBackendName()).toBe(whyUnavailable('blas') ? 'wasm-fma' : 'blas');
    const script = `
      import { defaultBackendName } from './src/kernels/select.ts';
      console.log(defaultBackendName());`;
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      {
        cwd: ROOT,
        encoding: 'utf8',
        env: { ...process.env, WEFT_OPENBLAS: '/nonexistent/libopenblas.so.0' },
      },
    );
    expect(r.stdout.trim(), r.stderr).toBe('wasm-fma');
  });
});

describe('without relaxed SIMD (node --no-experimental-wasm-relaxed-simd)', () => {
  const node = (args: string[]) =>
    spawnSync(process.execPath, ['--no-experimental-wasm-relaxed-simd', ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, WEFT_OPENBLAS: '/nonexistent/libopenblas.so.0' }, // no blas either
    });

  it('the default is wasm, and asking for wasm-fma fails in one line naming the flag', () => {
    const script = `
      import { createBackend, defaultBackendName } from './src/kernels/select.ts';
      console.log(defaultBackendName());
      try { createBackend('wasm-fma'); } catch (e) { console.log(e.code, e.message); }`;
    const r = node(['--import', 'tsx', '--input-type=module', '-e', script]);
    expect(r.status, r.stderr).toBe(0);
    const [name, error, ...rest] = r.stdout.trim().split('\n');
    expect(name).toBe('wasm');
    expect(error).toMatch(/^WEFT_E_STATE the wasm-fma backend needs WebAssembly relaxed SIMD/);
    expect(error).toContain('--experimental-wasm-relaxed-simd');
    expect(rest).toEqual([]);
  });

  it('a worker assigned wasm-fma exits with that line', async () => {
    const dir = tempDir();
    const dataset = loadDataset(tinyDataset(dir, 5_000));
    let address = '';
    const job = await serveCoordinator(
      tinyConfig({ steps: 2, batchSize: 2, evalEvery: 0 }),
      dataset,
      join(dir, 'run'),
      { listen: '127.0.0.1:0', workers: 1, backend: 'wasm-fma', onListening: (a) => (address = a) },
    );
    const args = ['worker', '--connect', `ws://${address}`, '--name', 'old-node'];
    const worker = spawn(
      process.execPath,
      ['--no-experimental-wasm-relaxed-simd', join(ROOT, 'bin/weft.mjs'), ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    worker.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise((resolve) => worker.on('exit', resolve));
    job.stop();
    await job.result.catch(() => {});
    expect(code, stderr).toBe(1);
    expect(stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        /wasm-fma backend needs WebAssembly relaxed SIMD.*--experimental-wasm-relaxed-simd/,
      ),
    ]);
  });
});
