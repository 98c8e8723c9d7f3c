// The live status page's HTTP routes, on the coordinator's port (weft coordinator) or on
// --status-port (weft train):
//   GET  /                the page (status-page/index.html), its script and style, and ECharts,
//                         all served from here: the page needs nothing outside weft
//   GET  /status.json     the run (distributed/run-status.ts)
//   GET  /metrics         the same in Prometheus' text format (prometheus.ts)
//   POST /stop            stop after the step in progress, saving a checkpoint: only with the
//                         coordinator's secret (Authorization: Bearer SECRET); a run without one
//                         is read-only
// Every answer forbids the browser to load anything from elsewhere (Content-Security-Policy).

import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { RunStatus } from '../distributed/run-status.ts';
import type { HttpAnswer, HttpRequest, HttpResponder } from '../distributed/transports/ws.ts';
import { prometheusText } from './prometheus.ts';

const PAGE_DIR = join(import.meta.dirname, 'status-page');

/** The page's files: path -> [file, content type]. */
const ASSETS: Record<string, [string, string]> = {
  '/': [join(PAGE_DIR, 'index.html'), 'text/html; charset=utf-8'],
  '/page.js': [join(PAGE_DIR, 'page.js'), 'text/javascript; charset=utf-8'],
  '/page.css': [join(PAGE_DIR, 'page.css'), 'text/css; charset=utf-8'],
  '/echarts.min.js': [
    createRequire(import.meta.url).resolve('echarts/dist/echarts.min.js'),
    'text/javascript; charset=utf-8',
  ],
};

const HEADERS = {
  'Cache-Control': 'no-store',
  'Content-Security-Policy':
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'",
  'X-Content-Type-Options': 'nosniff',
};

export interface StatusSource {
  status: () => RunStatus;
  /** Ends the run after its step (POST /stop, with the secret). */
  stop: () => void;
  /** The coordinator's shared secret; null: the page is read-only. */
  secret: string | null;
}

/** Whether `header` is "Bearer SECRET" for `secret` (compared in constant time). */
function authorized(header: string | undefined, secret: string): boolean {
  const given = Buffer.from(/^bearer +(.+)$/i.exec(header ?? '')?.[1] ?? '');
  const expected = Buffer.from(secret);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function stop(request: HttpRequest, source: StatusSource): HttpAnswer {
  if (source.secret === null)
    return {
      status: 403,
      body: { error: 'read-only: this run has no shared secret to authorize a stop' },
    };
  if (!authorized(request.headers.authorization, source.secret))
    return { status: 401, body: { error: 'the shared secret is missing or wrong' } };
  source.stop();
  return { status: 202, body: { status: 'stopping after the step in progress' } };
}

/** The routes, answering undefined for anything else (the caller's default). */
export function statusRoutes(source: StatusSource): HttpResponder {
  const cache = new Map<string, Buffer>();
  return (request) => {
    const answer = (a: HttpAnswer): HttpAnswer => ({ ...a, headers: { ...HEADERS, ...a.headers } });
    if (request.method === 'POST' && request.path === '/stop') return answer(stop(request, source));
    if (request.method !== 'GET') return undefined;
    if (request.path === '/status.json')
      return answer({
        status: 200,
        body: { ...source.status(), controls: source.secret !== null },
      });
    if (request.path === '/metrics')
      return answer({
        status: 200,
        body: prometheusText(source.status()),
        type: 'text/plain; version=0.0.4; charset=utf-8',
      });
    const asset = ASSETS[request.path];
    if (!asset) return undefined;
    const [file, type] = asset;
    if (!cache.has(file)) cache.set(file, readFileSync(file));
    return answer({ status: 200, body: cache.get(file), type });
  };
}
