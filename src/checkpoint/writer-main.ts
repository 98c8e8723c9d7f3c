// Body of the checkpoint writer thread: serialises, hashes and writes each checkpoint it is sent
// (writeCheckpoint), passing back what it logs, so none of that work runs on the thread that
// coordinates training.

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
  const log = (line: string) => port.postMessage({ id: request.id, log: line });
  writeCheckpoint(request.runDir, request.state, request.keepLast, log).then(
    (dir) => port.postMessage({ id: request.id, dir }),
    (err: Error) => port.postMessage({ id: request.id, error: err.message }),
  );
});
