// A worker thread of the fixture tests: one member of an n-member ring running the production
// training step (src/train/step.ts, with the exact ring all-reduce as its reducer) on its rows of
// a PyTorch fixture's batch, for the fixture's optimizer steps. Rows are shards, dealt round-robin
// by rank. It posts per step its shards' loss sum and the global norm, and the final parameters.

import type { MessagePort } from 'node:worker_threads';
import { parentPort } from 'node:worker_threads';
import { getInt32 } from '../../src/checkpoint/safetensors.ts';
import { loadWeights } from '../../src/checkpoint/weights.ts';
import type { Chunk } from '../../src/distributed/collectives.ts';
import { Mailbox, ringReducer } from '../../src/distributed/collectives.ts';
import type { BackendName } from '../../src/kernels/backend.ts';
import { createBackend } from '../../src/kernels/select.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { AdamW } from '../../src/train/adamw.ts';
import { DEFAULT_EXACT_BITS, TrainingStep, countTargets } from '../../src/train/step.ts';
import { threadData } from '../../src/util/threads.ts';
import { fixtureRows } from './fixture-rows.ts';
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
const model = new GPT2(fx.config, { backend });
loadWeights(model.params, fx.config, fx.tensors, 'param/', fx.name);
const { lr, beta1, beta2, eps, weight_decay: weightDecay, grad_clip: gradClip } = fx.optimizer;
const optimizer = new AdamW(model.layout, { beta1, beta2, eps, weightDecay }, backend);
const rows = fixtureRows(getInt32(fx.tensors, 'idx'), getInt32(fx.tensors, 'targets'), fx.B, fx.T);
const step = new TrainingStep(model, optimizer, {
  bits: DEFAULT_EXACT_BITS,
  shards: rows.length,
  gradClip,
});
const globalTargets = rows.reduce((n, r) => n + countTargets(r), 0);
const mailbox = new Mailbox();
const ranks = Array.from({ length: job.size }, (_, r) => r);
const prevRank = (job.rank - 1 + job.size) % job.size;
job.prev.on('message', (chunk: Chunk) => mailbox.deliver(prevRank, chunk));
const work = backend.allocF64(model.paramCount);

const result: FixtureWorkerResult = { lossSums: [], norms: [], params: model.params };
for (let s = 0; s < fx.optimizer.steps; s++) {
  step.begin();
  let lossSum = 0;
  for (let row = job.rank; row < rows.length; row += job.size) {
    const r = step.addShard(rows[row], globalTargets);
    if (r.overflow) throw new Error(`step ${s}: the fixture's gradient overflowed the exact grid`);
    lossSum += r.lossSum;
  }
  const reducer = ringReducer({
    ring: { position: job.rank, size: job.size, ranks, send: (_, c) => job.next.postMessage(c) },
    mailbox,
    work,
    toFp32: (out, sums, begin, end) => backend.fromExact(out, sums, DEFAULT_EXACT_BITS, begin, end),
    step: s,
    attempt: 0,
    cancelled: () => false,
  });
  result.norms.push(await step.reduce(reducer));
  result.lossSums.push(lossSum);
  step.apply(lr);
}
result.params = model.params.slice();
parentPort?.postMessage(result);
job.prev.close();
job.next.close();
await backend.dispose?.();
