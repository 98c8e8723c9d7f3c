// The exact all-reduce over real WebSocket links on 127.0.0.1: binary piece frames, sent from
// the members' buffers without a copy and read where they arrive, give every member the
// single-worker bits, with the sums as Float64 (loopback's default) and as 32-bit compact sums
// (what links to other machines use), whose escape path a gradient with large values takes; and a
// chunk's pieces are taken in any order, however a peer cuts their frames into fragments.

import { describe, expect, it } from 'vitest';
import { HEADER_BYTES, encodeChunkFrame } from '../../src/distributed/chunk-frame.ts';
import { Mailbox, PIECE_ELEMS, exactAllReduce } from '../../src/distributed/collectives.ts';
import { CompactSums } from '../../src/distributed/compact-sums.ts';
import { msg } from '../../src/distributed/messages.ts';
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

  it.each([false, true])(
    'takes a chunk whose pieces arrive reordered and cut into fragments at every boundary (compact sums: %s)',
    async (compact) => {
      // a chunk of three pieces: two full ones and a short last one; values wide enough that
      // some compact sums escape
      const length = 2 * PIECE_ELEMS + 9;
      const rng = new Rng(5);
      const sums = Float64Array.from({ length }, () =>
        Math.round(rng.normal() * 2 ** (rng.int(50) === 0 ? 40 : 28)),
      );
      const frames = [0, PIECE_ELEMS, 2 * PIECE_ELEMS].map((offset) => {
        const data = sums.subarray(offset, Math.min(length, offset + PIECE_ELEMS));
        const tag = { step: 0, attempt: 0, bucket: 0, phase: 'rs' as const, round: 0 };
        return Buffer.concat(encodeChunkFrame(msg('chunk', { ...tag, offset, data }), compact));
      });
      const orders = [
        [0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0],
      ]; // prettier-ignore
      // cuts: every byte of the header and of the short piece's numbers, some in the long ones'
      const short = frames[2].length;
      const cuts = Array.from({ length: short - 1 }, (_, i) => i + 1);
      const { links, close } = await pair(compact);
      try {
        const sender = links[1] as Connection & { sendRaw(b: Uint8Array, fin?: boolean): void };
        const mailbox = new Mailbox();
        links[0].onMessage = (m) => {
          if (m.t === 'chunk') mailbox.deliver(1, m);
        };
        // a refused frame closes the link: fail at once rather than wait for the pieces
        const closed = new Promise<never>((_, reject) => {
          links[0].onClose = (reason) => reject(new Error(`link closed: ${reason}`));
        });
        closed.catch(() => {}); // (closing it at the end is no failure)
        for (const [i, cut] of cuts.entries()) {
          const attempt = i; // each round its own tag: the frames are re-tagged below
          const received = new Float64Array(length);
          const done = mailbox.receive(
            1,
            { step: 0, attempt, bucket: 0, phase: 'rs', round: 0 },
            length,
            (data, offset) =>
              data instanceof CompactSums
                ? data.addInto(received, offset)
                : received.set(data, offset),
          );
          for (const piece of orders[i % orders.length]) {
            const frame = Buffer.from(frames[piece]);
            frame.writeUInt32LE(attempt, 12); // the header's attempt field
            // the short piece cut at `cut`; a long one at `cut` and inside its numbers
            const at =
              piece === 2 ? [cut] : [cut, HEADER_BYTES + 8 * (1 + rng.int(PIECE_ELEMS - 2))];
            let from = 0;
            for (const to of at) {
              sender.sendRaw(frame.subarray(from, to), false);
              from = to;
            }
            sender.sendRaw(frame.subarray(from), true);
          }
          await Promise.race([done, closed]);
          expect(Buffer.from(received.buffer).equals(Buffer.from(sums.buffer)), `cut ${cut}`).toBe(
            true,
          );
        }
      } finally {
        await close();
      }
    },
  );
});
