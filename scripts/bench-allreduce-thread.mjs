// Thread entry for scripts/bench-allreduce.ts (threads cannot load .ts files without tsx).
import { register } from 'tsx/esm/api';

register();
await import('./bench-allreduce-worker.ts');
