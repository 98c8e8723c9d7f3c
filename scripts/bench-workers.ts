// Shared by the benchmarks that run a training job's workers as processes of their own: starts
// `weft worker` processes against a coordinator on loopback, follows each one's peak resident
// memory (VmHWM in /proc, where there is one), and reads the run's per-worker step records.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { WorkerMetrics } from '../src/train/metrics.ts';

const root = join(dirname(new URL(import.meta.url).pathname), '..');

export interface WorkerExit {
  code: number;
  /** Peak resident memory of the process (MiB), NaN where /proc cannot tell. */
  peakRssMiB: number;
}

/** Peak resident set of process `pid` so far, in MiB (NaN when unknown). */
function peakRss(pid: number | undefined): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/**
 * `n` worker processes for the coordinator at `address` (named w0, w1, ...: the order they are
 * started in, not their ranks), with `extra` flags; resolves when all have exited.
 */
export function workerProcesses(
  address: string,
  n: number,
  extra: string[] = [],
): Promise<WorkerExit[]> {
  const bin = join(root, 'bin/weft.mjs');
  return Promise.all(
    Array.from({ length: n }, (_, i) => {
      const args = [bin, 'worker', '--connect', `ws://${address}`, '--name', `w${i}`, ...extra];
      const child = spawn(process.execPath, args, { stdio: 'ignore' });
      let peak = NaN;
      const poll = setInterval(() => {
        const now = peakRss(child.pid);
        if (!Number.isNaN(now) && !(now <= peak)) peak = now; // peak starts NaN; a failed read keeps it
      }, 200);
      return new Promise<WorkerExit>((resolve) =>
        child.on('exit', (code) => {
          clearInterval(poll);
          resolve({ code: code ?? -1, peakRssMiB: peak });
        }),
      );
    }),
  );
}

/** The run's per-worker step records after the first `warmup` steps. */
export function workerRecords(runDir: string, warmup: number): WorkerMetrics[] {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as WorkerMetrics)
    .filter((m) => m.type === 'worker' && m.step > warmup);
}
