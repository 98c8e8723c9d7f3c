// A dpo run's reference model (the frozen policy its log-probs are measured against: the run's
// initial weights) in the run directory as reference.safetensors, written once when training
// starts. Every checkpoint of the run records its sha256 (data.referenceSha256), so a resumed
// run verifies it is measuring against the same model, and refuses a changed or missing file.

import { join } from 'node:path';
import type { GPTConfig } from '../model/config.ts';
import { paramCount } from '../model/layout.ts';
import { WeftError } from '../util/errors.ts';
import { readBytes, sha256, writeFileAtomic } from '../util/files.ts';
import { readSafetensors, writeSafetensors } from './safetensors.ts';
import { loadWeights, weightTensors } from './weights.ts';

export const REFERENCE_FILE = 'reference.safetensors';

/** Writes the reference weights into run directory `outDir`; returns the file's sha256. */
export function writeReference(outDir: string, params: Float32Array, config: GPTConfig): string {
  const bytes = writeSafetensors(weightTensors(params, config), { format: 'pt' });
  writeFileAtomic(join(outDir, REFERENCE_FILE), bytes);
  return sha256(bytes);
}

/** The reference weights of run directory `outDir`, which must have sha256 `expected`. */
export function readReference(outDir: string, config: GPTConfig, expected: string): Float32Array {
  const path = join(outDir, REFERENCE_FILE);
  const bytes = readBytes(path, 'dpo reference model');
  const digest = sha256(bytes);
  if (digest !== expected)
    throw new WeftError(
      'WEFT_E_FORMAT',
      `${path} is not the reference this run trained against (sha256 ${digest.slice(0, 12)}... vs the checkpoint's ${expected.slice(0, 12)}...); it cannot be resumed`,
    );
  const params = new Float32Array(paramCount(config));
  loadWeights(params, config, readSafetensors(bytes, path), '', path);
  return params;
}
