// The native backend: the reference backend's storage and bookkeeping, with its float32 kernels
// replaced by the C addon's (AVX-512 / AVX2 / portable C, chosen at run time). A kernel the addon
// lacks falls through to the reference twin, which the tests compare it against.
import type {
  AdamWParams, BinaryOp, HeadsBlock, LrrGradStorages, LrrStorages, MatmulParams, MixerDims, ReduceOp, SavedState, Storage, UnaryOp,
} from '../../core/backend.ts';
import { ReferenceBackend } from '../reference/backend.ts';
import { CpuStorage } from '../cpu/memory.ts';
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

/**
 * The C backend (build/Release/cubit_native.node): packed GEMM, streaming Cubit and attention
 * kernels and a thread pool (`setThreads`), chosen per CPU at run time. Kernels it does not
 * override run as in {@link ReferenceBackend}.
 */
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

  // ---- non-GEMM kernels (native/src/kernels_nn*.c): the FORWARDED ones below this class; float32
  // only, anything else is the reference's

  override dropoutMask(out: Storage, length: number, p: number, seed: number): void {
    if (!isF32(out)) return super.dropoutMask(out, length, p, seed);
    this.addon.dropoutMask(f32(out), length, p, seed | 0); // hash32 reads the seed as an int32
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
  override adamw(param: Storage, grad: Storage, m: Storage, v: Storage, length: number, p: AdamWParams): void {
    if (!isF32(param, grad, m, v)) return super.adamw(param, grad, m, v, length, p);
    this.addon.adamw(f32(param), f32(grad), f32(m), f32(v), length, p.lr, p.beta1, p.beta2, p.eps, p.weightDecay, p.bc1, p.bc2);
  }

  // ---- sequence mixers (native/src/krr.c, attention.c): streamed, no T×T buffer; float32 only,
  // through mixer() below

  override krrSolve(r: Storage, rHat: Storage, y: Storage, logLambda: Storage, x: Storage, d: MixerDims): SavedState {
    const lse = fresh(d.B * d.H * d.T), wxMinusX = fresh(r.length);
    const storages = this.mixer('krrSolve', [r, rHat, y, logLambda, x, lse, wxMinusX], d);
    return storages ? { storages } : super.krrSolve(r, rHat, y, logLambda, x, d);
  }
  override krrSolveBackward(r: Storage, rHat: Storage, logLambda: Storage, x: Storage, saved: SavedState, g: Storage,
    dr: Storage, drHat: Storage, dy: Storage, dLambda: Storage, d: MixerDims): void {
    const [lse, wxMinusX] = saved.storages;
    if (!this.mixer('krrSolveBackward', [r, rHat, logLambda, x, lse, wxMinusX, g, dr, drHat, dy, dLambda], d)) {
      super.krrSolveBackward(r, rHat, logLambda, x, saved, g, dr, drHat, dy, dLambda, d);
    }
  }
  override cubitSolve(r: Storage, refScale: Storage, v: Storage, lrr: LrrStorages | null, logLambda: Storage, eps: number,
    x: Storage, d: MixerDims): SavedState {
    const rHat = fresh(r.length), lse = fresh(d.B * d.H * d.T), wxMinusX = fresh(r.length);
    const storages = this.mixer('cubitSolve', [r, refScale, v, lrr?.logits ?? null, lrr?.lower ?? null, lrr?.range ?? null,
      logLambda, eps, x, rHat, lse, wxMinusX], d);
    return storages ? { storages } : super.cubitSolve(r, refScale, v, lrr, logLambda, eps, x, d);
  }
  override cubitSolveBackward(r: Storage, refScale: Storage, v: Storage, lrr: LrrStorages | null, logLambda: Storage, eps: number,
    x: Storage, saved: SavedState, g: Storage,
    dr: Storage, dv: Storage, dRefScale: Storage, lrrGrads: LrrGradStorages | null, dLambda: Storage, d: MixerDims): void {
    const [rHat, lse, wxMinusX] = saved.storages;
    if (!this.mixer('cubitSolveBackward', [r, refScale, v, lrr?.logits ?? null, lrr?.lower ?? null, lrr?.range ?? null,
      logLambda, eps, x, rHat, lse, wxMinusX, g, dr, dv, dRefScale,
      lrrGrads?.dLogits ?? null, lrrGrads?.dLower ?? null, lrrGrads?.dRange ?? null, dLambda], d)) {
      super.cubitSolveBackward(r, refScale, v, lrr, logLambda, eps, x, saved, g, dr, dv, dRefScale, lrrGrads, dLambda, d);
    }
  }
  override attention(q: Storage, k: Storage, v: Storage, out: Storage, scale: number, d: MixerDims): SavedState {
    const storages = this.mixer('attention', [q, k, v, out, fresh(d.B * d.H * d.T), scale], d);
    return storages ? { storages } : super.attention(q, k, v, out, scale, d);
  }
  override attentionBackward(q: Storage, k: Storage, v: Storage, out: Storage, saved: SavedState, g: Storage, scale: number,
    dq: Storage, dk: Storage, dv: Storage, d: MixerDims): void {
    const [lse] = saved.storages;
    if (!this.mixer('attentionBackward', [q, k, v, out, lse, g, scale, dq, dk, dv], d)) {
      super.attentionBackward(q, k, v, out, saved, g, scale, dq, dk, dv, d);
    }
  }

  /**
   * Calls mixer kernel `name` of the addon with `args` (storages as their float32 arrays; a Fresh
   * as a new float32 storage of its length) followed by d spelled out and blockSize. Returns the
   * new storages in order, or null, calling nothing and allocating nothing, when the call is not
   * the addon's (a storage not float32, docIds not int32). Kept apart from marshal() so that its
   * call sites, hot with the many small forwarded kernels, see only their arguments.
   */
  private mixer(name: MixerKernel, args: readonly (Storage | Fresh | number | null)[], d: MixerDims): Storage[] | null {
    if (!idsOk(d) || args.some((a) => a instanceof CpuStorage && a.dtype !== 'float32')) return null;
    const made: Storage[] = [];
    const native = args.map((a) => (a instanceof Fresh ? f32(made[made.length] = this.alloc('float32', a.length)) : a instanceof CpuStorage ? a.data : a));
    try {
      (this.addon[name] as (...a: unknown[]) => void)(...native, d.B, d.H, d.T, d.D, d.window, ids(d), this.blockSize);
    } catch (e) {
      for (const s of made) this.free(s); // the outputs it allocated for a call the addon refused
      throw e;
    }
    return made;
  }
}

/** The addon's mixer kernels: the arguments given to NativeBackend.mixer, then the dims. */
type MixerKernel = 'krrSolve' | 'krrSolveBackward' | 'cubitSolve' | 'cubitSolveBackward' | 'attention' | 'attentionBackward';

/** An output a mixer kernel writes that NativeBackend.mixer allocates (float32, `length` elements). */
class Fresh { constructor(readonly length: number) {} }
const fresh = (length: number): Fresh => new Fresh(length);

/**
 * Kernels whose addon function (native/src/kernels_nn_napi.c, cholesky.c; one argument table each)
 * takes the Backend kernel's arguments in order: they all forward through forwardKernel below.
 */
const FORWARDED = [
  'fill', 'copy', 'stridedCopy', 'unary', 'unaryBackward', 'binary', 'where', 'reduce',
  'softmax', 'softmaxBackward', 'rmsNorm', 'rmsNormBackward', 'layerNorm', 'layerNormBackward',
  'gather', 'scatterAdd', 'crossEntropy', 'crossEntropyBackward', 'swiglu', 'swigluBackward',
  'normalizeReference', 'normalizeReferenceBackward', 'lrrValues', 'lrrValuesBackward', 'rotary',
  'cholesky', 'triangularSolve',
] as const satisfies readonly (keyof ReferenceBackend)[];
export type ForwardedKernel = typeof FORWARDED[number];

/** The argument that is int32 (ids, targets; where's cond may be either). */
const INT32_ARG: Partial<Record<ForwardedKernel, number>> = { gather: 1, scatterAdd: 1, crossEntropy: 1, crossEntropyBackward: 1, where: 0 };
const OP_CODES: Partial<Record<ForwardedKernel, Record<string, number>>> = { unary: UNARY_CODE, unaryBackward: UNARY_CODE, binary: BINARY_CODE, reduce: REDUCE_CODE };

/**
 * The addon's arguments for kernel `name`: storages as their typed arrays, op names as codes; null
 * when the call is not the addon's (a dtype other than float32 / its int32 argument, a rank
 * beyond MAX_RANK), which then runs the reference twin.
 */
function marshal(name: ForwardedKernel, args: readonly unknown[]): unknown[] | null {
  const out = new Array<unknown>(args.length);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a instanceof CpuStorage) {
      const int = INT32_ARG[name] === i;
      const ok = a.dtype === 'float32' ? !int || name === 'where' : int && a.dtype === 'int32';
      if (!ok) return null;
      out[i] = a.data;
    } else if (Array.isArray(a)) {
      if (a.length > MAX_RANK) return null;
      out[i] = a;
    } else {
      out[i] = typeof a === 'string' ? OP_CODES[name]![a] : a;
    }
  }
  return out;
}

for (const name of FORWARDED) {
  const reference = ReferenceBackend.prototype[name] as (...args: unknown[]) => void;
  Object.defineProperty(NativeBackend.prototype, name, {
    configurable: true, writable: true,
    value: function forwardKernel(this: NativeBackend, ...args: unknown[]): void {
      const fn = this.addon[name] as ((...a: unknown[]) => void) | undefined;
      const native = fn && marshal(name, args);
      if (!native) return reference.apply(this, args);
      fn(...native);
    },
  });
}

const idsOk = (d: MixerDims): boolean => d.docIds === null || d.docIds.dtype === 'int32';
const ids = (d: MixerDims): Int32Array | null => (d.docIds ? i32(d.docIds) : null);
