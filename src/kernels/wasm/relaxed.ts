// WebAssembly relaxed SIMD in this runtime: what kernels-fma.wasm needs for its fused
// multiply-adds. Node 22 and later have it; Node 20 (V8 11.3) only with the V8 flag
// --experimental-wasm-relaxed-simd, which weft sets itself, the way Node allows
// (v8.setFlagsFromString), before it compiles the first relaxed-SIMD module. V8's flags belong to
// the process, so the worker threads (pool helpers, training workers) have it too. Started with
// --no-experimental-wasm-relaxed-simd, node keeps it off: then only the unfused kernels run.

import { setFlagsFromString } from 'node:v8';

export const RELAXED_SIMD_FLAG = '--experimental-wasm-relaxed-simd';

/** (module (func (param v128 v128 v128) (result v128) f32x4.relaxed_madd of the three)). */
const PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b,
  0x01, 0x7b, 0x03, 0x02, 0x01, 0x00, 0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20,
  0x02, 0xfd, 0x85, 0x02, 0x0b,
]);

/** True when node was told to keep relaxed SIMD off (V8 reads `_` and `-` alike in flags). */
function keptOff(): boolean {
  const off = RELAXED_SIMD_FLAG.replace('--', '--no-');
  return process.execArgv.some((a) => a.replaceAll('_', '-') === off);
}

/**
 * Whether this runtime compiles relaxed SIMD, after turning the V8 flag on where that is needed
 * and allowed. Cheap after the first call.
 */
export function relaxedSimd(): boolean {
  if (WebAssembly.validate(PROBE)) return true;
  if (keptOff()) return false;
  setFlagsFromString(RELAXED_SIMD_FLAG);
  return WebAssembly.validate(PROBE);
}
