// WebSocket transport for processes and machines: the only file that imports `ws`. Each
// binary frame is one msgpack message (codec.ts). A bad frame (too large, not msgpack, wrong
// version or schema) is answered with reject {code, message} and closes that one connection;
// the process and its other connections go on.
//
// Before authentication. Until the handshake succeeds (transport.ts calls authenticated()), a
// link takes only handshake-sized frames (Limits.maxHandshakeFrameBytes, 4 KiB): ws cuts off a
// frame announcing more than twice that at its header, unread, and a listener drops the
// connection at once, so a peer without the secret makes us buffer a few KiB, never the 256 MiB
// an authenticated peer may send. A listener also ends every connection, upgraded or not, that
// has not authenticated PRE_AUTH_TIMEOUT_MS after it was accepted.

import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import { WeftError } from '../../util/errors.ts';
import { decodeChunkFrame, encodeChunkFrame, isChunkFrame } from '../chunk-frame.ts';
import { decodeFrame, encodeFrame } from '../codec.ts';
import type { Limits, Message } from '../messages.ts';
import { DEFAULT_LIMITS, handshakeLimits, msg } from '../messages.ts';
import type { Connection, Listener, Network } from '../transport.ts';
import { BaseConnection } from '../transport.ts';

/** Counts frames refused per error code (for tests and the status line). */
export const refusedFrames = new Map<string, number>();

/**
 * How long a listener lets a connection go unauthenticated (from TCP accept; the handshake's own
 * 10 s timeout usually ends it first, politely; this one also ends connections that never upgrade
 * or that ignore the close).
 */
export const PRE_AUTH_TIMEOUT_MS = 15_000;

/** Longest reject message text sent (reject messages can quote what the peer sent). */
const REJECT_TEXT_CHARS = 200;

/**
 * How long a closed link waits for the peer's closing handshake before its socket is destroyed
 * (ws's default, 30 s, kept a finished worker's process alive that long when a peer's machine
 * had gone silent).
 */
const CLOSE_TIMEOUT_MS = 2_000;
/** ws's option for it (in ws 8.23; @types/ws 8.18 does not list it, hence spread in). */
const closeTimeout = { closeTimeout: CLOSE_TIMEOUT_MS };

/** A message's bytes (ws hands them as the fragments they came in: joined here when several). */
function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return data.length === 1 ? data[0] : Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

function countRefusal(code: string): void {
  refusedFrames.set(code, (refusedFrames.get(code) ?? 0) + 1);
}

/**
 * Sets the largest message `socket` takes from now on (bytes). ws fixes maxPayload when a socket
 * opens and has no public way to change it, so this writes its receiver's private `_maxPayload`,
 * which ws 8.23.0 (pinned in package.json) reads afresh at every frame header (lib/receiver.js,
 * haveLength). Should an upgrade drop the field, this throws rather than leave authenticated
 * peers at the handshake limit, and tests/distributed/preauth.test.ts fails.
 */
export function setMaxPayload(socket: WebSocket, bytes: number): void {
  const receiver = (socket as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number') {
    throw new WeftError(
      'WEFT_E_NETWORK',
      'this ws has no receiver._maxPayload, so the handshake frame limit cannot be lifted; weft needs ws 8.23.0 (npm ci)',
    );
  }
  receiver._maxPayload = bytes;
}

class WsConnection extends BaseConnection {
  readonly remote: string;
  private trusted = false;
  /** Send the reduce-scatter's sums in 32 bits (links to other machines). */
  private readonly compactSums: boolean;
  /** Pieces sent whose bytes the socket has not taken yet, and who waits for none to be left. */
  private unflushed = 0;
  private readonly flushWaiters: (() => void)[] = [];

  constructor(
    private readonly socket: WebSocket,
    remote: string,
    private readonly limits: Limits,
    /** Send the reduce-scatter's sums in 32 bits: by default only to another machine. */
    compactSums: boolean | undefined,
    /** Called once authenticated (a listener stops the connection's deadline). */
    private readonly onAuthenticated: () => void = () => {},
  ) {
    super();
    this.remote = remote;
    // the sums' 32-bit encoding halves a network's bytes; on loopback it costs more than it saves
    const host = remote
      .replace(/:\d+$/, '')
      .replace(/^\[|\]$/g, '')
      .replace(/^::ffff:/, '');
    this.compactSums = compactSums ?? !isLoopbackHost(host);
    socket.binaryType = 'fragments'; // a piece's numbers are read where they arrived, not joined
    socket.on('message', (data, isBinary) => this.receive(data, isBinary));
    socket.on('close', (code, reason) => {
      this.releaseFlushWaiters(); // nothing more will be read from the pieces' buffers
      this.closed(reason.toString() || `connection closed (code ${code})`);
    });
    socket.on('error', (err: Error & { code?: string }) => {
      if (err.code !== 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        this.closed(`connection error: ${err.message}`);
        return;
      }
      // ws read the header of a frame past twice the limit and none of its payload
      countRefusal('WEFT_E_FRAME');
      const limit = this.frameLimits().maxFrameBytes;
      const when = this.trusted ? '' : ' before authentication';
      if (!this.trusted) socket.terminate(); // no polite close for a peer without the secret
      this.closed(`frame over twice the limit of ${limit} bytes${when}, cut off [WEFT_E_FRAME]`);
    });
  }

  private frameLimits(): Limits {
    return this.trusted ? this.limits : handshakeLimits(this.limits);
  }

  private receive(data: RawData, isBinary: boolean): void {
    let message: Message;
    try {
      if (!isBinary)
        throw new WeftError('WEFT_E_DECODE', 'text frame; weft speaks binary msgpack frames');
      // (an empty message arrives as no fragments at all)
      const fragments = Array.isArray(data) ? data : [toBytes(data)];
      if (fragments.length === 0) fragments.push(Buffer.alloc(0));
      // (a peer may cut a frame into fragments anywhere, even inside the magic)
      const first = fragments[0].length >= 4 ? fragments[0] : Buffer.concat(fragments);
      if (isChunkFrame(first)) {
        if (!this.trusted)
          throw new WeftError('WEFT_E_FRAME', 'a binary piece frame before authentication');
        message = decodeChunkFrame(fragments, this.limits);
      } else {
        message = decodeFrame(toBytes(data), this.frameLimits());
      }
    } catch (err) {
      const e = err instanceof WeftError ? err : new WeftError('WEFT_E_DECODE', String(err));
      countRefusal(e.code);
      this.send(msg('reject', { code: e.code, message: e.message.slice(0, REJECT_TEXT_CHARS) }));
      this.close(`${e.message} [${e.code}]`);
      return;
    }
    this.deliver(message);
  }

  authenticated(): void {
    if (this.trusted) return;
    setMaxPayload(this.socket, 2 * this.limits.maxFrameBytes);
    this.trusted = true;
    this.onAuthenticated();
  }

  send(message: Message): void {
    if (this.socket.readyState !== WebSocket.OPEN) return;
    if (message.t !== 'chunk' || !this.trusted) return this.socket.send(encodeFrame(message));
    // a piece: its binary frame, the numbers sent from the caller's buffer until flushed()
    const parts = encodeChunkFrame(message, this.compactSums);
    if (parts.length === 1) return this.socket.send(parts[0]); // a compact copy: nothing to wait for
    this.unflushed++;
    this.socket.send(parts[0], { binary: true, fin: false });
    this.socket.send(parts[1], { binary: true, fin: true }, this.onFlushed);
  }

  /** Resolves once every piece sent so far has been handed to the socket (or the link failed). */
  flushed(): Promise<void> {
    if (this.unflushed <= 0 || this.isClosed) return Promise.resolve();
    return new Promise((resolve) => this.flushWaiters.push(resolve));
  }

  private readonly onFlushed = () => {
    if (--this.unflushed <= 0) this.releaseFlushWaiters();
  };

  private releaseFlushWaiters(): void {
    this.unflushed = 0;
    for (const resolve of this.flushWaiters.splice(0)) resolve();
  }

  close(reason = 'closed'): void {
    // close reasons are limited to 123 bytes by the WebSocket protocol
    const short = Buffer.from(reason).subarray(0, 120).toString();
    if (
      this.socket.readyState === WebSocket.OPEN ||
      this.socket.readyState === WebSocket.CONNECTING
    )
      this.socket.close(1000, short);
    this.closed(reason);
  }

  /** Ends the connection now, without the closing handshake. */
  terminate(reason: string): void {
    this.socket.terminate();
    this.closed(reason);
  }

  /**
   * Sends raw bytes, bypassing the encoder (for tests of the receiving side); `fin` false makes
   * them a fragment of a message the next calls continue.
   */
  sendRaw(bytes: Uint8Array, fin = true): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(bytes, { binary: true, fin });
  }
}

/**
 * A listener's connections that have not authenticated yet, each with the timer that ends it.
 * Entered at TCP accept; left on authentication or close.
 */
class PreAuthDeadlines {
  private readonly pending = new Map<
    Socket,
    { timer: NodeJS.Timeout; conn: WsConnection | null }
  >();

  constructor(private readonly timeoutMs: number) {}

  accepted(tcp: Socket): void {
    const timer = setTimeout(() => this.expire(tcp), this.timeoutMs);
    timer.unref();
    this.pending.set(tcp, { timer, conn: null });
    tcp.once('close', () => this.leave(tcp));
  }

  upgraded(tcp: Socket, conn: WsConnection): void {
    const entry = this.pending.get(tcp);
    if (entry) entry.conn = conn;
  }

  leave(tcp: Socket): void {
    const entry = this.pending.get(tcp);
    if (entry) clearTimeout(entry.timer);
    this.pending.delete(tcp);
  }

  private expire(tcp: Socket): void {
    const conn = this.pending.get(tcp)?.conn;
    this.leave(tcp);
    if (conn) conn.terminate(`not authenticated within ${this.timeoutMs / 1000} s`);
    else tcp.destroy();
  }
}

/** Whether `host` (an address) is this machine's loopback. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

/** host:port, or ws://host:port, to [host, port]. */
export function parseAddress(address: string): [string, number] {
  const m = /^(?:ws:\/\/)?(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(address);
  if (!m || Number(m[2]) > 65535) {
    throw new WeftError('WEFT_E_CONFIG', `address ${address} is not HOST:PORT (or ws://HOST:PORT)`);
  }
  return [m[1].replace(/^\[|\]$/g, ''), Number(m[2])];
}

export interface WsOptions {
  /** A listener ends connections not authenticated this long after accept (ms). */
  preAuthTimeoutMs?: number;
  /** Send the sums in 32 bits on every link, or on none (default: links to other machines). */
  compactSums?: boolean;
}

/** A plain HTTP request on the listening port (no body is read). */
export interface HttpRequest {
  method: string;
  /** The path, without the query. */
  path: string;
  headers: IncomingHttpHeaders;
}

/** The answer: a string or bytes with their content type, or anything else as JSON. */
export interface HttpAnswer {
  status: number;
  body: unknown;
  type?: string;
  headers?: Record<string, string>;
}

/**
 * Answers plain HTTP on the listening port (health probes, the status page); undefined for a
 * request it does not serve, which gets 426 (Upgrade Required) as without one.
 */
export type HttpResponder = (request: HttpRequest) => HttpAnswer | undefined;

/** Writes `answer` (JSON unless it is a string or bytes with a type). */
export function writeAnswer(response: ServerResponse, answer: HttpAnswer): void {
  const raw = typeof answer.body === 'string' || answer.body instanceof Uint8Array;
  response.writeHead(answer.status, {
    'Content-Type': raw ? (answer.type ?? 'text/plain; charset=utf-8') : 'application/json',
    ...answer.headers,
  });
  response.end(raw ? (answer.body as string | Uint8Array) : `${JSON.stringify(answer.body)}\n`);
}

/** Answers `request` with `respond`, or 426 where it has nothing (a WebSocket port's default). */
export function answerHttp(
  request: IncomingMessage,
  response: ServerResponse,
  respond: HttpResponder | undefined,
): void {
  const path = (request.url ?? '/').split('?')[0];
  const method = request.method ?? 'GET';
  let answer: HttpAnswer | undefined;
  try {
    answer = respond?.({ method, path, headers: request.headers });
  } catch (err) {
    answer = { status: 500, body: { error: (err as Error).message } };
  }
  if (answer !== undefined) return writeAnswer(response, answer);
  response.writeHead(426, { 'Content-Type': 'text/plain' });
  response.end('weft speaks WebSocket here\n');
}

export class WsNetwork implements Network {
  private readonly preAuthTimeoutMs: number;
  private readonly compactSums: boolean | undefined;

  constructor(
    private readonly limits: Limits = DEFAULT_LIMITS,
    options: WsOptions = {},
  ) {
    this.preAuthTimeoutMs = options.preAuthTimeoutMs ?? PRE_AUTH_TIMEOUT_MS;
    this.compactSums = options.compactSums;
  }

  /** ws's own cut-off, at twice our limit: between 1x and 2x, decodeFrame refuses with a reject. */
  private handshakeMaxPayload(): number {
    return 2 * handshakeLimits(this.limits).maxFrameBytes;
  }

  listen(
    address: string,
    onConnection: (connection: Connection) => void,
    respond?: HttpResponder,
  ): Promise<Listener> {
    const [host, port] = parseAddress(address);
    const deadlines = new PreAuthDeadlines(this.preAuthTimeoutMs);
    // our own HTTP server, to see connections from accept on (before any upgrade request)
    const http = createServer((request, response) => {
      // one plain HTTP request (a probe, the status page) per connection: the pre-auth deadline
      // still covers it, and no kept-alive socket outlives it into an upgrade
      response.shouldKeepAlive = false;
      answerHttp(request, response, respond);
    });
    http.on('connection', (tcp: Socket) => deadlines.accepted(tcp));
    const server = new WebSocketServer({
      server: http,
      maxPayload: this.handshakeMaxPayload(), // raised per connection once it authenticates
      perMessageDeflate: false,
      ...closeTimeout,
    });
    server.on('connection', (socket, request) => {
      const tcp = request.socket;
      const remote = `${tcp.remoteAddress ?? '?'}:${tcp.remotePort ?? '?'}`;
      const conn = new WsConnection(socket, remote, this.limits, this.compactSums, () =>
        deadlines.leave(tcp),
      );
      deadlines.upgraded(tcp, conn);
      onConnection(conn);
    });
    return new Promise((resolve, reject) => {
      // ws passes on the HTTP server's errors (listen, and accept failures such as EMFILE later)
      server.on('error', (err) =>
        reject(new WeftError('WEFT_E_NETWORK', `cannot listen on ${address}: ${err.message}`)),
      );
      http.listen(port, host, () => {
        const bound = http.address();
        const actual = typeof bound === 'object' && bound ? bound.port : port;
        resolve({
          address: `${host.includes(':') ? `[${host}]` : host}:${actual}`,
          close: () =>
            new Promise<void>((done) => {
              for (const client of server.clients) client.terminate();
              server.close();
              http.closeAllConnections();
              http.close(() => done());
            }),
        });
      });
    });
  }

  connect(address: string): Promise<Connection> {
    const [host, port] = parseAddress(address);
    const url = `ws://${host.includes(':') ? `[${host}]` : host}:${port}`;
    return new Promise((resolve, reject) => {
      // A zero masking key skips the per-byte XOR on both ends (ws checks for it). Masking protects
      // browser traffic from poisoning proxy caches; weft's clients are not browsers, and without
      // the native bufferutil addon the XOR in JavaScript cut throughput by 5x.
      const socket = new WebSocket(url, {
        maxPayload: this.handshakeMaxPayload(), // raised once the server proves the secret
        perMessageDeflate: false,
        generateMask: (mask) => mask.fill(0),
        handshakeTimeout: 15_000, // a peer that never answers fails (and is retried) like a refusal
        ...closeTimeout,
      });
      socket.once('open', () =>
        resolve(new WsConnection(socket, `${host}:${port}`, this.limits, this.compactSums)),
      );
      socket.once('error', (err) =>
        reject(new WeftError('WEFT_E_NETWORK', `cannot connect to ${url}: ${err.message}`)),
      );
    });
  }
}

/** A raw client for fuzz tests: connects and exposes sendRaw on the connection. */
export async function connectRaw(
  address: string,
): Promise<Connection & { sendRaw(bytes: Uint8Array, fin?: boolean): void }> {
  return (await new WsNetwork().connect(address)) as WsConnection;
}
