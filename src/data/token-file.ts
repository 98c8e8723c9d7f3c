// Token files: a 32-byte header, then the token ids (a dataset's splits are one or more of them).
//   bytes 0-7    magic "WEFTTOKS"
//   bytes 8-11   format version (uint32 LE) = 1
//   bytes 12-15  bytes per token (uint32 LE): 2 (uint16 ids) or 4 (uint32 ids)
//   bytes 16-23  token count (uint64 LE)
//   bytes 24-31  reserved, zero
//   then count ids, little-endian.

import { readFileSync } from 'node:fs';
import { WeftError } from '../util/errors.ts';

export const TOKEN_FILE_MAGIC = 'WEFTTOKS';
export const TOKEN_FILE_VERSION = 1;
export const TOKEN_FILE_HEADER_BYTES = 32;

export type TokenArray = Uint16Array | Uint32Array;

/** Serialises `ids` as a token file, as uint16 when every id of the vocabulary fits, else uint32. */
export function encodeTokenFile(ids: ArrayLike<number>, vocabSize: number): Uint8Array {
  const width = vocabSize <= 65536 ? 2 : 4;
  const out = new Uint8Array(TOKEN_FILE_HEADER_BYTES + ids.length * width);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(TOKEN_FILE_MAGIC), 0);
  view.setUint32(8, TOKEN_FILE_VERSION, true);
  view.setUint32(12, width, true);
  view.setBigUint64(16, BigInt(ids.length), true);
  // typed arrays use the host's byte order, little-endian on every platform Node supports
  const body = width === 2 ? new Uint16Array(out.buffer, TOKEN_FILE_HEADER_BYTES) : new Uint32Array(out.buffer, TOKEN_FILE_HEADER_BYTES);
  body.set(ids);
  return out;
}

/** Parses a token file's bytes, checking the header against the file size. */
export function decodeTokenFile(bytes: Uint8Array, source = 'token file'): TokenArray {
  const fail = (why: string) => new WeftError('WEFT_E_FORMAT', `${source}: ${why}`);
  if (bytes.length < TOKEN_FILE_HEADER_BYTES) throw fail(`${bytes.length} bytes is shorter than the 32-byte token-file header`);
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== TOKEN_FILE_MAGIC) throw fail(`not a weft token file (magic ${JSON.stringify(magic)})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== TOKEN_FILE_VERSION) throw fail(`token-file format version ${version}; this weft reads version ${TOKEN_FILE_VERSION}`);
  const width = view.getUint32(12, true);
  if (width !== 2 && width !== 4) throw fail(`token width ${width} bytes; expected 2 or 4`);
  const count = Number(view.getBigUint64(16, true));
  const expected = TOKEN_FILE_HEADER_BYTES + count * width;
  if (bytes.length !== expected) throw fail(`header says ${count} tokens (${expected} bytes) but the file has ${bytes.length} bytes`);
  const body = new Uint8Array(bytes.subarray(TOKEN_FILE_HEADER_BYTES)); // an aligned copy
  return width === 2 ? new Uint16Array(body.buffer, 0, count) : new Uint32Array(body.buffer, 0, count);
}

export function readTokenFile(path: string): TokenArray {
  return decodeTokenFile(readFileSync(path), path);
}
