// Entry point of a worker thread: worker threads cannot load .ts files by themselves, so this
// registers tsx and then loads the TypeScript thread body.
import { register } from 'tsx/esm/api';

register();
await import('./thread-main.ts');
