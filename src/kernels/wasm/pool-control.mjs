// The control block of the wasm backend's thread pool, in one place for both sides (pool.ts,
// which dispatches calls, and pool-thread.mjs, each helper; plain JavaScript, as helpers load no
// TypeScript).
//
// control (Int32, SharedArrayBuffer of CONTROL_INTS): the slots below. args (Float64): the call's
// arguments at [0, count), then from MAX_ARGS three per helper: its range begin, end, scratch.

/** The call's generation: bumped once per call; helpers wait for it to change. */
export const GENERATION = 0;
/** Helpers that have not answered the current call yet (the caller's join waits for 0). */
export const PENDING = 1;
/** Index of the kernel in the pool's kernel names. */
export const KERNEL = 2;
/** Number of arguments. */
export const ARG_COUNT = 3;
/** Index of the range-begin argument (range-end is the next). */
export const RANGE_ARG = 4;
/** Index of the scratch-pointer argument. */
export const SCRATCH_ARG = 5;
/** Helpers that have a slice of this call (the others only answer). */
export const SLICES = 6;
/** Helpers started (instantiated the module). */
export const STARTED = 7;
/** Helpers whose slice of the last call threw. */
export const FAILED = 8;
export const CONTROL_INTS = 9;

/** Most arguments a pooled kernel takes. */
export const MAX_ARGS = 32;

/** Where helper `index`'s range begin, end and scratch are in args. */
export function helperArgs(index) {
  return MAX_ARGS + 3 * index;
}
