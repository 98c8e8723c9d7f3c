// Entry point of every worker thread that runs TypeScript (started by startThread in threads.ts):
// a thread cannot load .ts files by itself, so this registers tsx, then imports the module the
// starter named.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
