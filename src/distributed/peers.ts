// Links between workers, for the collectives. A worker reaches each peer once: over a network,
// the higher rank dials the lower one's peer address and both sides run the handshake (role
// "peer", same run id, same secret); between threads the ports are wired up in advance. Chunks
// arriving on a link go to the mailbox under the sender's rank.

import { WeftError } from '../util/errors.ts';
import type { Member, Message } from './messages.ts';
import type { Connection, Listener, Network } from './transport.ts';
import { clientHandshake, serverHandshake } from './transport.ts';

export type ChunkSink = (fromRank: number, message: Message) => void;

export interface PeerMesh {
  /** Where peers reach this worker (reported to the coordinator in hello). */
  readonly address: string;
  /** Our rank and run, once assigned (peers are checked against the run id). */
  identify(rank: number, runId: string): void;
  /** The link to `member`, dialled or awaited, delivering its messages to the sink. */
  link(member: Member): Promise<Connection>;
  close(): void;
}

function attach(
  conn: Connection,
  rank: number,
  sink: ChunkSink,
  links: Map<number, Promise<Connection>>,
): void {
  conn.onMessage = (m) => sink(rank, m);
  conn.onClose = () => links.delete(rank);
}

/** Peers over a Network (WebSocket between machines, or the in-memory network). */
export class NetworkPeerMesh implements PeerMesh {
  private listener: Listener | null = null;
  private rank = -1;
  private runId = '';
  private readonly links = new Map<number, Promise<Connection>>();
  private readonly waiting = new Map<number, (c: Connection) => void>();
  private readonly arrived = new Map<number, Connection>();

  private constructor(
    private readonly network: Network,
    private readonly secret: string | null,
    private readonly sink: ChunkSink,
    private readonly name: string,
  ) {}

  static async start(
    network: Network,
    listenAddress: string,
    secret: string | null,
    sink: ChunkSink,
    name: string,
  ): Promise<NetworkPeerMesh> {
    const mesh = new NetworkPeerMesh(network, secret, sink, name);
    mesh.listener = await network.listen(listenAddress, (conn) => void mesh.accept(conn));
    return mesh;
  }

  get address(): string {
    return this.listener?.address ?? '';
  }

  identify(rank: number, runId: string): void {
    this.rank = rank;
    this.runId = runId;
  }

  private async accept(conn: Connection): Promise<void> {
    try {
      const hello = await serverHandshake(conn, this.secret, 'peer');
      if (hello.runId !== this.runId || hello.rank === undefined || hello.rank <= this.rank) {
        conn.close(`peer ${hello.name} is not a higher rank of run ${this.runId}`);
        return;
      }
      const rank = hello.rank;
      const resolve = this.waiting.get(rank);
      if (resolve) {
        this.waiting.delete(rank);
        resolve(conn);
      } else {
        this.arrived.set(rank, conn);
      }
    } catch {
      // a failed peer handshake only closes that connection
    }
  }

  link(member: Member): Promise<Connection> {
    const existing = this.links.get(member.rank);
    if (existing) return existing;
    const made = (member.rank < this.rank ? this.dial(member) : this.await(member.rank)).then(
      (conn) => {
        attach(conn, member.rank, this.sink, this.links);
        return conn;
      },
    );
    made.catch(() => this.links.delete(member.rank));
    this.links.set(member.rank, made);
    return made;
  }

  private async dial(member: Member): Promise<Connection> {
    const conn = await this.network.connect(member.address);
    await clientHandshake(conn, this.secret, {
      name: this.name,
      role: 'peer',
      rank: this.rank,
      runId: this.runId,
    });
    return conn;
  }

  private await(rank: number): Promise<Connection> {
    const early = this.arrived.get(rank);
    if (early) {
      this.arrived.delete(rank);
      return Promise.resolve(early);
    }
    return new Promise((resolve) => this.waiting.set(rank, resolve));
  }

  close(): void {
    for (const link of this.links.values())
      void link.then((c) => c.close('worker exiting')).catch(() => {});
    for (const conn of this.arrived.values()) conn.close('worker exiting');
    void this.listener?.close();
  }
}

/** Peers between threads of one process: one prewired connection per peer address. */
export class PrewiredPeerMesh implements PeerMesh {
  private readonly links = new Map<number, Promise<Connection>>();

  constructor(
    readonly address: string,
    private readonly byAddress: Map<string, Connection>,
    private readonly sink: ChunkSink,
  ) {}

  identify(): void {}

  link(member: Member): Promise<Connection> {
    const existing = this.links.get(member.rank);
    if (existing) return existing;
    const conn = this.byAddress.get(member.address);
    if (!conn)
      return Promise.reject(
        new WeftError(
          'WEFT_E_NETWORK',
          `no thread link to peer ${member.name} at ${member.address}`,
        ),
      );
    attach(conn, member.rank, this.sink, this.links);
    const made = Promise.resolve(conn);
    this.links.set(member.rank, made);
    return made;
  }

  close(): void {
    for (const conn of this.byAddress.values()) conn.close('worker exiting');
  }
}
