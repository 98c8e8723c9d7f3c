// A helper thread of the wasm backend's pool (plain JavaScript: it needs no TypeScript). It
// instantiates the kernels module over the shared memory and runs the slices it is given; the
// control block's layout is in pool-control.mjs.
import { performance } from 'node:perf_hooks';
import { workerData } from 'node:worker_threads';
import {
  ARG_COUNT,
  FAILED,
  GENERATION,
  KERNEL,
  PENDING,
  RANGE_ARG,
  SCRATCH_ARG,
  SLICES,
  STARTED,
  helperArgs,
} from './pool-control.mjs';

/** How long an idle helper polls for the next call before it sleeps. */
const SPIN_MS = 0.2;
const { memory, module, control, args, index, names } = workerData;
const c = new Int32Array(control);
const a = new Float64Array(args);
const instance = new WebAssembly.Instance(module, {
  env: {
    memory,
    abort: () => {
      throw new Error('wasm kernel aborted');
    },
  },
});
const kernels = names.map((name) => instance.exports[name]);
let seen = Atomics.load(c, GENERATION);
Atomics.add(c, STARTED, 1);
Atomics.notify(c, STARTED);
for (;;) {
  // Wait for the generation to change: poll a little first (calls come back to back within a
  // step, and waking a thread from Atomics.wait takes tens of microseconds, over 100 on some VMs),
  // then sleep. A wake-up is not a call: Atomics.wait can return with the generation unchanged
  // (seen under load), and running the last call's slice again would add it twice and end the
  // next call early.
  let generation = Atomics.load(c, GENERATION);
  for (const until = performance.now() + SPIN_MS; generation === seen && performance.now() < until;)
    generation = Atomics.load(c, GENERATION);
  while (generation === seen) {
    Atomics.wait(c, GENERATION, seen);
    generation = Atomics.load(c, GENERATION);
  }
  seen = generation;
  if (index < Atomics.load(c, SLICES)) {
    const call = Array.from(a.subarray(0, Atomics.load(c, ARG_COUNT)));
    const at = helperArgs(index);
    const range = Atomics.load(c, RANGE_ARG);
    call[range] = a[at];
    call[range + 1] = a[at + 1];
    call[Atomics.load(c, SCRATCH_ARG)] = a[at + 2];
    try {
      kernels[Atomics.load(c, KERNEL)](...call);
    } catch (err) {
      console.error(`wasm kernel helper ${index}: ${err instanceof Error ? err.message : err}`);
      Atomics.add(c, FAILED, 1);
    }
  }
  // answered also without a slice, so the next call's control block is written only after
  // every helper has read this one's
  if (Atomics.sub(c, PENDING, 1) === 1) Atomics.notify(c, PENDING);
}
