// Entry point of the gpu backend's device thread: worker threads cannot load .ts files by
// themselves, so this registers tsx and then loads the TypeScript thread body. If that fails, it
// answers the backend's wait for the device with the error (control block layout: bridge.ts).
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

try {
  register();
  await import('./thread.ts');
} catch (error) {
  const c = new Int32Array(workerData.control);
  const text = new TextEncoder().encode(String(error?.message ?? error)).subarray(0, 4096);
  new Uint8Array(workerData.control, 16, 4096).set(text);
  Atomics.store(c, 1, 1);
  Atomics.store(c, 2, text.length);
  Atomics.store(c, 0, 0);
  Atomics.notify(c, 0);
}
