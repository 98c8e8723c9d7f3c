// Editing a checkpoint's manifest.json in place, as damage or a hand edit would (tests of what
// reading a checkpoint refuses).

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Rewrites the manifest of checkpoint directory `dir` through `edit`. */
export function editManifest(dir: string, edit: (m: Record<string, unknown>) => void): void {
  const path = join(dir, 'manifest.json');
  const m = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(m);
  writeFileSync(path, JSON.stringify(m, null, 2));
}
