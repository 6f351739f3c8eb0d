// The reference backend: plain TypeScript, float64 accumulation, float64 tensors allowed. It is the
// oracle every fast kernel is tested against, so it favours the obvious loop over the fast one.
import type {
  AdamWParams, Backend, BinaryOp, FusedKernels, HeadsBlock, LrrGradStorages, LrrStorages, MatmulParams, MixerDims, ReduceOp, SavedState, Storage, UnaryOp, ValueRule,
} from '../../core/backend.ts';
import { valueError } from '../../core/backend.ts';
import type { DType, TypedArray } from '../../core/dtype.ts';
import { dropoutKeeps } from '../../core/random.ts';
import { CpuPool, CpuStorage } from '../cpu/memory.ts';
import { gelu, geluGrad, sigmoid } from './math.ts';
import {
  attentionBackwardRef, attentionRef, cubitSolveBackwardRef, cubitSolveRef, krrSolveBackwardRef, krrSolveRef,
  lrrValuesBackwardRef, lrrValuesRef, normalizeReferenceBackwardRef, normalizeReferenceRef, type LrrArrs,
} from './mixers.ts';

const arr = (s: Storage): TypedArray => (s as CpuStorage).data;
const lrrArrs = (l: LrrStorages): LrrArrs => ({ logits: arr(l.logits), lower: arr(l.lower), range: arr(l.range) });

export function unaryFn(op: UnaryOp, scalar: number): (x: number) => number {
  switch (op) {
    case 'neg': return (x) => -x;
    case 'abs': return Math.abs;
    case 'exp': return Math.exp;
    case 'log': return Math.log;
    case 'sqrt': return Math.sqrt;
    case 'rsqrt': return (x) => 1 / Math.sqrt(x);
    case 'tanh': return Math.tanh;
    case 'sigmoid': return sigmoid;
    case 'silu': return (x) => x * sigmoid(x);
    case 'gelu': return gelu;
    case 'relu': return (x) => (x > 0 ? x : 0);
    case 'square': return (x) => x * x;
    case 'reciprocal': return (x) => 1 / x;
    case 'pow': return (x) => Math.pow(x, scalar);
    case 'sign': return Math.sign;
  }
}

/** f'(x), given x and y = f(x). */
export function unaryDerivative(op: UnaryOp, scalar: number): (x: number, y: number) => number {
  switch (op) {
    case 'neg': return () => -1;
    case 'abs': return (x) => Math.sign(x);
    case 'exp': return (_x, y) => y;
    case 'log': return (x) => 1 / x;
    case 'sqrt': return (_x, y) => 0.5 / y;
    case 'rsqrt': return (_x, y) => -0.5 * y * y * y;
    case 'tanh': return (_x, y) => 1 - y * y;
    case 'sigmoid': return (_x, y) => y * (1 - y);
    case 'silu': return (x) => { const s = sigmoid(x); return s * (1 + x * (1 - s)); };
    case 'gelu': return geluGrad;
    case 'relu': return (x) => (x > 0 ? 1 : 0);
    case 'square': return (x) => 2 * x;
    case 'reciprocal': return (_x, y) => -y * y;
    case 'pow': return (x) => (scalar === 0 ? 0 : scalar * Math.pow(x, scalar - 1));
    case 'sign': return () => 0;
  }
}

export function binaryFn(op: BinaryOp): (a: number, b: number) => number {
  switch (op) {
    case 'add': return (a, b) => a + b;
    case 'sub': return (a, b) => a - b;
    case 'mul': return (a, b) => a * b;
    case 'div': return (a, b) => a / b;
    case 'maximum': return (a, b) => (a >= b || Number.isNaN(a) ? a : b);
    case 'minimum': return (a, b) => (a <= b || Number.isNaN(a) ? a : b);
    case 'pow': return Math.pow;
    case 'gt': return (a, b) => (a > b ? 1 : 0);
    case 'ge': return (a, b) => (a >= b ? 1 : 0);
    case 'lt': return (a, b) => (a < b ? 1 : 0);
    case 'le': return (a, b) => (a <= b ? 1 : 0);
    case 'eq': return (a, b) => (a === b ? 1 : 0);
    case 'ne': return (a, b) => (a !== b ? 1 : 0);
  }
}

/** Calls visit(outIndex, offsets...) over an N-d shape, with one stride vector per operand. */
export function forEachIndex(shape: readonly number[], strides: readonly (readonly number[])[], visit: (i: number, offs: number[]) => void): void {
  const rank = shape.length;
  let total = 1;
  for (const d of shape) total *= d;
  if (total === 0) return;
  const idx = new Array<number>(rank).fill(0);
  const offs = strides.map(() => 0);
  for (let i = 0; i < total; i++) {
    visit(i, offs);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      for (let o = 0; o < offs.length; o++) offs[o] += strides[o][d];
      if (idx[d] < shape[d]) break;
      for (let o = 0; o < offs.length; o++) offs[o] -= strides[o][d] * shape[d];
      idx[d] = 0;
    }
  }
}

/**
 * The plain-TypeScript backend: the obvious loop for every kernel, core and fused, accumulating in
 * float64. Slow; the oracle every native kernel is tested against.
 */
export class ReferenceBackend implements Backend, FusedKernels {
  readonly name: string = 'reference';
  readonly supportsFloat64: boolean = true;
  protected readonly pool = new CpuPool();

  alloc(dtype: DType, length: number): Storage { return this.pool.alloc(dtype, length); }
  free(s: Storage): void { this.pool.release(s as CpuStorage); }
  write(s: Storage, values: ArrayLike<number>, offset = 0): void {
    const a = arr(s);
    if (offset + values.length > a.length) throw new RangeError(`write: ${values.length} values at ${offset} overflow a storage of ${a.length}`);
    a.set(values as ArrayLike<number>, offset);
  }
  hostReads = 0;
  readSync(s: Storage, offset: number, length: number): TypedArray {
    this.hostReads++;
    return arr(s).slice(offset, offset + length);
  }
  read(s: Storage, offset: number, length: number): Promise<TypedArray> {
    this.hostReads++;
    return Promise.resolve(arr(s).slice(offset, offset + length));
  }
  // The values are in host memory already: checking them is a loop, not a read.
  checkValues(s: Storage, length: number, rule: ValueRule, op: string, name: string): void {
    const a = arr(s);
    for (let i = 0; i < length; i++) {
      const e = valueError(rule, op, name, i, a[i]);
      if (e) throw new Error(e);
    }
  }
  memory() { return this.pool.stats(); }
  resetPeak(): void { this.pool.resetPeak(); }
  /** Releases pooled memory back to the garbage collector. */
  trim(): void { this.pool.trim(); }

  fill(out: Storage, value: number, offset: number, length: number): void { arr(out).fill(value, offset, offset + length); }
  copy(src: Storage, srcOffset: number, out: Storage, outOffset: number, length: number): void {
    arr(out).set(arr(src).subarray(srcOffset, srcOffset + length), outOffset);
  }
  cast(src: Storage, out: Storage, length: number): void {
    const a = arr(src), o = arr(out);
    if (o instanceof Int32Array) for (let i = 0; i < length; i++) o[i] = Math.trunc(a[i]);
    else for (let i = 0; i < length; i++) o[i] = a[i];
  }
  stridedCopy(src: Storage, srcOffset: number, shape: readonly number[], srcStrides: readonly number[], out: Storage, outOffset: number): void {
    const a = arr(src), o = arr(out);
    forEachIndex(shape, [srcStrides], (i, [s]) => { o[outOffset + i] = a[srcOffset + s]; });
  }

  unary(op: UnaryOp, x: Storage, out: Storage, length: number, scalar: number): void {
    const f = unaryFn(op, scalar);
    const a = arr(x), o = arr(out);
    for (let i = 0; i < length; i++) o[i] = f(a[i]);
  }
  unaryBackward(op: UnaryOp, x: Storage, y: Storage, dy: Storage, dx: Storage, length: number, scalar: number): void {
    const f = unaryDerivative(op, scalar);
    const a = arr(x), b = arr(y), g = arr(dy), o = arr(dx);
    for (let i = 0; i < length; i++) o[i] = g[i] * f(a[i], b[i]);
  }
  binary(op: BinaryOp, a: Storage, aStrides: readonly number[], b: Storage, bStrides: readonly number[], out: Storage, shape: readonly number[]): void {
    const f = binaryFn(op);
    const x = arr(a), y = arr(b), o = arr(out);
    forEachIndex(shape, [aStrides, bStrides], (i, [ia, ib]) => { o[i] = f(x[ia], y[ib]); });
  }
  where(cond: Storage, cStrides: readonly number[], a: Storage, aStrides: readonly number[], b: Storage, bStrides: readonly number[], out: Storage, shape: readonly number[]): void {
    const c = arr(cond), x = arr(a), y = arr(b), o = arr(out);
    forEachIndex(shape, [cStrides, aStrides, bStrides], (i, [ic, ia, ib]) => { o[i] = c[ic] !== 0 ? x[ia] : y[ib]; });
  }
  reduce(op: ReduceOp, x: Storage, out: Storage, outer: number, len: number, inner: number): void {
    const a = arr(x), o = arr(out);
    for (let p = 0; p < outer; p++) {
      for (let i = 0; i < inner; i++) {
        let acc = op === 'sum' ? 0 : op === 'max' ? -Infinity : Infinity;
        for (let j = 0; j < len; j++) {
          const v = a[(p * len + j) * inner + i];
          if (op === 'sum') acc += v;
          else if (op === 'max') acc = v > acc || Number.isNaN(v) ? v : acc;
          else acc = v < acc || Number.isNaN(v) ? v : acc;
        }
        o[p * inner + i] = acc;
      }
    }
  }

  matmul(a: Storage, b: Storage, out: Storage, p: MatmulParams): void {
    const A = arr(a), B = arr(b), C = arr(out);
    const { m, n, k } = p;
    // A is m×k (k×m stored when transA); B is k×n (n×k stored when transB).
    const [ai, ak] = p.transA ? [1, m] : [k, 1];
    const [bk, bj] = p.transB ? [1, k] : [n, 1];
    const row = new Float64Array(n);
    for (let q = 0; q < p.batch; q++) {
      const ao = p.aOffset + q * p.aBatchStride, bo = p.bOffset + q * p.bBatchStride, co = p.cOffset + q * p.cBatchStride;
      for (let i = 0; i < m; i++) {
        row.fill(0);
        for (let l = 0; l < k; l++) {
          const av = A[ao + i * ai + l * ak];
          if (av === 0) continue;
          const bRow = bo + l * bk;
          for (let j = 0; j < n; j++) row[j] += av * B[bRow + j * bj];
        }
        const c = co + i * n;
        if (p.accumulate) for (let j = 0; j < n; j++) C[c + j] += row[j];
        else for (let j = 0; j < n; j++) C[c + j] = row[j];
      }
    }
  }

  triangularSolve(l: Storage, b: Storage, out: Storage, batch: number, n: number, k: number, transpose: boolean): void {
    const L = arr(l), Bv = arr(b), O = arr(out);
    const x = new Float64Array(n);
    for (let p = 0; p < batch; p++) {
      const lo = p * n * n, bo = p * n * k;
      for (let c = 0; c < k; c++) {
        // Forward substitution on L, or back substitution on Lᵀ (L read by columns).
        for (let s = 0; s < n; s++) {
          const i = transpose ? n - 1 - s : s;
          let acc = Bv[bo + i * k + c];
          if (transpose) for (let j = i + 1; j < n; j++) acc -= L[lo + j * n + i] * x[j];
          else for (let j = 0; j < i; j++) acc -= L[lo + i * n + j] * x[j];
          x[i] = acc / L[lo + i * n + i];
        }
        for (let i = 0; i < n; i++) O[bo + i * k + c] = x[i];
      }
    }
  }

  // Column by column in float64, rounded once into out. A pivot that is not positive gives a
  // diagonal entry that is NaN (√ of a negative) or 0, and NaN or ±∞ after it: the op's check
  // on the diagonal finds it.
  cholesky(a: Storage, out: Storage, batch: number, n: number): void {
    const A = arr(a), O = arr(out);
    const f = new Float64Array(n * n);
    for (let p = 0; p < batch; p++) {
      const off = p * n * n;
      f.fill(0);
      for (let j = 0; j < n; j++) {
        let s = A[off + j * n + j];
        for (let l = 0; l < j; l++) s -= f[j * n + l] * f[j * n + l];
        const ljj = Math.sqrt(s);
        f[j * n + j] = ljj;
        for (let i = j + 1; i < n; i++) {
          let t = A[off + i * n + j];
          for (let l = 0; l < j; l++) t -= f[i * n + l] * f[j * n + l];
          f[i * n + j] = t / ljj;
        }
      }
      O.set(f, off);
    }
  }

  softmax(x: Storage, out: Storage, rows: number, cols: number, log: boolean): void {
    const a = arr(x), o = arr(out);
    for (let r = 0; r < rows; r++) {
      const base = r * cols;
      let max = -Infinity;
      for (let j = 0; j < cols; j++) if (a[base + j] > max) max = a[base + j];
      if (max === -Infinity) { o.fill(log ? -Infinity : 0, base, base + cols); continue; }
      let sum = 0;
      for (let j = 0; j < cols; j++) sum += Math.exp(a[base + j] - max);
      if (log) { const lse = max + Math.log(sum); for (let j = 0; j < cols; j++) o[base + j] = a[base + j] - lse; }
      else for (let j = 0; j < cols; j++) o[base + j] = Math.exp(a[base + j] - max) / sum;
    }
  }
  softmaxBackward(y: Storage, dy: Storage, dx: Storage, rows: number, cols: number, log: boolean): void {
    const Y = arr(y), G = arr(dy), D = arr(dx);
    for (let r = 0; r < rows; r++) {
      const base = r * cols;
      let dot = 0;
      if (log) {
        for (let j = 0; j < cols; j++) dot += G[base + j];
        for (let j = 0; j < cols; j++) { const yj = Y[base + j]; D[base + j] = G[base + j] - (yj === -Infinity ? 0 : Math.exp(yj)) * dot; }
      } else {
        for (let j = 0; j < cols; j++) dot += G[base + j] * Y[base + j];
        for (let j = 0; j < cols; j++) D[base + j] = Y[base + j] * (G[base + j] - dot);
      }
    }
  }
  rmsNorm(x: Storage, w: Storage | null, out: Storage, rstd: Storage, rows: number, cols: number, eps: number): void {
    const X = arr(x), W = w ? arr(w) : null, O = arr(out), R = arr(rstd);
    for (let r = 0; r < rows; r++) {
      const base = r * cols;
      let ss = 0;
      for (let j = 0; j < cols; j++) ss += X[base + j] * X[base + j];
      const rs = 1 / Math.sqrt(ss / cols + eps);
      R[r] = rs;
      for (let j = 0; j < cols; j++) O[base + j] = X[base + j] * rs * (W ? W[j] : 1);
    }
  }
  rmsNormBackward(x: Storage, w: Storage | null, rstd: Storage, dy: Storage, dx: Storage, dw: Storage | null, rows: number, cols: number): void {
    const X = arr(x), W = w ? arr(w) : null, R = arr(rstd), G = arr(dy), D = arr(dx), DW = dw ? arr(dw) : null;
    const dwAcc = DW ? new Float64Array(cols) : null;
    for (let r = 0; r < rows; r++) {
      const base = r * cols, rs = R[r];
      // y = x·rs·w; dx = rs·(g·w) − x·rs³·mean(g·w·x)
      let dot = 0;
      for (let j = 0; j < cols; j++) dot += G[base + j] * (W ? W[j] : 1) * X[base + j];
      const c = (rs * rs * rs * dot) / cols;
      for (let j = 0; j < cols; j++) {
        D[base + j] = rs * G[base + j] * (W ? W[j] : 1) - X[base + j] * c;
        if (dwAcc) dwAcc[j] += G[base + j] * X[base + j] * rs;
      }
    }
    if (DW && dwAcc) for (let j = 0; j < cols; j++) DW[j] = dwAcc[j];
  }
  layerNorm(x: Storage, w: Storage | null, b: Storage | null, out: Storage, mean: Storage, rstd: Storage, rows: number, cols: number, eps: number): void {
    const X = arr(x), W = w ? arr(w) : null, B = b ? arr(b) : null, O = arr(out), M = arr(mean), R = arr(rstd);
    for (let r = 0; r < rows; r++) {
      const base = r * cols;
      let mu = 0;
      for (let j = 0; j < cols; j++) mu += X[base + j];
      mu /= cols;
      let v = 0;
      for (let j = 0; j < cols; j++) { const d = X[base + j] - mu; v += d * d; }
      const rs = 1 / Math.sqrt(v / cols + eps);
      M[r] = mu; R[r] = rs;
      for (let j = 0; j < cols; j++) O[base + j] = (X[base + j] - mu) * rs * (W ? W[j] : 1) + (B ? B[j] : 0);
    }
  }
  layerNormBackward(x: Storage, w: Storage | null, mean: Storage, rstd: Storage, dy: Storage, dx: Storage, dw: Storage | null, db: Storage | null, rows: number, cols: number): void {
    const X = arr(x), W = w ? arr(w) : null, M = arr(mean), R = arr(rstd), G = arr(dy), D = arr(dx);
    const dwAcc = dw ? new Float64Array(cols) : null, dbAcc = db ? new Float64Array(cols) : null;
    for (let r = 0; r < rows; r++) {
      const base = r * cols, mu = M[r], rs = R[r];
      let sg = 0, sgx = 0;
      for (let j = 0; j < cols; j++) {
        const gw = G[base + j] * (W ? W[j] : 1), xh = (X[base + j] - mu) * rs;
        sg += gw; sgx += gw * xh;
        if (dwAcc) dwAcc[j] += G[base + j] * xh;
        if (dbAcc) dbAcc[j] += G[base + j];
      }
      for (let j = 0; j < cols; j++) {
        const gw = G[base + j] * (W ? W[j] : 1), xh = (X[base + j] - mu) * rs;
        D[base + j] = rs * (gw - sg / cols - (xh * sgx) / cols);
      }
    }
    if (dw && dwAcc) arr(dw).set(dwAcc);
    if (db && dbAcc) arr(db).set(dbAcc);
  }
  gather(table: Storage, ids: Storage, out: Storage, count: number, cols: number): void {
    const T = arr(table), I = arr(ids), O = arr(out);
    for (let i = 0; i < count; i++) O.set(T.subarray(I[i] * cols, I[i] * cols + cols), i * cols);
  }
  scatterAdd(dy: Storage, ids: Storage, dtable: Storage, count: number, cols: number): void {
    const G = arr(dy), I = arr(ids), D = arr(dtable);
    for (let i = 0; i < count; i++) { const base = I[i] * cols; for (let j = 0; j < cols; j++) D[base + j] += G[i * cols + j]; }
  }
  crossEntropy(logits: Storage, targets: Storage, losses: Storage, lse: Storage, rows: number, cols: number, ignoreIndex: number): void {
    const X = arr(logits), T = arr(targets), L = arr(losses), S = arr(lse);
    for (let r = 0; r < rows; r++) {
      const base = r * cols;
      let max = -Infinity;
      for (let j = 0; j < cols; j++) if (X[base + j] > max) max = X[base + j];
      let sum = 0;
      for (let j = 0; j < cols; j++) sum += Math.exp(X[base + j] - max);
      const l = max + Math.log(sum);
      S[r] = l;
      L[r] = T[r] === ignoreIndex ? 0 : l - X[base + T[r]];
    }
  }
  crossEntropyBackward(logits: Storage, targets: Storage, lse: Storage, dloss: Storage, dlogits: Storage, rows: number, cols: number, ignoreIndex: number): void {
    const X = arr(logits), T = arr(targets), S = arr(lse), G = arr(dloss), D = arr(dlogits);
    for (let r = 0; r < rows; r++) {
      const base = r * cols;
      if (T[r] === ignoreIndex) { D.fill(0, base, base + cols); continue; }
      const g = G[r], l = S[r];
      for (let j = 0; j < cols; j++) D[base + j] = g * Math.exp(X[base + j] - l);
      D[base + T[r]] -= g;
    }
  }
  dropoutMask(out: Storage, length: number, p: number, seed: number): void {
    const o = arr(out), scale = 1 / (1 - p);
    for (let i = 0; i < length; i++) o[i] = dropoutKeeps(seed, i, p) ? scale : 0;
  }
  swiglu(a: Storage, b: Storage, out: Storage, length: number): void {
    const A = arr(a), Bv = arr(b), O = arr(out);
    for (let i = 0; i < length; i++) O[i] = A[i] * sigmoid(A[i]) * Bv[i];
  }
  swigluBackward(a: Storage, b: Storage, dy: Storage, da: Storage, db: Storage, length: number): void {
    const A = arr(a), Bv = arr(b), G = arr(dy), DA = arr(da), DB = arr(db);
    for (let i = 0; i < length; i++) {
      const x = A[i], s = sigmoid(x);
      DB[i] = G[i] * (x * s);
      DA[i] = G[i] * Bv[i] * (s * (1 + x * (1 - s)));
    }
  }
  rotary(x: Storage, cos: Storage, sin: Storage, out: Storage, B: number, T: number, H: number, D: number,
    offset: number, inverse: boolean, xHeadsFirst: boolean, outHeadsFirst: boolean): void {
    const X = arr(x), C = arr(cos), S = arr(sin), O = arr(out), half = D / 2, sign = inverse ? -1 : 1;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const tab = (offset + t) * half;
        for (let h = 0; h < H; h++) {
          const tok = ((b * T + t) * H + h) * D, hf = ((b * H + h) * T + t) * D;
          const xi = xHeadsFirst ? hf : tok, oi = outHeadsFirst ? hf : tok;
          for (let i = 0; i < half; i++) {
            const a = X[xi + i], z = X[xi + i + half], c = C[tab + i], s = sign * S[tab + i];
            O[oi + i] = a * c - z * s;
            O[oi + i + half] = z * c + a * s;
          }
        }
      }
    }
  }
  splitHeads(y: Storage, outs: readonly Storage[], B: number, T: number, parts: readonly HeadsBlock[],
    cos: Storage | null, sin: Storage | null, offset: number): void {
    headsMove(arr(y), outs.map(arr), B, T, parts, cos && arr(cos), sin && arr(sin), offset, false);
  }
  mergeHeads(xs: readonly (Storage | null)[], out: Storage, B: number, T: number, parts: readonly HeadsBlock[],
    cos: Storage | null, sin: Storage | null, offset: number): void {
    headsMove(arr(out), xs.map((x) => x && arr(x)), B, T, parts, cos && arr(cos), sin && arr(sin), offset, true);
  }
  adamw(param: Storage, grad: Storage, m: Storage, v: Storage, length: number, p: AdamWParams): void {
    const P = arr(param), G = arr(grad), M = arr(m), V = arr(v);
    const decay = 1 - p.lr * p.weightDecay;
    for (let i = 0; i < length; i++) {
      const g = G[i];
      const mi = (M[i] = p.beta1 * M[i] + (1 - p.beta1) * g);
      const vi = (V[i] = p.beta2 * V[i] + (1 - p.beta2) * g * g);
      P[i] = P[i] * decay - (p.lr * (mi / p.bc1)) / (Math.sqrt(vi / p.bc2) + p.eps);
    }
  }

  // Mixer kernels: dense float64 oracles (./mixers.ts). Their saved state (shared with the native
  // backend, which extends this one): the per-row log-sum-exp (B·H·T); for the KRR solves also
  // W X − X (like X, each row summed as Σ_{j≠i} W_ij (X_j − X_i) so that it keeps its precision
  // when W_ii ≈ 1: the streamed backward's softmax row sums are −Z_i · (W X − X)_i, O(D) per row
  // instead of a pass over W), and for cubitSolve r̂ first. The dense backward reads only the lse.
  krrSolve(r: Storage, rHat: Storage, y: Storage, logLambda: Storage, x: Storage, d: MixerDims): SavedState {
    const lse = this.alloc(r.dtype, d.B * d.H * d.T), wxMinusX = this.alloc(r.dtype, r.length);
    krrSolveRef(arr(r), arr(rHat), arr(y), arr(logLambda), arr(x), arr(lse), arr(wxMinusX), d, d.docIds && arr(d.docIds));
    return { storages: [lse, wxMinusX] };
  }
  // The dense backward takes its row sums from W directly and does not need wxMinusX.
  krrSolveBackward(r: Storage, rHat: Storage, logLambda: Storage, x: Storage, saved: SavedState, g: Storage,
    dr: Storage, drHat: Storage, dy: Storage, dLambda: Storage, d: MixerDims): void {
    krrSolveBackwardRef(arr(r), arr(rHat), arr(logLambda), arr(x), arr(saved.storages[0]), arr(g),
      arr(dr), arr(drHat), arr(dy), arr(dLambda), d, d.docIds && arr(d.docIds));
  }
  cubitSolve(r: Storage, refScale: Storage, v: Storage, lrr: LrrStorages | null, logLambda: Storage, eps: number,
    x: Storage, d: MixerDims): SavedState {
    const rHat = this.alloc(r.dtype, r.length), lse = this.alloc(r.dtype, d.B * d.H * d.T), wxMinusX = this.alloc(r.dtype, r.length);
    cubitSolveRef(arr(r), arr(refScale), arr(v), lrr && lrrArrs(lrr), arr(logLambda), eps, arr(x), arr(rHat), arr(lse),
      arr(wxMinusX), d, d.docIds && arr(d.docIds));
    return { storages: [rHat, lse, wxMinusX] };
  }
  cubitSolveBackward(r: Storage, refScale: Storage, v: Storage, lrr: LrrStorages | null, logLambda: Storage, eps: number,
    x: Storage, saved: SavedState, g: Storage,
    dr: Storage, dv: Storage, dRefScale: Storage, lrrGrads: LrrGradStorages | null, dLambda: Storage, d: MixerDims): void {
    const [rHat, lse, wxMinusX] = saved.storages;
    cubitSolveBackwardRef(arr(r), arr(refScale), arr(v), lrr && lrrArrs(lrr), arr(logLambda), eps, arr(x), arr(rHat),
      arr(lse), arr(wxMinusX), arr(g), arr(dr), arr(dv), arr(dRefScale),
      lrrGrads && { dLogits: arr(lrrGrads.dLogits), dLower: arr(lrrGrads.dLower), dRange: arr(lrrGrads.dRange) },
      arr(dLambda), d, d.docIds && arr(d.docIds));
  }
  normalizeReference(r: Storage, alpha: Storage, out: Storage, B: number, H: number, T: number, D: number, eps: number): void {
    normalizeReferenceRef(arr(r), arr(alpha), arr(out), B, H, T, D, eps);
  }
  normalizeReferenceBackward(r: Storage, alpha: Storage, dy: Storage, dr: Storage | null, dAlpha: Storage | null,
    B: number, H: number, T: number, D: number, eps: number): void {
    normalizeReferenceBackwardRef(arr(r), arr(alpha), arr(dy), dr && arr(dr), dAlpha && arr(dAlpha), B, H, T, D, eps);
  }
  lrrValues(v: Storage, z: Storage, lower: Storage, range: Storage, out: Storage, B: number, H: number, T: number, D: number): void {
    lrrValuesRef(arr(v), arr(z), arr(lower), arr(range), arr(out), B, H, T, D);
  }
  lrrValuesBackward(v: Storage, z: Storage, lower: Storage, range: Storage, dy: Storage,
    dv: Storage | null, dz: Storage | null, dLower: Storage | null, dRange: Storage | null,
    B: number, H: number, T: number, D: number): void {
    lrrValuesBackwardRef(arr(v), arr(z), arr(lower), arr(range), arr(dy), dv && arr(dv), dz && arr(dz),
      dLower && arr(dLower), dRange && arr(dRange), B, H, T, D);
  }
  attention(q: Storage, k: Storage, v: Storage, out: Storage, scale: number, d: MixerDims): SavedState {
    const lse = this.alloc(q.dtype, d.B * d.H * d.T);
    attentionRef(arr(q), arr(k), arr(v), arr(out), arr(lse), scale, d, d.docIds && arr(d.docIds));
    return { storages: [lse] };
  }
  attentionBackward(q: Storage, k: Storage, v: Storage, out: Storage, saved: SavedState, g: Storage, scale: number,
    dq: Storage, dk: Storage, dv: Storage, d: MixerDims): void {
    attentionBackwardRef(arr(q), arr(k), arr(v), arr(out), arr(saved.storages[0]), arr(g), scale,
      arr(dq), arr(dk), arr(dv), d, d.docIds && arr(d.docIds));
  }
}

/**
 * splitHeads (merge false: token rows → heads) and mergeHeads (merge true: heads → token rows; a
 * null part gives zeros), the rotation as Backend.rotary's (the inverse when merging).
 */
function headsMove(tok: TypedArray, heads: readonly (TypedArray | null)[], B: number, T: number, parts: readonly HeadsBlock[],
  C: TypedArray | null, S: TypedArray | null, offset: number, merge: boolean): void {
  const width = parts.reduce((s, p) => s + p.heads * p.dim, 0), sign = merge ? -1 : 1;
  let col = 0;
  parts.forEach(({ heads: H, dim: D, rotate }, p) => {
    const X = heads[p], half = D / 2;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const ti = (b * T + t) * width + col + h * D, hi = ((b * H + h) * T + t) * D;
          if (!X) { for (let i = 0; i < D; i++) tok[ti + i] = 0; continue; }
          const [src, si, dst, oi] = merge ? [X, hi, tok, ti] : [tok, ti, X, hi];
          if (!rotate || !C || !S) { for (let i = 0; i < D; i++) dst[oi + i] = src[si + i]; continue; }
          const tab = (offset + t) * half;
          for (let i = 0; i < half; i++) {
            const a = src[si + i], z = src[si + i + half], c = C[tab + i], s = sign * S[tab + i];
            dst[oi + i] = a * c - z * s;
            dst[oi + i + half] = z * c + a * s;
          }
        }
      }
    }
    col += H * D;
  });
}
