// A synchronous call into the gpu backend's device thread. The Backend interface is synchronous
// and WebGPU is not (its results arrive as promises), so the device lives in its own thread
// (thread.ts): the backend posts a request naming byte ranges of the shared wasm memory, then
// blocks in Atomics.wait until the thread has written the output there and answered.
//
// control block (Int32, in a SharedArrayBuffer): [0] number of the last answered request (-1 until
// the device is open), [1] 0 ok / 1 error, [2] length of the text that follows, from byte 16: the
// text (the device mode when opening, else the error message), at most TEXT_BYTES.

import { Worker } from 'node:worker_threads';
import { WeftError } from '../../util/errors.ts';
import type { GemmShape } from './device.ts';

const TEXT_BYTES = 4096;
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

/** Device thread side: answers request `seq` with an error or a text. */
export function replyTo(control: SharedArrayBuffer, seq: number, error: unknown, text = ''): void {
  const c = new Int32Array(control);
  const message =
    error === null ? text : error instanceof Error ? error.message : JSON.stringify(error);
  const bytes = new TextEncoder().encode(message).subarray(0, TEXT_BYTES);
  new Uint8Array(control, 16, TEXT_BYTES).set(bytes);
  Atomics.store(c, 1, error === null ? 0 : 1);
  Atomics.store(c, 2, bytes.length);
  Atomics.store(c, 0, seq);
  Atomics.notify(c, 0);
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
    const buffer = new SharedArrayBuffer(16 + TEXT_BYTES);
    this.control = new Int32Array(buffer);
    this.control[0] = -1;
    const shared: BridgeShared = { memory, control: buffer, fallback };
    this.thread = new Worker(new URL('./device-thread.mjs', import.meta.url), {
      workerData: shared,
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
    const length = Atomics.load(this.control, 2);
    const text = new TextDecoder().decode(new Uint8Array(this.control.buffer, 16, length).slice());
    if (Atomics.load(this.control, 1) !== 0) {
      throw new WeftError('WEFT_E_STATE', `${what} failed on the gpu device: ${text}`);
    }
    return text;
  }
}
