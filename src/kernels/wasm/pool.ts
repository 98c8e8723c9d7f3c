// Intra-op parallelism for the wasm backend: helper threads, each with its own instance of the
// kernels module over the same shared memory, run slices of a kernel call. A call is a kernel
// name and numeric arguments; each thread gets its own [begin, end) in two of the arguments and
// its own scratch area. Coordination is a control block in shared memory (Atomics.wait/notify),
// so a call costs microseconds, not a message round trip.
//
// Every helper answers every generation, also one without a slice: the caller waits for all of
// them, so no helper can still be reading one call's control block when the next is written.
//
// The control block's layout is in pool-control.mjs, shared with the helpers.

import { Worker } from 'node:worker_threads';
import { WeftError } from '../../util/errors.ts';
import {
  ARG_COUNT,
  CONTROL_INTS,
  FAILED,
  GENERATION,
  KERNEL,
  MAX_ARGS,
  PENDING,
  RANGE_ARG,
  SCRATCH_ARG,
  SLICES,
  STARTED,
  helperArgs,
} from './pool-control.mjs';

export const KERNEL_NAMES = ['gemm', 'crossEntropyForward', 'crossEntropyBackward'] as const;
export type ParallelKernel = (typeof KERNEL_NAMES)[number];

/** How long helpers may take to start (instantiate the module) before the first call fails. */
const START_TIMEOUT_MS = 60_000;
/** How long join polls for the helpers before it sleeps in Atomics.wait. */
const JOIN_SPIN_MS = 2;

export interface PoolShared {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  control: SharedArrayBuffer;
  args: SharedArrayBuffer;
  index: number;
  /** KERNEL_NAMES (kernel ids index it), so the helper does not repeat them. */
  names: readonly string[];
}

export class Pool {
  private readonly control: Int32Array;
  private readonly args: Float64Array;
  private readonly threads: Worker[] = [];

  constructor(
    readonly helpers: number,
    memory: WebAssembly.Memory,
    module: WebAssembly.Module,
  ) {
    const controlBuffer = new SharedArrayBuffer(CONTROL_INTS * 4);
    const argsBuffer = new SharedArrayBuffer((MAX_ARGS + 3 * helpers) * 8);
    this.control = new Int32Array(controlBuffer);
    this.args = new Float64Array(argsBuffer);
    for (let index = 0; index < helpers; index++) {
      const shared: PoolShared = {
        memory,
        module,
        control: controlBuffer,
        args: argsBuffer,
        index,
        names: KERNEL_NAMES,
      };
      const thread = new Worker(new URL('./pool-thread.mjs', import.meta.url), {
        workerData: shared,
      });
      thread.unref();
      this.threads.push(thread);
    }
  }

  /**
   * Runs kernel `name` with `args`, its range arguments (at rangeArg, rangeArg+1) set to each
   * helper's slice of `slices` (ranges after the first, which the caller runs itself), and its
   * scratch argument to each helper's scratch offset.
   */
  dispatch(
    name: ParallelKernel,
    args: number[],
    rangeArg: number,
    scratchArg: number,
    slices: [number, number][],
    scratch: number[],
  ): void {
    const c = this.control;
    this.waitReady();
    this.args.set(args);
    for (let h = 0; h < slices.length; h++) {
      const at = helperArgs(h);
      this.args[at] = slices[h][0];
      this.args[at + 1] = slices[h][1];
      this.args[at + 2] = scratch[h];
    }
    Atomics.store(c, KERNEL, KERNEL_NAMES.indexOf(name));
    Atomics.store(c, ARG_COUNT, args.length);
    Atomics.store(c, RANGE_ARG, rangeArg);
    Atomics.store(c, SCRATCH_ARG, scratchArg);
    Atomics.store(c, SLICES, slices.length);
    Atomics.store(c, PENDING, this.helpers);
    Atomics.add(c, GENERATION, 1);
    Atomics.notify(c, GENERATION);
  }

  /** Blocks until every helper has instantiated the module (once, before the first dispatch). */
  private waitReady(): void {
    const c = this.control;
    if (Atomics.load(c, STARTED) === this.helpers) return;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (
      let ready = Atomics.load(c, STARTED);
      ready < this.helpers;
      ready = Atomics.load(c, STARTED)
    ) {
      if (Date.now() > deadline) {
        throw new WeftError(
          'WEFT_E_STATE',
          `only ${ready} of ${this.helpers} wasm kernel helper threads started within ${START_TIMEOUT_MS / 1000} s`,
        );
      }
      Atomics.wait(c, STARTED, ready, 1000);
    }
  }

  /** Waits until every helper has finished (or, without a slice, seen) the last dispatch. */
  join(): void {
    const c = this.control;
    // the helpers usually finish within microseconds of this thread: poll before sleeping
    for (const until = performance.now() + JOIN_SPIN_MS; performance.now() < until;)
      if (Atomics.load(c, PENDING) === 0) break;
    for (;;) {
      const pending = Atomics.load(c, PENDING);
      if (pending === 0) break;
      Atomics.wait(c, PENDING, pending, 1000);
    }
    if (Atomics.exchange(c, FAILED, 0) > 0) {
      throw new WeftError(
        'WEFT_E_STATE',
        `the wasm kernel ${KERNEL_NAMES[Atomics.load(c, KERNEL)]} failed on a helper thread (its error is printed above)`,
      );
    }
  }

  terminate(): Promise<number[]> {
    return Promise.all(this.threads.map((t) => t.terminate()));
  }
}
