// The gpu backend's device thread: owns the GpuDevice (gpu.js, WebGPU where there is an adapter)
// and runs the requests the backend posts, reading inputs from and writing outputs to the wasm
// backend's shared memory. The backend waits on the control block (control.mjs has its layout),
// so its kernels stay synchronous while WebGPU's results arrive as promises here.

import { parentPort } from 'node:worker_threads';
import { threadData } from '../../util/threads.ts';
import type { BridgeShared, GemmRequest } from './bridge.ts';
import { replyTo } from './control.mjs';
import { GpuDevice } from './device.ts';

const { memory, control, fallback } = threadData<BridgeShared>();
const port = parentPort;
if (!port) throw new Error('thread.ts runs as a worker thread');

/** A Float32Array view of [offset, length) in the shared memory (its buffer grows). */
function view(at: [number, number]): Float32Array {
  return new Float32Array(memory.buffer, at[0], at[1]);
}

let device: GpuDevice;
let epoch = 0;
try {
  device = await GpuDevice.open(fallback);
  replyTo(control, 0, null, JSON.stringify([device.mode, device.whyNotWebGpu]));
} catch (error) {
  replyTo(control, 0, error);
  throw error;
}

async function run(req: GemmRequest): Promise<void> {
  if (req.epoch !== epoch) {
    device.invalidateWeights();
    epoch = req.epoch;
  }
  const extra = req.extra ? view(req.extra) : null;
  await device.gemm(view(req.out), req.shape, view(req.a), view(req.b), extra, req.bKey);
}

port.on('message', (req: GemmRequest | 'close') => {
  if (req === 'close') {
    device.destroy();
    port.close();
    return;
  }
  run(req).then(
    () => replyTo(control, req.seq, null),
    (error: unknown) => replyTo(control, req.seq, error),
  );
});
