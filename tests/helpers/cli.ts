// Runs the weft command as a user would (node bin/weft.mjs ...) and captures its output; starts
// `weft worker` processes (killed when the test process exits).

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';

export const ROOT = join(import.meta.dirname, '..', '..');

export interface CliResult {
  status: number | null;
  /** The signal that ended the process (a WEFT_FAULT crash point: SIGKILL), else null. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): CliResult {
  const result = spawnSync(process.execPath, [join(ROOT, 'bin/weft.mjs'), ...args], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    encoding: 'utf8',
  });
  const { status, signal, stdout, stderr } = result;
  return { status, signal, stdout, stderr };
}

/** A user mistake: exit code 1 and one line on stderr matching `message`. */
export function expectCliError(result: CliResult, message: RegExp): void {
  expect(result.status, result.stderr).toBe(1);
  expect(result.stderr).toMatch(message);
  expect(result.stderr.trim().split('\n')).toHaveLength(1);
}

const children: ChildProcess[] = [];
process.on('exit', killChildren);

/** SIGKILLs every process startCli started that is still running (after each test file: setup.ts). */
export function killChildren(): void {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
}

export interface RunningCli {
  child: ChildProcess;
  /** stdout and stderr so far. */
  output: () => string;
  /** Resolves once the output matches `pattern`. */
  waitFor: (pattern: RegExp) => Promise<void>;
  exited: Promise<number | null>;
}

/** Starts `weft ARGS` in the background (killed when the test process exits); its output is collected. */
export function startCli(args: string[], env: Record<string, string> = {}): RunningCli {
  const child = spawn(process.execPath, [join(ROOT, 'bin/weft.mjs'), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return watch(child);
}

/** Collects a started process's stdout and stderr, to read or wait for. */
export function watch(child: ChildProcess): RunningCli {
  let output = '';
  const waiting: { pattern: RegExp; resolve: () => void }[] = [];
  const collect = (d: Buffer) => {
    output += d.toString();
    for (const w of waiting.filter((w) => w.pattern.test(output))) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve();
    }
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = (pattern: RegExp) =>
    pattern.test(output)
      ? Promise.resolve()
      : new Promise<void>((resolve) => waiting.push({ pattern, resolve }));
  return { child, output: () => output, waitFor, exited };
}

/** Starts `weft worker` as a separate process; its output is collected. */
export function startWorker(
  address: string,
  name: string,
  env: Record<string, string> = {},
): RunningCli {
  return startCli(['worker', '--connect', `ws://${address}`, '--name', name], env);
}
