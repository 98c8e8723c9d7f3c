// The safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}} padded with
// spaces to a multiple of 8, then the raw little-endian tensor bytes. Reading treats the bytes as
// untrusted: the header size, JSON, dtypes, shapes and offsets are all checked before use.

import { WeftError, check } from '../util/errors.ts';

/** Bytes per element of each safetensors dtype. */
const DTYPE_BYTES = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
} as const; // prettier-ignore
export type Dtype = keyof typeof DTYPE_BYTES;

/** Largest JSON header accepted (100 MB, as the reference implementation). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorEntry {
  dtype: Dtype;
  shape: number[];
  /** The tensor's raw little-endian bytes (a view into the file's bytes). */
  bytes: Uint8Array;
}

export interface SafeTensors {
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

function formatError(source: string, message: string): WeftError {
  return new WeftError('WEFT_E_FORMAT', `${source}: ${message}`);
}

/** Parses safetensors bytes; `source` (a file name) prefixes every error message. */
export function readSafetensors(file: Uint8Array, source = 'safetensors'): SafeTensors {
  if (file.length < 8)
    throw formatError(
      source,
      `file is ${file.length} bytes, shorter than the 8-byte header length`,
    );
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > file.length) {
    throw formatError(
      source,
      `header length ${headerLength} does not fit in a ${file.length}-byte file`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(file.subarray(8, 8 + headerLength)),
    );
  } catch (err) {
    throw formatError(source, `header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw formatError(source, 'header is not a JSON object');
  }
  const dataStart = 8 + headerLength;
  const dataLength = file.length - dataStart;
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(raw, source);
      continue;
    }
    const entry = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = entry?.dtype;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      throw formatError(source, `tensor ${name} has unknown dtype ${JSON.stringify(dtype)}`);
    }
    const shape = entry.shape;
    if (
      !Array.isArray(shape) ||
      !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)
    ) {
      throw formatError(source, `tensor ${name} has invalid shape ${JSON.stringify(shape)}`);
    }
    const offsets = entry.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)
    ) {
      throw formatError(
        source,
        `tensor ${name} has invalid data_offsets ${JSON.stringify(offsets)}`,
      );
    }
    const [begin, end] = offsets as [number, number];
    const expected = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype as Dtype];
    if (end < begin || end - begin !== expected) {
      throw formatError(
        source,
        `tensor ${name} spans ${end - begin} bytes but dtype ${dtype} and shape [${shape.join(',')}] need ${expected}`,
      );
    }
    if (end > dataLength) {
      throw formatError(
        source,
        `tensor ${name} ends at byte ${end} but the data section has ${dataLength} bytes (truncated file?)`,
      );
    }
    spans.push([begin, end, name]);
    tensors.set(name, {
      dtype: dtype as Dtype,
      shape: shape as number[],
      bytes: file.subarray(dataStart + begin, dataStart + end),
    });
  }
  checkSpans(spans, dataLength, source);
  return { tensors, metadata };
}

function parseMetadata(raw: unknown, source: string): Record<string, string> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw formatError(source, '__metadata__ is not an object');
  }
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== 'string') throw formatError(source, `__metadata__.${key} is not a string`);
  }
  return raw as Record<string, string>;
}

/** Tensors must tile the data section exactly: no overlaps, no holes, nothing after the end. */
function checkSpans(spans: [number, number, string][], dataLength: number, source: string): void {
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let at = 0;
  for (const [begin, end, name] of spans) {
    if (begin !== at)
      throw formatError(
        source,
        `tensor ${name} starts at byte ${begin}, expected ${at} (overlap or hole)`,
      );
    at = end;
  }
  if (at !== dataLength)
    throw formatError(
      source,
      `data section has ${dataLength - at} trailing bytes no tensor covers`,
    );
}

/** The tensor `name` as a Float32Array copy (dtype must be F32). */
export function getFloat32(st: SafeTensors, name: string, source = 'safetensors'): Float32Array {
  return new Float32Array(copyBytes(st, name, 'F32', source));
}

/** The tensor `name` as an Int32Array copy (dtype must be I32). */
export function getInt32(st: SafeTensors, name: string, source = 'safetensors'): Int32Array {
  return new Int32Array(copyBytes(st, name, 'I32', source));
}

function copyBytes(st: SafeTensors, name: string, dtype: Dtype, source: string): ArrayBuffer {
  const entry = st.tensors.get(name);
  if (!entry) throw formatError(source, `tensor ${name} is missing`);
  check(
    entry.dtype === dtype,
    'WEFT_E_FORMAT',
    `${source}: tensor ${name} has dtype ${entry.dtype}, expected ${dtype}`,
  );
  // copy (a Node Buffer's slice() would share memory); the view may not be aligned for a typed array
  return new Uint8Array(entry.bytes).buffer;
}

export interface TensorToWrite {
  name: string;
  dtype: Dtype;
  shape: number[];
  data: ArrayBufferView;
}

/**
 * The file's parts without copying tensor data: the 8-byte length + padded JSON header, then a
 * byte view of each tensor in order. Concatenated, they are the safetensors file.
 */
export function safetensorsParts(
  tensors: TensorToWrite[],
  metadata?: Record<string, string>,
): Uint8Array[] {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    check(
      t.data.byteLength === expected,
      'WEFT_E_SHAPE',
      `tensor ${t.name} has ${t.data.byteLength} bytes but dtype ${t.dtype} and shape [${t.shape.join(',')}] need ${expected}`,
    );
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }
  const encoder = new TextEncoder();
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (encoder.encode(json).length % 8)) % 8);
  const headerBytes = encoder.encode(json);
  const head = new Uint8Array(8 + headerBytes.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  head.set(headerBytes, 8);
  return [
    head,
    ...tensors.map((t) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
  ];
}

/** Serialises tensors in the given order; equal inputs give byte-equal output. */
export function writeSafetensors(
  tensors: TensorToWrite[],
  metadata?: Record<string, string>,
): Uint8Array {
  const parts = safetensorsParts(tensors, metadata);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
