// MessagePort transport for worker threads in one process: messages are posted as objects
// (structured clone) with their typed arrays' buffers transferred, not copied or serialised.
// Received messages are still checked against the schema.

import type { MessagePort } from 'node:worker_threads';
import { WeftError } from '../../util/errors.ts';
import type { Message } from '../messages.ts';
import { detached, msg, validateMessage } from '../messages.ts';
import { BaseConnection } from '../transport.ts';

const CLOSE = '__weft_close__';

/** Buffers of the message's typed arrays (top-level fields and streamed batches), to transfer. */
function transferList(message: Message): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  const add = (value: unknown) => {
    if (
      ArrayBuffer.isView(value) &&
      value.buffer instanceof ArrayBuffer &&
      value.byteLength === value.buffer.byteLength
    ) {
      buffers.add(value.buffer);
    }
  };
  for (const value of Object.values(message)) add(value);
  if (message.t === 'start') {
    for (const b of message.batches) {
      add(b.idx);
      add(b.targets);
    }
  }
  return [...buffers];
}

export class PortConnection extends BaseConnection {
  constructor(
    private readonly port: MessagePort,
    readonly remote: string,
  ) {
    super();
    port.on('message', (data: unknown) => {
      if (
        typeof data === 'object' &&
        data !== null &&
        (data as { [CLOSE]?: string })[CLOSE] !== undefined
      ) {
        this.closed((data as { [CLOSE]: string })[CLOSE]);
        port.close();
        return;
      }
      try {
        this.deliver(validateMessage(data));
      } catch (err) {
        const e = err as WeftError;
        this.send(msg('reject', { code: e.code, message: e.message }));
        this.close(`${e.message} [${e.code}]`);
      }
    });
    port.on('close', () => this.closed('thread port closed'));
  }

  send(message: Message): void {
    if (this.isClosed) return;
    const own = detached(message); // a piece: copied once, then its copy is transferred
    this.port.postMessage(own, transferList(own));
  }

  close(reason = 'closed'): void {
    if (this.isClosed) return;
    this.port.postMessage({ [CLOSE]: reason });
    this.closed(reason);
  }
}
