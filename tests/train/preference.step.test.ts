// The reward and DPO objectives through the production training step (train/step.ts) against
// PyTorch's fixtures (tests/fixtures/, "gpt2-preference-fixture"), on every backend: the first
// step's loss and every gradient (score.weight too), then each step's loss and gradient norm,
// and the parameters after all the fixture's AdamW steps (final/). The fixture's pairs are the
// step's shards, one pair (two rows) each; every fixture of either kind found is checked.

import { describe, expect, it } from 'vitest';
import { getFloat32, getInt32 } from '../../src/checkpoint/safetensors.ts';
import { loadWeights } from '../../src/checkpoint/weights.ts';
import type { Batch } from '../../src/data/loader.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { namedTensors } from '../../src/model/layout.ts';
import { AdamW } from '../../src/train/adamw.ts';
import { sequenceLogp } from '../../src/train/sequence-scores.ts';
import { DEFAULT_EXACT_BITS, TrainingStep, localReducer } from '../../src/train/step.ts';
import { allBackends } from '../helpers/backends.ts';
import { maxAbsDiff } from '../helpers/fixtures.ts';
import type { PreferenceFixture, PreferenceKind } from '../helpers/preference-fixtures.ts';
import { loadPreferenceFixture, preferenceFixtureNames } from '../helpers/preference-fixtures.ts';

const backends = allBackends();
type AnyBackend = (typeof backends)[number][1];
const rowOf = (a: Int32Array, i: number, T: number) => a.subarray(i * T, (i + 1) * T);

/** The fixture's model (a reward model: with score.weight) with the weights under `prefix`. */
function modelOf(fx: PreferenceFixture, prefix: string, backend: AnyBackend): GPT2 {
  const config = { ...fx.config, objective: fx.kind };
  const model = new GPT2(config, { backend });
  loadWeights(model.params, config, fx.tensors, prefix, fx.name);
  model.backend.weightsChanged?.();
  return model;
}

/**
 * Pair i as a shard: rows (chosen, rejected). DPO: the fixture's targets, and the reference's
 * log-probs; reward: targets over each sequence up to its last token (which the reward reads).
 */
function pairShards(fx: PreferenceFixture, backend: AnyBackend): Batch[] {
  const { N, T } = fx.batch;
  const idx = (w: string) => getInt32(fx.tensors, `${w}_idx`);
  const sides = ['chosen', 'rejected'];
  const targetsOf = (w: string, i: number): Int32Array => {
    if (fx.kind === 'dpo') return rowOf(getInt32(fx.tensors, `${w}_targets`), i, T);
    const n = getInt32(fx.tensors, `${w}_len`)[i];
    const row = rowOf(idx(w), i, T);
    return Int32Array.from({ length: T }, (_, t) => (t < n - 1 ? row[t + 1] : -1));
  };
  const ref = fx.kind === 'dpo' ? modelOf(fx, 'ref/', backend) : null;
  return Array.from({ length: N }, (_, i) => {
    const rows = sides.map((w) => ({ idx: rowOf(idx(w), i, T), targets: targetsOf(w, i) }));
    const batch: Batch = {
      idx: Int32Array.from([...rows[0].idx, ...rows[1].idx]),
      targets: Int32Array.from([...rows[0].targets, ...rows[1].targets]),
      B: 2,
      T,
    };
    if (ref)
      batch.refLogps = Float64Array.from(rows.map((r) => sequenceLogp(ref, r.idx, r.targets, T)));
    return batch;
  });
}

function checkKind(kind: PreferenceKind) {
  describe.each(preferenceFixtureNames(kind))(
    `${kind} fixture %s through the training step`,
    (name) => {
      const fx = loadPreferenceFixture(name);
      const opt = fx.optimizer;
      describe.each(backends)('on %s', (_, backend) => {
        it('loss, every gradient, each step and the final parameters match PyTorch', async () => {
          const model = modelOf(fx, 'param/', backend);
          const optimizer = new AdamW(
            model.layout,
            { beta1: opt.beta1, beta2: opt.beta2, eps: opt.eps, weightDecay: opt.weight_decay },
            backend,
          );
          const shards = pairShards(fx, backend);
          const step = new TrainingStep(model, optimizer, {
            bits: DEFAULT_EXACT_BITS,
            shards: shards.length,
            gradClip: opt.grad_clip,
            objective: kind,
            beta: fx.beta,
          });
          const losses = fx.stepLosses;
          const norms = fx.stepGradNormsBeforeClip;
          const tensors = namedTensors(model.config);
          expect(tensors.at(-1)?.name).toBe(kind === 'reward' ? 'score.weight' : 'ln_f.bias');
          for (let s = 0; s < opt.steps; s++) {
            step.begin();
            let lossSum = 0;
            for (const shard of shards) lossSum += step.addShard(shard, shards.length).lossSum;
            const norm = await step.reduce(localReducer(model, DEFAULT_EXACT_BITS));
            expect(Math.abs(lossSum / shards.length - losses[s]), `loss of step ${s}`).toBeLessThan(
              2e-6,
            );
            expect(Math.abs(norm - norms[s]), `norm of step ${s}`).toBeLessThan(1e-5);
            if (s === 0) {
              for (const t of tensors) {
                const got = model.grads.subarray(t.offset, t.offset + t.size);
                expect(
                  maxAbsDiff(got, getFloat32(fx.tensors, `grad/${t.name}`)),
                  t.name,
                ).toBeLessThan(2e-6);
              }
            }
            step.apply(opt.lr);
          }
          for (const t of tensors) {
            const got = model.params.subarray(t.offset, t.offset + t.size);
            expect(
              maxAbsDiff(got, getFloat32(fx.tensors, `final/${t.name}`)),
              `final ${t.name}`,
            ).toBeLessThan(2e-5);
          }
        });
      });
    },
  );
}

checkKind('dpo');
checkKind('reward');
