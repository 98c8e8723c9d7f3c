// Resolving what users name on the command line: config presets by name.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
