// Choosing a backend: by name (--backend), or the fastest one that works on this machine.

import { WeftError } from '../util/errors.ts';
import type { Backend, BackendName } from './backend.ts';
import { BACKEND_NAMES, referenceBackend } from './backend.ts';
import { createBlasBackend, whyNoBlas } from './blas/backend.ts';
import { createGpuBackend } from './gpu/backend.ts';
import { WasmBackend, wasmAvailable } from './wasm/backend.ts';
import { wasmFmaWorks } from './wasm/self-check.ts';

export interface BackendOptions {
  /** Kernel threads (wasm): 1 runs on the calling thread only. */
  threads?: number;
}

/**
 * The fastest backend known to work here: wasm-fma where it compiles, the CPU fuses and a small
 * product checks out against the reference (wasm/self-check.ts, once), else wasm when its kernels
 * are built, else reference. The gpu
 * backend is chosen by name (--backend gpu) until it has been measured faster on GPU machines.
 */
export function defaultBackendName(): BackendName {
  if (wasmFmaWorks().ok) return 'wasm-fma';
  return wasmAvailable() ? 'wasm' : 'reference';
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

/** Why backend `name` cannot run here, in one line ('' when it can; `weft info` lists them). */
export function whyUnavailable(name: BackendName): string {
  switch (name) {
    case 'reference':
      return '';
    case 'wasm':
    case 'gpu':
      return wasmAvailable() ? '' : 'the wasm kernels are not built (npm run build:wasm)';
    case 'wasm-fma':
      return wasmFmaWorks().why;
    case 'blas':
      return whyNoBlas();
    default:
      return name satisfies never;
  }
}
