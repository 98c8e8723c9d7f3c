// The GPT-2 model over flat buffers: forward is a straight list of kernel calls, backward is the
// same list in reverse (docs/design.md invariant 2). Parameters and gradients are one Float32Array
// each (named views p.* and g.*); activations are sized for the (B, T) of the last forward. The
// kernels come from a Backend (reference by default), which also allocates every buffer.
// A model can be one pipeline stage (stage.ts): its blocks only, taking the previous stage's
// output instead of tokens and handing its own output on instead of a loss; and it can hold
// several micro-batches' activations at once (useSlot), as a 1F1B schedule needs.

import type { Backend } from '../kernels/backend.ts';
import { referenceBackend } from '../kernels/backend.ts';
import { WeftError, check } from '../util/errors.ts';
import type { GPTConfig } from './config.ts';
import { validateConfig } from './config.ts';
import { initParams } from './init.ts';
import type { StageSpan } from './stage.ts';
import { stageLayout, stageRanges, wholeModel } from './stage.ts';
import type { ActGradViews, ActViews, Layout, ParamKey, ParamViews } from './layout.ts';
import { PARAM_KEYS, actGradLayout, actLayout, isLayerParam, viewsOf } from './layout.ts';

export interface ForwardResult {
  /** Mean cross-entropy over counted targets; NaN when no targets were given or all are -1. */
  loss: number;
  /** Sum of per-position losses (double precision) and how many targets it covers. */
  lossSum: number;
  targetCount: number;
  /** (B, T, V) logits; a view into the model's activations, overwritten by the next forward. */
  logits: Float32Array;
  /** A stage without the head: its (B, T, C) output for the next stage (a view, as logits). */
  output?: Float32Array;
}

export interface ForwardOptions {
  /** Without targets: compute only each sequence's last logits, returned as (B, V). */
  lastOnly?: boolean;
  /** A stage without the embeddings: the previous stage's (B, T, C) output (idx is not read). */
  input?: Float32Array;
}

export interface GPT2Options {
  /** Kernels and allocation (default: the reference backend). */
  backend?: Backend;
  /** Parameter values to start from (copied in); zeros when absent. */
  params?: Float32Array;
  /** Only this pipeline stage's part of the model (default: the whole model). */
  stage?: StageSpan;
}

/** One micro-batch's saved activations and inputs (a stage may hold several: useSlot). */
interface ActSlot {
  B: number;
  T: number;
  acts: ActViews | null;
  buffer: Float32Array | null;
  idx: Int32Array;
  targets: Int32Array | null;
  targetCount: number;
}

const emptySlot = (): ActSlot => ({
  B: 0,
  T: 0,
  acts: null,
  buffer: null,
  idx: new Int32Array(0),
  targets: null,
  targetCount: 0,
});

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
  /** The blocks (and ends) of the model this one holds; the whole model unless a stage. */
  readonly span: StageSpan;
  /** Blocks held (L of the whole model). */
  readonly layers: number;

  private slots: ActSlot[] = [emptySlot()];
  private slot: ActSlot = this.slots[0];
  private actGrads: ActGradViews | null = null;
  private actGradBuffer: Float32Array | null = null;

  constructor(config: GPTConfig, options: GPT2Options = {}) {
    this.config = validateConfig({ ...config });
    this.span = options.stage ?? wholeModel(this.config);
    this.layers = this.span.endLayer - this.span.firstLayer;
    check(
      this.span.firstLayer >= 0 && this.layers >= 0 && this.span.endLayer <= this.config.nLayer,
      'WEFT_E_CONFIG',
      `stage blocks ${this.span.firstLayer}..${this.span.endLayer} are not within the model's ${this.config.nLayer}`,
    );
    this.layout = stageLayout(this.config, this.span);
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

  /** A model with GPT-2's initialisation drawn from `seed` (a stage: its part of the whole model's). */
  static init(config: GPTConfig, seed: number, options: GPT2Options = {}): GPT2 {
    const model = new GPT2(config, options);
    const ranges = options.stage && stageRanges(model.config, model.span);
    initParams(model.params, model.config, seed, ranges);
    model.backend.weightsChanged?.();
    return model;
  }

  /**
   * Makes slot `i` the micro-batch forward() saves into and backward() reads (slot 0 unless
   * changed): a pipeline stage holds several micro-batches' activations at once.
   */
  useSlot(i: number): void {
    while (this.slots.length <= i) this.slots.push(emptySlot());
    this.slot = this.slots[i];
  }

  /** The final LayerNorm's (B, T, C) output of the last forward (a view): a reward head reads it. */
  get hidden(): Float32Array {
    const { acts } = this.slot;
    check(
      acts !== null && this.span.head,
      'WEFT_E_STATE',
      'hidden needs a forward() of the head first',
    );
    return acts.lnf;
  }

  /** Bytes of activations held: every slot's, and the shared activation gradients. */
  get activationBytes(): number {
    const buffers = [...this.slots.map((s) => s.buffer), this.actGradBuffer];
    return buffers.reduce((n, b) => n + (b?.byteLength ?? 0), 0);
  }

  /** Micro-batches whose activations this model can hold at once (slots made so far). */
  get activationSlots(): number {
    return this.slots.filter((s) => s.buffer !== null).length;
  }

  /** The (B, T) per-position losses of the last forward with targets (0 where ignored; a view). */
  get losses(): Float32Array {
    const { acts, targets } = this.slot;
    check(
      acts !== null && targets !== null,
      'WEFT_E_STATE',
      'losses needs a forward() with targets first',
    );
    return acts.losses;
  }

  /** A stage without the embeddings: the gradient of its input after backward() (a view). */
  get inputGrad(): Float32Array {
    check(this.actGrads !== null, 'WEFT_E_STATE', 'inputGrad needs a backward() first');
    return this.actGrads.dresidualA;
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
    const { nHead: NH, nEmbd: C, vocabSize: V, blockSize } = this.config;
    const L = this.layers;
    const { embeddings, head } = this.span;
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
    if (embeddings) {
      check(
        idx.length === B * T,
        'WEFT_E_SHAPE',
        `idx has ${idx.length} tokens but B*T = ${B}*${T} = ${B * T}`,
      );
    } else {
      check(
        options.input?.length === B * T * C,
        'WEFT_E_SHAPE',
        `a stage without the embeddings needs its (B, T, C) = ${B * T * C} input, got ${options.input?.length ?? 'none'}`,
      );
    }
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
    const slot = this.slot;
    slot.targets = null;

    if (embeddings) {
      slot.idx = Int32Array.from(idx);
      k.encoderForward(a.encoded, idx, p.wte, p.wpe, B, T, C);
    } else {
      a.encoded.set(options.input as Float32Array);
    }
    for (let l = 0; l < L; l++) {
      const x = this.layerActs(a, l);
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
    const last = L > 0 ? layerOf(a.residual3, L - 1, L) : a.encoded;
    if (!head) return { loss: NaN, lossSum: 0, targetCount: 0, logits: a.logits, output: last };
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
    slot.targets = Int32Array.from(targets);
    slot.targetCount = k.crossEntropyForward(a.losses, a.probs, a.logits, targets, BT, V);
    let lossSum = 0;
    for (let i = 0; i < BT; i++) lossSum += a.losses[i];
    const loss = slot.targetCount > 0 ? lossSum / slot.targetCount : NaN;
    return { loss, lossSum, targetCount: slot.targetCount, logits: a.logits };
  }

  /**
   * Accumulates into `grads` the gradient of (sum of per-target losses) / `normalizer`. The
   * default normalizer is this batch's target count (the gradient of the mean loss); data-
   * parallel training passes the global target count instead. With `rowWeights` (B values), row
   * b's losses count rowWeights[b] times (DPO's signed per-sequence scales).
   */
  backward(
    normalizer: number = this.slot.targetCount,
    dOutput?: Float32Array,
    rowWeights?: Float64Array,
  ): void {
    for (const stage of this.backwardStages(normalizer, dOutput, rowWeights)) void stage;
  }

  /**
   * backward() in stages, pausing after each: the head and final LayerNorm (yields 0), layer
   * L-1 .. 0 (yields 1 .. L), the embeddings (yields L + 1). After stage s the gradients up to
   * backwardOrder(config).stageEnds[s] are final (backward-order.ts): a caller can reduce them
   * while the rest runs. A stage without the head starts from `dOutput`, the gradient of its
   * (B, T, C) output (and yields 0 at once); one without the embeddings ends with the gradient of
   * its input in inputGrad. With the head, a given `dOutput` is the gradient of the final
   * LayerNorm's (B, T, C) output (`hidden`), for a head other than the tied LM head (a reward's).
   * `rowWeights` as in backward().
   */
  *backwardStages(
    normalizer: number = this.slot.targetCount,
    dOutput?: Float32Array,
    rowWeights?: Float64Array,
  ): Generator<number, void, void> {
    const { acts: a, targets, B, T } = this.slot;
    const { head, embeddings } = this.span;
    const d = this.actGrads;
    // with the head, dOutput is the gradient of the final hidden (a head other than the LM's)
    const fromHidden = head && dOutput !== undefined;
    if (!a || !d || (head && !fromHidden && !targets)) {
      throw new WeftError('WEFT_E_STATE', 'backward() needs a forward() with targets first');
    }
    const { nHead: NH, nEmbd: C, vocabSize: V } = this.config;
    const L = this.layers;
    const { p, g } = this;
    const k = this.backend;
    const BT = B * T;

    if (head) {
      d.dresidualA.fill(0);
      if (fromHidden) {
        check(
          dOutput.length === BT * C,
          'WEFT_E_SHAPE',
          `the gradient of the final hidden must be (B, T, C) = ${BT * C} values, got ${dOutput.length}`,
        );
        d.dlnf.set(dOutput);
      } else {
        check(
          normalizer > 0,
          'WEFT_E_STATE',
          `backward() normalizer ${normalizer} must be positive (no targets counted?)`,
        );
        d.dlogits.fill(0);
        d.dlnf.fill(0);
        const tg = targets as Int32Array;
        if (!rowWeights) k.crossEntropyBackward(d.dlogits, a.probs, tg, 1 / normalizer, BT, V);
        else {
          check(rowWeights.length === B, 'WEFT_E_SHAPE', `rowWeights must have B=${B} values`);
          for (let b = 0; b < B; b++) {
            const [from, to] = [b * T, (b + 1) * T]; // row b's positions
            const scale = rowWeights[b] / normalizer;
            const rows = (x: Float32Array) => x.subarray(from * V, to * V);
            if (scale !== 0)
              k.crossEntropyBackward(
                rows(d.dlogits),
                rows(a.probs),
                tg.subarray(from, to),
                scale,
                T,
                V,
              );
          }
        }
        k.lmHeadBackward(d.dlnf, g.wte, d.dlogits, a.lnf, p.wte, BT, C, V);
      }
      const last = L > 0 ? layerOf(a.residual3, L - 1, L) : a.encoded;
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
    } else {
      check(
        dOutput?.length === BT * C,
        'WEFT_E_SHAPE',
        `a stage without the head needs the (B, T, C) = ${BT * C} gradient of its output, got ${dOutput?.length ?? 'none'}`,
      );
      d.dresidualA.set(dOutput);
    }
    yield 0;
    for (let l = L - 1; l >= 0; l--) {
      // d.dresidualA holds the gradient of this layer's output (residual3)
      const x = this.layerActs(a, l);
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
    if (embeddings) k.encoderBackward(g.wte, g.wpe, d.dresidualA, this.slot.idx, B, T, C);
    yield L + 1;
  }

  /** Returns the model's buffers to its backend; the model is unusable afterwards. */
  dispose(): void {
    this.backend.markParameters?.(this.params, false);
    const held = [...this.slots.map((s) => s.buffer), this.actGradBuffer];
    for (const buffer of [this.params, this.grads, ...held]) if (buffer) this.backend.free(buffer);
    this.slots = [emptySlot()];
    this.slot = this.slots[0];
    this.actGrads = null;
    this.actGradBuffer = null;
  }

  /** Layer l's (B, T, 3C) query, key and value activations of the last forward. */
  layerQkv(l: number): Float32Array {
    const { acts } = this.slot;
    check(acts !== null, 'WEFT_E_STATE', 'layerQkv() needs a forward() first');
    return this.layerActs(acts, l).qkv;
  }

  /** The current slot's activations for (B, T), and the shared activation gradients, made to fit. */
  private ensureActivations(B: number, T: number): ActViews {
    const slot = this.slot;
    const parts = { layers: this.layers, head: this.span.head };
    if (!slot.acts || slot.B !== B || slot.T !== T) {
      if (slot.buffer) this.backend.free(slot.buffer);
      const layout = actLayout(this.config, B, T, parts);
      slot.buffer = this.backend.allocF32(layout.total);
      slot.acts = viewsOf(slot.buffer, layout);
      slot.B = B;
      slot.T = T;
    }
    const gradLayout = actGradLayout(this.config, B, T, parts.head);
    if (!this.actGradBuffer || this.actGradBuffer.length !== gradLayout.total) {
      if (this.actGradBuffer) this.backend.free(this.actGradBuffer);
      this.actGradBuffer = this.backend.allocF32(gradLayout.total);
      this.actGrads = viewsOf(this.actGradBuffer, gradLayout);
    }
    return slot.acts;
  }

  /** Layer l's slice of every per-layer activation, plus its input (the residual stream). */
  private layerActs(a: ActViews, l: number) {
    const L = this.layers;
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
    const L = this.layers;
    const out = {} as LayerParams;
    for (const key of PARAM_KEYS)
      out[key] = isLayerParam(key) ? layerOf(views[key], l, L) : views[key];
    return out;
  }
}
