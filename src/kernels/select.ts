// Choosing a backend: by name (--backend), or the fastest one that works on this machine.

import { WeftError } from '../util/errors.ts';
import type { Backend, BackendName } from './backend.ts';
import { BACKEND_NAMES, referenceBackend } from './backend.ts';
import { createGpuBackend } from './gpu/backend.ts';
import { WasmBackend, wasmAvailable } from './wasm/backend.ts';

export interface BackendOptions {
  /** Kernel threads (wasm): 1 runs on the calling thread only. */
  threads?: number;
}

/**
 * The fastest backend known to work here: wasm when its kernels are built, else reference. The gpu
 * backend is chosen by name (--backend gpu) until it has been measured faster on GPU machines.
 */
export function defaultBackendName(): BackendName {
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
    case 'gpu':
      return createGpuBackend({ threads: options.threads });
    default:
      return name satisfies never;
  }
}
