// Dense float64 oracles of the sequence-mixer kernels (CUBIT.md §2–§3). Each (b, h) row block
// builds its whole masked T×T probability matrix in float64, so these are O(T²) in memory and
// exist to be obviously right: the streaming native kernels are tested against them.
//
// The backward kernels recompute the row log-sum-exp in float64 from the inputs instead of
// trusting the saved `lse` (which may be float32); `lse` is an output here, written for callers
// and for comparison with other backends. X (the forward's output) is used as given, as the
// streaming kernels must.
import type { MixerDims } from '../../core/backend.ts';
import type { TypedArray } from '../../core/dtype.ts';
import { sigmoid } from './math.ts';

type Arr = TypedArray;

/** visible(i, j) for batch row b: causal, then the sliding window and the packed documents. */
function maskFor(d: MixerDims, docIds: Arr | null, b: number): (i: number, j: number) => boolean {
  const { T, window } = d;
  const base = b * T;
  return (i, j) => j <= i && (window <= 0 || j > i - window) && (docIds === null || docIds[base + i] === docIds[base + j]);
}

/**
 * P = masked row-softmax(scale · a_i · b_j) of one row block (offset `off` into (B·H, T, D)), with
 * the row log-sum-exp. Masked entries of P are exactly 0. The diagonal is always visible, so no
 * row is empty.
 */
function probabilities(a: Arr, bm: Arr, off: number, T: number, D: number, scale: number,
  visible: (i: number, j: number) => boolean, lse: Float64Array): Float64Array {
  const P = new Float64Array(T * T);
  for (let i = 0; i < T; i++) {
    const ai = off + i * D;
    let max = -Infinity;
    for (let j = 0; j <= i; j++) {
      if (!visible(i, j)) continue;
      const bj = off + j * D;
      let s = 0;
      for (let c = 0; c < D; c++) s += a[ai + c] * bm[bj + c];
      s *= scale;
      P[i * T + j] = s;
      if (s > max) max = s;
    }
    let sum = 0;
    for (let j = 0; j <= i; j++) if (visible(i, j)) sum += Math.exp(P[i * T + j] - max);
    const l = max + Math.log(sum);
    lse[i] = l;
    for (let j = 0; j <= i; j++) P[i * T + j] = visible(i, j) ? Math.exp(P[i * T + j] - l) : 0;
  }
  return P;
}

/**
 * X = (W + λI)⁻¹ Y by forward substitution (float64), the rows' log-sum-exp, and
 * wxMinusX_i = Σ_{j<i} W_ij (X_j − X_i) (= (W X − X)_i, for the streaming backward).
 */
export function krrSolveRef(r: Arr, rHat: Arr, y: Arr, logLambda: Arr, x: Arr, lse: Arr, wxMinusX: Arr, d: MixerDims,
  docs: Arr | null): void {
  const { B, H, T, D } = d;
  const rowLse = new Float64Array(T);
  const X = new Float64Array(T * D);
  for (let bh = 0; bh < B * H; bh++) {
    const off = bh * T * D, lam = Math.exp(logLambda[bh % H]);
    const visible = maskFor(d, docs, Math.floor(bh / H));
    const P = probabilities(r, rHat, off, T, D, 1, visible, rowLse);
    for (let i = 0; i < T; i++) {
      const xi = i * D;
      for (let c = 0; c < D; c++) X[xi + c] = y[off + xi + c];
      for (let j = 0; j < i; j++) {
        const p = P[i * T + j];
        if (p === 0) continue;
        for (let c = 0; c < D; c++) X[xi + c] -= p * X[j * D + c];
      }
      const diag = P[i * T + i] + lam;
      for (let c = 0; c < D; c++) X[xi + c] /= diag;
    }
    for (let n = 0; n < T * D; n++) x[off + n] = X[n];
    for (let i = 0; i < T; i++) lse[bh * T + i] = rowLse[i];
    for (let i = 0; i < T; i++) {
      for (let c = 0; c < D; c++) {
        let w = 0;
        for (let j = 0; j < i; j++) w += P[i * T + j] * (X[j * D + c] - X[i * D + c]);
        wxMinusX[off + i * D + c] = w;
      }
    }
  }
}

/**
 * The adjoint of krrSolveRef (CUBIT.md §3 in dense form): Z = M⁻ᵀG by back substitution; ∂Y = Z;
 * ∂λ = −Σ Z⊙X per row block; dP = −Z Xᵀ on the mask; dS = P⊙(dP − rowsum(P⊙dP));
 * ∂r = dS r̂; ∂r̂ = dSᵀ r.
 */
export function krrSolveBackwardRef(r: Arr, rHat: Arr, logLambda: Arr, x: Arr, _lse: Arr, g: Arr,
  dr: Arr, drHat: Arr, dy: Arr, dLambda: Arr, d: MixerDims, docs: Arr | null): void {
  const { B, H, T, D } = d;
  const rowLse = new Float64Array(T);
  const Z = new Float64Array(T * D);
  const dS = new Float64Array(T);
  const acc = new Float64Array(T * D);
  const row = new Float64Array(D);
  for (let bh = 0; bh < B * H; bh++) {
    const off = bh * T * D, lam = Math.exp(logLambda[bh % H]);
    const visible = maskFor(d, docs, Math.floor(bh / H));
    const P = probabilities(r, rHat, off, T, D, 1, visible, rowLse);
    // Z = M⁻ᵀ G: row i of Mᵀ holds column i of M, i.e. P[j, i] for j ≥ i.
    for (let i = T - 1; i >= 0; i--) {
      const zi = i * D;
      for (let c = 0; c < D; c++) Z[zi + c] = g[off + zi + c];
      for (let j = i + 1; j < T; j++) {
        const p = P[j * T + i];
        if (p === 0) continue;
        for (let c = 0; c < D; c++) Z[zi + c] -= p * Z[j * D + c];
      }
      const diag = P[i * T + i] + lam;
      for (let c = 0; c < D; c++) Z[zi + c] /= diag;
    }
    let dl = 0;
    for (let n = 0; n < T * D; n++) { dy[off + n] = Z[n]; dl -= Z[n] * x[off + n]; }
    dLambda[bh] = dl;
    // ∂r̂ accumulates over rows i; ∂r is finished row by row.
    acc.fill(0);
    for (let i = 0; i < T; i++) {
      let rowDot = 0;
      for (let j = 0; j <= i; j++) {
        const p = P[i * T + j];
        if (p === 0) { dS[j] = 0; continue; }
        let dp = 0;
        for (let c = 0; c < D; c++) dp -= Z[i * D + c] * x[off + j * D + c];
        dS[j] = dp;
        rowDot += p * dp;
      }
      const ri = off + i * D;
      row.fill(0);
      for (let j = 0; j <= i; j++) {
        const p = P[i * T + j];
        if (p === 0) continue;
        const s = p * (dS[j] - rowDot);
        const rj = off + j * D;
        for (let c = 0; c < D; c++) {
          row[c] += s * rHat[rj + c];
          acc[j * D + c] += s * r[ri + c];
        }
      }
      for (let c = 0; c < D; c++) dr[ri + c] = row[c];
    }
    for (let n = 0; n < T * D; n++) drHat[off + n] = acc[n];
  }
}

/** out = masked softmax(scale · q kᵀ) v, with the rows' log-sum-exp. */
export function attentionRef(q: Arr, k: Arr, v: Arr, out: Arr, lse: Arr, scale: number, d: MixerDims, docs: Arr | null): void {
  const { B, H, T, D } = d;
  const rowLse = new Float64Array(T);
  const row = new Float64Array(D);
  for (let bh = 0; bh < B * H; bh++) {
    const off = bh * T * D;
    const visible = maskFor(d, docs, Math.floor(bh / H));
    const P = probabilities(q, k, off, T, D, scale, visible, rowLse);
    for (let i = 0; i < T; i++) {
      row.fill(0);
      for (let j = 0; j <= i; j++) {
        const p = P[i * T + j];
        if (p === 0) continue;
        for (let c = 0; c < D; c++) row[c] += p * v[off + j * D + c];
      }
      for (let c = 0; c < D; c++) out[off + i * D + c] = row[c];
      lse[bh * T + i] = rowLse[i];
    }
  }
}

/**
 * The adjoint of attentionRef: ∂v = Pᵀ G; dP = G vᵀ; dS = P⊙(dP − rowsum(P⊙dP));
 * ∂q = scale · dS k; ∂k = scale · dSᵀ q. The row sums are recomputed in float64, not taken from out.
 */
export function attentionBackwardRef(q: Arr, k: Arr, v: Arr, _out: Arr, _lse: Arr, g: Arr, scale: number,
  dq: Arr, dk: Arr, dv: Arr, d: MixerDims, docs: Arr | null): void {
  const { B, H, T, D } = d;
  const rowLse = new Float64Array(T);
  const dS = new Float64Array(T);
  const dkAcc = new Float64Array(T * D), dvAcc = new Float64Array(T * D);
  const row = new Float64Array(D);
  for (let bh = 0; bh < B * H; bh++) {
    const off = bh * T * D;
    const visible = maskFor(d, docs, Math.floor(bh / H));
    const P = probabilities(q, k, off, T, D, scale, visible, rowLse);
    dkAcc.fill(0); dvAcc.fill(0);
    for (let i = 0; i < T; i++) {
      const gi = off + i * D;
      let rowDot = 0;
      for (let j = 0; j <= i; j++) {
        const p = P[i * T + j];
        if (p === 0) { dS[j] = 0; continue; }
        let dp = 0;
        for (let c = 0; c < D; c++) dp += g[gi + c] * v[off + j * D + c];
        dS[j] = dp;
        rowDot += p * dp;
      }
      row.fill(0);
      for (let j = 0; j <= i; j++) {
        const p = P[i * T + j];
        if (p === 0) continue;
        const s = scale * p * (dS[j] - rowDot);
        const kj = off + j * D;
        for (let c = 0; c < D; c++) {
          row[c] += s * k[kj + c];
          dkAcc[j * D + c] += s * q[gi + c];
          dvAcc[j * D + c] += p * g[gi + c];
        }
      }
      for (let c = 0; c < D; c++) dq[gi + c] = row[c];
    }
    for (let n = 0; n < T * D; n++) { dk[off + n] = dkAcc[n]; dv[off + n] = dvAcc[n]; }
  }
}

// ---- Cubit's elementwise stages: r̂ normalisation and LRR-scaled values ----
// Rows are (B·H·T) of D; row i belongs to head ⌊i / T⌋ mod H. Per-row sums and the per-head
// gradients accumulate in float64, in row order.

/** 1 / max(‖r_i‖, eps) and whether the clamp is active (‖r_i‖² < eps²: no gradient through the norm). */
function invNorm(r: Arr, off: number, D: number, eps: number): [number, boolean] {
  let ss = 0;
  for (let j = 0; j < D; j++) ss += r[off + j] * r[off + j];
  // As maximum(‖r‖², eps²): the norm wins ties; NaN stays NaN.
  const clamped = !(ss >= eps * eps) && !Number.isNaN(ss);
  return [1 / Math.sqrt(clamped ? eps * eps : ss), clamped];
}

export function normalizeReferenceRef(r: Arr, alpha: Arr, out: Arr, B: number, H: number, T: number, D: number, eps: number): void {
  for (let i = 0; i < B * H * T; i++) {
    const off = i * D, a = alpha[Math.floor(i / T) % H];
    const [s] = invNorm(r, off, D, eps);
    for (let j = 0; j < D; j++) out[off + j] = a * s * r[off + j];
  }
}

/** dr = α s (g − [not clamped] s² (g·r) r), dα_h = Σ_rows s (g·r), with s = 1 / max(‖r‖, eps). */
export function normalizeReferenceBackwardRef(r: Arr, alpha: Arr, dy: Arr, dr: Arr | null, dAlpha: Arr | null,
  B: number, H: number, T: number, D: number, eps: number): void {
  const da = new Float64Array(H);
  for (let i = 0; i < B * H * T; i++) {
    const off = i * D, h = Math.floor(i / T) % H, a = alpha[h];
    const [s, clamped] = invNorm(r, off, D, eps);
    let gr = 0;
    for (let j = 0; j < D; j++) gr += dy[off + j] * r[off + j];
    da[h] += s * gr;
    if (!dr) continue;
    const c = clamped ? 0 : a * s * s * s * gr;
    for (let j = 0; j < D; j++) dr[off + j] = a * s * dy[off + j] - c * r[off + j];
  }
  if (dAlpha) for (let h = 0; h < H; h++) dAlpha[h] = da[h];
}

export function lrrValuesRef(v: Arr, z: Arr, lower: Arr, range: Arr, out: Arr, B: number, H: number, T: number, D: number): void {
  for (let i = 0; i < B * H * T; i++) {
    const off = i * D, h = Math.floor(i / T) % H;
    const s = lower[h] + range[h] * sigmoid(z[i]);
    for (let j = 0; j < D; j++) out[off + j] = s * v[off + j];
  }
}

/** dv = s g, dz = range σ(1 − σ) (g·v), dLower_h = Σ_rows g·v, dRange_h = Σ_rows σ (g·v). */
export function lrrValuesBackwardRef(v: Arr, z: Arr, lower: Arr, range: Arr, dy: Arr,
  dv: Arr | null, dz: Arr | null, dLower: Arr | null, dRange: Arr | null, B: number, H: number, T: number, D: number): void {
  const dl = new Float64Array(H), drg = new Float64Array(H);
  for (let i = 0; i < B * H * T; i++) {
    const off = i * D, h = Math.floor(i / T) % H;
    const sg = sigmoid(z[i]), s = lower[h] + range[h] * sg;
    let gv = 0;
    for (let j = 0; j < D; j++) gv += dy[off + j] * v[off + j];
    dl[h] += gv;
    drg[h] += sg * gv;
    if (dz) dz[i] = range[h] * sg * (1 - sg) * gv;
    if (dv) for (let j = 0; j < D; j++) dv[off + j] = s * dy[off + j];
  }
  for (let h = 0; h < H; h++) {
    if (dLower) dLower[h] = dl[h];
    if (dRange) dRange[h] = drg[h];
  }
}

/** Cubit's LRR inputs as arrays (Backend.LrrStorages). */
export interface LrrArrs { logits: Arr; lower: Arr; range: Arr }

/**
 * Cubit's solve with its stages (Backend.cubitSolve) as the composition it fuses:
 * rHat = normalizeReference(r), Y = lrrValues(v) (or v), then krrSolve.
 */
export function cubitSolveRef(r: Arr, refScale: Arr, v: Arr, lrr: LrrArrs | null, logLambda: Arr, eps: number,
  x: Arr, rHat: Arr, lse: Arr, wxMinusX: Arr, d: MixerDims, docs: Arr | null): void {
  const { B, H, T, D } = d;
  normalizeReferenceRef(r, refScale, rHat, B, H, T, D, eps);
  let y = v;
  if (lrr) {
    y = new Float64Array(v.length);
    lrrValuesRef(v, lrr.logits, lrr.lower, lrr.range, y, B, H, T, D);
  }
  krrSolveRef(r, rHat, y, logLambda, x, lse, wxMinusX, d, docs);
}

/**
 * Its backward as the chain rule through that composition; the per-head gradients are left per
 * (b, h) row (B·H), as the kernel gives them.
 */
export function cubitSolveBackwardRef(r: Arr, refScale: Arr, v: Arr, lrr: LrrArrs | null, logLambda: Arr, eps: number,
  x: Arr, rHat: Arr, lse: Arr, _wxMinusX: Arr, g: Arr, dr: Arr, dv: Arr, dRefScale: Arr,
  lrrGrads: { dLogits: Arr; dLower: Arr; dRange: Arr } | null, dLambda: Arr, d: MixerDims, docs: Arr | null): void {
  const { B, H, T, D } = d;
  const n = B * H * T * D, drHat = new Float64Array(n), dy = new Float64Array(n), drNorm = new Float64Array(T * D);
  krrSolveBackwardRef(r, rHat, logLambda, x, lse, g, dr, drHat, dy, dLambda, d, docs);
  const one = new Float64Array(1), lo = new Float64Array(1), ra = new Float64Array(1);
  for (let bh = 0; bh < B * H; bh++) {
    const h = bh % H, rows = [bh * T * D, (bh + 1) * T * D] as const;
    normalizeReferenceBackwardRef(r.subarray(...rows), refScale.subarray(h, h + 1), drHat.subarray(...rows), drNorm, one,
      1, 1, T, D, eps);
    for (let i = 0; i < T * D; i++) dr[rows[0] + i] += drNorm[i];
    dRefScale[bh] = one[0];
    if (!lrr || !lrrGrads) continue;
    lrrValuesBackwardRef(v.subarray(...rows), lrr.logits.subarray(bh * T, (bh + 1) * T), lrr.lower.subarray(h, h + 1),
      lrr.range.subarray(h, h + 1), dy.subarray(...rows), dv.subarray(...rows), lrrGrads.dLogits.subarray(bh * T, (bh + 1) * T),
      lo, ra, 1, 1, T, D);
    lrrGrads.dLower[bh] = lo[0];
    lrrGrads.dRange[bh] = ra[0];
  }
  if (!lrr) for (let i = 0; i < n; i++) dv[i] = dy[i];
}
