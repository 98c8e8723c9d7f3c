// The model against PyTorch: logits, loss, every gradient and ten AdamW steps of each reference
// fixture in tests/fixtures/, on every backend (select one with `vitest -t <fixture name>`).

import { describe, expect, it } from 'vitest';
import { getFloat32, getInt32 } from '../../src/checkpoint/safetensors.ts';
import { loadWeights } from '../../src/checkpoint/weights.ts';
import type { Backend } from '../../src/kernels/backend.ts';
import { allBackends } from '../helpers/backends.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { namedTensors } from '../../src/model/layout.ts';
import { AdamW } from '../../src/train/adamw.ts';
import { trainStep } from '../../src/train/step.ts';
import type { Fixture } from '../helpers/fixtures.ts';
import { fixtureNames, loadFixture, maxAbsDiff } from '../helpers/fixtures.ts';

const names = fixtureNames();

it('finds at least one reference fixture', () => {
  expect(names.length).toBeGreaterThan(0);
});

const BACKENDS = allBackends();

function modelFrom(fx: Fixture, backend: Backend): GPT2 {
  const model = new GPT2(fx.config, { backend });
  loadWeights(model.params, fx.config, fx.tensors, 'param/', fx.name);
  return model;
}

describe.each(names.flatMap((name) => BACKENDS.map(([b, backend]) => [name, b, backend] as const)))(
  'fixture %s on %s',
  (name, _, backend) => {
    const fx = loadFixture(name);
    const idx = getInt32(fx.tensors, 'idx');
    const targets = getInt32(fx.tensors, 'targets');
    const batch = { idx, targets, B: fx.B, T: fx.T };

    it('logits and loss match PyTorch', () => {
      const model = modelFrom(fx, backend);
      const { loss, logits } = model.forward(idx, fx.B, fx.T, targets);
      expect(maxAbsDiff(logits, getFloat32(fx.tensors, 'logits'))).toBeLessThanOrEqual(1e-5);
      expect(Math.abs(loss - fx.loss)).toBeLessThanOrEqual(1e-5);
    });

    describe('gradients match PyTorch', () => {
      const model = modelFrom(fx, backend);
      model.zeroGrad();
      model.forward(idx, fx.B, fx.T, targets);
      model.backward();
      it.each(namedTensors(fx.config).map((t) => [t.name, t] as const))('grad %s', (_, t) => {
        const ours = model.grads.subarray(t.offset, t.offset + t.size);
        expect(maxAbsDiff(ours, getFloat32(fx.tensors, `grad/${t.name}`))).toBeLessThanOrEqual(
          1e-5,
        );
      });
    });

    describe(`${fx.optimizer.steps} AdamW steps match PyTorch`, () => {
      const model = modelFrom(fx, backend);
      const {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay: weightDecay,
        grad_clip: gradClip,
      } = fx.optimizer;
      const optimizer = new AdamW(model.layout, { beta1, beta2, eps, weightDecay }, backend);
      const losses: number[] = [];
      const norms: number[] = [];
      for (let step = 0; step < fx.optimizer.steps; step++) {
        const result = trainStep(model, optimizer, batch, lr, gradClip);
        losses.push(result.loss);
        norms.push(result.gradNorm);
      }
      it('losses before each step', () => {
        expect(maxAbsDiff(losses, fx.stepLosses)).toBeLessThanOrEqual(1e-5);
      });
      it('grad norms before clipping', () => {
        expect(maxAbsDiff(norms, fx.stepGradNormsBeforeClip)).toBeLessThanOrEqual(1e-5);
      });
      it.each(namedTensors(fx.config).map((t) => [t.name, t] as const))('final %s', (_, t) => {
        const ours = model.params.subarray(t.offset, t.offset + t.size);
        expect(maxAbsDiff(ours, getFloat32(fx.tensors, `final/${t.name}`))).toBeLessThanOrEqual(
          5e-5,
        );
      });
    });
  },
);
