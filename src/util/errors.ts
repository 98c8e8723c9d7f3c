// Typed errors with stable codes. Every user-facing failure in weft is a WeftError whose
// message is one line saying what is wrong (naming the offending value) and what to do.

/** Stable error codes; tools and tests match on these, never on message text. */
export type WeftErrorCode =
  | 'WEFT_E_CONFIG' // a model or run configuration value is invalid
  | 'WEFT_E_SHAPE' // an array's length or a batch shape does not fit
  | 'WEFT_E_TOKEN' // a token id or target is out of range
  | 'WEFT_E_FORMAT' // a file's bytes are malformed (safetensors header, dtype, offsets)
  | 'WEFT_E_STATE'; // an operation called in the wrong order (backward before forward)

export class WeftError extends Error {
  readonly code: WeftErrorCode;

  constructor(code: WeftErrorCode, message: string) {
    super(message);
    this.name = 'WeftError';
    this.code = code;
  }
}

/** Throws a WeftError with `code` and `message` unless `condition` holds. */
export function check(condition: boolean, code: WeftErrorCode, message: string): asserts condition {
  if (!condition) throw new WeftError(code, message);
}
