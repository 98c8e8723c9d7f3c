// WebSocket transport for processes and machines: the only file that imports `ws`. Each
// binary frame is one msgpack message (codec.ts). A bad frame (too large, not msgpack, wrong
// version or schema) is answered with reject {code, message} and closes that one connection;
// the process and its other connections go on.

import { WebSocket, WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import { WeftError } from '../../util/errors.ts';
import { decodeFrame, encodeFrame } from '../codec.ts';
import type { Limits, Message } from '../messages.ts';
import { DEFAULT_LIMITS, msg } from '../messages.ts';
import type { Connection, Listener, Network } from '../transport.ts';
import { BaseConnection } from '../transport.ts';

/** Counts frames refused per error code (for tests and the status line). */
export const refusedFrames = new Map<string, number>();

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

class WsConnection extends BaseConnection {
  readonly remote: string;

  constructor(
    private readonly socket: WebSocket,
    remote: string,
    private readonly limits: Limits,
  ) {
    super();
    this.remote = remote;
    socket.binaryType = 'nodebuffer';
    socket.on('message', (data, isBinary) => {
      let message: Message;
      try {
        if (!isBinary)
          throw new WeftError('WEFT_E_DECODE', 'text frame; weft speaks binary msgpack frames');
        message = decodeFrame(toBytes(data), this.limits);
      } catch (err) {
        const e = err instanceof WeftError ? err : new WeftError('WEFT_E_DECODE', String(err));
        refusedFrames.set(e.code, (refusedFrames.get(e.code) ?? 0) + 1);
        this.send(msg('reject', { code: e.code, message: e.message }));
        this.close(`${e.message} [${e.code}]`);
        return;
      }
      this.deliver(message);
    });
    socket.on('close', (code, reason) =>
      this.closed(reason.toString() || `connection closed (code ${code})`),
    );
    socket.on('error', (err) => this.closed(`connection error: ${err.message}`));
  }

  send(message: Message): void {
    if (this.socket.readyState !== WebSocket.OPEN) return;
    this.socket.send(encodeFrame(message));
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

  /** Sends raw bytes, bypassing the encoder (for fuzz tests of the receiving side). */
  sendRaw(bytes: Uint8Array): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(bytes);
  }
}

/** host:port, or ws://host:port, to [host, port]. */
export function parseAddress(address: string): [string, number] {
  const m = /^(?:ws:\/\/)?(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(address);
  if (!m || Number(m[2]) > 65535) {
    throw new WeftError('WEFT_E_CONFIG', `address ${address} is not HOST:PORT (or ws://HOST:PORT)`);
  }
  return [m[1].replace(/^\[|\]$/g, ''), Number(m[2])];
}

export class WsNetwork implements Network {
  constructor(private readonly limits: Limits = DEFAULT_LIMITS) {}

  listen(address: string, onConnection: (connection: Connection) => void): Promise<Listener> {
    const [host, port] = parseAddress(address);
    return new Promise((resolve, reject) => {
      // ws itself cuts off frames past twice the limit; between 1x and 2x, decodeFrame refuses them with a reject
      const server = new WebSocketServer({
        host,
        port,
        maxPayload: 2 * this.limits.maxFrameBytes,
        perMessageDeflate: false,
      });
      server.on('error', (err) =>
        reject(new WeftError('WEFT_E_NETWORK', `cannot listen on ${address}: ${err.message}`)),
      );
      server.on('connection', (socket, request) => {
        const remote = `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? '?'}`;
        onConnection(new WsConnection(socket, remote, this.limits));
      });
      server.on('listening', () => {
        const bound = server.address();
        const actual = typeof bound === 'object' && bound ? bound.port : port;
        resolve({
          address: `${host.includes(':') ? `[${host}]` : host}:${actual}`,
          close: () =>
            new Promise<void>((done) => {
              for (const client of server.clients) client.terminate();
              server.close(() => done());
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
        maxPayload: 2 * this.limits.maxFrameBytes,
        perMessageDeflate: false,
        generateMask: (mask) => mask.fill(0),
      });
      socket.once('open', () => resolve(new WsConnection(socket, `${host}:${port}`, this.limits)));
      socket.once('error', (err) =>
        reject(new WeftError('WEFT_E_NETWORK', `cannot connect to ${url}: ${err.message}`)),
      );
    });
  }
}

/** A raw client for fuzz tests: connects and exposes sendRaw on the connection. */
export async function connectRaw(
  address: string,
): Promise<Connection & { sendRaw(bytes: Uint8Array): void }> {
  return (await new WsNetwork().connect(address)) as WsConnection;
}
