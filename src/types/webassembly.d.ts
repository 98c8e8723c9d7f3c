// The part of the WebAssembly JavaScript API the wasm backend uses. TypeScript ships these
// types only with its DOM libraries, which this Node project does not load.

export {};

declare global {
  namespace WebAssembly {
    interface MemoryDescriptor {
      initial: number;
      maximum?: number;
      shared?: boolean;
    }
    class Memory {
      constructor(descriptor: MemoryDescriptor);
      readonly buffer: ArrayBuffer | SharedArrayBuffer;
      grow(delta: number): number;
    }
    class Module {
      constructor(bytes: BufferSource);
    }
    class Instance {
      constructor(module: Module, imports?: Record<string, Record<string, unknown>>);
      readonly exports: Record<string, unknown>;
    }
    /** Whether `bytes` is a module this runtime compiles (its features enabled). */
    function validate(bytes: BufferSource): boolean;
  }
}
