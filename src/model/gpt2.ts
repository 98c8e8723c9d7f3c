// The GPT-2 model over flat buffers: forward is a straight list of kernel calls, backward is the
// same list in reverse (docs/design.md invariant 2). Parameters and gradients are one Float32Array
// each (named views p.* and g.*); activations are sized for the (B, T) of the last forward. The
// kernels come from a Backend (reference by default), which also allocates every buffer.

import type { Backend } from '../kernels/backend.ts';
import { referenceBackend } from '../kernels/backend.ts';
import { WeftError, check } from '../util/errors.ts';
import type { GPTConfig } from './config.ts';
import { validateConfig } from './config.ts';
import { initParams } from './init.ts';
import type { ActGradViews, ActViews, Layout, ParamKey, ParamViews } from './layout.ts';
import {
  PARAM_KEYS,
  actGradLayout,
  actLayout,
  isLayerParam,
  paramLayout,
  viewsOf,
} from './layout.ts';

export interface ForwardResult {
  /** Mean cross-entropy over counted targets; NaN when no targets were given or all are -1. */
  loss: number;
  /** Sum of per-position losses (double precision) and how many targets it covers. */
  lossSum: number;
  targetCount: number;
  /** (B, T, V) logits; a view into the model's activations, overwritten by the next forward. */
  logits: Float32Array;
}

export interface ForwardOptions {
  /** Without targets: compute only each sequence's last logits, returned as (B, V). */
  lastOnly?: boolean;
}

export interface GPT2Options {
  /** Kernels and allocation (default: the reference backend). */
  backend?: Backend;
  /** Parameter values to start from (copied in); zeros when absent. */
  params?: Float32Array;
}

type LayerParams = Record<ParamKey, Float32Array>;

/** Slice l of a tensor whose leading dimension is L. */
export function layerOf(view: Float32Array, l: number, L: number): Float32Array {
  const size = view.length / L;
  return view.subarray(l * size, (l + 1) * size);
}

export class GPT2 {
  readonly config: GPTConfig;
  readonly layout: Layout<ParamKey>;
  /** All parameters, flat; `p` holds the named views. */
  readonly params: Float32Array;
  readonly grads: Float32Array;
  readonly p: ParamViews;
  readonly g: ParamViews;
  readonly backend: Backend;

  private B = 0;
  private T = 0;
  private acts: ActViews | null = null;
  private actBuffers: Float32Array[] | null = null;
  private actGrads: ActGradViews | null = null;
  private idx = new Int32Array(0);
  private targets: Int32Array | null = null;
  private targetCount = 0;

  constructor(config: GPTConfig, options: GPT2Options = {}) {
    this.config = validateConfig({ ...config });
    this.layout = paramLayout(this.config);
    this.backend = options.backend ?? referenceBackend;
    this.params = this.backend.allocF32(this.layout.total);
    this.grads = this.backend.allocF32(this.layout.total);
    if (options.params) {
      check(
        options.params.length === this.layout.total,
        'WEFT_E_SHAPE',
        `params buffer has ${options.params.length} floats but this config needs ${this.layout.total}`,
      );
      this.params.set(options.params);
    }
    this.p = viewsOf(this.params, this.layout);
    this.g = viewsOf(this.grads, this.layout);
    this.backend.markParameters?.(this.params, true);
  }

  /** A model with GPT-2's initialisation drawn from `seed`. */
  static init(config: GPTConfig, seed: number, options: GPT2Options = {}): GPT2 {
    const model = new GPT2(config, options);
    initParams(model.params, model.config, seed);
    return model;
  }

  get paramCount(): number {
    return this.layout.total;
  }

  zeroGrad(): void {
    this.grads.fill(0);
  }

  /**
   * Runs the model on idx (B,T) token ids. With targets (B,T) (-1 = ignored) it also computes the
   * mean cross-entropy loss and keeps what backward() needs.
   */
  forward(
    idx: Int32Array,
    B: number,
    T: number,
    targets?: Int32Array,
    options: ForwardOptions = {},
  ): ForwardResult {
    const { nLayer: L, nHead: NH, nEmbd: C, vocabSize: V, blockSize } = this.config;
    check(
      Number.isSafeInteger(B) && B > 0,
      'WEFT_E_SHAPE',
      `batch size B=${B} must be a positive integer`,
    );
    check(
      Number.isSafeInteger(T) && T > 0,
      'WEFT_E_SHAPE',
      `sequence length T=${T} must be a positive integer`,
    );
    check(
      T <= blockSize,
      'WEFT_E_SHAPE',
      `sequence length T=${T} exceeds the model's blockSize=${blockSize}`,
    );
    check(
      idx.length === B * T,
      'WEFT_E_SHAPE',
      `idx has ${idx.length} tokens but B*T = ${B}*${T} = ${B * T}`,
    );
    if (targets) {
      check(
        targets.length === B * T,
        'WEFT_E_SHAPE',
        `targets has ${targets.length} entries but B*T = ${B * T}`,
      );
    }
    const a = this.ensureActivations(B, T);
    const p = this.p;
    const k = this.backend;
    const BT = B * T;
    this.idx = Int32Array.from(idx);
    this.targets = null;

    k.encoderForward(a.encoded, idx, p.wte, p.wpe, B, T, C);
    for (let l = 0; l < L; l++) {
      const x = this.layerActs(l);
      const w = this.layerParams(p, l);
      k.layernormForward(x.ln1, x.ln1Mean, x.ln1Rstd, x.residual, w.ln1w, w.ln1b, BT, C);
      k.matmulForward(x.qkv, x.ln1, w.qkvw, w.qkvb, BT, C, 3 * C);
      k.attentionForward(x.atty, x.att, x.qkv, B, T, C, NH);
      k.matmulForward(x.attproj, x.atty, w.attprojw, w.attprojb, BT, C, C);
      k.residualForward(x.residual2, x.residual, x.attproj, BT * C);
      k.layernormForward(x.ln2, x.ln2Mean, x.ln2Rstd, x.residual2, w.ln2w, w.ln2b, BT, C);
      k.matmulForward(x.fch, x.ln2, w.fcw, w.fcb, BT, C, 4 * C);
      k.geluForward(x.fchGelu, x.fch, BT * 4 * C);
      k.matmulForward(x.fcproj, x.fchGelu, w.fcprojw, w.fcprojb, BT, 4 * C, C);
      k.residualForward(x.residual3, x.residual2, x.fcproj, BT * C);
    }
    const last = layerOf(a.residual3, L - 1, L);
    k.layernormForward(a.lnf, a.lnfMean, a.lnfRstd, last, p.lnfw, p.lnfb, BT, C);
    if (options.lastOnly && !targets) {
      // generation: only the logits that predict the next token, row b of (B, V)
      for (let b = 0; b < B; b++) {
        const row = a.lnf.subarray((b * T + T - 1) * C, (b * T + T) * C);
        k.lmHeadForward(a.logits.subarray(b * V, (b + 1) * V), row, p.wte, 1, C, V);
      }
      return { loss: NaN, lossSum: 0, targetCount: 0, logits: a.logits.subarray(0, B * V) };
    }
    k.lmHeadForward(a.logits, a.lnf, p.wte, BT, C, V);

    if (!targets) return { loss: NaN, lossSum: 0, targetCount: 0, logits: a.logits };
    this.targets = Int32Array.from(targets);
    this.targetCount = k.crossEntropyForward(a.losses, a.probs, a.logits, targets, BT, V);
    let lossSum = 0;
    for (let i = 0; i < BT; i++) lossSum += a.losses[i];
    const loss = this.targetCount > 0 ? lossSum / this.targetCount : NaN;
    return { loss, lossSum, targetCount: this.targetCount, logits: a.logits };
  }

  /**
   * Accumulates into `grads` the gradient of (sum of per-target losses) / `normalizer`. The
   * default normalizer is this batch's target count (the gradient of the mean loss); data-
   * parallel training passes the global target count instead.
   */
  backward(normalizer: number = this.targetCount): void {
    for (const stage of this.backwardStages(normalizer)) void stage;
  }

  /**
   * backward() in stages, pausing after each: the head and final LayerNorm (yields 0), layer
   * L-1 .. 0 (yields 1 .. L), the embeddings (yields L + 1). After stage s the gradients up to
   * backwardOrder(config).stageEnds[s] are final (backward-order.ts): a caller can reduce them
   * while the rest runs.
   */
  *backwardStages(normalizer: number = this.targetCount): Generator<number, void, void> {
    const { acts: a, actGrads: d, targets } = this;
    if (!a || !d || !targets) {
      throw new WeftError('WEFT_E_STATE', 'backward() needs a forward() with targets first');
    }
    check(
      normalizer > 0,
      'WEFT_E_STATE',
      `backward() normalizer ${normalizer} must be positive (no targets counted?)`,
    );
    const { nLayer: L, nHead: NH, nEmbd: C, vocabSize: V } = this.config;
    const { B, T, p, g } = this;
    const k = this.backend;
    const BT = B * T;

    d.dlogits.fill(0);
    d.dlnf.fill(0);
    d.dresidualA.fill(0);
    k.crossEntropyBackward(d.dlogits, a.probs, targets, 1 / normalizer, BT, V);
    k.lmHeadBackward(d.dlnf, g.wte, d.dlogits, a.lnf, p.wte, BT, C, V);
    const last = layerOf(a.residual3, L - 1, L);
    k.layernormBackward(
      d.dresidualA,
      g.lnfw,
      g.lnfb,
      d.dlnf,
      last,
      p.lnfw,
      a.lnfMean,
      a.lnfRstd,
      BT,
      C,
    );
    yield 0;
    for (let l = L - 1; l >= 0; l--) {
      // d.dresidualA holds the gradient of this layer's output (residual3)
      const x = this.layerActs(l);
      const w = this.layerParams(p, l);
      const dw = this.layerParams(g, l);
      for (const key of [
        'dresidualB',
        'dfcproj',
        'dfchGelu',
        'dfch',
        'dln2',
        'dattproj',
        'datty',
        'dqkv',
        'dln1',
      ] as const) {
        d[key].fill(0);
      }
      k.residualBackward(d.dresidualB, d.dfcproj, d.dresidualA, BT * C);
      k.matmulBackward(
        d.dfchGelu,
        dw.fcprojw,
        dw.fcprojb,
        d.dfcproj,
        x.fchGelu,
        w.fcprojw,
        BT,
        4 * C,
        C,
      );
      k.geluBackward(d.dfch, x.fch, d.dfchGelu, BT * 4 * C);
      k.matmulBackward(d.dln2, dw.fcw, dw.fcb, d.dfch, x.ln2, w.fcw, BT, C, 4 * C);
      k.layernormBackward(
        d.dresidualB,
        dw.ln2w,
        dw.ln2b,
        d.dln2,
        x.residual2,
        w.ln2w,
        x.ln2Mean,
        x.ln2Rstd,
        BT,
        C,
      );
      d.dresidualA.fill(0);
      k.residualBackward(d.dresidualA, d.dattproj, d.dresidualB, BT * C);
      k.matmulBackward(d.datty, dw.attprojw, dw.attprojb, d.dattproj, x.atty, w.attprojw, BT, C, C);
      k.attentionBackward(d.dqkv, d.datty, x.qkv, x.att, B, T, C, NH);
      k.matmulBackward(d.dln1, dw.qkvw, dw.qkvb, d.dqkv, x.ln1, w.qkvw, BT, C, 3 * C);
      k.layernormBackward(
        d.dresidualA,
        dw.ln1w,
        dw.ln1b,
        d.dln1,
        x.residual,
        w.ln1w,
        x.ln1Mean,
        x.ln1Rstd,
        BT,
        C,
      );
      yield L - l;
    }
    k.encoderBackward(g.wte, g.wpe, d.dresidualA, this.idx, B, T, C);
    yield L + 1;
  }

  /** Returns the model's buffers to its backend; the model is unusable afterwards. */
  dispose(): void {
    this.backend.markParameters?.(this.params, false);
    for (const buffer of [this.params, this.grads, ...(this.actBuffers ?? [])])
      this.backend.free(buffer);
    this.actBuffers = null;
    this.acts = null;
    this.actGrads = null;
  }

  /** Layer l's (B, T, 3C) query, key and value activations of the last forward. */
  layerQkv(l: number): Float32Array {
    check(this.acts !== null, 'WEFT_E_STATE', 'layerQkv() needs a forward() first');
    return this.layerActs(l).qkv;
  }

  private ensureActivations(B: number, T: number): ActViews {
    if (this.acts && this.B === B && this.T === T) return this.acts;
    this.B = B;
    this.T = T;
    if (this.actBuffers) for (const buffer of this.actBuffers) this.backend.free(buffer);
    const layout = actLayout(this.config, B, T);
    const gradLayout = actGradLayout(this.config, B, T);
    this.actBuffers = [
      this.backend.allocF32(layout.total),
      this.backend.allocF32(gradLayout.total),
    ];
    this.acts = viewsOf(this.actBuffers[0], layout);
    this.actGrads = viewsOf(this.actBuffers[1], gradLayout);
    return this.acts;
  }

  /** Layer l's slice of every per-layer activation, plus its input (the residual stream). */
  private layerActs(l: number) {
    const a = this.acts as ActViews;
    const L = this.config.nLayer;
    const at = (view: Float32Array) => layerOf(view, l, L);
    return {
      residual: l === 0 ? a.encoded : layerOf(a.residual3, l - 1, L),
      ln1: at(a.ln1),
      ln1Mean: at(a.ln1Mean),
      ln1Rstd: at(a.ln1Rstd),
      qkv: at(a.qkv),
      atty: at(a.atty),
      att: at(a.att),
      attproj: at(a.attproj),
      residual2: at(a.residual2),
      ln2: at(a.ln2),
      ln2Mean: at(a.ln2Mean),
      ln2Rstd: at(a.ln2Rstd),
      fch: at(a.fch),
      fchGelu: at(a.fchGelu),
      fcproj: at(a.fcproj),
      residual3: at(a.residual3),
    };
  }

  /** Layer l's slice of every per-layer parameter kind in `views` (params or grads). */
  private layerParams(views: ParamViews, l: number): LayerParams {
    const L = this.config.nLayer;
    const out = {} as LayerParams;
    for (const key of PARAM_KEYS)
      out[key] = isLayerParam(key) ? layerOf(views[key], l, L) : views[key];
    return out;
  }
}
