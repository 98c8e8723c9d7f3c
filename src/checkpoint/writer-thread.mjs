// Entry point of the checkpoint writer thread (threads cannot load .ts files without tsx).
import { register } from 'tsx/esm/api';

register();
await import('./writer-main.ts');
