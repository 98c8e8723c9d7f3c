// The wire protocol: every message weft peers exchange, with a schema per type. A message is a
// plain object {v: PROTOCOL_VERSION, t: type, ...fields}; validateMessage checks the version, the
// type, that every field has its declared type and that no other field is present. Three links
// use it: handshake (any link), control (coordinator <-> worker) and peer (worker <-> worker).

import type { StageRange } from '../model/stage.ts';
import { copyStage } from '../model/stage.ts';
import { CompactSums } from './compact-sums.ts';
import { WeftError } from '../util/errors.ts';

/**
 * 2: a collective's pieces carry their offset, and travel as binary frames on WebSocket links.
 * 3: stepTime. 4: pipelines (assign.stage, act, norm blocks), wte's two parts rounded apart.
 * 5: objectives: batches' refLogps, shardDone's metric sums. 6: ready.kernel.
 */
export const PROTOCOL_VERSION = 6;

/** A field's type: scalars, typed arrays, arrays of a type, or a nested schema. */
type FieldType =
  | 'string'
  | 'int'
  | 'number'
  | 'bool'
  | 'f32'
  | 'f64'
  /** Exact sums in 32 bits (compact-sums.ts), as the binary frame decoder hands them on. */
  | 'sums32'
  | 'i32'
  | 'object' // any plain JSON-like object, validated by its consumer (run config, tokenizer)
  | { array: FieldType }
  | { oneOf: readonly string[] }
  | { fields: Schema };
type Schema = Record<string, FieldType | { optional: FieldType }>;

/** A worker as its peers know it; `stage`: its pipeline stage, in a pipeline run. */
const member = {
  fields: { rank: 'int', name: 'string', address: 'string', stage: { optional: 'int' } },
} as const;
/** refLogps: a dpo batch's reference log-probs, one per row (train/objectives.ts). */
const batch = {
  fields: { shard: 'int', idx: 'i32', targets: 'i32', refLogps: { optional: 'f64' } },
} as const;

export const SCHEMAS = {
  // handshake: challenge (server) -> hello (client) -> welcome (server); reject ends it
  challenge: { nonce: 'string', auth: 'bool' },
  hello: {
    name: 'string',
    role: { oneOf: ['worker', 'peer'] },
    nonce: 'string',
    proof: 'string',
    peerAddress: { optional: 'string' },
    rank: { optional: 'int' },
    runId: { optional: 'string' },
  },
  welcome: { proof: 'string' },
  reject: { code: 'string', message: 'string' },
  // control, coordinator -> worker
  assign: {
    rank: 'int',
    runId: 'string',
    config: 'object',
    tokenizer: 'object',
    dataPath: 'string',
    dataSha256: 'string',
    heartbeatMs: 'int',
    timeoutMs: 'int',
    exactBits: 'int',
    /** The model and optimizer state follow in state messages (a resumed run). */
    resume: 'bool',
    /** Kernel backend every worker uses (the same everywhere, for bit-identical sums). */
    backend: { oneOf: ['reference', 'wasm', 'wasm-fma', 'gpu', 'blas'] },
    /** Which plan of the run this is (0 the first; a re-planned pipeline's are higher). */
    plan: { optional: 'int' },
    /** A pipeline run: this worker's stage (its replica and stage follow from its place in members). */
    stage: {
      optional: {
        fields: { index: 'int', stages: 'int', firstLayer: 'int', endLayer: 'int' },
      },
    },
  },
  start: {
    step: 'int',
    attempt: 'int',
    lr: 'number',
    targetCount: 'int',
    members: { array: member },
    shards: { array: 'int' },
    batches: { array: batch },
  },
  abort: { step: 'int', attempt: 'int', reason: 'string' },
  /** gradNorm: a pipeline's global norm, from every stage's blocks (workers hold only theirs). */
  commit: { step: 'int', attempt: 'int', skip: 'bool', gradNorm: { optional: 'number' } },
  evaluate: { step: 'int', maxWindows: 'int', tokens: 'i32' },
  /** id: echoed in the state pieces that answer it, so pieces of an earlier fetch are told apart. */
  fetch: { what: { oneOf: ['state'] }, id: { optional: 'int' } },
  shutdown: { reason: 'string' },
  // control, worker -> coordinator (state goes both ways: weights and AdamW moments in pieces)
  /** plan: the assign's (a re-planned pipeline's), echoed so a late ready of an earlier one is told apart. */
  /** kernel: what the worker's sums depend on (kernels/backend.ts bitsIdentity); all must agree. */
  ready: { dataLocal: 'bool', plan: { optional: 'int' }, kernel: 'string' },
  shardDone: {
    step: 'int',
    attempt: 'int',
    shard: 'int',
    lossSum: 'number',
    targets: 'int',
    overflow: 'bool',
    /** The objective's metric sums over the shard (train/objectives.ts), when it has any. */
    sums: { optional: 'f64' },
  },
  /**
   * A pipeline stage also sends the sums of squares of the norm's blocks it owns (train/norm.ts:
   * their indices and sums) and whether any of its values overflowed the exact grid.
   */
  reduced: {
    step: 'int',
    attempt: 'int',
    gradNorm: 'number',
    normBlocks: { optional: 'i32' },
    normSums: { optional: 'f64' },
    overflow: { optional: 'bool' },
  },
  /** Where the worker's time went in step `step` (1-based, as metrics.jsonl counts): step-clock.ts. */
  stepTime: {
    step: 'int',
    computeMs: 'number',
    commMs: 'number',
    overlapMs: 'number',
    waitMs: 'number',
    dataMs: 'number',
    optimMs: 'number',
  },
  evalResult: {
    step: 'int',
    loss: 'number',
    ppl: 'number',
    bpb: 'number',
    tokens: 'int',
    bytes: 'int',
  },
  state: {
    what: { oneOf: ['params', 'm', 'v'] },
    offset: 'int',
    total: 'int',
    data: 'f32',
    adamSteps: 'int',
    /** The id of the fetch it answers (worker -> coordinator). */
    fetch: { optional: 'int' },
  },
  leave: { reason: 'string' },
  // both directions, any link
  ping: {},
  // peer, worker <-> worker: a micro-batch's activation to the next pipeline stage, or its
  // gradient back to the previous one
  act: {
    step: 'int',
    attempt: 'int',
    what: { oneOf: ['act', 'grad'] },
    mb: 'int',
    data: 'f32',
  },
  // peer, worker <-> worker: one piece of a collective
  chunk: {
    step: 'int',
    attempt: 'int',
    bucket: 'int',
    phase: { oneOf: ['rs', 'ag'] },
    round: 'int',
    /** Where this piece starts in its chunk (elements; a multiple of collectives.PIECE_ELEMS). */
    offset: 'int',
    data: { oneOf: ['f64', 'f32', 'sums32'] },
  },
} as const satisfies Record<string, Schema>;

export type MessageType = keyof typeof SCHEMAS;

// TypeScript types of the fields, derived from the schemas
type TypeOf<F> = F extends 'string'
  ? string
  : F extends 'int' | 'number'
    ? number
    : F extends 'bool'
      ? boolean
      : F extends 'f32'
        ? Float32Array
        : F extends 'f64'
          ? Float64Array
          : F extends 'i32'
            ? Int32Array
            : F extends 'object'
              ? Record<string, unknown>
              : F extends { array: infer E }
                ? TypeOf<E>[]
                : F extends { oneOf: readonly (infer O)[] }
                  ? O extends 'f64'
                    ? Float64Array
                    : O extends 'f32'
                      ? Float32Array
                      : O extends 'sums32'
                        ? CompactSums
                        : O
                  : F extends { fields: infer S }
                    ? FieldsOf<S>
                    : never;
type FieldsOf<S> = {
  [K in keyof S as S[K] extends { optional: unknown } ? never : K]: TypeOf<S[K]>;
} & {
  [K in keyof S as S[K] extends { optional: unknown } ? K : never]?: S[K] extends {
    optional: infer O;
  }
    ? TypeOf<O>
    : never;
};

export type MessageOf<T extends MessageType> = { v: typeof PROTOCOL_VERSION; t: T } & FieldsOf<
  (typeof SCHEMAS)[T]
>;
export type Message = { [T in MessageType]: MessageOf<T> }[MessageType];
export type Member = MessageOf<'start'>['members'][number];

/** Builds a message of type `t` (adds the version). */
export function msg<T extends MessageType>(
  t: T,
  fields: Omit<MessageOf<T>, 'v' | 't'>,
): MessageOf<T> {
  return { v: PROTOCOL_VERSION, t, ...fields } as MessageOf<T>;
}

export interface Limits {
  /** Largest encoded frame accepted from an authenticated peer, in bytes. */
  maxFrameBytes: number;
  /** Largest typed array (elements) in a message. */
  maxTensorElements: number;
  /**
   * Largest encoded frame accepted before the handshake completes, in bytes: room for the
   * handshake's own messages and no more, so a peer without the secret cannot make a process
   * buffer large frames (see transports/ws.ts). Default: DEFAULT_LIMITS's.
   */
  maxHandshakeFrameBytes?: number;
}

export const DEFAULT_LIMITS: Required<Limits> = {
  maxFrameBytes: 256 * 2 ** 20,
  maxTensorElements: 64 * 2 ** 20,
  // encoded sizes: challenge 64 bytes, welcome 88, hello 229-257 with a 34-character name,
  // a bracketed IPv6 peer address or a 64-character run id; reject 50 plus its message
  maxHandshakeFrameBytes: 4 * 2 ** 10,
};

/** The limits that apply before the handshake completes: handshake-sized frames only. */
export function handshakeLimits(limits: Limits): Limits {
  return {
    ...limits,
    maxFrameBytes: Math.min(
      limits.maxFrameBytes,
      limits.maxHandshakeFrameBytes ?? DEFAULT_LIMITS.maxHandshakeFrameBytes,
    ),
  };
}

function schemaError(message: string): WeftError {
  return new WeftError('WEFT_E_SCHEMA', message);
}

/** Classes of the array-like fields (checked with instanceof, and their length against the limits). */
const TYPED: Record<string, new (...args: never[]) => { readonly length: number }> = {
  f32: Float32Array,
  f64: Float64Array,
  sums32: CompactSums,
  i32: Int32Array,
};

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype
  );
}

function checkField(value: unknown, type: FieldType, path: string, limits: Limits): void {
  if (typeof type === 'string') {
    const ctor = TYPED[type];
    if (ctor) {
      if (!(value instanceof ctor)) throw schemaError(`${path} must be a ${ctor.name}`);
      const length = (value as { length: number }).length;
      if (length > limits.maxTensorElements) {
        throw new WeftError(
          'WEFT_E_FRAME',
          `${path} has ${length} elements, over the limit of ${limits.maxTensorElements}`,
        );
      }
      return;
    }
    const ok =
      type === 'string'
        ? typeof value === 'string'
        : type === 'bool'
          ? typeof value === 'boolean'
          : type === 'int'
            ? Number.isSafeInteger(value)
            : type === 'number'
              ? typeof value === 'number' && !Number.isNaN(value)
              : isPlainObject(value);
    if (!ok) throw schemaError(`${path} must be ${type === 'int' ? 'an integer' : `a ${type}`}`);
    return;
  }
  if ('array' in type) {
    if (!Array.isArray(value)) throw schemaError(`${path} must be an array`);
    value.forEach((item, i) => checkField(item, type.array, `${path}[${i}]`, limits));
  } else if ('oneOf' in type) {
    const typed = type.oneOf.filter((o) => o in TYPED);
    if (typed.length > 0) {
      if (!typed.some((o) => value instanceof TYPED[o]))
        throw schemaError(`${path} must be one of ${typed.join(', ')}`);
      checkField(value, typed.find((o) => value instanceof TYPED[o]) as FieldType, path, limits);
    } else if (!type.oneOf.includes(value as string)) {
      throw schemaError(`${path} must be one of ${type.oneOf.join(', ')}`);
    }
  } else {
    checkObject(value, type.fields, path, limits);
  }
}

function checkObject(
  value: unknown,
  schema: Schema,
  path: string,
  limits: Limits,
  skip: string[] = [],
): void {
  if (!isPlainObject(value)) throw schemaError(`${path} must be an object`);
  for (const key of Object.keys(value)) {
    if (!(key in schema) && !skip.includes(key))
      throw schemaError(`${path} has unexpected field ${key}`);
  }
  for (const [key, spec] of Object.entries(schema)) {
    const optional = typeof spec === 'object' && 'optional' in spec;
    const field = value[key];
    if (field === undefined) {
      if (!optional) throw schemaError(`${path}.${key} is missing`);
      continue;
    }
    checkField(field, optional ? spec.optional : spec, `${path}.${key}`, limits);
  }
}

/** Checks an untrusted decoded value against the protocol; returns it typed. */
export function validateMessage(value: unknown, limits: Limits = DEFAULT_LIMITS): Message {
  if (!isPlainObject(value)) throw schemaError('message is not an object');
  if (value.v !== PROTOCOL_VERSION) {
    throw new WeftError(
      'WEFT_E_VERSION',
      `peer speaks protocol version ${String(value.v)}; this weft speaks ${PROTOCOL_VERSION}`,
    );
  }
  const type = value.t;
  if (typeof type !== 'string' || !Object.hasOwn(SCHEMAS, type))
    throw schemaError(`unknown message type ${JSON.stringify(type)}`);
  checkObject(value, SCHEMAS[type as MessageType], type, limits, ['v', 't']);
  return value as unknown as Message;
}

/**
 * `message` with a collective's piece copied out of the sender's memory (a piece is a view of
 * buffers the sender goes on using, possibly shared memory, which posting would share, not copy).
 */
export function detached(message: Message): Message {
  return message.t === 'chunk' ? { ...message, data: message.data.slice() } : message;
}

/** Weights, AdamW moments and AdamW's update count: what a worker holds beyond the config. */
export interface TrainingState {
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  adamSteps: number;
}

/** Largest piece of state in one message (elements). */
const STATE_PIECE = 2 ** 22;

/** The part of a whole model's state that a pipeline stage holds (copies), by its ranges (model/stage.ts). */
export function stageState(state: TrainingState, ranges: StageRange[]): TrainingState {
  const size = ranges.reduce((n, r) => Math.max(n, r.stage + r.size), 0);
  const part = (whole: Float32Array) => {
    const out = new Float32Array(size);
    copyStage(ranges, out, whole, 'stage');
    return out;
  };
  return {
    params: part(state.params),
    m: part(state.m),
    v: part(state.v),
    adamSteps: state.adamSteps,
  };
}

/** A state as state messages of at most STATE_PIECE elements each (the data are copies). */
export function statePieces(state: TrainingState): MessageOf<'state'>[] {
  const pieces: MessageOf<'state'>[] = [];
  for (const what of ['params', 'm', 'v'] as const) {
    const source = state[what];
    for (let offset = 0; offset < source.length; offset += STATE_PIECE) {
      const data = source.slice(offset, Math.min(source.length, offset + STATE_PIECE));
      pieces.push(
        msg('state', { what, offset, total: source.length, data, adamSteps: state.adamSteps }),
      );
    }
  }
  return pieces;
}
