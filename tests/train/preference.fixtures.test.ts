// The preference objectives' per-sequence readings against PyTorch (tests/fixtures/, format
// "gpt2-preference-fixture"), on every backend: DPO's sequence log-probabilities under the policy
// and the reference, with TRL's metrics built from them; a reward model's rewards and accuracy.
// Every fixture of either kind found is checked, its name in the test's name. The gradients and
// the optimizer steps go through the production step: preference.step.test.ts.

import { describe, expect, it } from 'vitest';
import { getFloat32, getInt32 } from '../../src/checkpoint/safetensors.ts';
import { loadWeights } from '../../src/checkpoint/weights.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { sequenceLogp, sequenceReward } from '../../src/train/sequence-scores.ts';
import { allBackends } from '../helpers/backends.ts';
import { maxAbsDiff } from '../helpers/fixtures.ts';
import type { PreferenceFixture } from '../helpers/preference-fixtures.ts';
import { loadPreferenceFixture, preferenceFixtureNames } from '../helpers/preference-fixtures.ts';

const backends = allBackends();
const row = (a: Int32Array, i: number, T: number) => a.subarray(i * T, (i + 1) * T);

/** A model of the fixture's config with the weights under `prefix`. */
function modelOf(fx: PreferenceFixture, prefix: string, backend: (typeof backends)[number][1]) {
  const model = new GPT2(fx.config, { backend });
  loadWeights(model.params, fx.config, fx.tensors, prefix, fx.name);
  model.backend.weightsChanged?.();
  return model;
}

it('finds the preference fixtures', () => {
  expect(preferenceFixtureNames('dpo').length).toBeGreaterThan(0);
  expect(preferenceFixtureNames('reward').length).toBeGreaterThan(0);
});

describe.each(preferenceFixtureNames('dpo'))('DPO fixture %s', (name) => {
  const fx = loadPreferenceFixture(name);
  const { N, T } = fx.batch;
  describe.each(backends)('on %s', (_, backend) => {
    it('sequence log-probs of the policy and the reference, and TRL metrics', () => {
      const logps = (prefix: string, which: 'chosen' | 'rejected') => {
        const model = modelOf(fx, prefix, backend);
        const idx = getInt32(fx.tensors, `${which}_idx`);
        const targets = getInt32(fx.tensors, `${which}_targets`);
        return Array.from({ length: N }, (_, i) =>
          sequenceLogp(model, row(idx, i, T), row(targets, i, T), T),
        );
      };
      const [pc, pr, rc, rr] = [
        logps('param/', 'chosen'),
        logps('param/', 'rejected'),
        logps('ref/', 'chosen'),
        logps('ref/', 'rejected'),
      ];
      const want = (n: string) => Array.from(getFloat32(fx.tensors, n));
      expect(maxAbsDiff(pc, want('policy_chosen_logps'))).toBeLessThan(1e-5);
      expect(maxAbsDiff(pr, want('policy_rejected_logps'))).toBeLessThan(1e-5);
      expect(maxAbsDiff(rc, want('ref_chosen_logps'))).toBeLessThan(1e-5);
      expect(maxAbsDiff(rr, want('ref_rejected_logps'))).toBeLessThan(1e-5);
      // TRL's metric names, from the same numbers
      const beta = fx.beta as number;
      const chosen = pc.map((p, i) => beta * (p - rc[i]));
      const rejected = pr.map((p, i) => beta * (p - rr[i]));
      const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
      const m = fx.metrics as Record<string, number>;
      expect(Math.abs(mean(chosen) - m['rewards/chosen'])).toBeLessThan(1e-5);
      expect(Math.abs(mean(rejected) - m['rewards/rejected'])).toBeLessThan(1e-5);
      expect(
        Math.abs(mean(chosen.map((c, i) => c - rejected[i])) - m['rewards/margins']),
      ).toBeLessThan(1e-5);
      expect(mean(chosen.map((c, i) => (c > rejected[i] ? 1 : 0)))).toBe(m['rewards/accuracies']);
      expect(Math.abs(mean(pc) - m['logps/chosen'])).toBeLessThan(1e-5);
      expect(Math.abs(mean(pr) - m['logps/rejected'])).toBeLessThan(1e-5);
      // and the loss: mean of -logsigmoid(margin)
      const loss = mean(chosen.map((c, i) => Math.log1p(Math.exp(-(c - rejected[i])))));
      expect(Math.abs(loss - fx.loss)).toBeLessThan(2e-6);
    });
  });
});

describe.each(preferenceFixtureNames('reward'))('reward fixture %s', (name) => {
  const fx = loadPreferenceFixture(name);
  const { N, T } = fx.batch;
  describe.each(backends)('on %s', (_, backend) => {
    it('rewards at each sequence’s last real token, accuracy and loss', () => {
      const model = modelOf(fx, 'param/', backend);
      const score = getFloat32(fx.tensors, 'param/score.weight');
      const rewards = (which: 'chosen' | 'rejected') => {
        const idx = getInt32(fx.tensors, `${which}_idx`);
        const len = getInt32(fx.tensors, `${which}_len`);
        return Array.from({ length: N }, (_, i) =>
          sequenceReward(model, row(idx, i, T), len[i], T, score),
        );
      };
      const chosen = rewards('chosen');
      const rejected = rewards('rejected');
      expect(maxAbsDiff(chosen, getFloat32(fx.tensors, 'rewards_chosen'))).toBeLessThan(2e-6);
      expect(maxAbsDiff(rejected, getFloat32(fx.tensors, 'rewards_rejected'))).toBeLessThan(2e-6);
      const wins = chosen.filter((c, i) => c > rejected[i]).length;
      expect(wins / N).toBe(fx.accuracy);
      const loss = chosen.reduce((n, c, i) => n + Math.log1p(Math.exp(-(c - rejected[i]))), 0) / N;
      expect(Math.abs(loss - fx.loss)).toBeLessThan(2e-6);
    });
  });
});
