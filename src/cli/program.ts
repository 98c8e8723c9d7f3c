// The commander program: every weft subcommand, its flags and its help text.

import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { registerCheckpoint } from './commands/checkpoint.ts';
import { registerCluster } from './commands/cluster.ts';
import { registerEval } from './commands/eval.ts';
import { registerGenerate } from './commands/generate.ts';
import { registerInfo } from './commands/info.ts';
import { registerLaunch } from './commands/launch.ts';
import { registerPlot } from './commands/plot.ts';
import { registerPrepare } from './commands/prepare.ts';
import { registerServe } from './commands/serve.ts';
import { registerStatus } from './commands/status.ts';
import { registerTrain } from './commands/train.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** Exit code of a run that lost its cluster or network: resumable (sysexits' EX_TEMPFAIL). */
export const EXIT_RESUMABLE = 75;

export function buildProgram(): Command {
  const program = new Command('weft')
    .description('Train GPT-2 style language models in TypeScript, on one machine or many.')
    .version(pkg.version)
    .exitOverride()
    .configureOutput({
      outputError: (text, write) => write(`weft: ${text.replace(/^error: /, '')}`),
    });
  registerPrepare(program);
  registerTrain(program);
  registerCluster(program);
  registerLaunch(program);
  registerEval(program);
  registerGenerate(program);
  registerServe(program);
  registerCheckpoint(program);
  registerInfo(program);
  registerPlot(program);
  registerStatus(program);
  return program;
}
