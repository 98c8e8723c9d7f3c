// Network helpers for tests that start servers: a free port on loopback.

import { createServer } from 'node:net';

/** A TCP port nothing listens on at 127.0.0.1 (bound, then let go). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
