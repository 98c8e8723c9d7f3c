// The production training step (src/train/step.ts) set up on a PyTorch fixture: the fixture's
// initial weights, its AdamW settings, and its batch as shards of one row each (B rows of T
// tokens), so 1 or 2 workers split the same batch differently and must agree exactly.

import { getInt32 } from '../../src/checkpoint/safetensors.ts';
import { loadWeights } from '../../src/checkpoint/weights.ts';
import type { Batch } from '../../src/data/loader.ts';
import type { Backend } from '../../src/kernels/backend.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { AdamW } from '../../src/train/adamw.ts';
import { DEFAULT_EXACT_BITS, TrainingStep, countTargets } from '../../src/train/step.ts';
import type { Fixture } from './fixtures.ts';

export interface FixtureStep {
  step: TrainingStep;
  /** The batch's rows, one shard each. */
  rows: Batch[];
  /** Targets over every row. */
  globalTargets: number;
  lr: number;
}

export function fixtureStep(fx: Fixture, backend: Backend): FixtureStep {
  const model = new GPT2(fx.config, { backend });
  loadWeights(model.params, fx.config, fx.tensors, 'param/', fx.name);
  const { lr, beta1, beta2, eps, weight_decay: weightDecay, grad_clip: gradClip } = fx.optimizer;
  const optimizer = new AdamW(model.layout, { beta1, beta2, eps, weightDecay }, backend);
  const idx = getInt32(fx.tensors, 'idx');
  const targets = getInt32(fx.tensors, 'targets');
  const { B, T } = fx;
  const rows = Array.from({ length: B }, (_, b) => ({
    idx: idx.subarray(b * T, (b + 1) * T),
    targets: targets.subarray(b * T, (b + 1) * T),
    B: 1,
    T,
  }));
  const step = new TrainingStep(model, optimizer, {
    bits: DEFAULT_EXACT_BITS,
    shards: rows.length,
    gradClip,
  });
  return { step, rows, globalTargets: rows.reduce((n, r) => n + countTargets(r), 0), lr };
}
