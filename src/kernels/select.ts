// Choosing a backend: by name (--backend), or the fastest one that works on this machine.

import { WeftError } from '../util/errors.ts';
import type { Backend, BackendName } from './backend.ts';
import { BACKEND_NAMES, referenceBackend } from './backend.ts';
import { createBlasBackend, whyNoBlas } from './blas/backend.ts';
import { createGpuBackend } from './gpu/backend.ts';
import { WasmBackend, wasmAvailable } from './wasm/backend.ts';
import { selfCheck } from './self-check.ts';

export interface BackendOptions {
  /** Kernel threads (wasm): 1 runs on the calling thread only. */
  threads?: number;
}

/**
 * The CPU backends from fastest to slowest (measured: docs/backends.md). The gpu backend is chosen
 * by name (--backend gpu) until it has been measured faster on GPU machines.
 */
const FASTEST_FIRST = ['blas', 'wasm-fma', 'wasm', 'reference'] as const satisfies BackendName[];

/**
 * The fastest backend that works here: blas where OpenBLAS loads, wasm-fma where its module
 * compiles and the CPU fuses, each only once a small product agrees with the reference
 * (self-check.ts); else wasm when its kernels are built; else reference.
 */
export function defaultBackendName(): BackendName {
  return FASTEST_FIRST.find((name) => !whyUnavailable(name)) ?? 'reference';
}

/** Why the default is the default, for `weft info` and the banner: 'the fastest that works here; blas: ...'. */
export function defaultBackendWhy(): string {
  const chosen = defaultBackendName();
  const order: readonly BackendName[] = FASTEST_FIRST;
  const skipped = order.slice(0, order.indexOf(chosen)).map((n) => `; ${n}: ${whyUnavailable(n)}`);
  return `the fastest that works here${skipped.join('')}`;
}

export function parseBackendName(name: string): BackendName {
  if ((BACKEND_NAMES as readonly string[]).includes(name)) return name as BackendName;
  throw new WeftError(
    'WEFT_E_CONFIG',
    `unknown backend "${name}"; use ${BACKEND_NAMES.join(', ')}`,
  );
}

export function createBackend(
  name: BackendName = defaultBackendName(),
  options: BackendOptions = {},
): Backend {
  switch (name) {
    case 'reference':
      return referenceBackend;
    case 'wasm':
      return new WasmBackend({ threads: options.threads ?? 1 });
    case 'wasm-fma':
      return new WasmBackend({ variant: 'fma', threads: options.threads ?? 1 });
    case 'gpu':
      return createGpuBackend({ threads: options.threads });
    case 'blas':
      return createBlasBackend({ threads: options.threads ?? 1 });
    default:
      return name satisfies never;
  }
}

const verdicts = new Map<BackendName, string>();

/** Why backend `name` cannot run here, in one line ('' when it can; `weft info` lists them). Checked once. */
export function whyUnavailable(name: BackendName): string {
  let why = verdicts.get(name);
  if (why === undefined) verdicts.set(name, (why = check(name)));
  return why;
}

function check(name: BackendName): string {
  const noWasm = wasmAvailable() ? '' : 'the wasm kernels are not built (npm run build:wasm)';
  switch (name) {
    case 'reference':
      return '';
    case 'wasm':
    case 'gpu':
      return noWasm;
    case 'wasm-fma':
      return noWasm || selfCheck(() => new WasmBackend({ variant: 'fma', threads: 1 }));
    case 'blas':
      return whyNoBlas() || noWasm || selfCheck(() => createBlasBackend({ threads: 1 }));
    default:
      return name satisfies never;
  }
}
