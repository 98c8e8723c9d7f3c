// Reference kernels for GPT-2: plain TypeScript loops, the oracle every fast backend is tested
// against. Each kernel is a pure function, outputs first; every backward ACCUMULATES (+=) into
// its gradient outputs, so callers zero them first. Sums are carried in double precision and
// rounded once when stored. Shapes are row-major; N = B*T rows where a kernel works per position.
// Arrays may be Float32Array (training) or Float64Array (finite-difference gradient checks).

import type { Kernels } from './backend.ts';
import { checkTokenIds, countTargets, need } from './checks.ts';

export type Floats = Float32Array | Float64Array;

const GELU_SCALE = Math.sqrt(2 / Math.PI);
export const LAYERNORM_EPS = 1e-5;

// ---------------------------------------------------------------- embedding

/** out (B,T,C) = wte[idx[b,t]] (V,C) + wpe[t] (maxT,C). Token ids are checked against V. */
export const encoderForward: Kernels<Floats>['encoderForward'] = (out, idx, wte, wpe, B, T, C) => {
  const V = wte.length / C;
  need(idx, B * T, 'idx');
  need(wpe, T * C, 'wpe');
  need(out, B * T * C, 'out');
  checkTokenIds(idx, B * T, V);
  for (let bt = 0; bt < B * T; bt++) {
    const token = idx[bt];
    const t = bt % T;
    const o = bt * C;
    const w = token * C;
    const p = t * C;
    for (let c = 0; c < C; c++) out[o + c] = wte[w + c] + wpe[p + c];
  }
};

/** dwte (V,C) += scatter of dout (B,T,C) by token; dwpe (maxT,C) += sum over b of dout. */
export const encoderBackward: Kernels<Floats>['encoderBackward'] = (...args) => {
  const [dwte, dwpe, dout, idx, B, T, C] = args;
  need(dout, B * T * C, 'dout');
  for (let bt = 0; bt < B * T; bt++) {
    const o = bt * C;
    const w = idx[bt] * C;
    const p = (bt % T) * C;
    for (let c = 0; c < C; c++) {
      dwte[w + c] += dout[o + c];
      dwpe[p + c] += dout[o + c];
    }
  }
};

// ---------------------------------------------------------------- layernorm

/**
 * out (N,C) = (inp - mean) * rstd * weight (C) + bias (C); saves mean (N) and rstd (N) for the
 * backward. Variance is biased (divides by C), eps = 1e-5, as torch.nn.LayerNorm.
 */
export const layernormForward: Kernels<Floats>['layernormForward'] = (...args) => {
  const [out, mean, rstd, inp, weight, bias, N, C] = args;
  need(inp, N * C, 'inp');
  need(out, N * C, 'out');
  need(weight, C, 'weight');
  for (let n = 0; n < N; n++) {
    const row = n * C;
    let sum = 0;
    for (let c = 0; c < C; c++) sum += inp[row + c];
    const m = sum / C;
    let sq = 0;
    for (let c = 0; c < C; c++) {
      const d = inp[row + c] - m;
      sq += d * d;
    }
    const s = 1 / Math.sqrt(sq / C + LAYERNORM_EPS);
    for (let c = 0; c < C; c++) out[row + c] = (inp[row + c] - m) * s * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
};

/** Accumulates dinp (N,C), dweight (C), dbias (C) from dout (N,C) and the saved statistics. */
export const layernormBackward: Kernels<Floats>['layernormBackward'] = (...args) => {
  const [dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C] = args;
  need(dout, N * C, 'dout');
  const dw = new Float64Array(C);
  const db = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const row = n * C;
    const m = mean[n];
    const s = rstd[n];
    // mean of dnorm and of dnorm * norm over the row, where dnorm = dout * weight
    let dnormMean = 0;
    let dnormNormMean = 0;
    for (let c = 0; c < C; c++) {
      const norm = (inp[row + c] - m) * s;
      const dnorm = dout[row + c] * weight[c];
      dnormMean += dnorm;
      dnormNormMean += dnorm * norm;
    }
    dnormMean /= C;
    dnormNormMean /= C;
    for (let c = 0; c < C; c++) {
      const norm = (inp[row + c] - m) * s;
      const dnorm = dout[row + c] * weight[c];
      db[c] += dout[row + c];
      dw[c] += norm * dout[row + c];
      dinp[row + c] += (dnorm - dnormMean - norm * dnormNormMean) * s;
    }
  }
  for (let c = 0; c < C; c++) {
    dweight[c] += dw[c];
    dbias[c] += db[c];
  }
};

// ---------------------------------------------------------------- matmul (Conv1D layout)

/**
 * out (N,OC) = inp (N,C) @ weight (C,OC) + bias (OC). The weight is stored [in, out] as
 * Hugging Face GPT-2's Conv1D; `bias` may be null.
 */
export const matmulForward: Kernels<Floats>['matmulForward'] = (...args) => {
  const [out, inp, weight, bias, N, C, OC] = args;
  need(inp, N * C, 'inp');
  need(weight, C * OC, 'weight');
  need(out, N * OC, 'out');
  const acc = new Float64Array(OC);
  for (let n = 0; n < N; n++) {
    if (bias) for (let o = 0; o < OC; o++) acc[o] = bias[o];
    else acc.fill(0);
    for (let c = 0; c < C; c++) {
      const a = inp[n * C + c];
      const w = c * OC;
      for (let o = 0; o < OC; o++) acc[o] += a * weight[w + o];
    }
    const row = n * OC;
    for (let o = 0; o < OC; o++) out[row + o] = acc[o];
  }
};

/**
 * The three products of the backward: dinp (N,C) += dout @ weight^T; dweight (C,OC) += inp^T @
 * dout; dbias (OC) += column sums of dout (skipped when dbias is null).
 */
export const matmulBackward: Kernels<Floats>['matmulBackward'] = (...args) => {
  const [dinp, dweight, dbias, dout, inp, weight, N, C, OC] = args;
  need(dout, N * OC, 'dout');
  need(dinp, N * C, 'dinp');
  need(dweight, C * OC, 'dweight');
  // dinp[n,c] += sum_o dout[n,o] * weight[c,o]: both rows contiguous
  for (let n = 0; n < N; n++) {
    const d = n * OC;
    for (let c = 0; c < C; c++) {
      const w = c * OC;
      let sum = 0;
      for (let o = 0; o < OC; o++) sum += dout[d + o] * weight[w + o];
      dinp[n * C + c] += sum;
    }
  }
  // dweight[c,o] += sum_n inp[n,c] * dout[n,o]: one weight row at a time
  const acc = new Float64Array(OC);
  for (let c = 0; c < C; c++) {
    acc.fill(0);
    for (let n = 0; n < N; n++) {
      const a = inp[n * C + c];
      const d = n * OC;
      for (let o = 0; o < OC; o++) acc[o] += a * dout[d + o];
    }
    const w = c * OC;
    for (let o = 0; o < OC; o++) dweight[w + o] += acc[o];
  }
  if (dbias) {
    acc.fill(0);
    for (let n = 0; n < N; n++) for (let o = 0; o < OC; o++) acc[o] += dout[n * OC + o];
    for (let o = 0; o < OC; o++) dbias[o] += acc[o];
  }
};

// ---------------------------------------------------------------- tied LM head

/** logits (N,V) = inp (N,C) @ wte^T, with wte (V,C) the token embedding (the tied head). */
export const lmHeadForward: Kernels<Floats>['lmHeadForward'] = (logits, inp, wte, N, C, V) => {
  need(inp, N * C, 'inp');
  need(wte, V * C, 'wte');
  need(logits, N * V, 'logits');
  for (let n = 0; n < N; n++) {
    const x = n * C;
    for (let v = 0; v < V; v++) {
      const w = v * C;
      let sum = 0;
      for (let c = 0; c < C; c++) sum += inp[x + c] * wte[w + c];
      logits[n * V + v] = sum;
    }
  }
};

/** dinp (N,C) += dlogits @ wte; dwte (V,C) += dlogits^T @ inp. */
export const lmHeadBackward: Kernels<Floats>['lmHeadBackward'] = (...args) => {
  const [dinp, dwte, dlogits, inp, wte, N, C, V] = args;
  need(dlogits, N * V, 'dlogits');
  const acc = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    acc.fill(0);
    for (let v = 0; v < V; v++) {
      const d = dlogits[n * V + v];
      const w = v * C;
      for (let c = 0; c < C; c++) acc[c] += d * wte[w + c];
    }
    for (let c = 0; c < C; c++) dinp[n * C + c] += acc[c];
  }
  for (let v = 0; v < V; v++) {
    acc.fill(0);
    for (let n = 0; n < N; n++) {
      const d = dlogits[n * V + v];
      const x = n * C;
      for (let c = 0; c < C; c++) acc[c] += d * inp[x + c];
    }
    const w = v * C;
    for (let c = 0; c < C; c++) dwte[w + c] += acc[c];
  }
};

// ---------------------------------------------------------------- causal self-attention

/**
 * Causal multi-head attention. qkv (B,T,3C) holds q, k, v as three C-wide column blocks, each
 * split into NH heads of hs = C/NH channels. Writes out (B,T,C) and the softmax weights
 * att (B,NH,T,T) (entries above the diagonal are 0), scores scaled by 1/sqrt(hs).
 */
export const attentionForward: Kernels<Floats>['attentionForward'] = (...args) => {
  const [out, att, qkv, B, T, C, NH] = args;
  need(qkv, B * T * 3 * C, 'qkv');
  need(att, B * NH * T * T, 'att');
  need(out, B * T * C, 'out');
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  const scores = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NH; h++) {
        const q = (b * T + t) * 3 * C + h * hs;
        const a = ((b * NH + h) * T + t) * T; // att[b,h,t,:]
        let max = -Infinity;
        for (let t2 = 0; t2 <= t; t2++) {
          const k = (b * T + t2) * 3 * C + C + h * hs;
          let dot = 0;
          for (let i = 0; i < hs; i++) dot += qkv[q + i] * qkv[k + i];
          scores[t2] = dot * scale;
          if (scores[t2] > max) max = scores[t2];
        }
        let sum = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          scores[t2] = Math.exp(scores[t2] - max);
          sum += scores[t2];
        }
        for (let t2 = 0; t2 < T; t2++) att[a + t2] = t2 <= t ? scores[t2] / sum : 0;
        const o = (b * T + t) * C + h * hs;
        for (let i = 0; i < hs; i++) {
          let y = 0;
          for (let t2 = 0; t2 <= t; t2++)
            y += att[a + t2] * qkv[(b * T + t2) * 3 * C + 2 * C + h * hs + i];
          out[o + i] = y;
        }
      }
    }
  }
};

/** Accumulates dqkv (B,T,3C) from dout (B,T,C), using qkv and the saved att (B,NH,T,T). */
export const attentionBackward: Kernels<Floats>['attentionBackward'] = (...args) => {
  const [dqkv, dout, qkv, att, B, T, C, NH] = args;
  need(dout, B * T * C, 'dout');
  need(dqkv, B * T * 3 * C, 'dqkv');
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  const datt = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NH; h++) {
        const a = ((b * NH + h) * T + t) * T;
        const o = (b * T + t) * C + h * hs;
        // through y = att @ v: datt[t2] = dout . v[t2]; dv[t2] += att[t2] * dout
        let attDotDatt = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          const v = (b * T + t2) * 3 * C + 2 * C + h * hs;
          let dot = 0;
          for (let i = 0; i < hs; i++) {
            dot += dout[o + i] * qkv[v + i];
            dqkv[v + i] += att[a + t2] * dout[o + i];
          }
          datt[t2] = dot;
          attDotDatt += att[a + t2] * dot;
        }
        // through the softmax: dscore = att * (datt - sum(att * datt)); then through q . k
        const q = (b * T + t) * 3 * C + h * hs;
        for (let t2 = 0; t2 <= t; t2++) {
          const dscore = att[a + t2] * (datt[t2] - attDotDatt) * scale;
          const k = (b * T + t2) * 3 * C + C + h * hs;
          for (let i = 0; i < hs; i++) {
            dqkv[q + i] += dscore * qkv[k + i];
            dqkv[k + i] += dscore * qkv[q + i];
          }
        }
      }
    }
  }
};

// ---------------------------------------------------------------- GELU (tanh form)

/** out (N) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as GPT-2's gelu_new. */
export const geluForward: Kernels<Floats>['geluForward'] = (out, inp, N) => {
  need(inp, N, 'inp');
  need(out, N, 'out');
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    out[i] = 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + 0.044715 * x * x * x)));
  }
};

/** dinp (N) += gelu'(inp) * dout. */
export const geluBackward: Kernels<Floats>['geluBackward'] = (dinp, inp, dout, N) => {
  need(dout, N, 'dout');
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    const u = GELU_SCALE * (x + 0.044715 * x * x * x);
    const th = Math.tanh(u);
    const dudx = GELU_SCALE * (1 + 3 * 0.044715 * x * x);
    dinp[i] += (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * dudx) * dout[i];
  }
};

// ---------------------------------------------------------------- residual

/** out (N) = inp1 + inp2. */
export const residualForward: Kernels<Floats>['residualForward'] = (out, inp1, inp2, N) => {
  need(inp1, N, 'inp1');
  need(inp2, N, 'inp2');
  for (let i = 0; i < N; i++) out[i] = inp1[i] + inp2[i];
};

/** dinp1 (N) += dout; dinp2 (N) += dout. */
export const residualBackward: Kernels<Floats>['residualBackward'] = (dinp1, dinp2, dout, N) => {
  need(dout, N, 'dout');
  for (let i = 0; i < N; i++) {
    dinp1[i] += dout[i];
    dinp2[i] += dout[i];
  }
};

// ---------------------------------------------------------------- softmax + cross-entropy

/**
 * probs (N,V) = softmax(logits (N,V)); losses (N) = -log probs[target] (computed as logsumexp -
 * logit, in double precision), 0 where the target is -1. Returns the number of counted targets.
 */
export const crossEntropyForward: Kernels<Floats>['crossEntropyForward'] = (...args) => {
  const [losses, probs, logits, targets, N, V] = args;
  need(logits, N * V, 'logits');
  need(targets, N, 'targets');
  const counted = countTargets(targets, N, V);
  for (let n = 0; n < N; n++) {
    const target = targets[n];
    const row = n * V;
    let max = -Infinity;
    for (let v = 0; v < V; v++) if (logits[row + v] > max) max = logits[row + v];
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[row + v] - max);
    for (let v = 0; v < V; v++) probs[row + v] = Math.exp(logits[row + v] - max) / sum;
    losses[n] = target === -1 ? 0 : Math.log(sum) + max - logits[row + target];
  }
  return counted;
};

/**
 * dlogits (N,V) += dloss * (probs - onehot(target)) for every counted position; dloss is the
 * gradient of the total loss with respect to each position's loss (1 / target count for a mean).
 */
export const crossEntropyBackward: Kernels<Floats>['crossEntropyBackward'] = (...args) => {
  const [dlogits, probs, targets, dloss, N, V] = args;
  need(dlogits, N * V, 'dlogits');
  for (let n = 0; n < N; n++) {
    const target = targets[n];
    if (target === -1) continue;
    const row = n * V;
    for (let v = 0; v < V; v++) dlogits[row + v] += dloss * probs[row + v];
    dlogits[row + target] -= dloss;
  }
};
