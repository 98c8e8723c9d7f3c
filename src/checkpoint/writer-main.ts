// Body of the checkpoint writer thread: serialises, hashes and writes each checkpoint it is sent
// (writeCheckpoint), so none of that work runs on the thread that coordinates training.

import { parentPort } from 'node:worker_threads';
import type { CheckpointState } from './format.ts';
import { writeCheckpoint } from './write.ts';

export interface WriteRequest {
  id: number;
  runDir: string;
  state: CheckpointState;
  keepLast: number;
}

const port = parentPort as NonNullable<typeof parentPort>;
port.on('message', (request: WriteRequest) => {
  writeCheckpoint(request.runDir, request.state, request.keepLast).then(
    (dir) => port.postMessage({ id: request.id, dir }),
    (err: Error) => port.postMessage({ id: request.id, error: err.message }),
  );
});
