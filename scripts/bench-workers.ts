// Shared by the benchmarks that run whole training jobs: a scratch directory with tinyshakespeare
// tokenized to the config's vocabulary; `weft worker` processes against a coordinator on
// loopback, each one's peak resident memory followed (VmHWM in /proc, where there is one); and
// the run's per-worker step records.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Dataset } from '../src/data/dataset.ts';
import { loadDataset } from '../src/data/dataset.ts';
import { prepareDataset } from '../src/data/prepare.ts';
import type { RunConfig } from '../src/train/config.ts';
import type { WorkerMetrics } from '../src/train/metrics.ts';

const root = join(dirname(new URL(import.meta.url).pathname), '..');

/** A scratch directory holding tinyshakespeare prepared for `cfg`'s vocabulary (the caller removes it). */
export function benchDataset(cfg: RunConfig): { dir: string; dataset: Dataset } {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-'));
  prepareDataset(join(root, 'data/tinyshakespeare.txt'), join(dir, 'ds'), {
    tokenizer: `bpe:${cfg.vocabSize - 3}`,
    valFraction: 0,
  });
  return { dir, dataset: loadDataset(join(dir, 'ds')) };
}

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
