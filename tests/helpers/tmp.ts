// Temporary directories for tests, removed after each test file (tests/setup.ts) and, should the
// process end first, when it exits.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
process.on('exit', removeTempDirs);

export function tempDir(prefix = 'weft-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Removes every directory tempDir made so far. */
export function removeTempDirs(): void {
  // (retried: a daemon a test stopped may still be writing its last files there)
  for (const dir of made.splice(0))
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
}
