// The HTTP server behind `weft serve`: Anthropic's Messages API (POST /v1/messages, streaming or
// not) and GET /v1/models over node:http. Every failure answers in the API's error shape with its
// status; nothing a client sends can stop the server. Generation runs on the main thread, a token
// at a time: up to `concurrency` requests interleave token by token (each with its own KV cache),
// more wait in a bounded queue, and beyond that the answer is 529 overloaded_error. A client that
// disconnects, or reads too slowly to keep up, ends its own generation and nobody else's. A client
// whose headers or body stop arriving gets 408 and loses its connection once a timeout passes, so
// a stalled or vanished client holds nothing, and costs at most one log line.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Completion } from './complete.ts';
import { complete } from './complete.ts';
import type { Limits, MessagesRequest } from './messages.ts';
import {
  ApiError,
  messageObject,
  newMessageId,
  parseMessagesRequest,
  promptIds,
  sse,
  streamDelta,
  streamEnd,
  streamStart,
} from './messages.ts';
import type { ModelHost, ServedModel } from './models.ts';
import { answersTo, names } from './models.ts';

export interface ServerOptions {
  host: ModelHost;
  /** Clients must send this key (x-api-key or Authorization: Bearer); none: no check. */
  apiKey?: string;
  limits?: Partial<Limits>;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** Requests generating at once (default 4) and waiting (default 64). */
  concurrency?: number;
  maxQueued?: number;
  /** Time for a request's headers to arrive, in ms (default 10 s). */
  headersTimeoutMs?: number;
  /** Time for a request's body to arrive once its headers have, in ms (default 30 s). */
  bodyTimeoutMs?: number;
  log?: (line: string) => void;
}

export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
export const DEFAULT_BODY_TIMEOUT_MS = 30_000;

const DEFAULT_LIMITS: Limits = { maxTokens: 4096, maxStopSequences: 16, maxStopLength: 256 };
/** A stream whose client has not read this much is ended (the client is too slow). */
const MAX_UNREAD_BYTES = 4 << 20;

/** A counting semaphore with a bounded queue. */
class Slots {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly size: number,
    private readonly maxQueued: number,
  ) {}

  async acquire(): Promise<() => void> {
    if (this.active >= this.size) {
      if (this.waiting.length >= this.maxQueued)
        throw new ApiError('overloaded_error', 'the server is overloaded; retry later');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active++;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    };
  }
}

const digest = (key: string) => createHash('sha256').update(key).digest();

function authenticate(req: IncomingMessage, apiKey: string | undefined): void {
  if (apiKey === undefined) return;
  const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
  const given = (req.headers['x-api-key'] as string | undefined) ?? bearer;
  if (given === undefined)
    throw new ApiError('authentication_error', 'x-api-key header is required');
  if (!timingSafeEqual(digest(given), digest(apiKey)))
    throw new ApiError('authentication_error', 'invalid x-api-key');
}

/** The client closed its connection before its request was complete: nobody to answer. */
class ClientGone extends Error {}

/** A percent-encoded path segment; a malformed one is kept as sent (it names nothing). */
function pathPart(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

const seconds = (ms: number) => `${ms / 1000} s`;

/** The request body as JSON: at most `maxBytes`, all of it within `timeoutMs`. */
function readJson(req: IncomingMessage, maxBytes: number, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (finish: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      finish();
    };
    const timer = setTimeout(() => {
      const message = `request body not received within ${seconds(timeoutMs)}`;
      settle(() => reject(new ApiError('invalid_request_error', message, 408)));
    }, timeoutMs);
    req.on('data', (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > maxBytes) {
        const message = `request body exceeds ${maxBytes} bytes`;
        settle(() => reject(new ApiError('request_too_large', message)));
        return;
      }
      chunks.push(chunk);
    });
    // the only error a request emits: its connection closed before the body was complete
    req.on('error', () =>
      settle(() => reject(new ClientGone('the client closed the connection mid-request'))),
    );
    req.on('end', () =>
      settle(() => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch {
          reject(new ApiError('invalid_request_error', 'request body is not valid JSON'));
        }
      }),
    );
  });
}

function sendJson(res: ServerResponse, status: number, body: object): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** Answers `error` in the API's shape; anything but an ApiError is logged, in one line. */
function sendError(
  req: IncomingMessage,
  res: ServerResponse,
  error: unknown,
  log: (line: string) => void,
): void {
  const where = `${req.method} ${(req.url ?? '').slice(0, 200)}`;
  if (error instanceof ClientGone) {
    log(`${where}: ${error.message}`);
    res.destroy();
    return;
  }
  const apiError =
    error instanceof ApiError
      ? error
      : new ApiError('api_error', `internal error: ${(error as Error).message}`);
  if (!(error instanceof ApiError)) {
    log(`${where}: ${apiError.message}`);
    if (process.env.WEFT_DEBUG) log(String((error as Error).stack));
  }
  if (res.headersSent) {
    // mid-stream: the API's error event, then the end
    if (!res.writableEnded) res.end(sse('error', { error: apiError.body().error }));
    return;
  }
  // the rest of the body is not coming, or not wanted: the connection cannot be reused
  if (apiError.status === 408 || apiError.status === 413) res.setHeader('connection', 'close');
  sendJson(res, apiError.status, apiError.body());
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
};

/**
 * A request node:http could not take (malformed, or headers or body not in time): the error in
 * the API's shape and the connection closed. A connection already answering is just closed.
 */
function answerClientError(
  error: NodeJS.ErrnoException,
  socket: Duplex,
  answering: WeakSet<Duplex>,
  timeouts: string,
): void {
  if (!socket.writable || answering.has(socket) || error.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const [status, message] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, `request not received in time (${timeouts})`]
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'request headers are too large']
        : [400, `malformed HTTP request (${error.code ?? error.message})`];
  const body = JSON.stringify(new ApiError('invalid_request_error', message, status).body());
  socket.end(
    `HTTP/1.1 ${status} ${REASONS[status]}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}

/** A timeout option: a positive number of milliseconds. */
function timeoutOf(name: string, value: number | undefined, fallback: number): number {
  const ms = value ?? fallback;
  if (!Number.isFinite(ms) || ms <= 0) throw new RangeError(`${name} must be > 0 (got ${ms})`);
  return Math.ceil(ms);
}

export function createApiServer(options: ServerOptions): Server {
  const { host, apiKey } = options;
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const maxBody = options.maxBodyBytes ?? 1 << 20;
  const log = options.log ?? (() => {});
  const slots = new Slots(options.concurrency ?? 4, options.maxQueued ?? 64);
  const headersTimeout = timeoutOf(
    'headersTimeoutMs',
    options.headersTimeoutMs,
    DEFAULT_HEADERS_TIMEOUT_MS,
  );
  const bodyTimeout = timeoutOf('bodyTimeoutMs', options.bodyTimeoutMs, DEFAULT_BODY_TIMEOUT_MS);

  function modelsList() {
    const { id, loadedAt } = host.current;
    const model = { type: 'model', id, display_name: id, created_at: loadedAt.toISOString() };
    return { data: [model], has_more: false, first_id: id, last_id: id };
  }

  async function messages(request: MessagesRequest, res: ServerResponse): Promise<void> {
    const { served, release: releaseModel } = host.lease();
    try {
      await messagesOn(served, request, res);
    } finally {
      releaseModel();
    }
  }

  async function messagesOn(
    served: ServedModel,
    request: MessagesRequest,
    res: ServerResponse,
  ): Promise<void> {
    if (!answersTo(served, request.model))
      throw new ApiError(
        'not_found_error',
        `model: ${request.model} (this server has ${names(served)})`,
      );
    const ids = promptIds(served.tokenizer, request);
    const context = served.config.blockSize;
    if (ids.length > context)
      throw new ApiError(
        'invalid_request_error',
        `prompt is too long: ${ids.length} tokens > ${context} maximum`,
      );
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    const id = newMessageId();
    const release = await slots.acquire();
    try {
      if (request.stream) {
        res.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
          connection: 'keep-alive',
        });
        res.write(streamStart(id, served.id, ids.length));
      }
      const done: Completion = await complete(served.model, served.tokenizer, ids, {
        maxTokens: request.maxTokens,
        temperature: request.temperature,
        topK: request.topK,
        topP: request.topP,
        seed: request.seed,
        stopSequences: request.stopSequences,
        signal: abort.signal,
        onText: request.stream
          ? (text) => {
              res.write(streamDelta(text));
              if (res.writableLength > MAX_UNREAD_BYTES) abort.abort();
            }
          : undefined,
      });
      if (abort.signal.aborted) {
        log(`${id}: client went away after ${done.outputTokens} tokens; generation stopped`);
        res.destroy();
        return;
      }
      if (request.stream) res.end(streamEnd(done));
      else sendJson(res, 200, messageObject(id, served.id, done));
    } finally {
      release();
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    if (path === '/v1/messages') {
      if (method !== 'POST') throw new ApiError('not_found_error', `${method} ${path}: use POST`);
      authenticate(req, apiKey);
      const body = await readJson(req, maxBody, bodyTimeout);
      await messages(parseMessagesRequest(body, limits), res);
    } else if (path === '/v1/models' && method === 'GET') {
      authenticate(req, apiKey);
      sendJson(res, 200, modelsList());
    } else if (path.startsWith('/v1/models/') && method === 'GET') {
      authenticate(req, apiKey);
      const wanted = pathPart(path.slice('/v1/models/'.length));
      if (!answersTo(host.current, wanted))
        throw new ApiError('not_found_error', `model: ${wanted}`);
      sendJson(res, 200, modelsList().data[0]);
    } else {
      throw new ApiError('not_found_error', `${method} ${path || '/'}: no such endpoint`);
    }
  }

  /** Sockets with a response under way: a late client error just closes them. */
  const answering = new WeakSet<Duplex>();
  // node:http enforces the headers timeout, and the whole request's as a backstop to readJson's
  // body timeout; it checks its connections every connectionsCheckingInterval ms
  const server = createServer(
    {
      headersTimeout,
      requestTimeout: headersTimeout + bodyTimeout + 1000,
      connectionsCheckingInterval: Math.ceil(Math.min(1000, headersTimeout / 4, bodyTimeout / 4)),
    },
    (req, res) => {
      req.socket.setNoDelay(true);
      answering.add(req.socket);
      res.on('close', () => answering.delete(req.socket));
      route(req, res).catch((error: unknown) => sendError(req, res, error, log));
    },
  );
  const timeouts = `headers within ${seconds(headersTimeout)}, body within ${seconds(bodyTimeout)}`;
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) =>
    answerClientError(error, socket, answering, timeouts),
  );
  return server;
}
