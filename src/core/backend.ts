// The narrow interface between ops and the machines that run them (tinygrad/TF.js style).
// An op validates shapes, picks a kernel and records its gradient; a backend only runs kernels on
// storages it owns. A backend never sees a Tensor, so a new one (WebGPU) plugs in here without
// touching ops, modules or models. Every kernel writes into an `out` storage the op allocated.
//
// Two tiers: the core kernels (CoreBackend: memory, data movement, elementwise, reduce, matmul,
// gather/scatter, dropout mask, triangular solve) are required; the fused kernels (FusedKernels)
// are optional. An op asks hasKernel(backend, name) and otherwise runs a composite of core-kernel
// ops written once beside it, so a backend that implements only the core runs every model.
import type { DType, TypedArray } from './dtype.ts';

/** A backend-owned buffer. CPU backends keep a typed array; a GPU backend keeps a device buffer. */
export interface Storage {
  readonly dtype: DType;
  readonly length: number;
  /** Owners: tensors viewing it and autograd nodes that saved it. At 0 it returns to the pool. */
  refs: number;
}

export type UnaryOp =
  | 'neg' | 'abs' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'tanh' | 'sigmoid' | 'silu' | 'gelu'
  | 'relu' | 'square' | 'reciprocal' | 'pow' | 'sign';

export type BinaryOp =
  | 'add' | 'sub' | 'mul' | 'div' | 'maximum' | 'minimum' | 'pow'
  | 'gt' | 'ge' | 'lt' | 'le' | 'eq' | 'ne';

export type ReduceOp = 'sum' | 'max' | 'min';

/** C_p = op(A_p)·op(B_p) (+ C_p when accumulate) for p < batch. Row-major, strides in elements. */
export interface MatmulParams {
  batch: number; m: number; n: number; k: number;
  transA: boolean; transB: boolean;
  aOffset: number; bOffset: number; cOffset: number;
  aBatchStride: number; bBatchStride: number; cBatchStride: number;
  accumulate: boolean;
}

/** A block of columns of splitHeads / mergeHeads: `heads` heads of `dim` features, rotated or not. */
export interface HeadsBlock { heads: number; dim: number; rotate: boolean }

export interface AdamWParams {
  lr: number; beta1: number; beta2: number; eps: number; weightDecay: number;
  /** Bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ, computed once by the optimizer. */
  bc1: number; bc2: number;
}

/** A backend's memory use (`backend.memory()`), in bytes. */
export interface MemoryStats {
  /** Bytes held by live storages. */
  bytesInUse: number;
  /** Bytes ever obtained from the system (in use + pooled): flat once a loop has warmed up. */
  bytesAllocated: number;
  /** The peak of bytesInUse since the last resetPeak(). */
  peakBytesInUse: number;
}

/**
 * Shapes and masks of the sequence-mixer kernels. Tensors are (B·H, T, D) row-major; per-head
 * parameters are (H); head h of row bh is bh % H and its batch is ⌊bh / H⌋. The mask is causal
 * (j ≤ i), narrowed by a sliding window (j ≥ i − window + 1, when window > 0) and by packed
 * documents (docIds[b, i] = docIds[b, j], when docIds is given as (B, T) int32).
 */
export interface MixerDims {
  B: number; H: number; T: number; D: number;
  window: number;
  docIds: Storage | null;
}

/**
 * What a fused forward kernel keeps for its backward, private to the backend that made it (a CPU
 * backend keeps its log-sum-exp rows, a GPU one whatever its backward reads). The storages are
 * owned by the state: the op hands them to the gradient node, which frees them when released.
 */
export interface SavedState { readonly storages: readonly Storage[] }

/**
 * A rule for checkValues: every value finite; exp(value) finite (a log-scale parameter); positive
 * and finite; an index in [0, limit) (entries equal to `ignore` skipped); the diagonals of a batch of
 * Cholesky factors, n per matrix, positive and finite (else that matrix is not positive definite).
 */
export type ValueRule =
  | { kind: 'finite' } | { kind: 'expFinite' } | { kind: 'positive' }
  | { kind: 'index'; limit: number; ignore: number | null }
  | { kind: 'choleskyDiagonal'; n: number };

/** The error for value v at position i under `rule` (op and name say where), or null when it passes. */
export function valueError(rule: ValueRule, op: string, name: string, i: number, v: number): string | null {
  switch (rule.kind) {
    case 'finite': return Number.isFinite(v) ? null : `${op}: ${name}[${i}] is ${v}; it must be finite`;
    case 'expFinite': return Number.isFinite(Math.exp(v)) ? null : `${op}: ${name}[${i}] = ${v} makes λ = exp(${name}) overflow`;
    case 'positive': return v > 0 && Number.isFinite(v) ? null : `${op}: ${name}[${i}] = ${v}; it must be positive`;
    case 'index': return v === rule.ignore || (v >= 0 && v < rule.limit) ? null : `${op}: ${name} ${v} at position ${i} is outside [0, ${rule.limit})`;
    case 'choleskyDiagonal': return v > 0 && Number.isFinite(v) ? null
      : `${op}: matrix ${Math.floor(i / rule.n)} of the batch is not positive definite (${name}[${i % rule.n}] = ${v})`;
  }
}

/** Cubit's LRR inputs (CUBIT.md §2): s = lower + range · sigmoid(logits), logits (B·H·T), lower and range (H). */
export interface LrrStorages { logits: Storage; lower: Storage; range: Storage }
/** Their gradients in cubitSolveBackward: dLogits (B·H·T); dLower, dRange per (b, h) row (B·H). */
export interface LrrGradStorages { dLogits: Storage; dLower: Storage; dRange: Storage }

/**
 * The required kernel table. Shapes are passed as plain numbers, already validated by the op. A
 * kernel may assume `out` does not alias an input unless the op says so (accumulate / in-place).
 */
export interface CoreBackend {
  readonly name: string;
  /** True when the backend computes float64 (the reference) — tests pick tolerances from it. */
  readonly supportsFloat64: boolean;
  /**
   * The unit roundoff of its float32 arithmetic when coarser than IEEE float32's 2⁻²⁴ (a GPU's
   * TF32 matmuls or fast-math transcendentals): the conformance suite scales its tolerances by it.
   */
  readonly unitRoundoff?: number;

  // memory
  alloc(dtype: DType, length: number): Storage;
  /** Returns a storage whose refs reached 0 to the pool. */
  free(s: Storage): void;
  write(s: Storage, values: ArrayLike<number>, offset?: number): void;
  /** Synchronous read, where the backend has one (the CPU backends); a GPU backend leaves it out. */
  readSync?(s: Storage, offset: number, length: number): TypedArray;
  read(s: Storage, offset: number, length: number): Promise<TypedArray>;
  /** Reads back to the host so far (read and readSync calls): each is a pipeline drain on a GPU. */
  readonly hostReads: number;
  /**
   * Waits until the device has finished every kernel recorded so far, reading nothing back (a GPU
   * backend, whose kernels run after they are recorded; benchmarks time with it). CPU backends run
   * kernels when called and leave it out.
   */
  sync?(): Promise<void>;
  /**
   * Validates the first `length` values of s under `rule` where they live, without a read: a CPU
   * backend checks at once, a GPU backend sets an error flag that its next read reports. Either
   * throws valueError(rule, op, name, …) for the first failing value.
   */
  checkValues(s: Storage, length: number, rule: ValueRule, op: string, name: string): void;
  memory(): MemoryStats;
  resetPeak(): void;

  // data movement
  fill(out: Storage, value: number, offset: number, length: number): void;
  copy(src: Storage, srcOffset: number, out: Storage, outOffset: number, length: number): void;
  cast(src: Storage, out: Storage, length: number): void;
  /** out (contiguous, `shape`) ← src read with `srcStrides` from `srcOffset`: permute, slice, expand. */
  stridedCopy(src: Storage, srcOffset: number, shape: readonly number[], srcStrides: readonly number[], out: Storage, outOffset: number): void;

  // elementwise
  unary(op: UnaryOp, x: Storage, out: Storage, length: number, scalar: number): void;
  /** dx = dy · f'(x) (+ dx when accumulate); y = f(x) is passed for ops whose derivative uses it. */
  unaryBackward(op: UnaryOp, x: Storage, y: Storage, dy: Storage, dx: Storage, length: number, scalar: number): void;
  /** out[shape] = a ∘ b with broadcast strides (0 on broadcast axes). */
  binary(op: BinaryOp, a: Storage, aStrides: readonly number[], b: Storage, bStrides: readonly number[], out: Storage, shape: readonly number[]): void;
  where(cond: Storage, cStrides: readonly number[], a: Storage, aStrides: readonly number[], b: Storage, bStrides: readonly number[], out: Storage, shape: readonly number[]): void;
  /** Reduces the middle axis of an (outer, len, inner) view. */
  reduce(op: ReduceOp, x: Storage, out: Storage, outer: number, len: number, inner: number): void;

  // linear algebra
  matmul(a: Storage, b: Storage, out: Storage, p: MatmulParams): void;
  /**
   * Batched triangular solve: out_p = L_p⁻¹ B_p (or L_pᵀ⁻¹ B_p when `transpose`) for lower-triangular
   * L_p (n×n, entries above the diagonal are not read) and B_p (n×k), p < batch, contiguous.
   * The primitive of the KRR solve (CUBIT.md §2: W + λI is lower triangular under the causal mask).
   */
  triangularSolve(l: Storage, b: Storage, out: Storage, batch: number, n: number, k: number, transpose: boolean): void;

  // indexing and randomness
  /** out[i, :] = table[ids[i], :]. ids are validated where they are made (batches, tokenizers). */
  gather(table: Storage, ids: Storage, out: Storage, count: number, cols: number): void;
  /** dtable[ids[i], :] += dy[i, :]. */
  scatterAdd(dy: Storage, ids: Storage, dtable: Storage, count: number, cols: number): void;
  /** out[i] = keep(seed, i) ? 1/(1−p) : 0 with the counter hash of core/random.ts (same on every backend). */
  dropoutMask(out: Storage, length: number, p: number, seed: number): void;
}

/**
 * Optional fused kernels. Each has a composite of core kernels beside its op (src/ops/), which the
 * op runs when the backend lacks it: a fused kernel is only ever a speed-up.
 */
export interface FusedKernels {
  // fused neural-network kernels (rows × cols, last axis)
  /** Row softmax (or log-softmax). A row whose entries are all −∞ gives zeros (softmax) / −∞ (log). */
  softmax(x: Storage, out: Storage, rows: number, cols: number, log: boolean): void;
  softmaxBackward(y: Storage, dy: Storage, dx: Storage, rows: number, cols: number, log: boolean): void;
  /** out = x · rstd · w, rstd = 1/sqrt(mean(x²) + eps) saved per row. w may be null. */
  rmsNorm(x: Storage, w: Storage | null, out: Storage, rstd: Storage, rows: number, cols: number, eps: number): void;
  rmsNormBackward(x: Storage, w: Storage | null, rstd: Storage, dy: Storage, dx: Storage, dw: Storage | null, rows: number, cols: number): void;
  layerNorm(x: Storage, w: Storage | null, b: Storage | null, out: Storage, mean: Storage, rstd: Storage, rows: number, cols: number, eps: number): void;
  layerNormBackward(x: Storage, w: Storage | null, mean: Storage, rstd: Storage, dy: Storage, dx: Storage, dw: Storage | null, db: Storage | null, rows: number, cols: number): void;
  /** losses[i] = lse_i − logits[i, t_i] (0 where t_i = ignoreIndex); lse saved for the backward. */
  crossEntropy(logits: Storage, targets: Storage, losses: Storage, lse: Storage, rows: number, cols: number, ignoreIndex: number): void;
  /** dlogits[i, :] = dloss[i] · (softmax_i − onehot(t_i)) (0 rows where ignored). */
  crossEntropyBackward(logits: Storage, targets: Storage, lse: Storage, dloss: Storage, dlogits: Storage, rows: number, cols: number, ignoreIndex: number): void;
  /**
   * Rotary embedding, rotate-half pairs (i, i + D/2), of rows (b, t, h): x and out are laid out
   * (B, T, H, D), or (B, H, T, D) when their *HeadsFirst flag is set (so one pass also splits or
   * merges heads). Position offset + t reads row offset + t of the (·, D/2) cos and sin tables;
   * `inverse` turns by the opposite angle (the adjoint). out does not alias x.
   */
  rotary(x: Storage, cos: Storage, sin: Storage, out: Storage, B: number, T: number, H: number, D: number,
    offset: number, inverse: boolean, xHeadsFirst: boolean, outHeadsFirst: boolean): void;
  /** SwiGLU's gate: out = silu(a) · b, elementwise. */
  swiglu(a: Storage, b: Storage, out: Storage, length: number): void;
  /** da = dy · b · silu'(a), db = dy · silu(a). */
  swigluBackward(a: Storage, b: Storage, dy: Storage, da: Storage, db: Storage, length: number): void;
  /**
   * Head layouts (src/ops/heads.ts), one pass over the token rows y (B·T, C) whose columns are the
   * parts in order (C = Σ heads·dim): outs[p] (B, heads, T, dim) ← part p's columns, head h taking
   * the h-th dim of them; a `rotate` part is turned as by rotary() at position offset + t (cos and
   * sin (≥ offset + T, dim/2) shared by the rotated parts). Outputs do not alias y.
   */
  splitHeads(y: Storage, outs: readonly Storage[], B: number, T: number, parts: readonly HeadsBlock[],
    cos: Storage | null, sin: Storage | null, offset: number): void;
  /** The adjoint of splitHeads: out (B·T, C) ← the parts xs[p] (B, heads, T, dim) turned back (inverse rotation); a null part writes zeros. */
  mergeHeads(xs: readonly (Storage | null)[], out: Storage, B: number, T: number, parts: readonly HeadsBlock[],
    cos: Storage | null, sin: Storage | null, offset: number): void;
  /** In-place AdamW step on one parameter (decoupled weight decay). */
  adamw(param: Storage, grad: Storage, m: Storage, v: Storage, length: number, p: AdamWParams): void;
  /**
   * Batched Cholesky factorisation A_p = L_p L_pᵀ of symmetric A_p (n×n, p < batch, contiguous;
   * only the lower triangle is read): out_p ← L_p, zeros above the diagonal. Where A_p is not
   * positive definite the first failing pivot's diagonal entry comes out NaN or ≤ 0 (the op
   * checks the diagonal with checkValues): no throw, no host read.
   */
  cholesky(a: Storage, out: Storage, batch: number, n: number): void;

  // sequence mixers (docs/SPEC.md §2–§3); the reference runs them dense, native streams them
  /**
   * Causal KRR solve X = (W + λI)⁻¹ Y with W = masked row-softmax(r r̂ᵀ), λ = exp(logLambda[h]).
   * Writes X; returns what its backward needs beyond its arguments.
   */
  krrSolve(r: Storage, rHat: Storage, y: Storage, logLambda: Storage, x: Storage, d: MixerDims): SavedState;
  /** From G = ∂L/∂X: ∂L/∂r, ∂L/∂r̂, ∂L/∂Y, and ∂L/∂λ per (b, h) row block (B·H). */
  krrSolveBackward(r: Storage, rHat: Storage, logLambda: Storage, x: Storage, saved: SavedState, g: Storage,
    dr: Storage, drHat: Storage, dy: Storage, dLambda: Storage, d: MixerDims): void;
  /**
   * Cubit's solve with its elementwise stages inside: X = krrSolve(r, r̂, Y) for
   * r̂ = normalizeReference(r, refScale, eps) and Y = (lower + range · sigmoid(logits)) ⊙ v (lrr
   * null: Y = v), without r̂ or Y reaching the caller.
   */
  cubitSolve(r: Storage, refScale: Storage, v: Storage, lrr: LrrStorages | null, logLambda: Storage, eps: number,
    x: Storage, d: MixerDims): SavedState;
  /**
   * Its backward from G = ∂L/∂X: ∂L/∂r through both of W's factors, ∂L/∂v, and per (b, h) row (B·H)
   * ∂L/∂refScale and ∂L/∂λ; with LRR, lrrGrads.
   */
  cubitSolveBackward(r: Storage, refScale: Storage, v: Storage, lrr: LrrStorages | null, logLambda: Storage, eps: number,
    x: Storage, saved: SavedState, g: Storage,
    dr: Storage, dv: Storage, dRefScale: Storage, lrrGrads: LrrGradStorages | null, dLambda: Storage, d: MixerDims): void;
  /**
   * Cubit's reference vectors r̂ = α_h · r / max(‖r‖₂, eps) over the last axis of r (B·H·T rows of
   * D); α is (H) and row i belongs to head ⌊i / T⌋ mod H.
   */
  normalizeReference(r: Storage, alpha: Storage, out: Storage, B: number, H: number, T: number, D: number, eps: number): void;
  /**
   * From dy = ∂L/∂r̂: dr and dα (H), each skipped when null. Where ‖r‖ < eps the norm is the constant
   * eps (the clamp passes no gradient), so there dr = α · dy / eps.
   */
  normalizeReferenceBackward(r: Storage, alpha: Storage, dy: Storage, dr: Storage | null, dAlpha: Storage | null,
    B: number, H: number, T: number, D: number, eps: number): void;
  /**
   * LRR-scaled values y = (lower_h + range_h · sigmoid(z)) ⊙ v for v (B·H·T rows of D), logits z
   * (B·H·T, one per row) and per-head lower, range (H).
   */
  lrrValues(v: Storage, z: Storage, lower: Storage, range: Storage, out: Storage, B: number, H: number, T: number, D: number): void;
  /** From dy = ∂L/∂y: dv, dz, dLower, dRange (H), each skipped when null. */
  lrrValuesBackward(v: Storage, z: Storage, lower: Storage, range: Storage, dy: Storage,
    dv: Storage | null, dz: Storage | null, dLower: Storage | null, dRange: Storage | null,
    B: number, H: number, T: number, D: number): void;
  /** out = masked softmax(q kᵀ · scale) v. */
  attention(q: Storage, k: Storage, v: Storage, out: Storage, scale: number, d: MixerDims): SavedState;
  attentionBackward(q: Storage, k: Storage, v: Storage, out: Storage, saved: SavedState, g: Storage, scale: number,
    dq: Storage, dk: Storage, dv: Storage, d: MixerDims): void;
}

export type FusedKernelName = keyof FusedKernels;

/** A backend: the core kernels, and whichever fused kernels it has. */
export interface Backend extends CoreBackend, Partial<FusedKernels> {}

/** Every fused kernel's name (a wrapper that hides them lists them here). */
export const FUSED_KERNELS: readonly FusedKernelName[] = [
  'softmax', 'softmaxBackward', 'rmsNorm', 'rmsNormBackward', 'layerNorm', 'layerNormBackward',
  'crossEntropy', 'crossEntropyBackward', 'rotary', 'swiglu', 'swigluBackward', 'splitHeads', 'mergeHeads', 'adamw',
  'cholesky', 'krrSolve', 'krrSolveBackward', 'cubitSolve', 'cubitSolveBackward', 'normalizeReference', 'normalizeReferenceBackward',
  'lrrValues', 'lrrValuesBackward', 'attention', 'attentionBackward',
];

/** True when `b` has the fused kernel `k` (the op then runs it instead of its composite). */
export function hasKernel<K extends FusedKernelName>(b: Backend, k: K): b is Backend & Pick<FusedKernels, K> {
  return typeof b[k] === 'function';
}
