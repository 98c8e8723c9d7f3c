// A worker thread of the fixture tests: one member of an n-member ring running the production
// training step (runStep in src/train/step.ts, with the exact ring all-reduce as its reducer, in
// the backward pass's order as when it overlaps the backward pass) on
// its rows of a PyTorch fixture's batch (rows dealt round-robin by rank), for the fixture's
// optimizer steps. It posts per step its rows' loss sum and the global norm, and the final
// parameters.

import type { MessagePort } from 'node:worker_threads';
import { parentPort } from 'node:worker_threads';
import type { Chunk } from '../../src/distributed/collectives.ts';
import { Mailbox, ringReducer } from '../../src/distributed/collectives.ts';
import { detached } from '../../src/distributed/messages.ts';
import type { BackendName } from '../../src/kernels/backend.ts';
import { createBackend } from '../../src/kernels/select.ts';
import { runStep } from '../../src/train/step.ts';
import { threadData } from '../../src/util/threads.ts';
import { fixtureStep } from './fixture-step.ts';
import { loadFixture } from './fixtures.ts';

export interface FixtureWorkerJob {
  fixture: string;
  backend: BackendName;
  /** Kernel threads of the backend (bits can depend on how a kernel splits its work). */
  threads: number;
  rank: number;
  size: number;
  /** Sends to rank + 1, receives from rank - 1 (mod size). */
  next: MessagePort;
  prev: MessagePort;
}

export interface FixtureWorkerResult {
  lossSums: number[];
  norms: number[];
  params: Float32Array;
}

const job = threadData<FixtureWorkerJob>();
const fx = loadFixture(job.fixture);
const backend = createBackend(job.backend, { threads: job.threads });
const { step, rows, globalTargets, lr } = fixtureStep(fx, backend);
const mine = rows.filter((_, row) => row % job.size === job.rank);
const mailbox = new Mailbox();
const ranks = Array.from({ length: job.size }, (_, r) => r);
const prevRank = (job.rank - 1 + job.size) % job.size;
job.prev.on('message', (chunk: Chunk) => mailbox.deliver(prevRank, chunk));
const work = new Float64Array(step.model.paramCount);
const staged = new Float32Array(step.model.paramCount); // results in the backward pass's order

const result: FixtureWorkerResult = { lossSums: [], norms: [], params: step.model.params };
for (let s = 0; s < fx.optimizer.steps; s++) {
  const reducer = ringReducer({
    ring: {
      position: job.rank,
      size: job.size,
      ranks,
      send: (_, c) => job.next.postMessage(detached(c)),
    },
    mailbox,
    work,
    staged: () => staged,
    backend,
    bits: step.options.bits,
    step: s,
    attempt: 0,
    cancelled: () => false,
  });
  const r = await runStep(step, mine, lr, { reducer, globalTargets });
  if (r.overflow) throw new Error(`step ${s}: the fixture's gradient overflowed the exact grid`);
  result.lossSums.push(r.lossSum);
  result.norms.push(r.gradNorm);
}
result.params = step.model.params.slice();
parentPort?.postMessage(result);
job.prev.close();
job.next.close();
await backend.dispose?.();
