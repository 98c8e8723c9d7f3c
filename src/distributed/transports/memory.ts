// In-memory transport for simulating a cluster in one thread. Every link is FIFO in each
// direction (as TCP and MessagePort are), but which link delivers next is chosen by a seeded
// generator, so messages from different senders arrive in random interleavings. Messages can go
// through the real codec (encode: true). Scripted failures: kill a node (its links close, as a
// killed process's sockets do), partition it (its messages vanish and nothing closes, so only
// heartbeats can tell), or reset one link (cut, or resetOn a given message).

import { Rng } from '../../util/rng.ts';
import { WeftError } from '../../util/errors.ts';
import { decodeFrame, encodeFrame } from '../codec.ts';
import type { Message } from '../messages.ts';
import { detached } from '../messages.ts';
import type { Connection, Listener, Network } from '../transport.ts';
import { BaseConnection } from '../transport.ts';

interface Pending {
  to: MemoryConnection;
  message: Message | Uint8Array;
}

class MemoryConnection extends BaseConnection {
  peer: MemoryConnection | null = null;
  /** Messages this end has sent and the network has not delivered yet (FIFO). */
  readonly outbox: Pending[] = [];

  constructor(
    private readonly net: MemoryNetwork,
    readonly node: string,
    readonly remote: string,
  ) {
    super();
  }

  send(message: Message): void {
    if (this.isClosed || !this.peer) return;
    if (this.net.resetOn?.(message)) return void this.net.cut(this.node, this.remote);
    // a copy either way: a collective's pieces are views of buffers the sender goes on using
    this.net.enqueue(this, {
      to: this.peer,
      message: this.net.encode ? encodeFrame(message) : detached(message),
    });
  }

  close(reason = 'closed'): void {
    if (this.isClosed) return;
    this.closed(reason);
    this.net.closeLater(this, reason);
  }

  receive(message: Message): void {
    this.deliver(message);
  }

  end(reason: string): void {
    this.closed(reason);
  }
}

export class MemoryNetwork {
  readonly encode: boolean;
  private readonly rng: Rng;
  private readonly randomOrder: boolean;
  private readonly listeners = new Map<string, (c: Connection) => void>();
  private readonly links: MemoryConnection[] = [];
  private readonly partitioned = new Set<string>();
  private scheduled = false;
  /** Messages delivered so far (for tests). */
  delivered = 0;
  /** A scripted failure: the link a message this returns true for is sent on resets instead. */
  resetOn: ((message: Message) => boolean) | null = null;

  constructor(options: { seed?: number; randomOrder?: boolean; encode?: boolean } = {}) {
    this.rng = new Rng(options.seed ?? 1, 7);
    this.randomOrder = options.randomOrder ?? true;
    this.encode = options.encode ?? true;
  }

  /** The network as seen by one node: its links are labelled with `name` for kill/partition. */
  node(name: string): Network {
    return {
      listen: (address, onConnection) => this.listen(address, onConnection),
      connect: (address) => this.connect(name, address),
    };
  }

  private listen(address: string, onConnection: (c: Connection) => void): Promise<Listener> {
    if (this.listeners.has(address))
      return Promise.reject(new WeftError('WEFT_E_NETWORK', `${address} is already listening`));
    this.listeners.set(address, onConnection);
    return Promise.resolve({
      address,
      close: () => (this.listeners.delete(address), Promise.resolve()),
    });
  }

  private connect(from: string, address: string): Promise<Connection> {
    const accept = this.listeners.get(address);
    if (!accept)
      return Promise.reject(
        new WeftError('WEFT_E_NETWORK', `cannot connect to ${address}: nothing listens there`),
      );
    const client = new MemoryConnection(this, from, address);
    const server = new MemoryConnection(this, address, from);
    client.peer = server;
    server.peer = client;
    this.links.push(client, server);
    setImmediate(() => accept(server));
    return Promise.resolve(client);
  }

  enqueue(from: MemoryConnection, pending: Pending): void {
    if (this.partitioned.has(from.node) || this.partitioned.has(pending.to.node)) return;
    from.outbox.push(pending);
    this.schedule();
  }

  /** Tells the other end that `from` closed, unless a partition swallows it. */
  closeLater(from: MemoryConnection, reason: string): void {
    const peer = from.peer;
    if (!peer || this.partitioned.has(from.node) || this.partitioned.has(peer.node)) return;
    setImmediate(() => peer.end(`peer closed: ${reason}`));
  }

  /** Kills a node: every link it has closes on both ends, and undelivered messages are lost. */
  kill(node: string): void {
    for (const link of this.links) {
      if (link.node === node || link.remote === node) {
        link.outbox.length = 0;
        link.end(`${node} was killed`);
      }
    }
  }

  /** Closes every link between nodes `a` and `b` (both ends), as a connection reset does. */
  cut(a: string, b: string): void {
    for (const link of this.links) {
      if ((link.node === a && link.remote === b) || (link.node === b && link.remote === a)) {
        link.outbox.length = 0;
        link.end(`the link between ${a} and ${b} was reset`);
      }
    }
  }

  /** Cuts a node off: its messages in both directions vanish; no link closes. */
  partition(node: string): void {
    this.partitioned.add(node);
    for (const link of this.links)
      if (link.node === node || link.peer?.node === node) link.outbox.length = 0;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.deliverOne();
    });
  }

  private deliverOne(): void {
    const ready = this.links.filter((l) => l.outbox.length > 0);
    if (ready.length === 0) return;
    const link = this.randomOrder ? ready[this.rng.int(ready.length)] : ready[0];
    const { to, message } = link.outbox.shift() as Pending;
    this.delivered++;
    if (message instanceof Uint8Array) {
      try {
        to.receive(decodeFrame(message));
      } catch (err) {
        to.close(`bad frame: ${(err as Error).message}`);
      }
    } else {
      to.receive(message);
    }
    if (this.links.some((l) => l.outbox.length > 0)) this.schedule();
  }
}
