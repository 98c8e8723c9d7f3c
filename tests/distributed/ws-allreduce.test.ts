// The exact all-reduce over real WebSocket links on 127.0.0.1: binary piece frames, sent from
// the members' buffers without a copy and read where they arrive, give every member the
// single-worker bits, with the sums as Float64 (loopback's default) and as 32-bit compact sums
// (what links to other machines use), whose escape path a gradient with large values takes.

import { describe, expect, it } from 'vitest';
import { Mailbox, PIECE_ELEMS, exactAllReduce } from '../../src/distributed/collectives.ts';
import type { Connection } from '../../src/distributed/transport.ts';
import { clientHandshake, serverHandshake } from '../../src/distributed/transport.ts';
import { WsNetwork } from '../../src/distributed/transports/ws.ts';
import { accumulateExact, fromExact } from '../../src/kernels/optim.ts';
import { Rng } from '../../src/util/rng.ts';

const BITS = 40;
const SECRET = 'ring secret';

/** Two members joined by one authenticated WebSocket link (each other's next and previous). */
async function pair(
  compactSums: boolean,
): Promise<{ links: Connection[]; close: () => Promise<void> }> {
  const network = new WsNetwork(undefined, { compactSums });
  let accepted: (c: Connection) => void = () => {};
  const incoming = new Promise<Connection>((resolve) => (accepted = resolve));
  const listener = await network.listen('127.0.0.1:0', accepted);
  const dialer = await network.connect(listener.address);
  const server = await incoming;
  await Promise.all([
    serverHandshake(server, SECRET, 'peer'),
    clientHandshake(dialer, SECRET, { name: 'b', role: 'peer', rank: 1, runId: 'r' }),
  ]);
  return {
    links: [server, dialer],
    close: async () => {
      dialer.close();
      await listener.close();
    },
  };
}

describe('the exact all-reduce over WebSocket', () => {
  it.each([false, true])(
    'gives both members the single-worker bits (compact sums: %s)',
    async (compact) => {
      const size = 2 * PIECE_ELEMS + 1001;
      const rng = new Rng(11);
      // two shards' gradients; some values large enough that their sums need more than 32 bits
      const grads = [0, 1].map(() =>
        Float32Array.from(
          { length: size },
          () => rng.normal() * (rng.int(100) === 0 ? 0.05 : 1e-4),
        ),
      );
      const single = new Float64Array(size);
      for (const g of grads) accumulateExact(single, g, BITS, 2);
      const expected = new Float32Array(size);
      fromExact(expected, single, BITS);

      const { links, close } = await pair(compact);
      try {
        const outs = await Promise.all(
          [0, 1].map(async (p) => {
            const mailbox = new Mailbox();
            links[p].onMessage = (m) => {
              if (m.t === 'chunk') mailbox.deliver(1 - p, m);
            };
            const sums = new Float64Array(size);
            accumulateExact(sums, grads[p], BITS, 2);
            const out = new Float32Array(size);
            await exactAllReduce({
              ring: {
                position: p,
                size: 2,
                ranks: [0, 1],
                send: (_, chunk) => links[p].send(chunk),
                flushed: () => links[p].flushed?.() ?? Promise.resolve(),
              },
              mailbox,
              sums,
              out,
              toFp32: (o, s, begin, end) => fromExact(o, s, BITS, begin, end),
              step: 0,
              attempt: 0,
              cancelled: () => false,
            });
            return out;
          }),
        );
        for (const out of outs)
          expect(Buffer.from(out.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
      } finally {
        await close();
      }
    },
  );
});
