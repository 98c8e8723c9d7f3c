// Incremental decoding with a KV cache: the prompt is run once through the model's forward pass
// (prefill), which leaves every layer's keys and values in its qkv activations; they are copied
// into the cache, and each new token then costs one position through every layer: its query
// attends over the cached keys and values of all earlier positions. One sequence (B = 1).
//
// When the context fills the model's blockSize, the decoder keeps the newest half of the tokens
// and prefills them again (positions restart at 0), so generation can continue past blockSize.
// Within blockSize the logits equal a full forward pass over the whole context (tested to 1e-5).

import { check } from '../util/errors.ts';
import type { GPT2 } from './gpt2.ts';
import { layerOf } from './gpt2.ts';

export class KVDecoder {
  /** The tokens whose keys and values are in the cache, in order. */
  private tokens: number[] = [];
  /** Per layer, (blockSize, C) keys and values (all layers in one buffer each). */
  private readonly keys: Float32Array;
  private readonly values: Float32Array;
  /** One position's activations. */
  private readonly x: Float32Array;
  private readonly x2: Float32Array;
  private readonly ln: Float32Array;
  private readonly mean: Float32Array;
  private readonly rstd: Float32Array;
  private readonly qkv: Float32Array;
  private readonly atty: Float32Array;
  private readonly proj: Float32Array;
  private readonly fch: Float32Array;
  private readonly fchGelu: Float32Array;
  private readonly logits: Float32Array;
  private readonly scores: Float64Array;

  constructor(readonly model: GPT2) {
    const { nLayer: L, nEmbd: C, blockSize, vocabSize: V } = model.config;
    const alloc = (n: number) => model.backend.allocF32(n);
    this.keys = alloc(L * blockSize * C);
    this.values = alloc(L * blockSize * C);
    this.x = alloc(C);
    this.x2 = alloc(C);
    this.ln = alloc(C);
    this.mean = alloc(1);
    this.rstd = alloc(1);
    this.qkv = alloc(3 * C);
    this.atty = alloc(C);
    this.proj = alloc(C);
    this.fch = alloc(4 * C);
    this.fchGelu = alloc(4 * C);
    this.logits = alloc(V);
    this.scores = new Float64Array(blockSize);
  }

  /** Tokens in the cache (the next position). */
  get length(): number {
    return this.tokens.length;
  }

  /** Returns the backend buffers (after the decoder's last use). */
  dispose(): void {
    const k = this.model.backend;
    for (const buffer of [this.keys, this.values, this.x, this.x2, this.ln, this.mean])
      k.free(buffer);
    for (const buffer of [this.rstd, this.qkv, this.atty, this.proj, this.fch, this.fchGelu])
      k.free(buffer);
    k.free(this.logits);
  }

  /**
   * Starts a sequence: runs `ids` (at least one) through the model and returns the logits (V) that
   * predict the token after them. The view is overwritten by the next call.
   */
  prefill(ids: number[]): Float32Array {
    check(ids.length > 0, 'WEFT_E_SHAPE', 'decoding needs a prompt of at least one token');
    const { nLayer: L, nEmbd: C, blockSize, vocabSize: V } = this.model.config;
    const kept = ids.length > blockSize ? ids.slice(-blockSize) : ids;
    const T = kept.length;
    const { logits } = this.model.forward(Int32Array.from(kept), 1, T, undefined, {
      lastOnly: true,
    });
    for (let l = 0; l < L; l++) {
      const qkv = this.model.layerQkv(l); // (1, T, 3C): q, k, v of every position
      const keys = layerOf(this.keys, l, L);
      const values = layerOf(this.values, l, L);
      for (let t = 0; t < T; t++) {
        keys.set(qkv.subarray(t * 3 * C + C, t * 3 * C + 2 * C), t * C);
        values.set(qkv.subarray(t * 3 * C + 2 * C, t * 3 * C + 3 * C), t * C);
      }
    }
    this.tokens = [...kept];
    this.logits.set(logits.subarray(0, V));
    return this.logits;
  }

  /** Appends `id` and returns the logits (V) that predict the token after it. */
  step(id: number): Float32Array {
    const { blockSize } = this.model.config;
    if (this.tokens.length === 0) return this.prefill([id]);
    if (this.tokens.length === blockSize) {
      const keep = this.tokens.slice(this.tokens.length - Math.floor(blockSize / 2));
      return this.prefill([...keep, id]);
    }
    return this.position(id, this.tokens.length);
  }

  /** Runs token `id` at position `pos` through every layer, caching its keys and values. */
  private position(id: number, pos: number): Float32Array {
    const { nLayer: L, nEmbd: C, vocabSize: V } = this.model.config;
    const k = this.model.backend;
    const p = this.model.p;
    const at = (view: Float32Array, l: number) => layerOf(view, l, L);
    // the embedding is summed here rather than by encoderForward, which tells a backend that a
    // new forward pass begins (the gpu backend then re-uploads the weights it keeps)
    for (let c = 0; c < C; c++) this.x[c] = p.wte[id * C + c] + p.wpe[pos * C + c];
    for (let l = 0; l < L; l++) {
      k.layernormForward(this.ln, this.mean, this.rstd, this.x, at(p.ln1w, l), at(p.ln1b, l), 1, C);
      k.matmulForward(this.qkv, this.ln, at(p.qkvw, l), at(p.qkvb, l), 1, C, 3 * C);
      at(this.keys, l).set(this.qkv.subarray(C, 2 * C), pos * C);
      at(this.values, l).set(this.qkv.subarray(2 * C, 3 * C), pos * C);
      this.attend(at(this.keys, l), at(this.values, l), pos);
      k.matmulForward(this.proj, this.atty, at(p.attprojw, l), at(p.attprojb, l), 1, C, C);
      k.residualForward(this.x2, this.x, this.proj, C);
      k.layernormForward(
        this.ln,
        this.mean,
        this.rstd,
        this.x2,
        at(p.ln2w, l),
        at(p.ln2b, l),
        1,
        C,
      );
      k.matmulForward(this.fch, this.ln, at(p.fcw, l), at(p.fcb, l), 1, C, 4 * C);
      k.geluForward(this.fchGelu, this.fch, 4 * C);
      k.matmulForward(this.proj, this.fchGelu, at(p.fcprojw, l), at(p.fcprojb, l), 1, 4 * C, C);
      k.residualForward(this.x, this.x2, this.proj, C);
    }
    k.layernormForward(this.ln, this.mean, this.rstd, this.x, p.lnfw, p.lnfb, 1, C);
    k.lmHeadForward(this.logits, this.ln, p.wte, 1, C, V);
    this.tokens.push(id);
    return this.logits;
  }

  /**
   * atty (C) = per head, softmax over t <= pos of q.k_t / sqrt(hs), times v_t: the query in
   * this.qkv[0, C), keys and values (pos + 1, C) of this layer. Sums in float64, as the reference.
   */
  private attend(keys: Float32Array, values: Float32Array, pos: number): void {
    const { nEmbd: C, nHead: NH } = this.model.config;
    const hs = C / NH;
    const scale = 1 / Math.sqrt(hs);
    const { qkv, scores, atty } = this;
    for (let h = 0; h < NH; h++) {
      const q = h * hs;
      let max = -Infinity;
      for (let t = 0; t <= pos; t++) {
        let dot = 0;
        for (let i = 0; i < hs; i++) dot += qkv[q + i] * keys[t * C + q + i];
        scores[t] = dot * scale;
        if (scores[t] > max) max = scores[t];
      }
      let sum = 0;
      for (let t = 0; t <= pos; t++) {
        scores[t] = Math.exp(scores[t] - max);
        sum += scores[t];
      }
      for (let i = 0; i < hs; i++) {
        let y = 0;
        for (let t = 0; t <= pos; t++) y += scores[t] * values[t * C + q + i];
        atty[q + i] = y / sum;
      }
    }
  }
}
