// Typed errors with stable codes. Every user-facing failure in weft is a WeftError whose
// message is one line saying what is wrong (naming the offending value) and what to do.

/** Stable error codes; tools and tests match on these, never on message text. */
export type WeftErrorCode =
  | 'WEFT_E_CONFIG' // a model or run configuration value is invalid
  | 'WEFT_E_SHAPE' // an array's length or a batch shape does not fit
  | 'WEFT_E_TOKEN' // a token id or target is out of range
  | 'WEFT_E_FORMAT' // a file's bytes are malformed (safetensors header, dtype, offsets)
  | 'WEFT_E_STATE' // an operation called in the wrong order (backward before forward)
  | 'WEFT_E_FRAME' // a network frame or tensor larger than the limits
  | 'WEFT_E_DECODE' // a network frame that is not valid msgpack
  | 'WEFT_E_VERSION' // a peer speaking another protocol version
  | 'WEFT_E_SCHEMA' // a message whose type or fields do not match its schema
  | 'WEFT_E_AUTH' // a missing or wrong shared secret
  | 'WEFT_E_PROTOCOL' // a valid message at the wrong time
  | 'WEFT_E_NETWORK' // a connection that could not be made or was lost
  | 'WEFT_E_CLUSTER'; // the cluster cannot go on (too few workers, all workers lost)

export class WeftError extends Error {
  readonly code: WeftErrorCode;
  /**
   * The run lost its cluster (its workers, its coordinator, the network) rather than being given
   * bad input: its last checkpoint resumes, and a scheduler may resubmit it (the CLI exits 75).
   */
  readonly resumable: boolean;

  constructor(code: WeftErrorCode, message: string, options: { resumable?: boolean } = {}) {
    super(message);
    this.name = 'WeftError';
    this.code = code;
    this.resumable = options.resumable ?? false;
  }
}

/** Throws a WeftError with `code` and `message` unless `condition` holds. */
export function check(condition: boolean, code: WeftErrorCode, message: string): asserts condition {
  if (!condition) throw new WeftError(code, message);
}
