// `npm test`: vitest's two projects (vitest.config.ts) side by side, each one file at a time: the
// cluster tests, which mostly wait on daemons and timeouts, beside the rest, which compute. The
// compute project prints as it goes; the cluster project's output follows once both are done.
// Arguments go to both (a file filter that matches none of a project's files is not an error).
// Exits with the first non-zero status.

import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const vitest = join(root, 'node_modules/vitest/vitest.mjs');
const args = process.argv.slice(2);

const children = [];
// a signal to this process (Ctrl-C, a CI timeout) ends both runs
for (const signal of ['SIGINT', 'SIGTERM'])
  process.on(signal, () => {
    for (const child of children) child.kill(signal);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });

/** Runs one project; resolves with its exit status and, when `quiet`, its output. */
function run(project, quiet) {
  const child = spawn(
    process.execPath,
    [vitest, 'run', '--project', project, '--passWithNoTests', ...args],
    { stdio: quiet ? ['ignore', 'pipe', 'pipe'] : 'inherit' },
  );
  children.push(child);
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  return new Promise((resolve) =>
    child.on('close', (code) => resolve({ code: code ?? 1, output })),
  );
}

const [compute, cluster] = await Promise.all([run('compute', false), run('cluster', true)]);
process.stdout.write(`\n--- the cluster project (run beside the above) ---\n${cluster.output}`);
process.exit(compute.code || cluster.code);
