// Intra-op parallelism for the wasm backend: helper threads, each with its own instance of the
// kernels module over the same shared memory, run slices of a kernel call. A call is a kernel
// name and numeric arguments; each thread gets its own [begin, end) in two of the arguments and
// its own scratch area. Coordination is a control block in shared memory (Atomics.wait/notify),
// so a call costs microseconds, not a message round trip.
//
// Every helper answers every generation, also one without a slice: the caller waits for all of
// them, so no helper can still be reading one call's control block when the next is written.
//
// control block (Int32): [0] generation, [1] helpers still working, [2] kernel id, [3] arg count,
// [4] index of the range-begin argument (range-end is the next), [5] index of the scratch argument,
// [6] helpers with a slice, [7] helpers started, [8] helpers whose slice of the last call threw
// (the caller's join then throws: a wasm trap on a helper cannot reach it as an event while it
// blocks). Arguments (Float64): args[0..count), then from MAX_ARGS begin/end/scratch per helper.

import { Worker } from 'node:worker_threads';
import { WeftError } from '../../util/errors.ts';

export const KERNEL_NAMES = ['gemm', 'crossEntropyForward', 'crossEntropyBackward'] as const;
export type ParallelKernel = (typeof KERNEL_NAMES)[number];

const MAX_ARGS = 32;
export const CONTROL_INTS = 9;
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
  /** KERNEL_NAMES (kernel ids index it) and MAX_ARGS, so the helper does not repeat them. */
  names: readonly string[];
  maxArgs: number;
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
        maxArgs: MAX_ARGS,
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
      const at = MAX_ARGS + 3 * h;
      this.args[at] = slices[h][0];
      this.args[at + 1] = slices[h][1];
      this.args[at + 2] = scratch[h];
    }
    Atomics.store(c, 2, KERNEL_NAMES.indexOf(name));
    Atomics.store(c, 3, args.length);
    Atomics.store(c, 4, rangeArg);
    Atomics.store(c, 5, scratchArg);
    Atomics.store(c, 6, slices.length);
    Atomics.store(c, 1, this.helpers);
    Atomics.add(c, 0, 1);
    Atomics.notify(c, 0);
  }

  /** Blocks until every helper has instantiated the module (once, before the first dispatch). */
  private waitReady(): void {
    const c = this.control;
    if (Atomics.load(c, 7) === this.helpers) return;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (let ready = Atomics.load(c, 7); ready < this.helpers; ready = Atomics.load(c, 7)) {
      if (Date.now() > deadline) {
        throw new WeftError(
          'WEFT_E_STATE',
          `only ${ready} of ${this.helpers} wasm kernel helper threads started within ${START_TIMEOUT_MS / 1000} s`,
        );
      }
      Atomics.wait(c, 7, ready, 1000);
    }
  }

  /** Waits until every helper has finished (or, without a slice, seen) the last dispatch. */
  join(): void {
    const c = this.control;
    // the helpers usually finish within microseconds of this thread: poll before sleeping
    for (const until = performance.now() + JOIN_SPIN_MS; performance.now() < until;)
      if (Atomics.load(c, 1) === 0) break;
    for (;;) {
      const pending = Atomics.load(c, 1);
      if (pending === 0) break;
      Atomics.wait(c, 1, pending, 1000);
    }
    if (Atomics.exchange(c, 8, 0) > 0) {
      throw new WeftError(
        'WEFT_E_STATE',
        `the wasm kernel ${KERNEL_NAMES[Atomics.load(c, 2)]} failed on a helper thread (its error is printed above)`,
      );
    }
  }

  terminate(): Promise<number[]> {
    return Promise.all(this.threads.map((t) => t.terminate()));
  }
}
