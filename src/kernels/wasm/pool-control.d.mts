// Types of pool-control.mjs (the wasm thread pool's control block).

export declare const GENERATION: number;
export declare const PENDING: number;
export declare const KERNEL: number;
export declare const ARG_COUNT: number;
export declare const RANGE_ARG: number;
export declare const SCRATCH_ARG: number;
export declare const SLICES: number;
export declare const STARTED: number;
export declare const FAILED: number;
export declare const CONTROL_INTS: number;
export declare const MAX_ARGS: number;
export declare function helperArgs(index: number): number;
