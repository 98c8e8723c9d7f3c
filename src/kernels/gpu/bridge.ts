// A synchronous call into the gpu backend's device thread. The Backend interface is synchronous
// and WebGPU is not (its results arrive as promises), so the device lives in its own thread
// (thread.ts): the backend posts a request naming byte ranges of the shared wasm memory, then
// blocks in Atomics.wait until the thread has written the output there and answered.
//
// The control block's layout and its readers and writers are in control.mjs.

import type { Worker } from 'node:worker_threads';
import { WeftError } from '../../util/errors.ts';
import { startThread } from '../../util/threads.ts';
import { newControl, readReply } from './control.mjs';
import type { GemmShape } from './device.ts';

/** Longest wait for one answer: opening a device or a slow CPU-mode product. */
const ANSWER_TIMEOUT_MS = 10 * 60_000;

export interface BridgeShared {
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  /** Skip WebGPU and use gpu.js's default selection (tests). */
  fallback: boolean;
}

/** One product: byte offset and length (in floats) of each operand in the shared memory. */
export interface GemmRequest {
  seq: number;
  /** Weights changed when this differs from the previous request's. */
  epoch: number;
  shape: GemmShape;
  out: [number, number];
  a: [number, number];
  b: [number, number];
  /** The bias (mode 'bias') or the previous output (mode 'acc'). */
  extra: [number, number] | null;
  /** Keep `b` on the device under this key until the epoch changes (a weight). */
  bKey: string | null;
}

export class DeviceBridge {
  /** 'webgpu', or the gpu.js mode used without one ('webasm', 'cpu', ...). */
  readonly mode: string;
  /** Why WebGPU is not in use ('' when it is). */
  readonly whyNotWebGpu: string;
  private readonly thread: Worker;
  private readonly control: Int32Array;
  private seq = 0;

  constructor(memory: WebAssembly.Memory, fallback: boolean) {
    const buffer = newControl();
    this.control = new Int32Array(buffer);
    const shared: BridgeShared = { memory, control: buffer, fallback };
    this.thread = startThread(new URL('./thread.ts', import.meta.url), shared, {
      onFailure: new URL('./control.mjs', import.meta.url),
    });
    this.thread.unref();
    this.thread.on('error', () => {}); // reported through the control block
    [this.mode, this.whyNotWebGpu] = JSON.parse(this.await(0, 'opening the gpu device')) as [
      string,
      string,
    ];
  }

  gemm(request: Omit<GemmRequest, 'seq'>): void {
    const seq = ++this.seq;
    this.thread.postMessage({ ...request, seq });
    this.await(seq, 'a gpu matrix product');
  }

  async close(): Promise<void> {
    this.thread.postMessage('close');
    await this.thread.terminate();
  }

  /** Blocks until request `seq` is answered; returns its text or throws its error. */
  private await(seq: number, what: string): string {
    const deadline = Date.now() + ANSWER_TIMEOUT_MS;
    for (;;) {
      const done = Atomics.load(this.control, 0);
      if (done === seq) break;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new WeftError('WEFT_E_STATE', `${what} got no answer from the device thread`);
      }
      Atomics.wait(this.control, 0, done, Math.min(left, 1000));
    }
    const { ok, text } = readReply(this.control.buffer as SharedArrayBuffer);
    if (!ok) throw new WeftError('WEFT_E_STATE', `${what} failed on the gpu device: ${text}`);
    return text;
  }
}
