// Worker threads on TypeScript modules: every one starts in thread-entry.mjs, which registers tsx
// and imports the module given here; the module reads what its starter passed with threadData().

import type { WorkerOptions } from 'node:worker_threads';
import { Worker, workerData } from 'node:worker_threads';

/**
 * Starts a thread running module `entry` (a .ts file's URL) with `data` as its threadData().
 * `onFailure`: a plain-JavaScript module whose startFailed(error, data) reports a thread that
 * could not load `entry` (for a starter that blocks in Atomics.wait and sees no error events).
 */
export function startThread(
  entry: URL,
  data: unknown = null,
  options: Omit<WorkerOptions, 'workerData'> & { onFailure?: URL } = {},
): Worker {
  const { onFailure, ...workerOptions } = options;
  return new Worker(new URL('./thread-entry.mjs', import.meta.url), {
    ...workerOptions,
    workerData: { entry: entry.href, data, onFailure: onFailure?.href },
  });
}

/** In a thread started by startThread: the data its starter passed. */
export function threadData<T>(): T {
  return (workerData as { data: T }).data;
}
