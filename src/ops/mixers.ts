// Sequence-mixer ops (CUBIT.md §2–§3): fused masked softmax attention and the causal KRR solve, each
// one forward kernel and one backward kernel; plus a small batched SPD solve (Cholesky) that the
// local linear mixer needs. Tensors are (B, H, T, D) with heads on the second axis; per-head
// parameters are (H).
import { hasKernel, type Backend, type MixerDims } from '../core/backend.ts';
import type { DType } from '../core/dtype.ts';
import { getBackend, noGrad, tidy } from '../core/engine.ts';
import { formatShape, sameShape } from '../core/shape.ts';
import { empty, record, tensorFrom, type Tensor } from '../core/tensor.ts';
import { full } from './creation.ts';
import { add, eq, exp, maximum, mul, neg, rsqrt, sigmoid, sqrt, square, sub, where } from './elementwise.ts';
import { matmul } from './matmul.ts';
import { softmax } from './nn.ts';
import { sum } from './reduce.ts';
import { concat, reshape, slice, transpose } from './shape.ts';
import { backendOf, expandTo, requireFloat } from './util.ts';

/** The mask shared by every mixer: causal (j ≤ i), narrowed by a window and by documents. */
export interface MixerOptions {
  /** Sliding window w: query i sees keys j ≥ i − w + 1. A positive integer; omitted/null: none. */
  window?: number | null;
  /**
   * Packed documents: int32 ids of shape (B, T), or (T) shared by every batch row. Query i sees key
   * j only when their ids are equal. Packing makes each id one contiguous run of a row ("same id"
   * is then "since the current document began"); an id may also recur, the rule is the same.
   */
  docIds?: Tensor | null;
}

/** Options of {@link softmaxAttention}. */
export interface AttentionOptions extends MixerOptions {
  /** Logit scale (default 1/√D). */
  scale?: number;
}

/** A validated mask: the kernel dims, and the (B, T) ids tensor when this op had to expand one. */
export interface ResolvedMask {
  dims: MixerDims;
  /** The (B, T) int32 ids the kernels read, or null. */
  docIds: Tensor | null;
  /** True when docIds was made here (expanded from (T)) and the caller must dispose it. */
  owned: boolean;
}

/** Checks that x is a float (B, H, T, D) tensor with every dimension ≥ 1. */
export function requireMixerTensor(op: string, name: string, x: Tensor): void {
  requireFloat(op, name, x);
  if (x.rank !== 4 || x.shape.some((d) => d < 1)) {
    throw new Error(`${op}: ${name} must be (B, H, T, D) with every dimension ≥ 1, got ${formatShape(x.shape)}`);
  }
}

export function requireSameAs(op: string, name: string, x: Tensor, ref: Tensor, refName: string): void {
  if (!sameShape(x.shape, ref.shape)) throw new Error(`${op}: ${name} ${formatShape(x.shape)} must have the shape of ${refName} ${formatShape(ref.shape)}`);
  if (x.dtype !== ref.dtype) throw new Error(`${op}: ${name} is ${x.dtype} but ${refName} is ${ref.dtype}; cast one first`);
}

/** Checks a per-head parameter: shape (H), the dtype of `ref`, and no NaN/±∞ (checked where it lives). */
export function requireHeadParam(op: string, name: string, p: Tensor, H: number, dtype: DType): void {
  requireHeadShape(op, name, p, H, dtype);
  requireFinite(op, name, p);
}

/** Checks a per-head parameter's shape (H) and dtype only (no host read). */
export function requireHeadShape(op: string, name: string, p: Tensor, H: number, dtype: DType): void {
  if (p.rank !== 1 || p.shape[0] !== H) throw new Error(`${op}: ${name} must have shape [${H}] (one per head), got ${formatShape(p.shape)}`);
  if (p.dtype !== dtype) throw new Error(`${op}: ${name} is ${p.dtype} but the mixer inputs are ${dtype}; cast one first`);
}

/** Throws unless x is a positive finite number (eps, ridge and other scalar options). */
export function requirePositiveFinite(op: string, name: string, x: number): void {
  if (!(Number.isFinite(x) && x > 0)) throw new Error(`${op}: ${name} must be a positive finite number, got ${x}`);
}

/** Throws naming the first NaN/±∞ entry of a tensor: checked by its backend, no host read. */
export function requireFinite(op: string, name: string, p: Tensor): void {
  p.backend.checkValues(p.storage, p.size, { kind: 'finite' }, op, name);
}

/** options.docIds when it is a live tensor, null when absent; throws for anything else. */
function docIdsTensor(op: string, options: MixerOptions): Tensor | null {
  const ids = options.docIds;
  if (ids === undefined || ids === null) return null;
  if ((ids as Tensor | { isTensor?: unknown }).isTensor !== true) throw new Error(`${op}: docIds must be an int32 tensor of shape (B, T) or (T)`);
  ids.assertLive(op);
  return ids;
}

/** Validates window and docIds against (B, T) (docIds: its values too). */
export function checkMaskOptions(op: string, B: number, T: number, options: MixerOptions): void {
  const { window } = options;
  if (window !== undefined && window !== null && !(Number.isInteger(window) && window > 0)) {
    throw new Error(`${op}: window must be a positive integer (or omitted for none), got ${window}`);
  }
  const docIds = docIdsTensor(op, options);
  if (!docIds) return;
  if (docIds.dtype !== 'int32') throw new Error(`${op}: docIds must be int32, got ${docIds.dtype}${formatShape(docIds.shape)}`);
  const bt = docIds.rank === 2 && docIds.shape[0] === B && docIds.shape[1] === T;
  const t = docIds.rank === 1 && docIds.shape[0] === T;
  if (!bt && !t) throw new Error(`${op}: docIds must have shape [${B}, ${T}] or [${T}] (B, T of the inputs), got ${formatShape(docIds.shape)}`);
}

/**
 * Validates the mask options and builds the kernels' dims. A (T) docIds is expanded to (B, T)
 * (then `owned`: the caller disposes it once its gradient node holds the storage).
 */
export function resolveMask(op: string, B: number, H: number, T: number, D: number, options: MixerOptions): ResolvedMask {
  checkMaskOptions(op, B, T, options);
  const docIds = options.docIds ?? null;
  let ids: Tensor | null = null, owned = false;
  if (docIds && docIds.rank === 2) ids = docIds;
  else if (docIds) { ids = expandTo(docIds, [B, T]); owned = true; }
  const dims: MixerDims = { B, H, T, D, window: options.window ?? 0, docIds: ids?.storage ?? null };
  return { dims, docIds: ids, owned };
}

/**
 * Masked softmax attention: out = softmax(scale · q kᵀ + mask) v over (B, H, T, D) tensors, with a
 * causal mask narrowed by options.window and options.docIds. Differentiable in q, k and v.
 */
export function softmaxAttention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  const op = 'softmaxAttention';
  const be = backendOf(op, q, k, v, docIdsTensor(op, options));
  requireMixerTensor(op, 'q', q);
  requireSameAs(op, 'k', k, q, 'q');
  requireSameAs(op, 'v', v, q, 'q');
  const [B, H, T, D] = q.shape;
  const scale = options.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) throw new Error(`${op}: scale must be finite, got ${scale}`);
  const mask = resolveMask(op, B, H, T, D, options);
  const res = hasKernel(be, 'attention') && hasKernel(be, 'attentionBackward')
    ? attentionFused(be, q, k, v, scale, mask)
    : tidy(() => matmul(softmax(where(resolvedMask(mask, q.dtype, be), mul(matmul(q, k, { transB: true }), scale), -Infinity)), v));
  if (mask.owned) mask.docIds!.dispose();
  return res;
}

function attentionFused(be: Backend & Required<Pick<Backend, 'attention' | 'attentionBackward'>>, q: Tensor, k: Tensor, v: Tensor,
  scale: number, mask: ResolvedMask): Tensor {
  const d = mask.dims;
  const out = empty(q.shape, q.dtype, be);
  const state = be.attention(q.storage, k.storage, v.storage, out.storage, scale, d);
  const saved = [q, k, v, out];
  if (mask.docIds) saved.push(mask.docIds);
  return record(out, 'softmaxAttention', [q, k, v], saved, (g) => {
    const dq = empty(q.shape, q.dtype, be), dk = empty(q.shape, q.dtype, be), dv = empty(q.shape, q.dtype, be);
    be.attentionBackward(q.storage, k.storage, v.storage, out.storage, state, g.storage, scale, dq.storage, dk.storage, dv.storage, d);
    return [dq, dk, dv];
  }, state);
}

/**
 * A (rows or 1, 1, T, T) 0/1 mask in `dtype`, made on the device: a constant causal/window
 * pattern, times the equality of the (rows, T) document ids (no host read).
 */
function maskTensor(T: number, window: number, ids: Tensor | null, dtype: DType, be: Backend): Tensor {
  const pattern = new Float64Array(T * T);
  for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) if (window <= 0 || j > i - window) pattern[i * T + j] = 1;
  const causal = tensorFrom(pattern, [1, 1, T, T], dtype, be);
  if (!ids) return causal;
  const rows = ids.shape[0];
  return tidy(() => mul(causal, eq(reshape(ids, [rows, 1, T, 1]), reshape(ids, [rows, 1, 1, T]))));
}

/** The mask of a resolved mixer call (see maskTensor). */
const resolvedMask = (m: ResolvedMask, dtype: DType, be: Backend): Tensor => maskTensor(m.dims.T, m.dims.window, m.docIds, dtype, be);

/** The (1, 1, n, n) lower-triangular 0/1 matrix (n of the trailing axes): what a triangular solve reads. */
function lowerOnes(n: number, dtype: DType, be: Backend): Tensor {
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) v[i * n + j] = 1;
  return tensorFrom(v, [1, 1, n, n], dtype, be);
}

/**
 * X = L⁻¹ B for a batch of lower-triangular L (…, n, n) (entries above the diagonal are not read)
 * and B (…, n, k) with the same leading axes: the core kernel the KRR composites solve with.
 * Gradient: ∂B = L⁻ᵀ G, ∂L = −tril(∂B Xᵀ).
 */
export function solveLowerTriangular(l: Tensor, b: Tensor): Tensor {
  const op = 'solveLowerTriangular';
  const be = backendOf(op, l, b);
  const { batch, n, k } = solveShapes(op, 'l', l, b);
  const x = empty(b.shape, b.dtype, be);
  be.triangularSolve(l.storage, b.storage, x.storage, batch, n, k, false);
  return record(x, op, [l, b], [l, x], (g) => {
    const db = empty(b.shape, b.dtype, be);
    be.triangularSolve(l.storage, g.storage, db.storage, batch, n, k, true);
    const dl = l.requiresGrad ? neg(mul(matmul(db, x, { transB: true }), lowerOnes(n, l.dtype, be))) : null;
    return [dl, db];
  });
}

/** Checks logLambda (H): finite, and λ = exp(logLambda) finite too (by its backend, no host read). */
function requireLogLambda(op: string, logLambda: Tensor, H: number, dtype: DType): void {
  requireHeadParam(op, 'logLambda', logLambda, H, dtype);
  // λ = ∞ would zero X and make its gradient NaN; λ = 0 is fine (W's diagonal is positive).
  logLambda.backend.checkValues(logLambda.storage, H, { kind: 'expFinite' }, op, 'logLambda');
}

/** Checks LRR logits against the (B, H, T, D) tensor `of` named `ofName`: shape (B, H, T), same dtype. */
export function requireLrrLogits(op: string, lrrLogits: Tensor, of: Tensor, ofName: string): void {
  const [B, H, T] = of.shape;
  requireFloat(op, 'lrrLogits', lrrLogits);
  if (lrrLogits.rank !== 3 || lrrLogits.shape[0] !== B || lrrLogits.shape[1] !== H || lrrLogits.shape[2] !== T) {
    throw new Error(`${op}: lrrLogits must have shape [${B}, ${H}, ${T}] (B, H, T of ${ofName}), got ${formatShape(lrrLogits.shape)}`);
  }
  if (lrrLogits.dtype !== of.dtype) throw new Error(`${op}: lrrLogits is ${lrrLogits.dtype} but ${ofName} is ${of.dtype}; cast one first`);
}

/**
 * The causal KRR solve of CUBIT.md §2: X = (W + λI)⁻¹ Y with W = masked row-softmax(r r̂ᵀ) (no
 * 1/√D: the scale lives in r̂) and λ = exp(logLambda[h]) per head. r, rHat, y are (B, H, T, D),
 * logLambda is (H). Differentiable in all four; ∂L/∂logLambda = λ · Σ_batch ∂L/∂λ.
 */
export function causalKrrSolve(r: Tensor, rHat: Tensor, y: Tensor, logLambda: Tensor, options: MixerOptions = {}): Tensor {
  const op = 'causalKrrSolve';
  const be = backendOf(op, r, rHat, y, logLambda, docIdsTensor(op, options));
  requireMixerTensor(op, 'r', r);
  requireSameAs(op, 'rHat', rHat, r, 'r');
  requireSameAs(op, 'y', y, r, 'r');
  const [B, H, T, D] = r.shape;
  requireLogLambda(op, logLambda, H, r.dtype);
  const mask = resolveMask(op, B, H, T, D, options);
  const res = krrSolveOp(be, r, rHat, y, logLambda, mask);
  if (mask.owned) mask.docIds!.dispose();
  return res;
}

/** causalKrrSolve on validated inputs: the fused kernel pair, or the composite of core kernels. */
function krrSolveOp(be: Backend, r: Tensor, rHat: Tensor, y: Tensor, logLambda: Tensor, mask: ResolvedMask): Tensor {
  const op = 'causalKrrSolve';
  const d = mask.dims;
  const { B, H, T } = d;
  if (!hasKernel(be, 'krrSolve') || !hasKernel(be, 'krrSolveBackward')) {
    // A = W + λI is lower triangular under the causal mask: one triangular solve.
    return tidy(() => {
      const w = softmax(where(resolvedMask(mask, r.dtype, be), matmul(r, rHat, { transB: true }), -Infinity));
      const eye = tensorFrom(Float64Array.from({ length: T * T }, (_, i) => (i % (T + 1) === 0 ? 1 : 0)), [1, 1, T, T], r.dtype, be);
      return solveLowerTriangular(add(w, mul(eye, reshape(exp(logLambda), [1, H, 1, 1]))), y);
    });
  }
  const x = empty(r.shape, r.dtype, be);
  const state = be.krrSolve(r.storage, rHat.storage, y.storage, logLambda.storage, x.storage, d);
  const saved = [r, rHat, logLambda, x];
  if (mask.docIds) saved.push(mask.docIds);
  return record(x, op, [r, rHat, y, logLambda], saved, (g) => {
    const dr = empty(r.shape, r.dtype, be), drHat = empty(r.shape, r.dtype, be), dy = empty(r.shape, r.dtype, be);
    const dLambda = empty([B, H], r.dtype, be);
    be.krrSolveBackward(r.storage, rHat.storage, logLambda.storage, x.storage, state, g.storage,
      dr.storage, drHat.storage, dy.storage, dLambda.storage, d);
    // ∂L/∂logλ = λ · ∂L/∂λ, summed over the batch rows that share the head's λ.
    const dLogLambda = logLambda.requiresGrad ? mul(sum(dLambda, 0), exp(logLambda)) : null;
    return [dr, drHat, dy, dLogLambda];
  }, state);
}

/** Cubit's Limited-Range Rescale inputs: logits z (B, H, T), and lower and range per head (H). */
export interface LrrInputs { logits: Tensor; lower: Tensor; range: Tensor }

/**
 * Cubit's KRR stage (CUBIT.md §2) as one op: X = causalKrrSolve(r, r̂, s ⊙ v, logLambda) with
 * r̂ = normalizeReference(r, refScale, eps) and s = lower + range · sigmoid(z) (lrr null: s ≡ 1).
 * The same values and gradients as those three ops, but one kernel each way: s ⊙ v and ∂L/∂r̂
 * never reach memory, and r's two gradients are summed in the kernel. Differentiable in r,
 * refScale, v, the LRR inputs and logLambda. options.eps is the floor of ‖r‖ (default 1e-6).
 */
export function cubitSolve(r: Tensor, refScale: Tensor, v: Tensor, lrr: LrrInputs | null, logLambda: Tensor,
  options: MixerOptions & { eps?: number } = {}): Tensor {
  const op = 'cubitSolve';
  const be = backendOf(op, r, refScale, v, logLambda, ...(lrr ? [lrr.logits, lrr.lower, lrr.range] : []), docIdsTensor(op, options));
  requireMixerTensor(op, 'r', r);
  requireSameAs(op, 'v', v, r, 'r');
  const [B, H, T, D] = r.shape;
  requireHeadParam(op, 'refScale', refScale, H, r.dtype);
  requireLogLambda(op, logLambda, H, r.dtype);
  if (lrr) {
    requireLrrLogits(op, lrr.logits, r, 'r');
    requireHeadParam(op, 'lrrLower', lrr.lower, H, r.dtype);
    requireHeadParam(op, 'lrrRange', lrr.range, H, r.dtype);
  }
  const eps = options.eps ?? 1e-6;
  requirePositiveFinite(op, 'eps', eps);
  const mask = resolveMask(op, B, H, T, D, options);
  const res = hasKernel(be, 'cubitSolve') && hasKernel(be, 'cubitSolveBackward')
    ? cubitSolveFused(be, r, refScale, v, lrr, logLambda, eps, mask)
    : tidy(() => krrSolveOp(be, r, normalizeReference(r, refScale, eps), lrr ? lrrValues(v, lrr.logits, lrr.lower, lrr.range) : v, logLambda, mask));
  if (mask.owned) mask.docIds!.dispose();
  return res;
}

function cubitSolveFused(be: Backend & Required<Pick<Backend, 'cubitSolve' | 'cubitSolveBackward'>>, r: Tensor, refScale: Tensor, v: Tensor,
  lrr: LrrInputs | null, logLambda: Tensor, eps: number, mask: ResolvedMask): Tensor {
  const d = mask.dims;
  const { B, H } = d;
  const lrrS = lrr && { logits: lrr.logits.storage, lower: lrr.lower.storage, range: lrr.range.storage };
  const x = empty(r.shape, r.dtype, be);
  const state = be.cubitSolve(r.storage, refScale.storage, v.storage, lrrS, logLambda.storage, eps, x.storage, d);
  const inputs = lrr ? [r, refScale, v, lrr.logits, lrr.lower, lrr.range, logLambda] : [r, refScale, v, logLambda];
  const saved = [...inputs, x];
  if (mask.docIds) saved.push(mask.docIds);
  return record(x, 'cubitSolve', inputs, saved, (g) => {
    const dr = empty(r.shape, r.dtype, be), dv = empty(r.shape, r.dtype, be);
    const perHead = (): Tensor => empty([B, H], r.dtype, be);
    const dRefScale = perHead(), dLambda = perHead();
    const lrrGrads = lrr && { dLogits: empty(lrr.logits.shape, r.dtype, be), dLower: perHead(), dRange: perHead() };
    be.cubitSolveBackward(r.storage, refScale.storage, v.storage, lrrS, logLambda.storage, eps, x.storage, state, g.storage,
      dr.storage, dv.storage, dRefScale.storage,
      lrrGrads && { dLogits: lrrGrads.dLogits.storage, dLower: lrrGrads.dLower.storage, dRange: lrrGrads.dRange.storage },
      dLambda.storage, d);
    // The kernel leaves each per-head gradient per (b, h) row: summed over the batch here.
    const headSum = (t: Tensor, p: Tensor): Tensor | null => (p.requiresGrad ? sum(t, 0) : null);
    const dLogLambda = logLambda.requiresGrad ? mul(sum(dLambda, 0), exp(logLambda)) : null;
    if (!lrr || !lrrGrads) return [dr, headSum(dRefScale, refScale), dv, dLogLambda];
    return [dr, headSum(dRefScale, refScale), dv, lrrGrads.dLogits, headSum(lrrGrads.dLower, lrr.lower),
      headSum(lrrGrads.dRange, lrr.range), dLogLambda];
  }, state);
}

/**
 * Cubit's reference vectors r̂ = α · r / max(‖r‖₂, eps) over the last axis of r (B, H, T, D), with
 * α = refScale (H) per head: one kernel each way instead of seven elementwise ops. Where ‖r‖ < eps
 * the norm is the constant eps, so the gradient does not flow through it (as max(‖r‖², eps²)
 * would). Differentiable in r and refScale.
 */
export function normalizeReference(r: Tensor, refScale: Tensor, eps = 1e-6): Tensor {
  const op = 'normalizeReference';
  const be = backendOf(op, r, refScale);
  requireMixerTensor(op, 'r', r);
  const [B, H, T, D] = r.shape;
  requireHeadShape(op, 'refScale', refScale, H, r.dtype);
  requirePositiveFinite(op, 'eps', eps);
  if (!hasKernel(be, 'normalizeReference') || !hasKernel(be, 'normalizeReferenceBackward')) {
    // 1 / max(‖r‖, eps) as rsqrt(max(‖r‖², eps²)): the same clamp, and no ∞ · 0 where r = 0.
    return tidy(() => mul(mul(r, rsqrt(maximum(sum(square(r), -1, { keepDims: true }), eps * eps))), reshape(refScale, [1, H, 1, 1])));
  }
  const out = empty(r.shape, r.dtype, be);
  be.normalizeReference(r.storage, refScale.storage, out.storage, B, H, T, D, eps);
  return record(out, op, [r, refScale], [r, refScale], (g) => {
    const dr = r.requiresGrad ? empty(r.shape, r.dtype, be) : null;
    const dAlpha = refScale.requiresGrad ? empty([H], r.dtype, be) : null;
    be.normalizeReferenceBackward(r.storage, refScale.storage, g.storage, dr?.storage ?? null, dAlpha?.storage ?? null, B, H, T, D, eps);
    return [dr, dAlpha];
  });
}

/**
 * Limited-Range Rescaled values y = (lower + range · sigmoid(z)) ⊙ v for v (B, H, T, D), logits
 * z = lrrLogits (B, H, T) and per-head bounds lrrLower, lrrRange (H): one kernel each way.
 * Differentiable in all four.
 */
export function lrrValues(v: Tensor, lrrLogits: Tensor, lrrLower: Tensor, lrrRange: Tensor): Tensor {
  const op = 'lrrValues';
  const be = backendOf(op, v, lrrLogits, lrrLower, lrrRange);
  requireMixerTensor(op, 'v', v);
  const [B, H, T, D] = v.shape;
  requireLrrLogits(op, lrrLogits, v, 'v');
  requireHeadShape(op, 'lrrLower', lrrLower, H, v.dtype);
  requireHeadShape(op, 'lrrRange', lrrRange, H, v.dtype);
  if (!hasKernel(be, 'lrrValues') || !hasKernel(be, 'lrrValuesBackward')) {
    return tidy(() => {
      const head = (p: Tensor): Tensor => reshape(p, [1, H, 1, 1]);
      return mul(add(head(lrrLower), mul(head(lrrRange), sigmoid(reshape(lrrLogits, [B, H, T, 1])))), v);
    });
  }
  const out = empty(v.shape, v.dtype, be);
  be.lrrValues(v.storage, lrrLogits.storage, lrrLower.storage, lrrRange.storage, out.storage, B, H, T, D);
  const inputs = [v, lrrLogits, lrrLower, lrrRange];
  return record(out, op, inputs, inputs, (g) => {
    const [dv, dz, dl, dr] = inputs.map((t) => (t.requiresGrad ? empty(t.shape, t.dtype, be) : null));
    be.lrrValuesBackward(v.storage, lrrLogits.storage, lrrLower.storage, lrrRange.storage, g.storage,
      dv?.storage ?? null, dz?.storage ?? null, dl?.storage ?? null, dr?.storage ?? null, B, H, T, D);
    return [dv, dz, dl, dr];
  });
}

/**
 * The (B or 1, 1, T, T) 0/1 visibility matrix of a mixer mask in `dtype` (dense compositions and
 * tests; the fused kernels never build it). Validates options like the ops do.
 */
export function mixerMask(B: number, T: number, options: MixerOptions = {}, dtype: DType = 'float32'): Tensor {
  checkMaskOptions('mixerMask', B, T, options);
  const ids = options.docIds ?? null;
  return tidy(() => maskTensor(T, options.window ?? 0, ids && (ids.rank === 2 ? ids : reshape(ids, [1, T])), dtype, ids?.backend ?? getBackend()));
}

// ---- batched symmetric positive definite solve ----

/**
 * The Cholesky factors L (batch, n, n) of a (batch, n, n) from core kernels, as the fused
 * `cholesky` kernel writes them (zeros above the diagonal; a failing pivot gives a diagonal entry
 * that is NaN or 0, and NaN or ±∞ after it). Recursive on halves: with
 * A = [A₁₁ ·; A₂₁ A₂₂], L₁₁ = chol(A₁₁), L₂₁ = A₂₁ L₁₁⁻ᵀ (a triangular solve), and
 * L₂₂ = chol(A₂₂ − L₂₁ L₂₁ᵀ); a 1×1 block is its square root. O(n) kernel calls, none reading back.
 */
function choleskyComposite(a: Tensor): Tensor {
  const n = a.shape[2];
  if (n === 1) return sqrt(a);
  const h = n >> 1;
  const block = (rows: [number, number], cols: [number, number]): Tensor => slice(slice(a, 1, ...rows), 2, ...cols);
  const l11 = choleskyComposite(block([0, h], [0, h]));
  const l21 = transpose(solveLowerTriangular(l11, transpose(block([h, n], [0, h]))));
  const l22 = choleskyComposite(sub(block([h, n], [h, n]), matmul(l21, l21, { transB: true })));
  const zeros = full([a.shape[0], h, n - h], 0, { dtype: a.dtype, backend: a.backend });
  return concat([concat([l11, zeros], 2), concat([l21, l22], 2)], 1);
}

/** Checks l (…, n, n) and b (…, n, k) of a batched solve: float, one dtype, square, same leading axes. */
function solveShapes(op: string, lName: string, l: Tensor, b: Tensor): { batch: number; n: number; k: number } {
  requireFloat(op, lName, l); requireFloat(op, 'b', b);
  if (l.dtype !== b.dtype) throw new Error(`${op}: ${lName} is ${l.dtype} but b is ${b.dtype}; cast one first`);
  if (l.rank < 2 || l.shape[l.rank - 1] !== l.shape[l.rank - 2]) throw new Error(`${op}: ${lName} must be (…, n, n), got ${formatShape(l.shape)}`);
  const n = l.shape[l.rank - 1];
  if (b.rank !== l.rank || !sameShape(b.shape.slice(0, -1), l.shape.slice(0, -1))) {
    throw new Error(`${op}: b must be (…, ${n}, k) with ${lName}'s leading axes ${formatShape(l.shape.slice(0, -2))}, got ${formatShape(b.shape)}`);
  }
  return { batch: n === 0 ? 0 : l.size / (n * n), n, k: b.shape[b.rank - 1] };
}

/** X = L⁻ᵀ (L⁻¹ B) = (L Lᵀ)⁻¹ B by two triangular solves (no gradient recorded). */
function choleskySolve(be: Backend, l: Tensor, b: Tensor, batch: number, n: number, k: number): Tensor {
  const y = empty(b.shape, b.dtype, be), x = empty(b.shape, b.dtype, be);
  be.triangularSolve(l.storage, b.storage, y.storage, batch, n, k, false);
  be.triangularSolve(l.storage, y.storage, x.storage, batch, n, k, true);
  y.dispose();
  return x;
}

/**
 * X = A⁻¹ B for a batch of symmetric positive definite A (…, n, n) (the lower triangle is read)
 * and B (…, n, k) with the same leading axes, through the Cholesky factor A = L Lᵀ: the backend's
 * `cholesky` kernel (or its composite of core kernels) and two triangular solves, all on the
 * device. It serves the small n×n systems of the local linear mixer. A matrix that is not positive
 * definite is reported through checkValues on the factor's diagonal (at once on a CPU backend, at
 * the next read on a GPU one). Gradient (A symmetric): ∂B = A⁻¹ G (the saved factor), ∂A = −∂B Xᵀ.
 */
export function solveSpd(a: Tensor, b: Tensor): Tensor {
  const op = 'solveSpd';
  const be = backendOf(op, a, b);
  const { batch, n, k } = solveShapes(op, 'a', a, b);
  const l = choleskyFactor(be, a, batch, n);
  try {
    const diagonal = empty([batch, n], a.dtype, be);
    be.stridedCopy(l.storage, 0, [batch, n], [n * n, n + 1], diagonal.storage, 0);
    try { be.checkValues(diagonal.storage, batch * n, { kind: 'choleskyDiagonal', n }, op, 'diag(L)'); } finally { diagonal.dispose(); }
  } catch (e) { l.dispose(); throw e; }
  const x = choleskySolve(be, l, b, batch, n, k);
  const res = record(x, op, [a, b], [l, x], (g) => {
    const db = choleskySolve(be, l, g, batch, n, k);
    return [a.requiresGrad ? neg(matmul(db, x, { transB: true })) : null, db];
  });
  l.dispose();
  return res;
}

/** The Cholesky factors of a (…, n, n): the backend's fused kernel, or the composite of core kernels. */
function choleskyFactor(be: Backend, a: Tensor, batch: number, n: number): Tensor {
  if (batch === 0) return empty(a.shape, a.dtype, be);
  if (!hasKernel(be, 'cholesky')) return tidy(() => noGrad(() => reshape(choleskyComposite(reshape(a, [batch, n, n])), a.shape)));
  const l = empty(a.shape, a.dtype, be);
  be.cholesky(a.storage, l.storage, batch, n);
  return l;
}
