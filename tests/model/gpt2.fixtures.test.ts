// The model against PyTorch: logits, loss, every gradient, and the fixture's AdamW steps through
// the production training step (src/train/step.ts: shards into the exact accumulator, a reducer,
// the norm, clip, AdamW) on 1 worker and on 2 worker threads over the exact ring all-reduce, for
// each reference fixture in tests/fixtures/, on every backend (`vitest -t <fixture name>`).

import { MessageChannel } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { getFloat32, getInt32 } from '../../src/checkpoint/safetensors.ts';
import { loadWeights } from '../../src/checkpoint/weights.ts';
import type { Backend } from '../../src/kernels/backend.ts';
import { referenceBackend } from '../../src/kernels/backend.ts';
import { allBackends } from '../helpers/backends.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { namedTensors } from '../../src/model/layout.ts';
import { runStep } from '../../src/train/step.ts';
import { startThread } from '../../src/util/threads.ts';
import type { FixtureWorkerJob, FixtureWorkerResult } from '../helpers/fixture-worker.ts';
import { fixtureStep } from '../helpers/fixture-step.ts';
import type { Fixture } from '../helpers/fixtures.ts';
import { fixtureNames, loadFixture, maxAbsDiff } from '../helpers/fixtures.ts';

const names = fixtureNames();

it('finds at least one reference fixture', () => {
  expect(names.length).toBeGreaterThan(0);
});

const BACKENDS = allBackends();

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

interface StepsResult {
  losses: number[];
  norms: number[];
  params: Float32Array;
  /** Each rank's own norms and final parameters (every worker must hold the same). */
  ranks: { norms: number[]; params: Float32Array }[];
}

/** The fixture's steps on one worker: its rows as the step's shards, the local reducer. */
async function stepsOnOneWorker(fx: Fixture, backend: Backend): Promise<StepsResult> {
  const { step, rows, lr } = fixtureStep(fx, backend);
  const result: StepsResult = { losses: [], norms: [], params: step.model.params, ranks: [] };
  for (let s = 0; s < fx.optimizer.steps; s++) {
    const { loss, gradNorm } = await runStep(step, rows, lr);
    result.losses.push(loss);
    result.norms.push(gradNorm);
  }
  return result;
}

/** The fixture's steps on `n` worker threads in a ring, each with its share of the rows. */
async function stepsOnThreads(fx: Fixture, backend: Backend, n: number): Promise<StepsResult> {
  const channels = Array.from({ length: n }, () => new MessageChannel()); // i sends to i + 1 on channel i
  const threads = Array.from({ length: n }, (_, rank) => {
    const next = channels[rank].port1;
    const prev = channels[(rank - 1 + n) % n].port2;
    const job: FixtureWorkerJob = {
      fixture: fx.name,
      backend: backend.name,
      threads: backend.threads,
      rank,
      size: n,
      next,
      prev,
    };
    return startThread(new URL('../helpers/fixture-worker.ts', import.meta.url), job, {
      transferList: [next, prev],
    });
  });
  try {
    const results = await Promise.all(
      threads.map(
        (thread) =>
          new Promise<FixtureWorkerResult>((resolve, reject) => {
            thread.once('message', resolve);
            thread.once('error', reject);
          }),
      ),
    );
    const { globalTargets } = fixtureStep(fx, referenceBackend);
    return {
      losses: results[0].lossSums.map(
        (_, s) => results.reduce((sum, r) => sum + r.lossSums[s], 0) / globalTargets,
      ),
      norms: results[0].norms,
      params: results[0].params,
      ranks: results,
    };
  } finally {
    await Promise.all(threads.map((t) => t.terminate())); // a failed rank leaves its peer waiting
  }
}

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

    /** The fixture's steps through the production training step, `ourNorms` and all. */
    const expectSteps = (run: () => Promise<StepsResult>) => {
      let result: StepsResult;
      beforeAll(async () => {
        result = await run();
      }, 60_000);
      it('losses before each step', () => {
        expect(maxAbsDiff(result.losses, fx.stepLosses)).toBeLessThanOrEqual(1e-5);
      });
      it('grad norms before clipping', () => {
        expect(maxAbsDiff(result.norms, fx.stepGradNormsBeforeClip)).toBeLessThanOrEqual(1e-5);
      });
      it.each(namedTensors(fx.config).map((t) => [t.name, t] as const))('final %s', (_, t) => {
        const ours = result.params.subarray(t.offset, t.offset + t.size);
        expect(maxAbsDiff(ours, getFloat32(fx.tensors, `final/${t.name}`))).toBeLessThanOrEqual(
          5e-5,
        );
      });
      return () => result;
    };

    describe(`${fx.optimizer.steps} AdamW steps match PyTorch: the training step on 1 worker`, () => {
      const one = expectSteps(() => stepsOnOneWorker(fx, backend));
      describe('and on 2 worker threads over the exact ring all-reduce', () => {
        const two = expectSteps(() => stepsOnThreads(fx, backend, 2));
        it('with the same bits as 1 worker, on every rank', () => {
          for (const rank of two().ranks) {
            expect(rank.norms).toEqual(one().norms);
            expect(bytesOf(rank.params).equals(bytesOf(one().params))).toBe(true);
          }
        });
      });
    });
  },
);
