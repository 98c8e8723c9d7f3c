// Checkpoint writing off the training path: a worker thread serialises, hashes, writes and
// publishes each checkpoint; the caller only hands over its buffers (transferred, not copied),
// one checkpoint at a time, in order.

import type { Worker } from 'node:worker_threads';
import { startThread } from '../util/threads.ts';
import { WeftError } from '../util/errors.ts';
import type { CheckpointState } from './format.ts';
import type { SaveLog } from './write.ts';
import type { WriteRequest } from './writer-main.ts';

export class CheckpointWriter {
  private thread: Worker | null = null;
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (dir: string) => void; reject: (e: Error) => void; log: SaveLog }
  >();

  /** Writes `state` (its buffers are transferred: the caller must not use them again). */
  write(
    runDir: string,
    state: CheckpointState,
    keepLast: number,
    log: SaveLog = () => {},
  ): Promise<string> {
    const thread = this.start();
    const id = this.nextId++;
    const request: WriteRequest = { id, runDir, state, keepLast };
    const buffers = [state.params.buffer, state.m.buffer, state.v.buffer].filter(
      (b): b is ArrayBuffer => b instanceof ArrayBuffer,
    );
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, log });
      thread.postMessage(request, [...new Set(buffers)]);
    });
  }

  /** Ends the thread at once; call it when every write has settled (a pending one is lost). */
  async close(): Promise<void> {
    const thread = this.thread;
    this.thread = null;
    if (thread) await thread.terminate();
  }

  private start(): Worker {
    if (this.thread) return this.thread;
    const thread = startThread(new URL('./writer-main.ts', import.meta.url));
    thread.on('message', (reply: { id: number; dir?: string; error?: string; log?: string }) => {
      const waiter = this.pending.get(reply.id);
      if (reply.log !== undefined) return waiter?.log(reply.log);
      this.pending.delete(reply.id);
      if (reply.error !== undefined) waiter?.reject(new WeftError('WEFT_E_FORMAT', reply.error));
      else waiter?.resolve(reply.dir as string);
    });
    thread.on('error', (err) => {
      for (const waiter of this.pending.values()) waiter.reject(err);
      this.pending.clear();
      this.thread = null;
    });
    this.thread = thread;
    return thread;
  }
}
