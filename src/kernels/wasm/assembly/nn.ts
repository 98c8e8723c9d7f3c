// The GPT-2 kernels other than the matrix products, for the wasm backend (AssemblyScript, SIMD
// f32x4 where the inner loop is contiguous). Same contracts as src/kernels/reference.ts: outputs
// first, backwards accumulate. Pointers are byte offsets into the shared memory; sizes are
// elements. Math is AssemblyScript's own (compiled into the module), so results do not depend on
// the host.

// ---------------------------------------------------------------- helpers

@inline
function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/** sum of x[i] * y[i], i < n. */
@inline
function dot(x: usize, y: usize, n: i32): f32 {
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(x + (<usize>i << 2)), v128.load(y + (<usize>i << 2))));
  let s = hsum(acc);
  for (; i < n; i++) s += load<f32>(x + (<usize>i << 2)) * load<f32>(y + (<usize>i << 2));
  return s;
}

/** y[i] += a * x[i], i < n. */
@inline
function axpy(y: usize, a: f32, x: usize, n: i32): void {
  const va = f32x4.splat(a);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = y + (<usize>i << 2);
    v128.store(p, f32x4.add(v128.load(p), f32x4.mul(va, v128.load(x + (<usize>i << 2)))));
  }
  for (; i < n; i++) {
    const p = y + (<usize>i << 2);
    store<f32>(p, load<f32>(p) + a * load<f32>(x + (<usize>i << 2)));
  }
}

// ---------------------------------------------------------------- embedding

/** out (B,T,C) = wte[idx] + wpe[t]; ids were checked by the caller. */
export function encoderForward(out: usize, idx: usize, wte: usize, wpe: usize, BT: i32, T: i32, C: i32): void {
  const row = <usize>C << 2;
  for (let bt = 0; bt < BT; bt++) {
    const token = <usize>load<i32>(idx + (<usize>bt << 2));
    const w = wte + token * row;
    const p = wpe + <usize>(bt % T) * row;
    const o = out + <usize>bt * row;
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      const q = <usize>c << 2;
      v128.store(o + q, f32x4.add(v128.load(w + q), v128.load(p + q)));
    }
    for (; c < C; c++) {
      const q = <usize>c << 2;
      store<f32>(o + q, load<f32>(w + q) + load<f32>(p + q));
    }
  }
}

export function encoderBackward(dwte: usize, dwpe: usize, dout: usize, idx: usize, BT: i32, T: i32, C: i32): void {
  const row = <usize>C << 2;
  for (let bt = 0; bt < BT; bt++) {
    const token = <usize>load<i32>(idx + (<usize>bt << 2));
    const d = dout + <usize>bt * row;
    axpy(dwte + token * row, 1, d, C);
    axpy(dwpe + <usize>(bt % T) * row, 1, d, C);
  }
}

// ---------------------------------------------------------------- layernorm

export function layernormForward(out: usize, mean: usize, rstd: usize, inp: usize, w: usize, b: usize, N: i32, C: i32): void {
  const row = <usize>C << 2;
  for (let n = 0; n < N; n++) {
    const x = inp + <usize>n * row;
    const o = out + <usize>n * row;
    let acc = f32x4.splat(0);
    let c = 0;
    for (; c + 4 <= C; c += 4) acc = f32x4.add(acc, v128.load(x + (<usize>c << 2)));
    let s = hsum(acc);
    for (; c < C; c++) s += load<f32>(x + (<usize>c << 2));
    const m = s / <f32>C;
    const vm = f32x4.splat(m);
    acc = f32x4.splat(0);
    c = 0;
    for (; c + 4 <= C; c += 4) {
      const d = f32x4.sub(v128.load(x + (<usize>c << 2)), vm);
      acc = f32x4.add(acc, f32x4.mul(d, d));
    }
    let sq = hsum(acc);
    for (; c < C; c++) {
      const d = load<f32>(x + (<usize>c << 2)) - m;
      sq += d * d;
    }
    const r: f32 = 1 / Mathf.sqrt(sq / <f32>C + 1e-5);
    const vr = f32x4.splat(r);
    c = 0;
    for (; c + 4 <= C; c += 4) {
      const q = <usize>c << 2;
      const norm = f32x4.mul(f32x4.sub(v128.load(x + q), vm), vr);
      v128.store(o + q, f32x4.add(f32x4.mul(norm, v128.load(w + q)), v128.load(b + q)));
    }
    for (; c < C; c++) {
      const q = <usize>c << 2;
      store<f32>(o + q, (load<f32>(x + q) - m) * r * load<f32>(w + q) + load<f32>(b + q));
    }
    store<f32>(mean + (<usize>n << 2), m);
    store<f32>(rstd + (<usize>n << 2), r);
  }
}

export function layernormBackward(
  dinp: usize,
  dw: usize,
  db: usize,
  dout: usize,
  inp: usize,
  w: usize,
  mean: usize,
  rstd: usize,
  N: i32,
  C: i32,
): void {
  const row = <usize>C << 2;
  for (let n = 0; n < N; n++) {
    const x = inp + <usize>n * row;
    const d = dout + <usize>n * row;
    const di = dinp + <usize>n * row;
    const m = load<f32>(mean + (<usize>n << 2));
    const r = load<f32>(rstd + (<usize>n << 2));
    let dnormMean: f32 = 0;
    let dnormNormMean: f32 = 0;
    for (let c = 0; c < C; c++) {
      const q = <usize>c << 2;
      const norm = (load<f32>(x + q) - m) * r;
      const dnorm = load<f32>(d + q) * load<f32>(w + q);
      dnormMean += dnorm;
      dnormNormMean += dnorm * norm;
    }
    dnormMean /= <f32>C;
    dnormNormMean /= <f32>C;
    for (let c = 0; c < C; c++) {
      const q = <usize>c << 2;
      const norm = (load<f32>(x + q) - m) * r;
      const g = load<f32>(d + q);
      const dnorm = g * load<f32>(w + q);
      store<f32>(db + q, load<f32>(db + q) + g);
      store<f32>(dw + q, load<f32>(dw + q) + norm * g);
      store<f32>(di + q, load<f32>(di + q) + (dnorm - dnormMean - norm * dnormNormMean) * r);
    }
  }
}

// ---------------------------------------------------------------- causal self-attention
// The products of attention (q k^T, att v and their gradients) are gemm calls per head, made by
// backend.ts; these kernels are the causal softmax between them, over rows of (T, T) matrices.

/**
 * Rows [r0, r1) of T-wide rows (row r is query position t = r % T): att = softmax of
 * scale * scores over columns j <= t, 0 beyond, in place.
 */
export function causalSoftmax(att: usize, r0: i32, r1: i32, T: i32, scale: f32): void {
  const vs = f32x4.splat(scale);
  for (let r = r0; r < r1; r++) {
    const row = att + (<usize>r * <usize>T << 2);
    const n = r % T + 1;
    let mx: f32 = -Infinity;
    for (let j = 0; j < n; j++) mx = max(mx, load<f32>(row + (<usize>j << 2)) * scale);
    const vmx = f32x4.splat(mx);
    let vsum = f32x4.splat(0);
    let j = 0;
    for (; j + 4 <= n; j += 4) {
      const p = row + (<usize>j << 2);
      const e = exp4(f32x4.sub(f32x4.mul(v128.load(p), vs), vmx));
      v128.store(p, e);
      vsum = f32x4.add(vsum, e);
    }
    let sum = hsum(vsum);
    for (; j < n; j++) {
      const p = row + (<usize>j << 2);
      const e = Mathf.exp(load<f32>(p) * scale - mx);
      store<f32>(p, e);
      sum += e;
    }
    const inv = f32x4.splat(1 / sum);
    j = 0;
    for (; j + 4 <= n; j += 4) {
      const p = row + (<usize>j << 2);
      v128.store(p, f32x4.mul(v128.load(p), inv));
    }
    for (; j < n; j++) {
      const p = row + (<usize>j << 2);
      store<f32>(p, load<f32>(p) / sum);
    }
    memory.fill(row + (<usize>n << 2), 0, <usize>(T - n) << 2);
  }
}

/**
 * Rows [r0, r1) as above: datt (the gradient of att) becomes the gradient of the scores,
 * scale * att * (datt - sum_j att datt) over j <= t, 0 beyond, in place.
 */
export function causalSoftmaxBackward(datt: usize, att: usize, r0: i32, r1: i32, T: i32, scale: f32): void {
  for (let r = r0; r < r1; r++) {
    const off = <usize>r * <usize>T << 2;
    const d = datt + off;
    const a = att + off;
    const n = r % T + 1;
    const inner = f32x4.splat(dot(a, d, n));
    const vs = f32x4.splat(scale);
    let j = 0;
    for (; j + 4 <= n; j += 4) {
      const o = <usize>j << 2;
      v128.store(d + o, f32x4.mul(f32x4.mul(v128.load(a + o), f32x4.sub(v128.load(d + o), inner)), vs));
    }
    const s = f32x4.extract_lane(inner, 0);
    for (; j < n; j++) {
      const o = <usize>j << 2;
      store<f32>(d + o, load<f32>(a + o) * (load<f32>(d + o) - s) * scale);
    }
    memory.fill(d + (<usize>n << 2), 0, <usize>(T - n) << 2);
  }
}

// ---------------------------------------------------------------- GELU (tanh form)

const GELU_SCALE: f32 = 0.7978845608028654; // sqrt(2 / pi)

/**
 * exp of four lanes, x <= 0: 2^n * p(r) with n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two
 * for accuracy) and p the degree-6 Taylor polynomial (|r| <= 0.35: error below 2e-8); x is clamped
 * at -87, below which exp underflows in f32. Agrees with Mathf.exp to about 1e-7 (relative).
 */
@inline
function exp4(xIn: v128): v128 {
  const x = f32x4.max(xIn, f32x4.splat(-87));
  const n = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.4426950408889634)));
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(0.693145751953125)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(1.428606765330187e-6)));
  let p = f32x4.add(f32x4.mul(r, f32x4.splat(1.0 / 720)), f32x4.splat(1.0 / 120));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0 / 24));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0 / 6));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(0.5));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return f32x4.mul(p, scale);
}

/** tanh of four lanes: tanh(|u|) = (1 - e) / (1 + e) with e = exp(-2|u|), the sign put back. */
@inline
function tanh4(u: v128): v128 {
  const e = exp4(f32x4.mul(f32x4.abs(u), f32x4.splat(-2)));
  const t = f32x4.div(f32x4.sub(f32x4.splat(1), e), f32x4.add(f32x4.splat(1), e));
  return v128.or(t, v128.and(u, i32x4.splat(0x80000000))); // copy the sign of u
}

@inline
function geluInner(x: v128): v128 {
  // sqrt(2/pi) * (x + 0.044715 x^3)
  const x3 = f32x4.mul(f32x4.mul(x, x), x);
  return f32x4.mul(f32x4.splat(GELU_SCALE), f32x4.add(x, f32x4.mul(f32x4.splat(0.044715), x3)));
}

export function geluForward(out: usize, inp: usize, N: i32): void {
  let i = 0;
  for (; i + 4 <= N; i += 4) {
    const q = <usize>i << 2;
    const x = v128.load(inp + q);
    const th = tanh4(geluInner(x));
    v128.store(out + q, f32x4.mul(f32x4.mul(f32x4.splat(0.5), x), f32x4.add(f32x4.splat(1), th)));
  }
  for (; i < N; i++) {
    const q = <usize>i << 2;
    const x = load<f32>(inp + q);
    store<f32>(out + q, f32x4.extract_lane(geluForward1(f32x4.splat(x)), 0));
  }
}

@inline
function geluForward1(x: v128): v128 {
  return f32x4.mul(f32x4.mul(f32x4.splat(0.5), x), f32x4.add(f32x4.splat(1), tanh4(geluInner(x))));
}

@inline
function geluGrad(x: v128): v128 {
  const th = tanh4(geluInner(x));
  const dudx = f32x4.mul(f32x4.splat(GELU_SCALE), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.134145), f32x4.mul(x, x))));
  const sech2 = f32x4.sub(f32x4.splat(1), f32x4.mul(th, th));
  return f32x4.add(f32x4.mul(f32x4.splat(0.5), f32x4.add(f32x4.splat(1), th)), f32x4.mul(f32x4.mul(f32x4.mul(f32x4.splat(0.5), x), sech2), dudx));
}

export function geluBackward(dinp: usize, inp: usize, dout: usize, N: i32): void {
  let i = 0;
  for (; i + 4 <= N; i += 4) {
    const q = <usize>i << 2;
    const g = geluGrad(v128.load(inp + q));
    v128.store(dinp + q, f32x4.add(v128.load(dinp + q), f32x4.mul(g, v128.load(dout + q))));
  }
  for (; i < N; i++) {
    const q = <usize>i << 2;
    const g = f32x4.extract_lane(geluGrad(f32x4.splat(load<f32>(inp + q))), 0);
    store<f32>(dinp + q, load<f32>(dinp + q) + g * load<f32>(dout + q));
  }
}

// ---------------------------------------------------------------- residual

export function residualForward(out: usize, a: usize, b: usize, N: i32): void {
  let i = 0;
  for (; i + 4 <= N; i += 4) {
    const q = <usize>i << 2;
    v128.store(out + q, f32x4.add(v128.load(a + q), v128.load(b + q)));
  }
  for (; i < N; i++) {
    const q = <usize>i << 2;
    store<f32>(out + q, load<f32>(a + q) + load<f32>(b + q));
  }
}

export function residualBackward(d1: usize, d2: usize, dout: usize, N: i32): void {
  axpy(d1, 1, dout, N);
  axpy(d2, 1, dout, N);
}

// ---------------------------------------------------------------- softmax + cross-entropy

/** Rows [n0, n1): probs (N,V) and losses (N); a loss is computed in f64 (logsumexp - logit), stored f32. */
export function crossEntropyForward(losses: usize, probs: usize, logits: usize, targets: usize, n0: i32, n1: i32, V: i32): void {
  const row = <usize>V << 2;
  for (let n = n0; n < n1; n++) {
    const x = logits + <usize>n * row;
    const p = probs + <usize>n * row;
    let mx: f32 = -Infinity;
    for (let v = 0; v < V; v++) mx = max<f32>(mx, load<f32>(x + (<usize>v << 2)));
    const vmx = f32x4.splat(mx);
    let acc = f32x4.splat(0);
    let v = 0;
    for (; v + 4 <= V; v += 4) {
      const q = <usize>v << 2;
      const e = exp4(f32x4.sub(v128.load(x + q), vmx));
      v128.store(p + q, e);
      acc = f32x4.add(acc, e);
    }
    let sum: f64 = <f64>hsum(acc);
    for (; v < V; v++) {
      const e = f32x4.extract_lane(exp4(f32x4.splat(load<f32>(x + (<usize>v << 2)) - mx)), 0);
      store<f32>(p + (<usize>v << 2), e);
      sum += e;
    }
    const inv = f32x4.splat(<f32>(1 / sum));
    v = 0;
    for (; v + 4 <= V; v += 4) v128.store(p + (<usize>v << 2), f32x4.mul(v128.load(p + (<usize>v << 2)), inv));
    for (; v < V; v++) store<f32>(p + (<usize>v << 2), load<f32>(p + (<usize>v << 2)) * f32x4.extract_lane(inv, 0));
    const target = load<i32>(targets + (<usize>n << 2));
    const loss = target < 0 ? 0 : Math.log(sum) + <f64>mx - <f64>load<f32>(x + (<usize>target << 2));
    store<f32>(losses + (<usize>n << 2), <f32>loss);
  }
}

export function crossEntropyBackward(dlogits: usize, probs: usize, targets: usize, dloss: f32, n0: i32, n1: i32, V: i32): void {
  const row = <usize>V << 2;
  for (let n = n0; n < n1; n++) {
    const target = load<i32>(targets + (<usize>n << 2));
    if (target < 0) continue;
    const d = dlogits + <usize>n * row;
    axpy(d, dloss, probs + <usize>n * row, V);
    const t = d + (<usize>target << 2);
    store<f32>(t, load<f32>(t) - dloss);
  }
}

// ---------------------------------------------------------------- optimizer and exact sums

export function adamwUpdate(
  params: usize,
  grads: usize,
  m: usize,
  v: usize,
  begin: i32,
  end: i32,
  keep: f32,
  beta1: f32,
  beta2: f32,
  stepSize: f32,
  bc2Sqrt: f32,
  eps: f32,
): void {
  for (let i = begin; i < end; i++) {
    const q = <usize>i << 2;
    const g = load<f32>(grads + q);
    const mi = beta1 * load<f32>(m + q) + (1 - beta1) * g;
    const vi = beta2 * load<f32>(v + q) + (1 - beta2) * g * g;
    store<f32>(m + q, mi);
    store<f32>(v + q, vi);
    store<f32>(params + q, load<f32>(params + q) * keep - (stepSize * mi) / (Mathf.sqrt(vi) / bc2Sqrt + eps));
  }
}

/** acc (f64) += round(g * scale) for i < n; returns 1 if any |g| >= limit (or NaN), else 0. */
export function accumulateExact(acc: usize, grads: usize, n: i32, scale: f64, limit: f64): i32 {
  let overflow = 0;
  for (let i = 0; i < n; i++) {
    const g = <f64>load<f32>(grads + (<usize>i << 2));
    if (!(Math.abs(g) < limit)) overflow = 1;
    const p = acc + (<usize>i << 3);
    store<f64>(p, load<f64>(p) + Math.floor(g * scale + 0.5));
  }
  return overflow;
}

export function fromExact(out: usize, acc: usize, begin: i32, end: i32, scale: f64): void {
  for (let i = begin; i < end; i++) store<f32>(out + (<usize>i << 2), <f32>(load<f64>(acc + (<usize>i << 3)) * scale));
}
