// The live status page on a port of its own, for runs without a coordinator port (weft train
// --status-port): a plain HTTP server answering statusRoutes, 404 for anything else. It is bound
// first (a port in use fails before the run starts) and given its routes once the job exists.

import { createServer } from 'node:http';
import type { HttpResponder } from '../distributed/transports/ws.ts';
import { answerHttp } from '../distributed/transports/ws.ts';
import { WeftError } from '../util/errors.ts';

export interface StatusServer {
  /** http://HOST:PORT/ */
  url: string;
  /** Answers with `routes` from now on (404 until then). */
  source(routes: HttpResponder): void;
  close(): Promise<void>;
}

/** Listens on `host`:`port` (0: any free port), answering with the routes given to `source`. */
export function serveStatusPage(host: string, port: number): Promise<StatusServer> {
  let routes: HttpResponder = () => undefined;
  const notFound: HttpResponder = (r) => routes(r) ?? { status: 404, body: { error: 'not found' } };
  const server = createServer((request, response) => answerHttp(request, response, notFound));
  return new Promise((resolve, reject) => {
    server.once('error', (err) =>
      reject(
        new WeftError(
          'WEFT_E_NETWORK',
          `cannot serve the status page on ${host}:${port}: ${err.message}`,
        ),
      ),
    );
    server.listen(port, host, () => {
      const bound = server.address();
      const actual = typeof bound === 'object' && bound ? bound.port : port;
      resolve({
        source: (given) => {
          routes = given;
        },
        url: `http://${host.includes(':') ? `[${host}]` : host}:${actual}/`,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}
