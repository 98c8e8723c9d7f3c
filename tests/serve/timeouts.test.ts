// Clients that stall or vanish mid-request, over raw sockets: headers or a body that stop
// arriving get 408 and a closed connection once the (here small) timeouts pass, a body cut off by
// the client costs one log line, and other clients are served throughout.

import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelHost } from '../../src/serve/models.ts';
import type { ServerOptions } from '../../src/serve/server.ts';
import { createApiServer } from '../../src/serve/server.ts';
import { tempDir } from '../helpers/tmp.ts';
import { byteTokenizer, bytesOf, scriptedRun, userPrompt } from './scripted-model.ts';

const dir = tempDir();
let host: ModelHost;
const servers: Server[] = [];
const sockets: Socket[] = [];
const body = JSON.stringify({
  model: 'stall',
  max_tokens: 5,
  messages: [{ role: 'user', content: 'Hi' }],
});

beforeAll(async () => {
  const script = [...bytesOf('fine'), byteTokenizer.specials.imEnd];
  host = new ModelHost(
    await scriptedRun(dir, 'stall', 'stall', userPrompt('Hi').length, script),
    undefined,
  );
});

afterAll(() => {
  for (const socket of sockets) socket.destroy();
  for (const server of servers) {
    server.close();
    server.closeAllConnections();
  }
});

async function listen(options: Omit<ServerOptions, 'host'>): Promise<number> {
  const server = createApiServer({ host, ...options });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return (server.address() as AddressInfo).port;
}

/** A raw connection that sends `data` and records what comes back and whether it closed. */
function rawClient(port: number, data: string) {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  const seen = { text: '', closed: false };
  socket.on('data', (chunk: Buffer) => (seen.text += chunk.toString()));
  socket.on('error', () => {});
  socket.on('close', () => (seen.closed = true));
  socket.write(data);
  return { socket, seen };
}

const head = (length: number) =>
  `POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` +
  `content-length: ${length}\r\n\r\n`;

/** A complete request from another client, answered while the raw ones stall. */
async function otherClient(port: number): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/messages`, { method: 'POST', body });
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ content: [{ type: 'text', text: 'fine' }] });
}

describe('stalled requests', () => {
  it('answers a body that stops arriving with 408 and closes the connection', async () => {
    const port = await listen({ headersTimeoutMs: 10_000, bodyTimeoutMs: 300 });
    const { seen } = rawClient(port, head(body.length) + body.slice(0, 20));
    await otherClient(port);
    await expect.poll(() => seen.closed, { timeout: 10_000 }).toBe(true);
    expect(seen.text).toMatch(/^HTTP\/1\.1 408 /);
    const json = JSON.parse(seen.text.slice(seen.text.indexOf('\r\n\r\n') + 4)) as object;
    expect(json).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect(JSON.stringify(json)).toMatch(/request body/);
    await otherClient(port);
  });

  it('answers headers that stop arriving with 408 and closes the connection', async () => {
    const port = await listen({ headersTimeoutMs: 300, bodyTimeoutMs: 10_000 });
    const { seen } = rawClient(port, 'POST /v1/messages HTTP/1.1\r\nhost: x\r\n');
    await otherClient(port);
    await expect.poll(() => seen.closed, { timeout: 10_000 }).toBe(true);
    expect(seen.text).toMatch(/^HTTP\/1\.1 408 /);
    await otherClient(port);
  });

  it('takes a body that arrives slowly but within the time', async () => {
    const port = await listen({ headersTimeoutMs: 5_000, bodyTimeoutMs: 5_000 });
    const { socket, seen } = rawClient(port, head(body.length) + body.slice(0, 10));
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.write(body.slice(10));
    await expect.poll(() => seen.text, { timeout: 10_000 }).toMatch(/"text":"fine"/);
    expect(seen.text).toMatch(/^HTTP\/1\.1 200 /);
  });
});

describe('a body the client abandons', () => {
  it('logs one line, no stack trace, and the server goes on serving', async () => {
    const lines: string[] = [];
    const port = await listen({ log: (line) => lines.push(line) });
    const { socket } = rawClient(port, head(body.length) + body.slice(0, 20));
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.destroy();
    await expect.poll(() => lines.length, { timeout: 10_000 }).toBeGreaterThan(0);
    await otherClient(port);
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain('\n');
    expect(lines[0]).toMatch(/closed the connection/);
  });
});
