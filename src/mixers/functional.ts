// The token mixers as differentiable functions of (B, H, T, D) tensors, composed from ops: Cubit
// (CUBIT.md §2) and the local linear regression variant (§5). The modules with projections, rotary
// embeddings and decode caches are built on these.
//
// Memory: like the composite ops, each runs in its own tidy(): only the results survive into the
// caller's scope; the gradient nodes keep the storages their backward needs.
import { tidy } from '../core/engine.ts';
import type { Tensor } from '../core/tensor.ts';
import { add, mul, sub } from '../ops/elementwise.ts';
import { matmul } from '../ops/matmul.ts';
import {
  checkMaskOptions, cubitSolve, mixerMask, requireFinite, requireHeadParam, requireLrrLogits, requireMixerTensor, requirePositiveFinite,
  requireSameAs, softmaxAttention, solveSpd, type MixerOptions,
} from '../ops/mixers.ts';
import { maskedSoftmax, softmax } from '../ops/nn.ts';
import { sum } from '../ops/reduce.ts';
import { reshape, squeeze, unsqueeze } from '../ops/shape.ts';
import { requireFloat } from '../ops/util.ts';
import { formatShape } from '../core/shape.ts';
import { tensorFrom } from '../core/tensor.ts';

/** The per-token and per-head inputs of Cubit (CUBIT.md §2), all one float dtype. */
export interface CubitInputs {
  /** Queries, keys, values: (B, H, T, D). */
  q: Tensor; k: Tensor; v: Tensor;
  /** Reference vectors (B, H, T, D); omitted/null: the shared-key ablation r = k. */
  r?: Tensor | null;
  /**
   * LRR logits z (B, H, T): s = lower + range · sigmoid(z) rescales each value. Omitted/null: LRR
   * off (s ≡ 1, the ablation), and lrrLower / lrrRange are not needed.
   */
  lrrLogits?: Tensor | null;
  /** Per head (H): α (reference scale), log λ (ridge), LRR lower bound and range. */
  refScale: Tensor; logLambda: Tensor; lrrLower?: Tensor | null; lrrRange?: Tensor | null;
}

/** Options of {@link cubitAttention}. */
export interface CubitOptions extends MixerOptions {
  /** The floor of ‖r‖ when normalising r̂ (default 1e-6, as the reproduction). */
  normEps?: number;
}

/** What {@link cubitAttention} returns. */
export interface CubitResult {
  /** A X: the mixer's output per head (B, H, T, D), before heads are merged and W_o applied. */
  output: Tensor;
  /**
   * X = (W + λI)⁻¹ (s ⊙ v) (B, H, T, D): the values attention reads. Returned because decoding
   * caches it (CUBIT.md §4) and because α → 0 can make it grow like O(t)·|v| (worth watching).
   */
  solution: Tensor;
}

/**
 * Cubit, per head (CUBIT.md §2), composed from ops and differentiable in every input:
 *
 *     r̂ = α · r / max(‖r‖₂, eps)           (one side normalised; r = k when r is omitted)
 *     s = lower + range · sigmoid(z),  Y = s ⊙ v
 *     X = causalKrrSolve(r, r̂, Y, log λ)     (W = masked softmax(r r̂ᵀ), no 1/√D)
 *     out = softmaxAttention(q, k, X)        (scale 1/√D)
 *
 * (The first three lines run as one op, cubitSolve.)
 *
 * Returns both the output and the solution X. The same mask (causal, options.window, options.docIds)
 * applies to W and to attention. Per-head parameters must be finite (checked: a host read of H values).
 * α is used as given: α ≥ 0 keeps every pivot W_ii + λ ≳ 1/(keys seen), while α < 0 makes X grow
 * exponentially along the sequence (docs/MIXERS.md, "Conditioning"); CubitMixer passes α = |refScale|.
 */
export function cubitAttention(inputs: CubitInputs, options: CubitOptions = {}): CubitResult {
  const op = 'cubitAttention';
  const { q, k, v, lrrLogits, refScale, logLambda, lrrLower, lrrRange } = inputs;
  const r = inputs.r ?? k;
  requireMixerTensor(op, 'q', q);
  requireSameAs(op, 'k', k, q, 'q');
  requireSameAs(op, 'v', v, q, 'q');
  if (inputs.r) requireSameAs(op, 'r', inputs.r, q, 'q');
  const [B, H, T, D] = q.shape;
  requireHeadParam(op, 'refScale', refScale, H, q.dtype);
  requireHeadParam(op, 'logLambda', logLambda, H, q.dtype);
  if (lrrLogits) {
    requireLrrLogits(op, lrrLogits, q, 'q');
    if (!lrrLower || !lrrRange) throw new Error(`${op}: lrrLower and lrrRange are required with lrrLogits`);
    requireHeadParam(op, 'lrrLower', lrrLower, H, q.dtype);
    requireHeadParam(op, 'lrrRange', lrrRange, H, q.dtype);
  }
  const eps = options.normEps ?? 1e-6;
  requirePositiveFinite(op, 'normEps', eps);
  checkMaskOptions(op, B, T, options);

  return tidy(() => {
    // r̂ and s ⊙ v are formed inside the solve's kernel (cubitSolve = normalizeReference,
    // lrrValues and causalKrrSolve in one op).
    const lrr = lrrLogits ? { logits: lrrLogits, lower: lrrLower!, range: lrrRange! } : null;
    const mask = { window: options.window, docIds: options.docIds };
    const solution = cubitSolve(r, refScale, v, lrr, logLambda, { ...mask, eps });
    const output = softmaxAttention(q, k, solution, { ...mask, scale: 1 / Math.sqrt(D) });
    return { output, solution };
  });
}

/** Options of {@link localLinearAttention}. */
export interface LocalLinearOptions extends MixerOptions {
  /** Ridge ρ > 0 of the local covariance (default 1): a number, or an (H) tensor (differentiable). */
  ridge?: number | Tensor;
  /** Attention logit scale (default 1/√D). */
  scale?: number;
  /**
   * Low-rank projection P for the linear term: (D, m) shared by the heads or (H, D, m) per head.
   * The weights p_ij use the full q·k; the local fit regresses on k' = k P at q' = q P. Omitted:
   * P = I (m = D). Differentiable.
   */
  projection?: Tensor | null;
  /**
   * The coordinates of the local linear fit given directly: features.q (B, H, T, m) for the
   * queries and features.k (B, H, T, m) for the keys (e.g. a projection of unrotated q, k turned
   * by an m-dimensional rotary, so that the fit depends on relative positions only). The weights
   * p_ij still use q·k. Excludes `projection`. Differentiable.
   */
  features?: { q: Tensor; k: Tensor } | null;
}

/**
 * Local linear regression attention (CUBIT.md §5). With p_ij = masked softmax(scale · q_i·k_j):
 *
 *     out_i = v̄_i − (k̄'_i − q'_i)ᵀ (C_i + ρI)⁻¹ B_i,   k' = k P, q' = q P
 *
 * where k̄'_i, v̄_i are p-weighted means and C_i, B_i the p-weighted covariances of k' (and v) about
 * k̄'_i. It is computed as out_i = v̄_i − Σ_j p_ij (a_i·(k'_j − k̄'_i)) v_j with
 * a_i = (C_i + ρI)⁻¹ (k̄'_i − q'_i), an m-vector per query, so the weights p_ij(1 − a_i·(k'_j − k̄'_i))
 * visibly sum to one. C_i is formed as E_p[k' k'ᵀ] − k̄' k̄'ᵀ (no T²·m tensor of centred keys).
 *
 * A dense composite of ops: O(B·H·T²·(m² + D)) time and O(B·H·T·(T + m²)) memory, with a batched
 * m×m Cholesky solve on the device (solveSpd). Meant for experiments at modest T, not long contexts.
 * In float32 the uncentred second moment loses precision when keys sit far from the origin
 * relative to their spread; ρ bounds the damage. Differentiable in q, k, v, ridge, projection and
 * features.
 */
export function localLinearAttention(q: Tensor, k: Tensor, v: Tensor, options: LocalLinearOptions = {}): Tensor {
  const op = 'localLinearAttention';
  requireMixerTensor(op, 'q', q);
  requireSameAs(op, 'k', k, q, 'q');
  const [B, , T] = q.shape;
  const params = checkLocalLinear(op, q, k, v, options);
  checkMaskOptions(op, B, T, options);
  return tidy(() => localLinearCore(q, k, v, mixerMask(B, T, options, q.dtype), params));
}

/**
 * The decode form of localLinearAttention: queries q (B, H, n, D) that see every key of k (B, H, L, D)
 * and v (B, H, L, Dv) (a decode step: the cache holds exactly the visible keys, the query's own
 * included). Same formula, ridge and projection; no mask.
 */
export function localLinearDecode(q: Tensor, k: Tensor, v: Tensor, options: Omit<LocalLinearOptions, keyof MixerOptions> = {}): Tensor {
  const op = 'localLinearDecode';
  requireMixerTensor(op, 'q', q);
  requireMixerTensor(op, 'k', k);
  if (k.shape[0] !== q.shape[0] || k.shape[1] !== q.shape[1] || k.shape[3] !== q.shape[3] || k.dtype !== q.dtype) {
    throw new Error(`${op}: k ${k.describe()} must be (B, H, L, D) = [${q.shape[0]}, ${q.shape[1]}, L, ${q.shape[3]}] in ${q.dtype}`);
  }
  const params = checkLocalLinear(op, q, k, v, options);
  return tidy(() => localLinearCore(q, k, v, null, params));
}

interface LocalLinearParams {
  scale: number; ridge: number | Tensor; projection: Tensor | null; features: { q: Tensor; k: Tensor } | null; m: number;
}

/** Validates v, scale, ridge and projection against q (B, H, ·, D) and k (B, H, L, D). */
function checkLocalLinear(op: string, q: Tensor, k: Tensor, v: Tensor, options: Omit<LocalLinearOptions, keyof MixerOptions>): LocalLinearParams {
  const [B, H, , D] = q.shape;
  const L = k.shape[2];
  requireMixerTensor(op, 'v', v);
  if (v.shape[0] !== B || v.shape[1] !== H || v.shape[2] !== L) {
    throw new Error(`${op}: v must be (B, H, T, Dv) = [${B}, ${H}, ${L}, …] like k, got ${formatShape(v.shape)}`);
  }
  if (v.dtype !== q.dtype) throw new Error(`${op}: v is ${v.dtype} but q is ${q.dtype}; cast one first`);
  const scale = options.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) throw new Error(`${op}: scale must be finite, got ${scale}`);
  const ridge = options.ridge ?? 1;
  if (typeof ridge === 'number') {
    requirePositiveFinite(op, 'ridge', ridge);
  } else {
    requireHeadParam(op, 'ridge', ridge, H, q.dtype);
    ridge.backend.checkValues(ridge.storage, H, { kind: 'positive' }, op, 'ridge');
  }
  const P = options.projection ?? null;
  let m = D;
  if (P) {
    requireFloat(op, 'projection', P);
    const ok = (P.rank === 2 && P.shape[0] === D) || (P.rank === 3 && P.shape[0] === H && P.shape[1] === D);
    if (!ok || P.shape[P.rank - 1] < 1) throw new Error(`${op}: projection must be (D, m) = [${D}, m] or (H, D, m) = [${H}, ${D}, m], got ${formatShape(P.shape)}`);
    if (P.dtype !== q.dtype) throw new Error(`${op}: projection is ${P.dtype} but q is ${q.dtype}; cast one first`);
    m = P.shape[P.rank - 1];
  }
  const F = options.features ?? null;
  if (F) {
    if (P) throw new Error(`${op}: give projection or features, not both`);
    for (const [name, f, len] of [['features.q', F.q, q.shape[2]], ['features.k', F.k, L]] as const) {
      requireMixerTensor(op, name, f);
      if (f.shape[0] !== B || f.shape[1] !== H || f.shape[2] !== len) throw new Error(`${op}: ${name} must be (B, H, T, m) = [${B}, ${H}, ${len}, m], got ${formatShape(f.shape)}`);
      if (f.dtype !== q.dtype) throw new Error(`${op}: ${name} is ${f.dtype} but q is ${q.dtype}; cast one first`);
    }
    if (F.q.shape[3] !== F.k.shape[3]) throw new Error(`${op}: features.q and features.k must share m, got ${F.q.shape[3]} and ${F.k.shape[3]}`);
    m = F.k.shape[3];
  }
  return { scale, ridge, projection: P, features: F, m };
}

/** §5 for queries q (B, H, n, D) over keys k (B, H, L, D), visible (…, n, L) or null for all. */
function localLinearCore(q: Tensor, k: Tensor, v: Tensor, visible: Tensor | null, { scale, ridge, projection: P, features: F, m }: LocalLinearParams): Tensor {
  const [B, H, n, D] = q.shape;
  const L = k.shape[2];
  const logits = mul(matmul(q, k, { transB: true }), scale);
  const p = visible ? maskedSoftmax(logits, visible) : softmax(logits); // (B, H, n, L)
  const proj = (x: Tensor): Tensor => (P ? matmul(x, P.rank === 3 ? reshape(P, [1, H, D, m]) : P) : x);
  const kp = F ? F.k : proj(k), qp = F ? F.q : proj(q); // (B, H, L, m), (B, H, n, m)
  const kBar = matmul(p, kp); // (B, H, n, m)
  const vBar = matmul(p, v); // (B, H, n, Dv)
  const outer = reshape(mul(unsqueeze(kp, -1), unsqueeze(kp, -2)), [B, H, L, m * m]);
  const second = reshape(matmul(p, outer), [B, H, n, m, m]);
  const cov = sub(second, mul(unsqueeze(kBar, -1), unsqueeze(kBar, -2)));
  const eye = eyeLike(m, q);
  const ridgeI = typeof ridge === 'number' ? mul(eye, ridge) : mul(eye, reshape(ridge, [1, H, 1, 1, 1]));
  const a = squeeze(solveSpd(add(cov, ridgeI), unsqueeze(sub(kBar, qp), -1)), -1); // (B, H, n, m)
  const aK = matmul(a, kp, { transB: true }); // a_i·k'_j (B, H, n, L)
  const aKBar = sum(mul(a, kBar), -1, { keepDims: true }); // a_i·k̄'_i (B, H, n, 1)
  const correction = matmul(mul(p, sub(aK, aKBar)), v);
  return sub(vBar, correction);
}

function eyeLike(m: number, like: Tensor): Tensor {
  const e = new Float64Array(m * m);
  for (let i = 0; i < m; i++) e[i * m + i] = 1;
  return tensorFrom(e, [m, m], like.dtype, like.backend);
}
