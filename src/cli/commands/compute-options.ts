// --backend and --threads for the commands that compute on one model (eval, generate).

import type { Command } from 'commander';
import type { Backend } from '../../kernels/backend.ts';
import { BACKEND_NAMES } from '../../kernels/backend.ts';
import { createBackend, defaultBackendName, parseBackendName } from '../../kernels/select.ts';
import { numberFlag } from './options.ts';

export interface ComputeFlags {
  backend?: string;
  threads: string;
}

export function addComputeOptions(cmd: Command): Command {
  return cmd
    .option(
      '--backend <name>',
      `compute backend: ${BACKEND_NAMES.join(', ')} (default: the fastest that works)`,
    )
    .option(
      '--threads <n>',
      'kernel threads (wasm pool or OpenBLAS; on blas it changes the bits)',
      '1',
    );
}

export function backendOf(flags: ComputeFlags): Backend {
  const name = flags.backend === undefined ? defaultBackendName() : parseBackendName(flags.backend);
  return createBackend(name, {
    threads: numberFlag('--threads', flags.threads, { min: 1, integer: true }),
  });
}
