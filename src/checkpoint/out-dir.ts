// Where the checkpoint tools may write: export's Hugging Face directory and import's run directory.
// Neither writes into a checkpoint directory, a run's checkpoints/ or anywhere below them (weft
// owns what is there, and a checkpoint's files are listed by sha256), nor onto a file. Export
// writes only a new or empty directory; import replaces a run (or writes among other files) only
// when told to (--overwrite). Each refusal is one line saying what to do instead.

import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { WeftError } from '../util/errors.ts';
import { CHECKPOINTS_DIR, CHECKPOINT_FORMAT, LATEST_FILE, MANIFEST_FILE } from './format.ts';
import { LOCK_FILE } from './run-lock.ts';
import { listCheckpoints } from './write.ts';

const RUN_DIR = 'a weft run directory';

/** Whether `dir` holds a weft checkpoint's manifest (not some other project's manifest.json). */
function isCheckpointDir(dir: string): boolean {
  try {
    const manifest = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')) as unknown;
    return (manifest as { format?: unknown } | null)?.format === CHECKPOINT_FORMAT;
  } catch {
    return false;
  }
}

/** What `dir` is to weft (a checkpoint directory, a run's checkpoints/, a run), or null. */
function weftDirKind(dir: string): string | null {
  if (isCheckpointDir(dir)) return 'a checkpoint directory';
  if (
    basename(dir) === CHECKPOINTS_DIR &&
    (existsSync(join(dir, LATEST_FILE)) || listCheckpoints(dir).length > 0)
  )
    return "a run's checkpoints directory";
  if (existsSync(join(dir, CHECKPOINTS_DIR)) || existsSync(join(dir, LOCK_FILE))) return RUN_DIR;
  return null;
}

const refuse = (message: string) => new WeftError('WEFT_E_CONFIG', message);

/**
 * Refuses `out` as the directory `tool` (export, import) writes: a file, a checkpoint directory
 * or a run's checkpoints/ or anything below one, and, unless `overwrite` (import's --overwrite;
 * never a run's checkpoints or a checkpoint), a directory that is not empty.
 */
export function checkOutDir(out: string, tool: 'export' | 'import', overwrite = false): void {
  const elsewhere = `choose an empty or new directory`;
  const exists = existsSync(out);
  if (exists && !statSync(out).isDirectory())
    throw refuse(`--out ${out} is a file; ${tool} writes a directory: ${elsewhere}`);
  const kind = exists ? weftDirKind(out) : null;
  if (kind && kind !== RUN_DIR)
    throw refuse(`--out ${out} is ${kind}; ${tool} never writes into one: ${elsewhere}`);
  for (let dir = dirname(resolve(out)); ; dir = dirname(dir)) {
    const above = existsSync(dir) ? weftDirKind(dir) : null;
    if (above && above !== RUN_DIR)
      throw refuse(`--out ${out} is inside ${dir}, ${above}, which weft manages; ${elsewhere}`);
    if (dirname(dir) === dir) break;
  }
  if (!exists || readdirSync(out).length === 0) return;
  if (tool === 'export')
    throw refuse(
      `--out ${out} is ${kind ?? 'not empty'}; export writes a new directory: ${elsewhere}`,
    );
  if (!overwrite)
    throw refuse(
      kind
        ? `--out ${out} already holds a run; pass --overwrite to replace it, or ${elsewhere}`
        : `--out ${out} is not empty; ${elsewhere}, or pass --overwrite to write the run there`,
    );
}

/**
 * Writes directory `out` whole: `write` fills a temporary sibling, which is then renamed to `out`,
 * so `out` is never seen half written; a failure removes the sibling and is one line naming
 * `out`. An `out` that exists (empty: checkOutDir) is written in place instead, since it may be a
 * mount point or sit in a directory this process cannot write; a failure empties it again.
 */
export function writeDirAtomic(out: string, write: (dir: string) => void): void {
  const inPlace = existsSync(out);
  const tmp = inPlace
    ? out
    : join(dirname(resolve(out)), `.${basename(resolve(out))}.tmp-${process.pid}`);
  try {
    if (!inPlace) {
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp, { recursive: true });
    }
    write(tmp);
    if (!inPlace) renameSync(tmp, out);
  } catch (err) {
    if (inPlace)
      for (const f of readdirSync(out)) rmSync(join(out, f), { recursive: true, force: true });
    else rmSync(tmp, { recursive: true, force: true });
    if (err instanceof WeftError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw refuse(`cannot write --out ${out}: ${e.message}`);
  }
}
