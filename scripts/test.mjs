// `npm test`: the whole suite as vitest's two projects (vitest.config.ts) side by side, each one
// file at a time: the cluster tests, which mostly wait on daemons and timeouts, beside the rest,
// which compute. The compute project prints as it goes; the cluster project's output follows once
// both are done. With arguments (`npm test -- FILE`, `-t NAME`, `--project P`, `--watch`) it is
// one plain `vitest run` with them instead. Exits with the first non-zero status.

import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const vitest = join(root, 'node_modules/vitest/vitest.mjs');
const args = process.argv.slice(2);

const children = [];
// a terminal's Ctrl-C reaches the children itself; a SIGTERM or SIGHUP (a CI timeout) is passed on
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'])
  process.on(signal, () => {
    if (signal !== 'SIGINT') for (const child of children) child.kill(signal);
  });

/** Runs `vitest run ARGS`; resolves with its exit status and, when `quiet`, its output. */
function run(vitestArgs, quiet) {
  const child = spawn(process.execPath, [vitest, 'run', ...vitestArgs], {
    stdio: quiet ? ['ignore', 'pipe', 'pipe'] : 'inherit',
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  return new Promise((resolve) =>
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), output })),
  );
}

if (args.length > 0) {
  process.exitCode = (await run(args, false)).code;
} else {
  const [compute, cluster] = await Promise.all([
    run(['--project', 'compute'], false),
    run(['--project', 'cluster'], true),
  ]);
  process.stdout.write(`\n--- the cluster project (run beside the above) ---\n${cluster.output}`);
  process.exitCode = compute.code || cluster.code;
}
