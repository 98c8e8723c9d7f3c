// OpenBLAS through a dynamic FFI (koffi): finds the library by explicit paths and sonames, makes
// sure it is OpenBLAS by its own symbols (Debian's reference BLAS, libblas.so.3, has the same
// cblas_sgemm and is ten times slower: it is never loaded), and calls cblas_sgemm on byte offsets
// into a WebAssembly.Memory. koffi passes a typed-array view of the memory's SharedArrayBuffer as
// the pointer to its bytes (no copy: the address C gets is the view's own, as
// tests/kernels/blas.test.ts checks).
//
// OpenBLAS's result for a product depends on how it splits the product among its threads (each
// piece runs its own edge kernels), so its thread count is part of the configuration: it is pinned
// (openblas_set_num_threads, process-wide) before every product that would run with another
// count. It also depends on the kernel chosen for the CPU (`openblas_get_corename`; the
// OPENBLAS_CORETYPE environment variable pins it, read by OpenBLAS when it loads).

import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';

/** cblas enums (cblas.h). */
const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

type Sgemm = (
  order: number,
  transA: number,
  transB: number,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: Float32Array,
  lda: number,
  B: Float32Array,
  ldb: number,
  beta: number,
  C: Float32Array,
  ldc: number,
) => void;

/** A loaded OpenBLAS. */
export interface OpenBlas {
  /** Where it was loaded from. */
  readonly path: string;
  /** 'OpenBLAS 0.3.21', from openblas_get_config. */
  readonly version: string;
  /** The kernel set in use ('Zen', 'Haswell', 'SkylakeX', ...). */
  readonly core: string;
  /** openblas_get_config, whole. */
  readonly config: string;
  /** 0 sequential, 1 pthreads (2, OpenMP, is refused). */
  readonly parallel: number;
  readonly sgemm: Sgemm;
  /** openblas_set_num_threads / openblas_get_num_threads (process-wide). */
  setThreads(n: number): void;
  getThreads(): number;
}

/**
 * Where to look, first to last: Debian's pthread build, then the loader's search; or only the
 * path in WEFT_OPENBLAS where that is set.
 */
function candidates(): string[] {
  const triplet: Record<string, string> = {
    x64: 'x86_64-linux-gnu',
    arm64: 'aarch64-linux-gnu',
    ppc64: 'powerpc64le-linux-gnu',
    riscv64: 'riscv64-linux-gnu',
    s390x: 's390x-linux-gnu',
  };
  if (process.env.WEFT_OPENBLAS !== undefined) return [process.env.WEFT_OPENBLAS];
  const list: string[] = [];
  if (platform() === 'linux') {
    if (triplet[arch()]) list.push(`/usr/lib/${triplet[arch()]}/openblas-pthread/libopenblas.so.0`);
    // Fedora/RHEL name the pthread build libopenblasp; elsewhere libopenblas is usually it
    list.push('libopenblasp.so.0', 'libopenblas.so.0');
  } else if (platform() === 'darwin') {
    list.push('/opt/homebrew/opt/openblas/lib/libopenblas.dylib');
    list.push('/usr/local/opt/openblas/lib/libopenblas.dylib');
  }
  return list;
}

type Koffi = typeof import('koffi');
type Library = ReturnType<Koffi['load']>;

let probed: { blas: OpenBlas | null; why: string } | null = null;

/** The OpenBLAS of this process (loaded once per thread), or null with the reason in whyNoBlas. */
export function openBlas(): OpenBlas | null {
  probed ??= probe();
  return probed.blas;
}

/** Why there is no OpenBLAS here, in one line ('' when there is). */
export function whyNoBlas(): string {
  probed ??= probe();
  return probed.why;
}

function probe(): { blas: OpenBlas | null; why: string } {
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (e) {
    return { blas: null, why: `the koffi FFI package did not load (${firstLine(e)})` };
  }
  const refused: string[] = [];
  for (const path of candidates()) {
    let lib: Library;
    try {
      lib = koffi.load(path);
    } catch {
      continue; // not there
    }
    const blas = bind(lib, path);
    if (typeof blas === 'string') refused.push(`${path}: ${blas}`);
    else return { blas, why: '' };
  }
  if (refused.length > 0) return { blas: null, why: refused.join('; ') };
  if (process.env.WEFT_OPENBLAS !== undefined)
    return { blas: null, why: `WEFT_OPENBLAS=${process.env.WEFT_OPENBLAS} does not load` };
  return {
    blas: null,
    why:
      platform() === 'linux'
        ? 'libopenblas is not installed (apt-get install libopenblas0-pthread)'
        : 'libopenblas is not installed (brew install openblas)',
  };
}

/** The library's functions, or why it is not an OpenBLAS weft can use. */
function bind(lib: Library, path: string): OpenBlas | string {
  let f: Record<string, unknown>;
  try {
    f = {
      config: lib.func('const char *openblas_get_config(void)'),
      core: lib.func('const char *openblas_get_corename(void)'),
      parallel: lib.func('int openblas_get_parallel(void)'),
      set: lib.func('void openblas_set_num_threads(int)'),
      get: lib.func('int openblas_get_num_threads(void)'),
      sgemm: lib.func(
        'void cblas_sgemm(int, int, int, int, int, int, float, float *, int, float *, int, float, float *, int)',
      ),
    };
  } catch (e) {
    return `not OpenBLAS (${firstLine(e)})`;
  }
  const config = (f.config as () => string)();
  const parallel = (f.parallel as () => number)();
  if (!config.startsWith('OpenBLAS')) return `not OpenBLAS (its config reads "${config}")`;
  if (parallel === 2)
    return 'the OpenMP build of OpenBLAS, whose thread count is per calling thread; install the pthread build (libopenblas0-pthread)';
  return {
    path,
    version: config.split(' ').slice(0, 2).join(' '),
    core: (f.core as () => string)(),
    config,
    parallel,
    sgemm: f.sgemm as Sgemm,
    setThreads: f.set as (n: number) => void,
    getThreads: f.get as () => number,
  };
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0];
}

/** Sets OpenBLAS's (process-wide) thread count to `n` where it is another. */
export function pinThreads(blas: OpenBlas, n: number): void {
  if (blas.getThreads() !== n) blas.setThreads(n);
}

/**
 * The operands of one product, as the wasm backend's Matmul gives them (bytes into one memory):
 * C (M x N, rows ldc apart) = alpha op(A) op(B) + beta C, row-major.
 */
export interface Gemm {
  c: number;
  ldc: number;
  a: number;
  lda: number;
  transA: boolean;
  b: number;
  ldb: number;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  beta: 0 | 1;
}

/**
 * cblas_sgemm on `memory`, with its leading dimensions checked first (OpenBLAS reports a bad one
 * on stderr and returns without computing).
 */
export function sgemmAt(blas: OpenBlas, memory: WebAssembly.Memory, g: Gemm): void {
  const { M, N, K } = g;
  if (M === 0 || N === 0) return;
  const aCols = g.transA ? M : K;
  const bCols = g.transB ? K : N;
  if (g.lda < Math.max(1, aCols) || g.ldb < Math.max(1, bCols) || g.ldc < Math.max(1, N))
    throw new Error(
      `sgemm: leading dimensions ${g.lda}, ${g.ldb}, ${g.ldc} too small for ${M}x${K}x${N}`,
    );
  const buffer = memory.buffer;
  blas.sgemm(
    ROW_MAJOR,
    g.transA ? TRANS : NO_TRANS,
    g.transB ? TRANS : NO_TRANS,
    M,
    N,
    K,
    1,
    new Float32Array(buffer, g.a),
    g.lda,
    new Float32Array(buffer, g.b),
    g.ldb,
    g.beta,
    new Float32Array(buffer, g.c),
    g.ldc,
  );
}
