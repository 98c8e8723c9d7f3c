// Choosing a backend: by name (--backend), or the fastest one that works on this machine.

import { WeftError } from '../util/errors.ts';
import type { Backend, BackendName } from './backend.ts';
import { BACKEND_NAMES, referenceBackend } from './backend.ts';
import { WasmBackend, wasmAvailable } from './wasm/backend.ts';

export interface BackendOptions {
  /** Kernel threads (wasm): 1 runs on the calling thread only. */
  threads?: number;
}

/** The fastest backend that works here: wasm when its kernels are built, else reference. */
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
      return new WasmBackend(options.threads ?? 1);
    case 'gpu':
      throw new WeftError(
        'WEFT_E_CONFIG',
        'the gpu backend is not available in this build; use --backend wasm or reference',
      );
    default:
      return name satisfies never;
  }
}
