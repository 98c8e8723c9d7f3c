// The HTTP server behind `weft serve`: Anthropic's Messages API (POST /v1/messages, streaming or
// not) and GET /v1/models over node:http. Every failure answers in the API's error shape with its
// status; nothing a client sends can stop the server. Generation runs on the main thread, a token
// at a time: up to `concurrency` requests interleave token by token (each with its own KV cache),
// more wait in a bounded queue, and beyond that the answer is 529 overloaded_error. A client that
// disconnects, or reads too slowly to keep up, ends its own generation and nobody else's.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
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
  log?: (line: string) => void;
}

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

function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > maxBytes) {
        failed = true;
        reject(new ApiError('request_too_large', `request body exceeds ${maxBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', (error) => reject(error));
    req.on('end', () => {
      if (failed) return;
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new ApiError('invalid_request_error', 'request body is not valid JSON'));
      }
    });
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

function sendError(res: ServerResponse, error: unknown, log: (line: string) => void): void {
  const apiError =
    error instanceof ApiError
      ? error
      : new ApiError('api_error', `internal error: ${(error as Error).message}`);
  if (!(error instanceof ApiError)) log(`error: ${(error as Error).stack ?? String(error)}`);
  if (res.headersSent) {
    // mid-stream: the API's error event, then the end
    if (!res.writableEnded) res.end(sse('error', { error: apiError.body().error }));
    return;
  }
  if (apiError.type === 'request_too_large') res.setHeader('connection', 'close');
  sendJson(res, apiError.status, apiError.body());
}

export function createApiServer(options: ServerOptions): Server {
  const { host, apiKey } = options;
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const maxBody = options.maxBodyBytes ?? 1 << 20;
  const log = options.log ?? (() => {});
  const slots = new Slots(options.concurrency ?? 4, options.maxQueued ?? 64);

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
    if (request.model !== served.id)
      throw new ApiError(
        'not_found_error',
        `model: ${request.model} (this server has ${served.id})`,
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
      const body = await readJson(req, maxBody);
      await messages(parseMessagesRequest(body, limits), res);
    } else if (path === '/v1/models' && method === 'GET') {
      authenticate(req, apiKey);
      sendJson(res, 200, modelsList());
    } else if (path.startsWith('/v1/models/') && method === 'GET') {
      authenticate(req, apiKey);
      const model = modelsList().data[0];
      const wanted = decodeURIComponent(path.slice('/v1/models/'.length));
      if (wanted !== model.id) throw new ApiError('not_found_error', `model: ${wanted}`);
      sendJson(res, 200, model);
    } else {
      throw new ApiError('not_found_error', `${method} ${path || '/'}: no such endpoint`);
    }
  }

  const server = createServer((req, res) => {
    req.socket.setNoDelay(true);
    route(req, res).catch((error: unknown) => sendError(res, error, log));
  });
  server.on('clientError', (_, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
  });
  return server;
}
