// `weft status URL`: the live status page's picture in the terminal (serve/status-table.ts),
// read from URL/status.json and redrawn every --interval seconds until the run ends (its phase
// is done or failed, or its coordinator, once seen, stops answering: it closes at the end).

import type { Command } from 'commander';
import type { RunStatus } from '../../distributed/run-status.ts';
import { statusTable } from '../../serve/status-table.ts';
import { WeftError } from '../../util/errors.ts';
import { numberFlag } from './options.ts';

interface StatusFlags {
  interval: string;
  once?: boolean;
}

/** URL/status.json; a bare HOST:PORT is taken as http://HOST:PORT. */
function statusUrl(url: string): URL {
  const base = /^https?:\/\//i.test(url) ? url : `http://${url}`;
  try {
    return new URL('status.json', base.endsWith('/') ? base : `${base}/`);
  } catch {
    throw new WeftError(
      'WEFT_E_CONFIG',
      `${url} is not an address: give the coordinator's as http://HOST:PORT`,
    );
  }
}

async function fetchStatus(url: string): Promise<RunStatus> {
  const target = statusUrl(url);
  let response: Response;
  try {
    response = await fetch(target, { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
    throw new WeftError('WEFT_E_NETWORK', `cannot reach ${target.href}: ${cause}`);
  }
  if (!response.ok)
    throw new WeftError(
      'WEFT_E_NETWORK',
      `${target.href} answered HTTP ${response.status}: is this a weft coordinator?`,
    );
  try {
    return (await response.json()) as RunStatus;
  } catch {
    throw new WeftError(
      'WEFT_E_NETWORK',
      `${target.href} answered something that is not JSON: is this a weft coordinator?`,
    );
  }
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      "show a running job's workers and progress (its coordinator's status page) in the terminal",
    )
    .argument(
      '<url>',
      "the coordinator's address, e.g. http://HOST:29500 (or weft train's --status-port)",
    )
    .option('--interval <s>', 'seconds between refreshes', '2')
    .option('--once', 'print once and exit')
    .action(async (url: string, flags: StatusFlags) => {
      const interval = numberFlag('--interval', flags.interval, { min: 0.1 });
      const clear = process.stdout.isTTY && !flags.once ? '\x1b[H\x1b[2J' : '';
      let seen: RunStatus | null = null;
      for (let misses = 0; ;) {
        let status: RunStatus;
        try {
          status = await fetchStatus(url);
          misses = 0;
        } catch (err) {
          // a run seen training whose coordinator is gone has ended (it closes its port at the end)
          if (seen && ++misses >= 3) {
            process.stdout.write(
              `${url} is gone: the run ended (last seen at step ${seen.step})\n`,
            );
            return;
          }
          if (!seen) throw err;
          await new Promise((resolve) => setTimeout(resolve, 500));
          continue;
        }
        seen = status;
        process.stdout.write(`${clear}${statusTable(status)}`);
        if (flags.once || status.phase === 'done' || status.phase === 'failed') return;
        await new Promise((resolve) => setTimeout(resolve, interval * 1000));
        if (!clear) process.stdout.write('\n');
      }
    });
}
