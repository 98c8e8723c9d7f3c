// The batch loader a run's data calls for: token windows (lm), chat examples (sft) or preference
// pairs (reward, dpo). The coordinator hands out steps from it (distributed/step-plan.ts, which
// adds a dpo run's reference log-probs); opening a run builds it once to refuse, before anything
// in the run directory changes, data that cannot fill a batch (train/run-dir.ts).

import type { Dataset } from '../data/dataset.ts';
import { TokenWindowLoader } from '../data/loader.ts';
import { PairLoader } from '../data/pairs.ts';
import { SftLoader } from '../data/sft.ts';
import type { RunConfig } from './config.ts';

/** The loader of `dataset` for `config` (resolved: seqLen and shards filled in, resolveForData). */
export function batchLoader(
  config: RunConfig,
  dataset: Dataset,
): TokenWindowLoader | SftLoader | PairLoader {
  const { seqLen: T, batchSize: B, seed, shards } = config;
  const records = dataset.records;
  const pad = dataset.tokenizer.specials.endOfText;
  if (!records) return new TokenWindowLoader(dataset.train, T, B, seed, shards);
  if (records.kind === 'sft') return new SftLoader(records.train, pad, T, B, seed, shards);
  return new PairLoader(records.train, pad, T, B, seed, shards);
}
