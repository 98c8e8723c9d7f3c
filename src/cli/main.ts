// Entry point of the weft command: runs the program on argv and turns user mistakes into one
// line on stderr and a non-zero exit (docs/design.md invariant 8). Only code under src/cli/ exits.
// Exit codes a scheduler can act on: 0 done (or stopped by a signal, with a checkpoint saved),
// 1 bad input (retrying will not help), 75 (EX_TEMPFAIL) the cluster was lost or the network
// failed: the run directory holds its last checkpoint, and the same command with --resume goes on.

import { CommanderError } from 'commander';
import { WeftError } from '../util/errors.ts';
import { EXIT_RESUMABLE, buildProgram } from './program.ts';

// output piped into a reader that stops early (weft info | head) ends quietly, as Unix tools do
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  if (err instanceof WeftError) {
    process.stderr.write(`weft: ${err.message} [${err.code}]\n`);
    process.exit(err.resumable ? EXIT_RESUMABLE : 1);
  }
  throw err;
}
