// The single-process training loop: a GPT2 trained on a prepared dataset with AdamW and the LR
// schedule, writing the run directory as it goes:
//   config.json     the resolved config (vocabSize and seqLen filled in)
//   tokenizer.json  the dataset's tokenizer
//   metrics.jsonl   {"type":"step",...} per step and {"type":"eval",...} per evaluation
//   model.safetensors  the final weights (with config.json and tokenizer.json: a loadable model)
// It yields to the event loop between steps, so a Ctrl-C handler can ask it to stop cleanly.

import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { saveModel } from '../checkpoint/model-files.ts';
import type { Dataset } from '../data/dataset.ts';
import { TokenWindowLoader } from '../data/loader.ts';
import { GPT2 } from '../model/gpt2.ts';
import { check } from '../util/errors.ts';
import { AdamW } from './adamw.ts';
import type { RunConfig } from './config.ts';
import { sequenceLength } from './config.ts';
import type { EvalResult } from './evaluate.ts';
import { evaluate } from './evaluate.ts';
import { learningRate } from './schedule.ts';
import { trainStep } from './step.ts';

export const METRICS_FILE = 'metrics.jsonl';

export interface StepMetrics {
  type: 'step';
  /** Optimizer steps completed, 1-based. */
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  elapsedMs: number;
}

export interface EvalMetrics extends EvalResult {
  type: 'eval';
  step: number;
  split: 'val';
}

export interface TrainHooks {
  /** Called once the config is resolved and the data checked, before the first step. */
  onStart?: (config: RunConfig) => void;
  onStep?: (m: StepMetrics, totalSteps: number) => void;
  onEval?: (m: EvalMetrics) => void;
  /** Polled after every step; true ends the run early (the model is still saved). */
  shouldStop?: () => boolean;
}

export interface TrainResult {
  model: GPT2;
  config: RunConfig;
  steps: number;
  interrupted: boolean;
  lastEval: EvalMetrics | null;
}

/** The run config with vocabSize and seqLen resolved against the dataset. */
export function resolveForData(config: RunConfig, dataset: Dataset): RunConfig {
  const vocab = dataset.tokenizer.vocabSize;
  const vocabSize = config.vocabSize === 0 ? vocab : config.vocabSize;
  check(
    vocabSize >= vocab,
    'WEFT_E_CONFIG',
    `config vocabSize=${vocabSize} is smaller than the tokenizer's ${vocab} ids (${dataset.tokenizer.name}); set vocabSize=0 to use the tokenizer's`,
  );
  return { ...config, vocabSize, seqLen: sequenceLength(config) };
}

export async function train(
  config: RunConfig,
  dataset: Dataset,
  outDir: string,
  hooks: TrainHooks = {},
): Promise<TrainResult> {
  const cfg = resolveForData(config, dataset);
  const T = cfg.seqLen;
  const loader = new TokenWindowLoader(dataset.train, T, cfg.batchSize, cfg.seed, cfg.shards);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'config.json'), `${JSON.stringify(cfg, null, 2)}\n`);
  writeFileSync(join(outDir, 'tokenizer.json'), `${JSON.stringify(dataset.tokenizer.toJSON())}\n`);
  const metricsPath = join(outDir, METRICS_FILE);
  writeFileSync(metricsPath, '');
  const record = (m: StepMetrics | EvalMetrics) =>
    appendFileSync(metricsPath, `${JSON.stringify(m)}\n`);

  const model = GPT2.init(cfg, cfg.seed);
  const optimizer = new AdamW(model.layout, cfg);
  const schedule = {
    lr: cfg.lr,
    minLr: cfg.minLr,
    warmupSteps: cfg.warmupSteps,
    decaySteps: cfg.steps,
  };
  const hasVal = dataset.val.length >= 2;
  let lastEval: EvalMetrics | null = null;
  const runEval = (step: number) => {
    if (!hasVal) return;
    const result = evaluate(model, dataset.val, dataset.tokenizer, {
      seqLen: T,
      batchSize: cfg.batchSize,
      maxWindows: cfg.evalWindows,
    });
    lastEval = { type: 'eval', step, split: 'val', ...result };
    record(lastEval);
    hooks.onEval?.(lastEval);
  };

  hooks.onStart?.(cfg);
  const started = performance.now();
  let step = 0;
  let interrupted = false;
  while (step < cfg.steps) {
    const stepStart = performance.now();
    const lr = learningRate(schedule, step);
    const { loss, gradNorm } = trainStep(model, optimizer, loader.next(), lr, cfg.gradClip);
    step++;
    const now = performance.now();
    const metrics: StepMetrics = {
      type: 'step',
      step,
      loss,
      lr,
      gradNorm,
      tokensPerSec: (cfg.batchSize * T * 1000) / (now - stepStart),
      elapsedMs: Math.round(now - started),
    };
    record(metrics);
    hooks.onStep?.(metrics, cfg.steps);
    if (cfg.evalEvery > 0 && step % cfg.evalEvery === 0 && step < cfg.steps) runEval(step);
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (hooks.shouldStop?.()) {
      interrupted = true;
      break;
    }
  }
  runEval(step);
  saveModel(outDir, model, cfg, dataset.tokenizer);
  return { model, config: cfg, steps: step, interrupted, lastEval };
}
