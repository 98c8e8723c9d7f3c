// Flat buffer layouts (docs/design.md invariant 1). One size table per buffer role; each entry is a
// named tensor at a fixed offset, so parameters, gradients and AdamW moments are each a single
// Float32Array with named views. Parameter tensors stack all L layers of a kind together (as
// llm.c does) and map one-to-one onto Hugging Face GPT-2 names and [in, out] Conv1D layouts.

import type { GPTConfig } from './config.ts';
import { headSize, scoreLabels } from './config.ts';

export interface TensorSlot<K extends string = string> {
  key: K;
  shape: number[];
  /** Offset in elements from the start of the flat buffer. */
  offset: number;
  /** Element count (product of shape). */
  size: number;
}

export interface Layout<K extends string> {
  slots: TensorSlot<K>[];
  byKey: Record<K, TensorSlot<K>>;
  /** Total element count of the flat buffer. */
  total: number;
}

export function makeLayout<K extends string>(entries: [K, number[]][]): Layout<K> {
  const slots: TensorSlot<K>[] = [];
  let offset = 0;
  for (const [key, shape] of entries) {
    const size = shape.reduce((a, b) => a * b, 1);
    slots.push({ key, shape, offset, size });
    offset += size;
  }
  const byKey = Object.fromEntries(slots.map((s) => [s.key, s])) as Record<K, TensorSlot<K>>;
  return { slots, byKey, total: offset };
}

/** Named subarray views of `buffer`, one per slot (no copies). */
export function viewsOf<K extends string>(
  buffer: Float32Array,
  layout: Layout<K>,
): Record<K, Float32Array> {
  return Object.fromEntries(
    layout.slots.map((s) => [s.key, buffer.subarray(s.offset, s.offset + s.size)]),
  ) as Record<K, Float32Array>;
}

// ---------------------------------------------------------------- parameters

export const PARAM_KEYS = [
  'wte', 'wpe', 'ln1w', 'ln1b', 'qkvw', 'qkvb', 'attprojw', 'attprojb',
  'ln2w', 'ln2b', 'fcw', 'fcb', 'fcprojw', 'fcprojb', 'lnfw', 'lnfb', 'score',
] as const; // prettier-ignore
export type ParamKey = (typeof PARAM_KEYS)[number];
export type ParamViews = Record<ParamKey, Float32Array>;

/** Hugging Face name of each parameter kind; per-layer kinds are `h.{l}.` + this suffix. */
const HF_SUFFIX: Record<ParamKey, string> = {
  wte: 'wte.weight',
  wpe: 'wpe.weight',
  ln1w: 'ln_1.weight',
  ln1b: 'ln_1.bias',
  qkvw: 'attn.c_attn.weight',
  qkvb: 'attn.c_attn.bias',
  attprojw: 'attn.c_proj.weight',
  attprojb: 'attn.c_proj.bias',
  ln2w: 'ln_2.weight',
  ln2b: 'ln_2.bias',
  fcw: 'mlp.c_fc.weight',
  fcb: 'mlp.c_fc.bias',
  fcprojw: 'mlp.c_proj.weight',
  fcprojb: 'mlp.c_proj.bias',
  lnfw: 'ln_f.weight',
  lnfb: 'ln_f.bias',
  score: 'score.weight',
};

/** True for the kinds stacked over layers (leading L dimension); false for wte, wpe, ln_f, score. */
export function isLayerParam(key: ParamKey): boolean {
  return key !== 'wte' && key !== 'wpe' && key !== 'lnfw' && key !== 'lnfb' && key !== 'score';
}

/** Weight decay applies to the kinds whose Hugging Face tensors have 2+ dimensions (matrices). */
export function isDecayed(key: ParamKey): boolean {
  return (
    key === 'wte' ||
    key === 'wpe' ||
    key === 'qkvw' ||
    key === 'attprojw' ||
    key === 'fcw' ||
    key === 'fcprojw' ||
    key === 'score'
  );
}

/**
 * The parameter size table. Per-layer kinds have a leading L dimension. `score` [1, C] (a reward
 * model's head, Hugging Face GPT2ForSequenceClassification's) is last, and empty [0, C] unless
 * the model is a reward model, so every other offset is the same for both.
 */
export function paramLayout(config: GPTConfig): Layout<ParamKey> {
  const { nLayer: L, nEmbd: C, blockSize: maxT, vocabSize: V } = config;
  return makeLayout<ParamKey>([
    ['wte', [V, C]],
    ['wpe', [maxT, C]],
    ['ln1w', [L, C]],
    ['ln1b', [L, C]],
    ['qkvw', [L, C, 3 * C]],
    ['qkvb', [L, 3 * C]],
    ['attprojw', [L, C, C]],
    ['attprojb', [L, C]],
    ['ln2w', [L, C]],
    ['ln2b', [L, C]],
    ['fcw', [L, C, 4 * C]],
    ['fcb', [L, 4 * C]],
    ['fcprojw', [L, 4 * C, C]],
    ['fcprojb', [L, C]],
    ['lnfw', [C]],
    ['lnfb', [C]],
    ['score', [scoreLabels(config), C]],
  ]);
}

/** One Hugging Face tensor: its name, shape, and where it lives in the flat parameter buffer. */
export interface NamedTensor {
  name: string;
  key: ParamKey;
  /** Layer index for per-layer kinds, null for wte, wpe, ln_f. */
  layer: number | null;
  shape: number[];
  offset: number;
  size: number;
}

/**
 * Every parameter tensor under its Hugging Face name, in HF order (wte, wpe, h.0.*, h.1.*, ...,
 * ln_f), each a slice of the flat buffer. Decay applies to tensors of 2+ dimensions.
 */
export function namedTensors(config: GPTConfig): NamedTensor[] {
  const layout = paramLayout(config);
  const tensor = (key: ParamKey, layer: number | null): NamedTensor => {
    const slot = layout.byKey[key];
    if (layer === null)
      return {
        name: HF_SUFFIX[key],
        key,
        layer,
        shape: slot.shape,
        offset: slot.offset,
        size: slot.size,
      };
    const size = slot.size / config.nLayer;
    const name = `h.${layer}.${HF_SUFFIX[key]}`;
    return {
      name,
      key,
      layer,
      shape: slot.shape.slice(1),
      offset: slot.offset + layer * size,
      size,
    };
  };
  const perLayer = PARAM_KEYS.filter(isLayerParam);
  const layers = Array.from({ length: config.nLayer }, (_, l) => perLayer.map((k) => tensor(k, l)));
  return [
    tensor('wte', null),
    tensor('wpe', null),
    ...layers.flat(),
    tensor('lnfw', null),
    tensor('lnfb', null),
    ...(scoreLabels(config) > 0 ? [tensor('score', null)] : []),
  ];
}

/** Total parameter count (GPT-2 124M: 124,439,808). */
export function paramCount(config: GPTConfig): number {
  return paramLayout(config).total;
}

// ---------------------------------------------------------------- activations

export const ACT_KEYS = [
  'encoded', 'ln1', 'ln1Mean', 'ln1Rstd', 'qkv', 'atty', 'att', 'attproj', 'residual2',
  'ln2', 'ln2Mean', 'ln2Rstd', 'fch', 'fchGelu', 'fcproj', 'residual3',
  'lnf', 'lnfMean', 'lnfRstd', 'logits', 'probs', 'losses',
] as const; // prettier-ignore
export type ActKey = (typeof ACT_KEYS)[number];
export type ActViews = Record<ActKey, Float32Array>;

/** What of the model a set of activations covers: `layers` blocks, and the head or not (a pipeline stage). */
export interface ActParts {
  layers: number;
  head: boolean;
}

/**
 * Activations the forward pass saves for the backward, sized for a (B, T) batch (of a pipeline
 * stage: its blocks, and the final LayerNorm and logits only with the head; `encoded` is the
 * stage's input).
 */
export function actLayout(
  config: GPTConfig,
  B: number,
  T: number,
  parts: ActParts = { layers: config.nLayer, head: true },
): Layout<ActKey> {
  const { nEmbd: C, nHead: NH } = config;
  const L = parts.layers;
  const V = parts.head ? config.vocabSize : 0;
  const H = parts.head ? 1 : 0;
  return makeLayout<ActKey>([
    ['encoded', [B, T, C]],
    ['ln1', [L, B, T, C]],
    ['ln1Mean', [L, B, T]],
    ['ln1Rstd', [L, B, T]],
    ['qkv', [L, B, T, 3 * C]],
    ['atty', [L, B, T, C]],
    ['att', [L, B, NH, T, T]],
    ['attproj', [L, B, T, C]],
    ['residual2', [L, B, T, C]],
    ['ln2', [L, B, T, C]],
    ['ln2Mean', [L, B, T]],
    ['ln2Rstd', [L, B, T]],
    ['fch', [L, B, T, 4 * C]],
    ['fchGelu', [L, B, T, 4 * C]],
    ['fcproj', [L, B, T, C]],
    ['residual3', [L, B, T, C]],
    ['lnf', [H, B, T, C]],
    ['lnfMean', [H, B, T]],
    ['lnfRstd', [H, B, T]],
    ['logits', [B, T, V]],
    ['probs', [B, T, V]],
    ['losses', [H, B, T]],
  ]);
}

export const ACT_GRAD_KEYS = [
  'dresidualA', 'dresidualB', 'dfcproj', 'dfchGelu', 'dfch', 'dln2', 'dattproj', 'datty',
  'dqkv', 'dln1', 'dlnf', 'dlogits',
] as const; // prettier-ignore
export type ActGradKey = (typeof ACT_GRAD_KEYS)[number];
export type ActGradViews = Record<ActGradKey, Float32Array>;

/**
 * Gradients of activations for the backward pass. Only one layer's worth: the backward walks the
 * layers in reverse and reuses these buffers; dresidualA/B carry the residual stream's gradient.
 */
export function actGradLayout(
  config: GPTConfig,
  B: number,
  T: number,
  head = true,
): Layout<ActGradKey> {
  const { nEmbd: C } = config;
  const V = head ? config.vocabSize : 0;
  return makeLayout<ActGradKey>([
    ['dresidualA', [B, T, C]],
    ['dresidualB', [B, T, C]],
    ['dfcproj', [B, T, C]],
    ['dfchGelu', [B, T, 4 * C]],
    ['dfch', [B, T, 4 * C]],
    ['dln2', [B, T, C]],
    ['dattproj', [B, T, C]],
    ['datty', [B, T, C]],
    ['dqkv', [B, T, 3 * C]],
    ['dln1', [B, T, C]],
    ['dlnf', [B, T, head ? C : 0]],
    ['dlogits', [B, T, V]],
  ]);
}

/**
 * Floating-point operations of one training step (forward + backward = 3x the forward's matmul
 * and attention FLOPs; the backward does two products for each forward one). Attention counts
 * only the causal half (t2 <= t) that the kernels compute.
 */
export function trainingFlops(config: GPTConfig, B: number, T: number): number {
  const { nLayer: L, nEmbd: C, nHead: NH, vocabSize: V } = config;
  const hs = headSize(config);
  const N = B * T;
  const matmuls = 2 * N * (C * 3 * C + C * C + C * 4 * C + 4 * C * C);
  const causalPairs = (T * (T + 1)) / 2;
  const attention = 2 * 2 * B * NH * causalPairs * hs; // scores and att @ v
  const head = 2 * N * C * V;
  return 3 * (L * (matmuls + attention) + head);
}
