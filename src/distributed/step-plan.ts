// What the coordinator hands out each step: the run's batch loader (token windows for lm, chat
// examples for sft, preference pairs for reward and dpo; a dpo run's pairs carry the reference
// model's log-probs, computed here once per pair) and each step's plan: its global unit count
// (targets or pairs, which every worker needs before its backward pass) and, when some worker
// cannot read the data itself, every shard's batch.

import type { Dataset } from '../data/dataset.ts';
import type { Batch, BatchLoader } from '../data/loader.ts';
import { PairLoader } from '../data/pairs.ts';
import type { BackendName } from '../kernels/backend.ts';
import { createBackend } from '../kernels/select.ts';
import { GPT2 } from '../model/gpt2.ts';
import { batchLoader } from '../train/batches.ts';
import type { RunConfig } from '../train/config.ts';
import { batchLogps } from '../train/objectives.ts';
import { countTargets } from '../train/step.ts';
import type { ShardBatch } from './protocol/coordinator.ts';

/**
 * The run's batch loader: token windows (lm), chat examples (sft) or preference pairs (reward,
 * dpo; a dpo run's carry the reference's log-probs, computed here on `backend` with `threads`:
 * the in-process workers' count, since blas's thread count is the process's, see blas/backend.ts).
 */
export function trainLoader(
  config: RunConfig,
  dataset: Dataset,
  reference: Float32Array | undefined,
  backend: BackendName,
  threads: number,
): BatchLoader {
  const loader = batchLoader(config, dataset);
  if (config.objective === 'dpo' && loader instanceof PairLoader) {
    const model = new GPT2(config, {
      params: reference,
      backend: createBackend(backend, { threads }),
    });
    loader.withReference((pair) => batchLogps(model, pair));
  }
  return loader;
}

/** The plan of a step: the global target count, and every shard's batch when they are streamed. */
export function planner(
  config: RunConfig,
  loader: BatchLoader,
): (step: number, streamed: boolean) => { targetCount: number; batches: ShardBatch[] | null } {
  return (step, streamed) => {
    const batches: Batch[] = Array.from({ length: config.shards }, (_, s) =>
      loader.shardBatch(step, s),
    );
    return {
      targetCount: batches.reduce((n, b) => n + countTargets(b, config.objective), 0),
      batches: streamed
        ? batches.map(({ idx, targets, refLogps }) => ({
            idx,
            targets,
            ...(refLogps ? { refLogps } : {}),
          }))
        : null,
    };
  };
}
