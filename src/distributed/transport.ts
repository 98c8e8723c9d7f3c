// One interface for every link (WebSocket between processes and machines, MessagePort between
// threads, in-memory for simulations): a Connection carries validated Messages both ways, and a
// Network listens and dials by address. Also the two ends of the handshake, as awaited steps
// over any Connection.

import { WeftError } from '../util/errors.ts';
import type { Message, MessageOf } from './messages.ts';
import { msg } from './messages.ts';
import type { Role } from './protocol/handshake.ts';
import {
  acceptHello,
  answerChallenge,
  challenge,
  checkWelcome,
  newNonce,
} from './protocol/handshake.ts';

export interface Connection {
  /** The other end, for logs (an address, or a thread or node name). */
  readonly remote: string;
  /** Sends a message. Typed arrays in it may be transferred: the sender must not reuse them. */
  send(message: Message): void;
  /** Closes the link; `reason` is logged on both sides where possible. */
  close(reason?: string): void;
  /** Receives every valid message, in order; messages arriving while it is null wait in a queue. */
  onMessage: ((message: Message) => void) | null;
  /** Called once when the link closes for any reason (peer gone, bad frame, close()). */
  onClose: ((reason: string) => void) | null;
  /**
   * Resolves once the link no longer reads from the buffers of the messages sent so far (a link
   * that sends a collective's pieces from the caller's memory, without a copy). Links that copy
   * at send leave it out.
   */
  flushed?(): Promise<void>;
  /**
   * The handshake succeeded: lifts the limits that held before it (a WebSocket's handshake-sized
   * frame limit). Called synchronously from the handler of the message that completed the
   * handshake, so the next frame on the link is already read under the new limits. Throws when
   * they cannot be lifted. Links that need no such limit (threads, in-memory) leave it out.
   */
  authenticated?(): void;
}

/**
 * The buffering every transport shares: messages that arrive while no handler is set (between
 * the handshake and its owner taking over) are queued, never lost, and a close that happens
 * before onClose is set is reported when it is.
 */
export abstract class BaseConnection implements Connection {
  abstract readonly remote: string;
  private queue: Message[] = [];
  private handler: ((message: Message) => void) | null = null;
  private closeHandler: ((reason: string) => void) | null = null;
  private closedReason: string | null = null;
  private closeReported = false;

  abstract send(message: Message): void;
  abstract close(reason?: string): void;

  get onMessage(): ((message: Message) => void) | null {
    return this.handler;
  }
  set onMessage(fn: ((message: Message) => void) | null) {
    this.handler = fn;
    while (fn && this.handler === fn && this.queue.length > 0) fn(this.queue.shift() as Message);
    this.reportClose();
  }

  get onClose(): ((reason: string) => void) | null {
    return this.closeHandler;
  }
  set onClose(fn: ((reason: string) => void) | null) {
    this.closeHandler = fn;
    this.reportClose();
  }

  get isClosed(): boolean {
    return this.closedReason !== null;
  }

  /** For subclasses: a message arrived. */
  protected deliver(message: Message): void {
    if (this.closedReason !== null) return;
    if (this.handler) this.handler(message);
    else this.queue.push(message);
  }

  /** For subclasses: the link is gone. Reported after any queued messages are taken. */
  protected closed(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    this.reportClose();
  }

  private reportClose(): void {
    if (
      this.closedReason === null ||
      this.closeReported ||
      !this.closeHandler ||
      this.queue.length > 0
    )
      return;
    this.closeReported = true;
    this.closeHandler(this.closedReason);
  }
}

export interface Listener {
  /** The address peers dial (with the real port when 0 was asked for). */
  address: string;
  close(): Promise<void>;
}

export interface Network {
  listen(address: string, onConnection: (connection: Connection) => void): Promise<Listener>;
  connect(address: string): Promise<Connection>;
}

/**
 * The next message on `conn`, put through `check` the moment it arrives (synchronously: a check
 * that authenticates the link lifts its limits before another frame is read). Rejects when the
 * link closes, stays silent for `timeoutMs`, or `check` throws (then the link is closed).
 */
function nextMessage<T>(
  conn: Connection,
  timeoutMs: number,
  check: (message: Message) => T,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const onTimeout = () => {
      conn.onMessage = null;
      conn.close('handshake timeout');
      reject(
        new WeftError(
          'WEFT_E_NETWORK',
          `${conn.remote}: no handshake reply within ${timeoutMs / 1000} s`,
        ),
      );
    };
    const timer = Number.isFinite(timeoutMs) ? setTimeout(onTimeout, timeoutMs) : undefined;
    conn.onClose = (reason) => {
      clearTimeout(timer);
      reject(
        new WeftError(
          'WEFT_E_NETWORK',
          `${conn.remote} closed the connection during the handshake: ${reason}`,
        ),
      );
    };
    conn.onMessage = (m) => {
      conn.onMessage = null;
      conn.onClose = null;
      clearTimeout(timer);
      try {
        resolve(check(m));
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        conn.close(e.message);
        reject(e);
      }
    };
  });
}

export const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Server end: challenge, check the hello, welcome or reject. Resolves with the hello. The peer
 * has `timeoutMs` to answer (Infinity: a worker thread this process started, which may take long
 * to start on a loaded machine, and whose death its launcher sees).
 */
export async function serverHandshake(
  conn: Connection,
  secret: string | null,
  role: Role,
  timeoutMs = HANDSHAKE_TIMEOUT_MS,
): Promise<MessageOf<'hello'>> {
  const nonce = newNonce();
  const reply = nextMessage(conn, timeoutMs, (hello) => {
    const accepted = acceptHello(hello, nonce, secret, role);
    if (accepted.ok) conn.authenticated?.();
    return accepted;
  });
  conn.send(challenge(nonce, secret));
  const result = await reply;
  if (!result.ok) {
    conn.send(msg('reject', { code: result.code, message: result.message }));
    conn.close(result.message);
    throw new WeftError(result.code, `${conn.remote}: ${result.message}`);
  }
  conn.send(result.reply);
  return result.value;
}

/** Client end: answer the challenge with our hello, check the welcome. */
export async function clientHandshake(
  conn: Connection,
  secret: string | null,
  fields: Omit<MessageOf<'hello'>, 'v' | 't' | 'nonce' | 'proof'>,
): Promise<void> {
  const nonce = newNonce();
  const first = await nextMessage(conn, HANDSHAKE_TIMEOUT_MS, (m) => m);
  const answered = answerChallenge(first, nonce, secret, fields);
  if (!answered.ok) {
    conn.close(answered.message);
    throw new WeftError(answered.code, answered.message);
  }
  const { serverNonce } = answered.value;
  // the server may follow its welcome at once with large messages: lift the limit on the spot
  const reply = nextMessage(conn, HANDSHAKE_TIMEOUT_MS, (welcome) => {
    const checked = checkWelcome(welcome, serverNonce, nonce, secret);
    if (checked.ok) conn.authenticated?.();
    return checked;
  });
  conn.send(answered.reply);
  const welcomed = await reply;
  if (!welcomed.ok) {
    conn.close(welcomed.message);
    throw new WeftError(welcomed.code, welcomed.message);
  }
}
