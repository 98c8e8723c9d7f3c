// File helpers: sha256 of bytes, atomic writes (temporary name, fsync, rename), UTF-8 reading
// that refuses non-UTF-8 or missing files with a one-line error naming the file.

import { createHash } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { WeftError } from './errors.ts';

export function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Size and sha256 of a file, read in 8 MiB pieces (no whole-file buffer: checkpoints are large). */
export function hashFile(path: string): { bytes: number; sha256: string } {
  const hash = createHash('sha256');
  const chunk = Buffer.allocUnsafe(8 << 20);
  const fd = openSync(path, 'r');
  let bytes = 0;
  try {
    for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; bytes += n)
      hash.update(chunk.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** Writes `data` to `path` via `path.tmp-<pid>`, fsynced, then renamed: readers never see half a file. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** Reads a file's bytes; a missing or unreadable file is a WEFT_E_FORMAT error naming it. */
export function readBytes(path: string, what = 'file'): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EISDIR'
          ? 'is a directory'
          : `cannot be read (${code})`;
    throw new WeftError('WEFT_E_FORMAT', `${what} ${path} ${why}`);
  }
}

/** Reads a UTF-8 text file; refuses other encodings. */
export function readUtf8(path: string, what = 'text file'): string {
  const bytes = readBytes(path, what);
  if (!isUtf8(bytes)) {
    throw new WeftError(
      'WEFT_E_FORMAT',
      `${what} ${path} is not valid UTF-8; convert it to UTF-8 (e.g. iconv -t UTF-8)`,
    );
  }
  return bytes.toString('utf8');
}

/** Reads and parses a JSON file, naming the file when it is missing or malformed. */
export function readJson(path: string, what = 'JSON file'): unknown {
  const text = readUtf8(path, what);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new WeftError(
      'WEFT_E_FORMAT',
      `${what} ${path} is not valid JSON (${(err as Error).message})`,
    );
  }
}

/** A shared secret kept in a file (a token, an API key): its text, trimmed; empty is refused. */
export function readSecretFile(path: string, what: string): string {
  const secret = readUtf8(path, what).trim();
  if (secret.length === 0) throw new WeftError('WEFT_E_AUTH', `${what} ${path} is empty`);
  return secret;
}
