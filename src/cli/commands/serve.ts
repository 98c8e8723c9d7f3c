// `weft serve`: a checkpoint behind Anthropic's Messages API over HTTP (src/serve/), optionally
// following a training run to switch to each checkpoint it publishes. The startup line names the
// model id and the aliases it also answers to.

import type { Command } from 'commander';
import { ModelHost, names } from '../../serve/models.ts';
import {
  DEFAULT_BODY_TIMEOUT_MS,
  DEFAULT_HEADERS_TIMEOUT_MS,
  createApiServer,
} from '../../serve/server.ts';
import { WeftError, check } from '../../util/errors.ts';
import type { ComputeFlags } from './compute-options.ts';
import { addComputeOptions, backendOf } from './compute-options.ts';
import { readSecretFile } from '../../util/files.ts';
import { numberFlag, portFlag } from './options.ts';

interface ServeFlags extends ComputeFlags {
  checkpoint: string;
  host: string;
  port: string;
  apiKeyFile?: string;
  follow?: boolean;
  modelId?: string;
  maxTokensLimit: string;
  concurrency: string;
  headerTimeout: string;
  bodyTimeout: string;
}

/** A duration flag in seconds (more than 0), as milliseconds. */
function millisecondsFlag(name: string, value: string): number {
  const seconds = numberFlag(name, value, { min: 0 });
  check(seconds > 0, 'WEFT_E_CONFIG', `${name} must be more than 0 seconds`);
  return seconds * 1000;
}

export function registerServe(program: Command): void {
  addComputeOptions(program.command('serve'))
    .description("serve a checkpoint over HTTP with Anthropic's Messages API")
    .requiredOption(
      '--checkpoint <dir>',
      'run directory (its latest checkpoint) or a checkpoint directory',
    )
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free port)', '8080')
    .option('--api-key-file <path>', 'require the key in this file (x-api-key or Bearer)')
    .option('--follow', "switch to each new checkpoint of the run directory's training")
    .option('--model-id <name>', 'the model name clients use (default: the run directory name)')
    .option('--max-tokens-limit <n>', 'largest max_tokens a request may ask for', '4096')
    .option('--concurrency <n>', 'requests generating at once (more wait in a queue)', '4')
    .option(
      '--header-timeout <s>',
      "seconds for a request's headers to arrive (then 408)",
      String(DEFAULT_HEADERS_TIMEOUT_MS / 1000),
    )
    .option(
      '--body-timeout <s>',
      "seconds for a request's body to arrive after its headers (then 408)",
      String(DEFAULT_BODY_TIMEOUT_MS / 1000),
    )
    .action(async (flags: ServeFlags) => {
      const port = portFlag('--port', flags.port);
      const apiKey =
        flags.apiKeyFile === undefined
          ? undefined
          : readSecretFile(flags.apiKeyFile, '--api-key-file');
      const maxTokens = numberFlag('--max-tokens-limit', flags.maxTokensLimit, {
        min: 1,
        integer: true,
      });
      const settings = {
        apiKey,
        limits: { maxTokens },
        concurrency: numberFlag('--concurrency', flags.concurrency, { min: 1, integer: true }),
        headersTimeoutMs: millisecondsFlag('--header-timeout', flags.headerTimeout),
        bodyTimeoutMs: millisecondsFlag('--body-timeout', flags.bodyTimeout),
      };
      const log = (line: string) => process.stderr.write(`${line}\n`);
      const host = new ModelHost(flags.checkpoint, backendOf(flags), log, flags.modelId);
      if (flags.follow) host.follow();
      const server = createApiServer({ host, log, ...settings });
      await new Promise<void>((resolve, reject) => {
        server.once('error', (error: NodeJS.ErrnoException) =>
          reject(
            new WeftError(
              'WEFT_E_CONFIG',
              `cannot listen on ${flags.host}:${port}: ${error.code ?? error.message}`,
            ),
          ),
        );
        server.listen(port, flags.host, resolve);
      });
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : port;
      const { step, dir } = host.current;
      console.log(
        `serving ${names(host.current)} on http://${flags.host}:${bound} (step ${step}, ${dir})` +
          `${apiKey ? ' (API key required)' : ''}${flags.follow ? ', following the run' : ''}`,
      );
      const stop = () => {
        host.stop();
        server.close();
        server.closeAllConnections();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await new Promise((resolve) => server.once('close', resolve));
    });
}
