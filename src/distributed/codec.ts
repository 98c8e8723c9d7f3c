// Frames on the wire: one msgpack-encoded message per frame (msgpackr with moreTypes, so
// Float32Array, Float64Array and Int32Array travel as raw bytes, not element by element).
// Decoding treats the bytes as untrusted: size limit first, then msgpack, then the schema.

import { Packr } from 'msgpackr';
import { WeftError } from '../util/errors.ts';
import type { Limits, Message } from './messages.ts';
import { DEFAULT_LIMITS, validateMessage } from './messages.ts';

const packr = new Packr({
  moreTypes: true,
  useRecords: false,
  mapsAsObjects: true,
  bundleStrings: false,
});

export function encodeFrame(message: Message): Uint8Array {
  return packr.pack(message);
}

/** Decodes and validates one frame; throws a WeftError with a stable code when it is bad. */
export function decodeFrame(frame: Uint8Array, limits: Limits = DEFAULT_LIMITS): Message {
  if (frame.length > limits.maxFrameBytes) {
    throw new WeftError(
      'WEFT_E_FRAME',
      `frame of ${frame.length} bytes is over the limit of ${limits.maxFrameBytes}`,
    );
  }
  let value: unknown;
  try {
    value = packr.unpack(frame);
  } catch (err) {
    throw new WeftError('WEFT_E_DECODE', `frame is not valid msgpack (${(err as Error).message})`);
  }
  return validateMessage(value, limits);
}
