// Matrix products. matmul follows NumPy: 1-D operands are promoted, batch axes broadcast.
import { isGradEnabled, tidy } from '../core/engine.ts';
import { broadcastShapes, formatShape, sizeOf } from '../core/shape.ts';
import { empty, record, type Tensor } from '../core/tensor.ts';
import { reshape, slice } from './shape.ts';
import { backendOf, broadcastTo, requireFloat, sumToShape } from './util.ts';

/** Options of {@link matmul}. */
export interface MatmulOptions {
  /** Use the transpose of a's (or b's) last two axes, without copying it. */
  transA?: boolean;
  transB?: boolean;
}

/** out = op(a) · op(b), batched over leading axes (broadcast). */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const be = backendOf('matmul', a, b);
  requireFloat('matmul', 'a', a); requireFloat('matmul', 'b', b);
  if (a.dtype !== b.dtype) throw new Error(`matmul: dtypes ${a.dtype} and ${b.dtype} differ`);
  if ((a.rank === 1 && opts.transA) || (b.rank === 1 && opts.transB)) throw new Error('matmul: a 1-D operand cannot be transposed');
  if (a.rank === 0 || b.rank === 0) throw new Error(`matmul: operands must have rank ≥ 1, got ${formatShape(a.shape)} · ${formatShape(b.shape)}`);
  // 1-D · 1-D is a dot product: a scalar, as in NumPy (the 1-D · n-D rule below would leave [1]).
  // The rewrites below run in tidy() so that their reshaped operands are freed outside a scope too.
  if (a.rank === 1 && b.rank === 1) return tidy(() => reshape(matmul(reshape(a, [1, a.size]), reshape(b, [b.size, 1])), []));
  if (a.rank === 1) return tidy(() => { const r = matmul(reshape(a, [1, a.size]), b, opts); return reshape(r, [...r.shape.slice(0, -2), r.shape[r.rank - 1]]); });
  if (b.rank === 1) return tidy(() => { const r = matmul(a, reshape(b, [b.size, 1]), opts); return reshape(r, r.shape.slice(0, -1)); });
  const transA = !!opts.transA, transB = !!opts.transB;
  const [ar, ac] = a.shape.slice(-2), [br, bc] = b.shape.slice(-2);
  const m = transA ? ac : ar, k = transA ? ar : ac;
  const k2 = transB ? bc : br, n = transB ? br : bc;
  if (k !== k2) throw new Error(`matmul: inner dimensions differ: ${formatShape(a.shape)}${transA ? 'ᵀ' : ''} · ${formatShape(b.shape)}${transB ? 'ᵀ' : ''}`);
  // A batch of row-major matrices times one matrix is one taller product (B·m, k)·op(B): a single
  // large GEMM instead of B small ones, and the weight's gradient comes out of one product over
  // B·m rows instead of B partial products summed afterwards.
  if (!transA && a.rank > 2 && b.rank === 2) {
    const lead = a.shape.slice(0, -1);
    return tidy(() => reshape(matmul(reshape(a, [sizeOf(lead), k]), b, opts), [...lead, n]));
  }
  const batchShape = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul');
  const batch = sizeOf(batchShape);
  // Broadcast batch axes by stride 0 when an operand has a single matrix; otherwise expand.
  const aOne = sizeOf(a.shape.slice(0, -2)) === 1, bOne = sizeOf(b.shape.slice(0, -2)) === 1;
  const aFull = aOne || sizeOf(a.shape.slice(0, -2)) === batch && a.rank - 2 === batchShape.length;
  const bFull = bOne || sizeOf(b.shape.slice(0, -2)) === batch && b.rank - 2 === batchShape.length;
  if (!aFull || !bFull) {
    // Rare mixed broadcasting (e.g. [2,1,m,k]·[1,3,k,n]): materialise, then recurse.
    return tidy(() => matmul(expandBatch(a, batchShape), expandBatch(b, batchShape), opts));
  }
  const out = empty([...batchShape, m, n], a.dtype, be);
  be.matmul(a.storage, b.storage, out.storage, {
    batch, m, n, k, transA, transB, aOffset: 0, bOffset: 0, cOffset: 0,
    aBatchStride: aOne ? 0 : m * k, bBatchStride: bOne ? 0 : k * n, cBatchStride: m * n, accumulate: false,
  });
  return record(out, 'matmul', [a, b], [a, b], (g) => {
    // C = op(A)·op(B): dop(A) = G·op(B)ᵀ, dop(B) = op(A)ᵀ·G; then undo the op and the broadcast.
    let ga: Tensor | null = null, gb: Tensor | null = null;
    if (a.requiresGrad) ga = transA ? matmul(b, g, { transA: transB, transB: true }) : matmul(g, b, { transB: !transB });
    if (b.requiresGrad) gb = transB ? matmul(g, a, { transA: true, transB: transA }) : matmul(a, g, { transA: !transA });
    return [ga && reduceBatch(ga, a), gb && reduceBatch(gb, b)];
  });
}

function expandBatch(t: Tensor, batchShape: number[]): Tensor {
  return broadcastTo(t, [...batchShape, ...t.shape.slice(-2)]);
}

function reduceBatch(g: Tensor, x: Tensor): Tensor {
  if (g.size === x.size) return g.rank === x.rank ? g : reshape(g, x.shape);
  return sumToShape(g, x.shape);
}

/**
 * matmul(a, slice(b, -2, start, end), opts) without copying the slice: the kernel reads rows
 * [start, end) of each of b's matrices through its offset and batch stride. Decode caches keep
 * spare capacity along that axis, so a step reads the filled rows in place. Falls back to the
 * composite where gradients are recorded or batch axes would broadcast.
 */
export function matmulRows(a: Tensor, b: Tensor, start: number, end: number, opts: MatmulOptions = {}): Tensor {
  const be = backendOf('matmulRows', a, b);
  if (a.rank < 2 || b.rank < 2) throw new Error(`matmulRows: operands must have rank ≥ 2, got ${formatShape(a.shape)} · ${formatShape(b.shape)}`);
  const rows = b.shape[b.rank - 2], cols = b.shape[b.rank - 1];
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > rows || start >= end) {
    throw new Error(`matmulRows: rows [${start}, ${end}) are outside b's ${rows} rows (or empty)`);
  }
  const aBatch = a.shape.slice(0, -2), bBatch = b.shape.slice(0, -2);
  const sameBatch = aBatch.length === bBatch.length && aBatch.every((d, i) => d === bBatch[i]);
  if (isGradEnabled() && (a.requiresGrad || b.requiresGrad) || !sameBatch || a.dtype !== b.dtype) {
    return tidy(() => matmul(a, slice(b, -2, start, end), opts));
  }
  requireFloat('matmulRows', 'a', a); requireFloat('matmulRows', 'b', b);
  const transA = !!opts.transA, transB = !!opts.transB;
  const [ar, ac] = a.shape.slice(-2);
  const m = transA ? ac : ar, k = transA ? ar : ac;
  const len = end - start;
  const k2 = transB ? cols : len, n = transB ? len : cols;
  if (k !== k2) throw new Error(`matmulRows: inner dimensions differ: ${formatShape(a.shape)}${transA ? 'ᵀ' : ''} · rows [${start}, ${end}) of ${formatShape(b.shape)}${transB ? 'ᵀ' : ''}`);
  const batch = sizeOf(aBatch);
  const out = empty([...aBatch, m, n], a.dtype, be);
  be.matmul(a.storage, b.storage, out.storage, {
    batch, m, n, k, transA, transB, aOffset: 0, bOffset: start * cols, cOffset: 0,
    aBatchStride: m * k, bBatchStride: rows * cols, cBatchStride: m * n, accumulate: false,
  });
  return out;
}
