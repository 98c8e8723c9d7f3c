// Whether a run can start on this machine, checked before anything is allocated or written (the
// run-directory policy, run-dir.ts, calls it for weft train and weft coordinator alike). The
// model's flat buffers are single typed arrays, so the parameter count may not exceed what one
// typed array holds; every worker thread of this process holds its own weights, gradients and
// AdamW m and v (fp32) and an exact accumulator (fp64), the threads share one exchange for the
// all-reduce (distributed/shared-reduce.ts: fp64 sums per thread, one fp32 result), and the
// coordinator keeps weights and AdamW m and v for its checkpoints. A thread beyond the step's
// virtual shards would have no shard to compute, so it is refused rather than started. On the
// CPU backends (wasm, wasm-fma, blas) a worker's weights, gradients and activations live in one
// wasm memory of at most 4 GiB, so a model and micro-batch that cannot fit there are refused too.

import { constants } from 'node:buffer';
import { totalmem } from 'node:os';
import type { BackendName } from '../kernels/backend.ts';
import { actGradLayout, actLayout, paramCount } from '../model/layout.ts';
import { specVocabSize } from '../tokenizer/index.ts';
import { check } from '../util/errors.ts';
import type { RunConfig } from './config.ts';

/** Bytes per parameter of one worker: weights, gradients, AdamW m and v (fp32), the accumulator (fp64). */
const WORKER_BYTES = 4 * 4 + 8;
/** Bytes per parameter of the coordinator: weights and AdamW m and v (fp32). */
const COORDINATOR_BYTES = 3 * 4;
/** A worker thread's own JavaScript engine, before any model (measured: about 8 MiB). */
const THREAD_BYTES = 8 * 2 ** 20;

/** The most a wasm memory holds (65,536 pages of 64 KiB). */
const WASM_MAX_BYTES = 4 * 2 ** 30;
/** The backends whose buffers live in a wasm memory. */
const IN_WASM: readonly BackendName[] = ['wasm', 'wasm-fma', 'blas'];

/**
 * The least a worker's wasm memory holds without a pipeline (what the backend allocates:
 * model/gpt2.ts, train/adamw.ts, train/step.ts; `config` with its vocabSize resolved): weights, gradients, AdamW m and v and the exact
 * accumulator (WORKER_BYTES a parameter), and the activations of one micro-batch (batchSize /
 * shards rows of seqLen) with one layer's activation gradients, fp32; scratch comes on top.
 */
export function wasmBytesNeeded(config: RunConfig, params: number): number {
  const B = config.batchSize / (config.shards || config.batchSize);
  const T = config.seqLen || config.blockSize;
  const acts = actLayout(config, B, T).total + actGradLayout(config, B, T).total;
  return WORKER_BYTES * params + 4 * acts;
}

/** "1.5 GiB", "2,235.2 TiB". */
function size(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  const i = Math.max(0, Math.min(units.length - 1, Math.floor(Math.log2(bytes) / 10)));
  const n = bytes / 2 ** (10 * i);
  return `${n.toLocaleString('en-US', { maximumFractionDigits: i === 0 ? 0 : 1 })} ${units[i]}`;
}

/**
 * The least memory (bytes) a run of `params` parameters needs in this process with `threads`
 * worker threads (0: a coordinator whose workers run elsewhere) over `stages` pipeline stages.
 */
export function memoryNeeded(params: number, threads: number, stages = 1): number {
  const exchange = threads > 1 ? (8 * threads + 4) * params : 0;
  const workers = threads * ((WORKER_BYTES * params) / stages + THREAD_BYTES);
  return COORDINATOR_BYTES * params + workers + exchange;
}

/**
 * Refuses, in one line, a run this machine cannot hold: more worker threads than a step has
 * shards, a parameter count beyond one typed array, or more memory than the machine has.
 * `config` may leave vocabSize to the tokenizer (0): the spec's size is counted.
 */
export function checkCapacity(config: RunConfig, threads: number, backend?: BackendName): void {
  const shards = config.shards || config.batchSize;
  check(
    threads <= shards,
    'WEFT_E_CONFIG',
    `${threads} worker threads are more than the ${shards} shards a step is split into (batchSize=${config.batchSize}, shards=${config.shards}), so ${threads - shards} would have nothing to do; use --workers ${shards} or fewer, or raise batchSize (and shards)`,
  );
  const model = { ...config, vocabSize: config.vocabSize || specVocabSize(config.tokenizer) };
  const params = paramCount(model);
  const bytes = memoryNeeded(params, threads, config.pipelineStages);
  const tooLong = params > constants.MAX_LENGTH;
  const over = tooLong
    ? `one typed array holds at most ${constants.MAX_LENGTH.toLocaleString('en-US')} values`
    : bytes > totalmem()
      ? `this machine has ${size(totalmem())} of memory`
      : null;
  const who =
    threads === 0
      ? 'the coordinator needs at least'
      : `${threads} worker thread${threads === 1 ? '' : 's'} and the coordinator need at least`;
  const what =
    threads === 0 ? 'weights, AdamW m and v' : 'weights, gradients, AdamW m and v, exact sums';
  check(
    over === null,
    'WEFT_E_CONFIG',
    `the model has ${params.toLocaleString('en-US')} parameters, so ${who} ${size(bytes)} (${what}), but ${over}; use a smaller model (nLayer, nEmbd, vocabSize)${threads > 1 && !tooLong ? ' or fewer --workers' : ''}`,
  );
  if (!backend || !IN_WASM.includes(backend) || config.pipelineStages > 1) return;
  const wasm = wasmBytesNeeded(model, params);
  check(
    wasm <= WASM_MAX_BYTES,
    'WEFT_E_CONFIG',
    `on the ${backend} backend a worker's weights, gradients and activations share one wasm memory of at most 4 GiB, and this model and micro-batch need at least ${size(wasm)} (weights, gradients, AdamW m and v, exact sums, activations); use a shorter seqLen, fewer rows per shard (shards up to batchSize), --pipeline P, or --backend gpu`,
  );
}
