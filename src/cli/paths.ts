// Resolving what users name on the command line: config presets by name, model directories.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODEL_FILE } from '../checkpoint/model-files.ts';
import { WeftError } from '../util/errors.ts';

/** The package root (where configs/ and data/ live). */
export const PACKAGE_ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

/** A config path as given, or a preset name from the package's configs/ ("tiny" -> configs/tiny.json). */
export function resolveConfigPath(nameOrPath: string): string {
  if (existsSync(nameOrPath)) return nameOrPath;
  const preset = join(
    PACKAGE_ROOT,
    'configs',
    nameOrPath.endsWith('.json') ? nameOrPath : `${nameOrPath}.json`,
  );
  return existsSync(preset) ? preset : nameOrPath;
}

/** A directory holding a saved model (model.safetensors, config.json, tokenizer.json). */
export function resolveModelDir(path: string): string {
  if (existsSync(join(path, MODEL_FILE))) return path;
  if (!existsSync(path)) throw new WeftError('WEFT_E_FORMAT', `checkpoint ${path} does not exist`);
  throw new WeftError(
    'WEFT_E_FORMAT',
    `checkpoint ${path} holds no ${MODEL_FILE}; pass a run directory written by weft train`,
  );
}
