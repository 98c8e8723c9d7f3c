// Entry point of every worker thread that runs TypeScript (started by startThread in threads.ts):
// a thread cannot load .ts files by itself, so this registers tsx, then imports the module the
// starter named. If that fails and the starter named a plain-JavaScript `onFailure` module, its
// startFailed(error, data) reports it (a starter blocked in Atomics.wait sees no error events).
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

try {
  register();
  await import(workerData.entry);
} catch (error) {
  if (!workerData.onFailure) throw error;
  (await import(workerData.onFailure)).startFailed(error, workerData.data);
}
