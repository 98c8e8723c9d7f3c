// The wasm backend's memory: one shared WebAssembly.Memory (so a pool of threads can compute on
// the same buffers) and a first-fit allocator over it, managed from JavaScript. Parameters,
// gradients, optimizer moments and activations are typed-array views into this memory, so the
// kernels work on them in place, with no copies between JavaScript and wasm.

import { WeftError } from '../../util/errors.ts';

const PAGE = 65536;
/** The first megabyte belongs to the module (its static data and stack). */
const RESERVED = 1 << 20;
const ALIGN = 64;
const MAX_PAGES = 65536;

export class WasmHeap {
  readonly memory: WebAssembly.Memory;
  private top = RESERVED;
  private readonly freeList: { offset: number; size: number }[] = [];
  private readonly sizes = new Map<number, number>();
  private readonly buffers = new Set<ArrayBufferLike>();

  constructor(memory?: WebAssembly.Memory) {
    this.memory =
      memory ??
      new WebAssembly.Memory({ initial: RESERVED / PAGE + 16, maximum: MAX_PAGES, shared: true });
    this.buffers.add(this.memory.buffer);
  }

  /** The current buffer (a new SharedArrayBuffer object after every growth; old views stay valid). */
  get buffer(): ArrayBufferLike {
    const b = this.memory.buffer;
    this.buffers.add(b);
    return b;
  }

  /** True when `view` lies in this heap's memory (its kernels can use it in place). */
  owns(view: ArrayBufferView): boolean {
    return this.buffers.has(view.buffer) || view.buffer === this.buffer;
  }

  /** `bytes` of zeroed memory, 64-byte aligned; returns the byte offset. */
  alloc(bytes: number): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    const i = this.freeList.findIndex((f) => f.size >= size);
    let offset: number;
    if (i >= 0) {
      const block = this.freeList[i];
      offset = block.offset;
      if (block.size === size) this.freeList.splice(i, 1);
      else this.freeList[i] = { offset: block.offset + size, size: block.size - size };
      new Uint8Array(this.buffer, offset, size).fill(0);
    } else {
      offset = this.top;
      this.top += size;
      const needed = Math.ceil(this.top / PAGE) - this.memory.buffer.byteLength / PAGE;
      if (needed > 0) {
        if (Math.ceil(this.top / PAGE) > MAX_PAGES) {
          throw new WeftError(
            'WEFT_E_SHAPE',
            `wasm memory would exceed 4 GiB (asked for ${bytes} more bytes); use a smaller model or batch`,
          );
        }
        this.memory.grow(needed);
      }
    }
    this.sizes.set(offset, size);
    return offset;
  }

  release(offset: number): void {
    const size = this.sizes.get(offset);
    if (size === undefined) return;
    this.sizes.delete(offset);
    // insert sorted, merging neighbours
    let i = this.freeList.findIndex((f) => f.offset > offset);
    if (i < 0) i = this.freeList.length;
    this.freeList.splice(i, 0, { offset, size });
    for (let k = Math.max(0, i - 1); k < this.freeList.length - 1;) {
      const a = this.freeList[k];
      const b = this.freeList[k + 1];
      if (a.offset + a.size === b.offset)
        this.freeList.splice(k, 2, { offset: a.offset, size: a.size + b.size });
      else if (k > i) break;
      else k++;
    }
  }

  // alloc first: it may grow the memory, and only the buffer read after that covers the new bytes
  f32(n: number): Float32Array {
    const offset = this.alloc(n * 4);
    return new Float32Array(this.buffer, offset, n);
  }

  f64(n: number): Float64Array {
    const offset = this.alloc(n * 8);
    return new Float64Array(this.buffer, offset, n);
  }

  i32(n: number): Int32Array {
    const offset = this.alloc(n * 4);
    return new Int32Array(this.buffer, offset, n);
  }

  free(view: ArrayBufferView): void {
    if (this.owns(view)) this.release(view.byteOffset);
  }

  /** Bytes in use (allocated and not freed), for memory reports. */
  get inUse(): number {
    let n = 0;
    for (const size of this.sizes.values()) n += size;
    return n;
  }
}
