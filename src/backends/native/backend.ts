// The native backend: the reference backend's storage and bookkeeping, with its float32 kernels
// replaced by the C addon's (AVX-512 / AVX2 / portable C, chosen at run time). A kernel the addon
// lacks falls through to the reference twin, which the tests compare it against.
import type {
  AdamWParams, BinaryOp, HeadsBlock, LrrGradStorages, LrrStorages, MatmulParams, MixerDims, ReduceOp, SavedState, Storage, UnaryOp,
} from '../../core/backend.ts';
import { ReferenceBackend } from '../reference/backend.ts';
import type { CpuStorage } from '../cpu/memory.ts';
import type { NativeAddon } from './addon.ts';

const f32 = (s: Storage): Float32Array => (s as CpuStorage).data as Float32Array;
const isF32 = (...ss: Storage[]): boolean => ss.every((s) => s.dtype === 'float32');
const f32n = (s: Storage | null): Float32Array | null => (s ? f32(s) : null);
const i32 = (s: Storage): Int32Array => (s as CpuStorage).data as Int32Array;
const opt = (s: Storage | null): Storage[] => (s ? [s] : []);

// Op codes of native/src/kernels_nn.h (the order of the unions in core/backend.ts).
const UNARY_CODE: Record<UnaryOp, number> = {
  neg: 0, abs: 1, exp: 2, log: 3, sqrt: 4, rsqrt: 5, tanh: 6, sigmoid: 7, silu: 8, gelu: 9,
  relu: 10, square: 11, reciprocal: 12, pow: 13, sign: 14,
};
const BINARY_CODE: Record<BinaryOp, number> = {
  add: 0, sub: 1, mul: 2, div: 3, maximum: 4, minimum: 5, pow: 6, gt: 7, ge: 8, lt: 9, le: 10, eq: 11, ne: 12,
};
const REDUCE_CODE: Record<ReduceOp, number> = { sum: 0, max: 1, min: 2 };
/** Highest rank of the addon's strided kernels (NN_MAX_RANK); beyond it the reference runs. */
const MAX_RANK = 8;

export class NativeBackend extends ReferenceBackend {
  override readonly name = 'native';
  override readonly supportsFloat64 = false;

  /**
   * Rows per streaming block of the mixer kernels: a cache knob of this backend (results do not
   * depend on it beyond float rounding), not part of the kernel contract or of model configs.
   */
  blockSize = 64;

  constructor(readonly addon: NativeAddon) { super(); }

  setThreads(n: number): void { this.addon.setThreads(n); }
  threads(): number { return this.addon.getThreads(); }

  override matmul(a: Storage, b: Storage, out: Storage, p: MatmulParams): void {
    if (!isF32(a, b, out)) return super.matmul(a, b, out, p);
    this.addon.sgemm(p.batch, p.m, p.n, p.k, p.transA, p.transB,
      f32(a), p.aOffset, p.aBatchStride, p.transA ? p.m : p.k,
      f32(b), p.bOffset, p.bBatchStride, p.transB ? p.k : p.n,
      f32(out), p.cOffset, p.cBatchStride, p.n, p.accumulate);
  }

  // ---- non-GEMM kernels (native/src/kernels_nn*.c): float32 only, anything else is the reference's

  override fill(out: Storage, value: number, offset: number, length: number): void {
    if (!isF32(out)) return super.fill(out, value, offset, length);
    this.addon.fill(f32(out), value, offset, length);
  }
  override copy(src: Storage, srcOffset: number, out: Storage, outOffset: number, length: number): void {
    if (!isF32(src, out)) return super.copy(src, srcOffset, out, outOffset, length);
    this.addon.copy(f32(src), srcOffset, f32(out), outOffset, length);
  }
  override stridedCopy(src: Storage, srcOffset: number, shape: readonly number[], srcStrides: readonly number[], out: Storage, outOffset: number): void {
    if (!isF32(src, out) || shape.length > MAX_RANK) return super.stridedCopy(src, srcOffset, shape, srcStrides, out, outOffset);
    this.addon.stridedCopy(f32(src), srcOffset, shape, srcStrides, f32(out), outOffset);
  }

  override unary(op: UnaryOp, x: Storage, out: Storage, length: number, scalar: number): void {
    if (!isF32(x, out)) return super.unary(op, x, out, length, scalar);
    this.addon.unary(UNARY_CODE[op], f32(x), f32(out), length, scalar);
  }
  override unaryBackward(op: UnaryOp, x: Storage, y: Storage, dy: Storage, dx: Storage, length: number, scalar: number): void {
    if (!isF32(x, y, dy, dx)) return super.unaryBackward(op, x, y, dy, dx, length, scalar);
    this.addon.unaryBackward(UNARY_CODE[op], f32(x), f32(y), f32(dy), f32(dx), length, scalar);
  }
  override binary(op: BinaryOp, a: Storage, aStrides: readonly number[], b: Storage, bStrides: readonly number[], out: Storage, shape: readonly number[]): void {
    if (!isF32(a, b, out) || shape.length > MAX_RANK) return super.binary(op, a, aStrides, b, bStrides, out, shape);
    this.addon.binary(BINARY_CODE[op], f32(a), aStrides, f32(b), bStrides, f32(out), shape);
  }
  override where(cond: Storage, cStrides: readonly number[], a: Storage, aStrides: readonly number[], b: Storage, bStrides: readonly number[], out: Storage, shape: readonly number[]): void {
    if (!isF32(a, b, out) || cond.dtype === 'float64' || shape.length > MAX_RANK) {
      return super.where(cond, cStrides, a, aStrides, b, bStrides, out, shape);
    }
    this.addon.where((cond as CpuStorage).data as Float32Array | Int32Array, cStrides, f32(a), aStrides, f32(b), bStrides, f32(out), shape);
  }
  override reduce(op: ReduceOp, x: Storage, out: Storage, outer: number, len: number, inner: number): void {
    if (!isF32(x, out)) return super.reduce(op, x, out, outer, len, inner);
    this.addon.reduce(REDUCE_CODE[op], f32(x), f32(out), outer, len, inner);
  }

  override softmax(x: Storage, out: Storage, rows: number, cols: number, log: boolean): void {
    if (!isF32(x, out)) return super.softmax(x, out, rows, cols, log);
    this.addon.softmax(f32(x), f32(out), rows, cols, log);
  }
  override softmaxBackward(y: Storage, dy: Storage, dx: Storage, rows: number, cols: number, log: boolean): void {
    if (!isF32(y, dy, dx)) return super.softmaxBackward(y, dy, dx, rows, cols, log);
    this.addon.softmaxBackward(f32(y), f32(dy), f32(dx), rows, cols, log);
  }
  override rmsNorm(x: Storage, w: Storage | null, out: Storage, rstd: Storage, rows: number, cols: number, eps: number): void {
    if (!isF32(x, out, rstd, ...opt(w))) return super.rmsNorm(x, w, out, rstd, rows, cols, eps);
    this.addon.rmsNorm(f32(x), f32n(w), f32(out), f32(rstd), rows, cols, eps);
  }
  override rmsNormBackward(x: Storage, w: Storage | null, rstd: Storage, dy: Storage, dx: Storage, dw: Storage | null, rows: number, cols: number): void {
    if (!isF32(x, rstd, dy, dx, ...opt(w), ...opt(dw))) return super.rmsNormBackward(x, w, rstd, dy, dx, dw, rows, cols);
    this.addon.rmsNormBackward(f32(x), f32n(w), f32(rstd), f32(dy), f32(dx), f32n(dw), rows, cols);
  }
  override layerNorm(x: Storage, w: Storage | null, b: Storage | null, out: Storage, mean: Storage, rstd: Storage, rows: number, cols: number, eps: number): void {
    if (!isF32(x, out, mean, rstd, ...opt(w), ...opt(b))) return super.layerNorm(x, w, b, out, mean, rstd, rows, cols, eps);
    this.addon.layerNorm(f32(x), f32n(w), f32n(b), f32(out), f32(mean), f32(rstd), rows, cols, eps);
  }
  override layerNormBackward(x: Storage, w: Storage | null, mean: Storage, rstd: Storage, dy: Storage, dx: Storage, dw: Storage | null, db: Storage | null, rows: number, cols: number): void {
    if (!isF32(x, mean, rstd, dy, dx, ...opt(w), ...opt(dw), ...opt(db))) {
      return super.layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, cols);
    }
    this.addon.layerNormBackward(f32(x), f32n(w), f32(mean), f32(rstd), f32(dy), f32(dx), f32n(dw), f32n(db), rows, cols);
  }
  override gather(table: Storage, ids: Storage, out: Storage, count: number, cols: number): void {
    if (!isF32(table, out) || ids.dtype !== 'int32') return super.gather(table, ids, out, count, cols);
    this.addon.gather(f32(table), i32(ids), f32(out), count, cols);
  }
  override scatterAdd(dy: Storage, ids: Storage, dtable: Storage, count: number, cols: number): void {
    if (!isF32(dy, dtable) || ids.dtype !== 'int32') return super.scatterAdd(dy, ids, dtable, count, cols);
    this.addon.scatterAdd(f32(dy), i32(ids), f32(dtable), count, cols);
  }
  override crossEntropy(logits: Storage, targets: Storage, losses: Storage, lse: Storage, rows: number, cols: number, ignoreIndex: number): void {
    if (!isF32(logits, losses, lse) || targets.dtype !== 'int32') return super.crossEntropy(logits, targets, losses, lse, rows, cols, ignoreIndex);
    this.addon.crossEntropy(f32(logits), i32(targets), f32(losses), f32(lse), rows, cols, ignoreIndex);
  }
  override crossEntropyBackward(logits: Storage, targets: Storage, lse: Storage, dloss: Storage, dlogits: Storage, rows: number, cols: number, ignoreIndex: number): void {
    if (!isF32(logits, lse, dloss, dlogits) || targets.dtype !== 'int32') {
      return super.crossEntropyBackward(logits, targets, lse, dloss, dlogits, rows, cols, ignoreIndex);
    }
    this.addon.crossEntropyBackward(f32(logits), i32(targets), f32(lse), f32(dloss), f32(dlogits), rows, cols, ignoreIndex);
  }
  override dropoutMask(out: Storage, length: number, p: number, seed: number): void {
    if (!isF32(out)) return super.dropoutMask(out, length, p, seed);
    this.addon.dropoutMask(f32(out), length, p, seed | 0); // hash32 reads the seed as an int32
  }
  override swiglu(a: Storage, b: Storage, out: Storage, length: number): void {
    if (!isF32(a, b, out) || !this.addon.swiglu) return super.swiglu(a, b, out, length);
    this.addon.swiglu(f32(a), f32(b), f32(out), length);
  }
  override swigluBackward(a: Storage, b: Storage, dy: Storage, da: Storage, db: Storage, length: number): void {
    if (!isF32(a, b, dy, da, db) || !this.addon.swigluBackward) return super.swigluBackward(a, b, dy, da, db, length);
    this.addon.swigluBackward(f32(a), f32(b), f32(dy), f32(da), f32(db), length);
  }
  override normalizeReference(r: Storage, alpha: Storage, out: Storage, B: number, H: number, T: number, D: number, eps: number): void {
    if (!isF32(r, alpha, out) || !this.addon.normalizeReference) return super.normalizeReference(r, alpha, out, B, H, T, D, eps);
    this.addon.normalizeReference(f32(r), f32(alpha), f32(out), B, H, T, D, eps);
  }
  override normalizeReferenceBackward(r: Storage, alpha: Storage, dy: Storage, dr: Storage | null, dAlpha: Storage | null,
    B: number, H: number, T: number, D: number, eps: number): void {
    if (!isF32(r, alpha, dy, ...opt(dr), ...opt(dAlpha)) || !this.addon.normalizeReferenceBackward) {
      return super.normalizeReferenceBackward(r, alpha, dy, dr, dAlpha, B, H, T, D, eps);
    }
    this.addon.normalizeReferenceBackward(f32(r), f32(alpha), f32(dy), f32n(dr), f32n(dAlpha), B, H, T, D, eps);
  }
  override lrrValues(v: Storage, z: Storage, lower: Storage, range: Storage, out: Storage, B: number, H: number, T: number, D: number): void {
    if (!isF32(v, z, lower, range, out) || !this.addon.lrrValues) return super.lrrValues(v, z, lower, range, out, B, H, T, D);
    this.addon.lrrValues(f32(v), f32(z), f32(lower), f32(range), f32(out), B, H, T, D);
  }
  override lrrValuesBackward(v: Storage, z: Storage, lower: Storage, range: Storage, dy: Storage,
    dv: Storage | null, dz: Storage | null, dLower: Storage | null, dRange: Storage | null,
    B: number, H: number, T: number, D: number): void {
    if (!isF32(v, z, lower, range, dy, ...opt(dv), ...opt(dz), ...opt(dLower), ...opt(dRange)) || !this.addon.lrrValuesBackward) {
      return super.lrrValuesBackward(v, z, lower, range, dy, dv, dz, dLower, dRange, B, H, T, D);
    }
    this.addon.lrrValuesBackward(f32(v), f32(z), f32(lower), f32(range), f32(dy), f32n(dv), f32n(dz), f32n(dLower), f32n(dRange), B, H, T, D);
  }
  override splitHeads(y: Storage, outs: readonly Storage[], B: number, T: number, parts: readonly HeadsBlock[],
    cos: Storage | null, sin: Storage | null, offset: number): void {
    if (!isF32(y, ...outs, ...opt(cos), ...opt(sin)) || !this.addon.splitHeads) return super.splitHeads(y, outs, B, T, parts, cos, sin, offset);
    this.addon.splitHeads(f32(y), outs.map(f32), B, T, parts.map((p) => p.heads), parts.map((p) => p.dim), parts.map((p) => (p.rotate ? 1 : 0)), f32n(cos), f32n(sin), offset);
  }
  override mergeHeads(xs: readonly (Storage | null)[], out: Storage, B: number, T: number, parts: readonly HeadsBlock[],
    cos: Storage | null, sin: Storage | null, offset: number): void {
    if (!isF32(out, ...xs.flatMap(opt), ...opt(cos), ...opt(sin)) || !this.addon.mergeHeads) return super.mergeHeads(xs, out, B, T, parts, cos, sin, offset);
    this.addon.mergeHeads(xs.map(f32n), f32(out), B, T, parts.map((p) => p.heads), parts.map((p) => p.dim), parts.map((p) => (p.rotate ? 1 : 0)), f32n(cos), f32n(sin), offset);
  }
  override rotary(x: Storage, cos: Storage, sin: Storage, out: Storage, B: number, T: number, H: number, D: number,
    offset: number, inverse: boolean, xHeadsFirst: boolean, outHeadsFirst: boolean): void {
    if (!isF32(x, cos, sin, out) || !this.addon.rotary) return super.rotary(x, cos, sin, out, B, T, H, D, offset, inverse, xHeadsFirst, outHeadsFirst);
    this.addon.rotary(f32(x), f32(cos), f32(sin), f32(out), B, T, H, D, offset, inverse, xHeadsFirst, outHeadsFirst);
  }
  override adamw(param: Storage, grad: Storage, m: Storage, v: Storage, length: number, p: AdamWParams): void {
    if (!isF32(param, grad, m, v)) return super.adamw(param, grad, m, v, length, p);
    this.addon.adamw(f32(param), f32(grad), f32(m), f32(v), length, p.lr, p.beta1, p.beta2, p.eps, p.weightDecay, p.bc1, p.bc2);
  }

  // ---- sequence mixers (native/src/krr.c, attention.c): streamed, no T×T buffer; float32 only

  override krrSolve(r: Storage, rHat: Storage, y: Storage, logLambda: Storage, x: Storage, d: MixerDims): SavedState {
    if (!isF32(r, rHat, y, logLambda, x) || !idsOk(d)) return super.krrSolve(r, rHat, y, logLambda, x, d);
    const lse = this.alloc('float32', d.B * d.H * d.T), wxMinusX = this.alloc('float32', r.length);
    this.addon.krrSolve(f32(r), f32(rHat), f32(y), f32(logLambda), f32(x), f32(lse), f32(wxMinusX),
      d.B, d.H, d.T, d.D, d.window, ids(d), this.blockSize);
    return { storages: [lse, wxMinusX] };
  }
  override krrSolveBackward(r: Storage, rHat: Storage, logLambda: Storage, x: Storage, saved: SavedState, g: Storage,
    dr: Storage, drHat: Storage, dy: Storage, dLambda: Storage, d: MixerDims): void {
    const [lse, wxMinusX] = saved.storages;
    if (!isF32(r, rHat, logLambda, x, lse, wxMinusX, g, dr, drHat, dy, dLambda) || !idsOk(d)) {
      return super.krrSolveBackward(r, rHat, logLambda, x, saved, g, dr, drHat, dy, dLambda, d);
    }
    this.addon.krrSolveBackward(f32(r), f32(rHat), f32(logLambda), f32(x), f32(lse), f32(wxMinusX), f32(g),
      f32(dr), f32(drHat), f32(dy), f32(dLambda), d.B, d.H, d.T, d.D, d.window, ids(d), this.blockSize);
  }
  override cubitSolve(r: Storage, refScale: Storage, v: Storage, lrr: LrrStorages | null, logLambda: Storage, eps: number,
    x: Storage, d: MixerDims): SavedState {
    if (!isF32(r, refScale, v, logLambda, x) || (lrr && !isF32(lrr.logits, lrr.lower, lrr.range)) || !idsOk(d)) {
      return super.cubitSolve(r, refScale, v, lrr, logLambda, eps, x, d);
    }
    const rHat = this.alloc('float32', r.length), lse = this.alloc('float32', d.B * d.H * d.T), wxMinusX = this.alloc('float32', r.length);
    this.addon.cubitSolve(f32(r), f32(refScale), f32(v), lrr && f32(lrr.logits), lrr && f32(lrr.lower), lrr && f32(lrr.range),
      f32(logLambda), eps, f32(x), f32(rHat), f32(lse), f32(wxMinusX), d.B, d.H, d.T, d.D, d.window, ids(d), this.blockSize);
    return { storages: [rHat, lse, wxMinusX] };
  }
  override cubitSolveBackward(r: Storage, refScale: Storage, v: Storage, lrr: LrrStorages | null, logLambda: Storage, eps: number,
    x: Storage, saved: SavedState, g: Storage,
    dr: Storage, dv: Storage, dRefScale: Storage, lrrGrads: LrrGradStorages | null, dLambda: Storage, d: MixerDims): void {
    const [rHat, lse, wxMinusX] = saved.storages;
    if (!isF32(r, refScale, v, logLambda, x, rHat, lse, wxMinusX, g, dr, dv, dRefScale, dLambda) ||
      (lrr && !isF32(lrr.logits, lrr.lower, lrr.range)) ||
      (lrrGrads && !isF32(lrrGrads.dLogits, lrrGrads.dLower, lrrGrads.dRange)) || !idsOk(d)) {
      return super.cubitSolveBackward(r, refScale, v, lrr, logLambda, eps, x, saved, g, dr, dv, dRefScale, lrrGrads, dLambda, d);
    }
    this.addon.cubitSolveBackward(f32(r), f32(refScale), f32(v), lrr && f32(lrr.logits), lrr && f32(lrr.lower), lrr && f32(lrr.range),
      f32(logLambda), eps, f32(x), f32(rHat), f32(lse), f32(wxMinusX), f32(g), f32(dr), f32(dv), f32(dRefScale),
      lrrGrads && f32(lrrGrads.dLogits), lrrGrads && f32(lrrGrads.dLower), lrrGrads && f32(lrrGrads.dRange), f32(dLambda),
      d.B, d.H, d.T, d.D, d.window, ids(d), this.blockSize);
  }
  override attention(q: Storage, k: Storage, v: Storage, out: Storage, scale: number, d: MixerDims): SavedState {
    if (!isF32(q, k, v, out) || !idsOk(d)) return super.attention(q, k, v, out, scale, d);
    const lse = this.alloc('float32', d.B * d.H * d.T);
    this.addon.attention(f32(q), f32(k), f32(v), f32(out), f32(lse), scale, d.B, d.H, d.T, d.D, d.window, ids(d), this.blockSize);
    return { storages: [lse] };
  }
  override attentionBackward(q: Storage, k: Storage, v: Storage, out: Storage, saved: SavedState, g: Storage, scale: number,
    dq: Storage, dk: Storage, dv: Storage, d: MixerDims): void {
    const [lse] = saved.storages;
    if (!isF32(q, k, v, out, lse, g, dq, dk, dv) || !idsOk(d)) return super.attentionBackward(q, k, v, out, saved, g, scale, dq, dk, dv, d);
    this.addon.attentionBackward(f32(q), f32(k), f32(v), f32(out), f32(lse), f32(g), scale, f32(dq), f32(dk), f32(dv),
      d.B, d.H, d.T, d.D, d.window, ids(d), this.blockSize);
  }
}

const idsOk = (d: MixerDims): boolean => d.docIds === null || d.docIds.dtype === 'int32';
const ids = (d: MixerDims): Int32Array | null => (d.docIds ? i32(d.docIds) : null);
