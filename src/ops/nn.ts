// Fused neural-network ops: each is one forward kernel and one backward kernel, over the last axis.
// Each checks hasKernel(backend, …) and otherwise runs the composite of core-kernel ops beside it.
import { hasKernel } from '../core/backend.ts';
import { tidy } from '../core/engine.ts';
import { formatShape, sameShape } from '../core/shape.ts';
import { empty, record, tensorFrom, type Tensor } from '../core/tensor.ts';
import { add, div, eq, exp, log, maximum, mul, ne, neg, rsqrt, silu, square, sub, where } from './elementwise.ts';
import { max, mean, sum } from './reduce.ts';
import { concat, detach, permute, reshape, slice } from './shape.ts';
import { backendOf, requireDType, requireFloat } from './util.ts';

function rowsCols(x: Tensor): [number, number] {
  const cols = x.rank === 0 ? 1 : x.shape[x.rank - 1];
  return [cols === 0 ? 0 : x.size / cols, cols];
}

function softmaxImpl(x: Tensor, log: boolean): Tensor {
  const op = log ? 'logSoftmax' : 'softmax';
  const b = backendOf(op, x);
  requireFloat(op, 'x', x);
  const [rows, cols] = rowsCols(x);
  if (!hasKernel(b, 'softmax') || !hasKernel(b, 'softmaxBackward')) return softmaxComposite(x, log);
  const y = empty(x.shape, x.dtype, b);
  b.softmax(x.storage, y.storage, rows, cols, log);
  return record(y, op, [x], [y], (g) => {
    const dx = empty(x.shape, x.dtype, b);
    b.softmaxBackward(y.storage, g.storage, dx.storage, rows, cols, log);
    return [dx];
  });
}

/** Softmax (log-softmax) from core kernels; a row of −∞ only gives zeros (−∞), as the fused kernel. */
function softmaxComposite(x: Tensor, isLog: boolean): Tensor {
  return tidy(() => {
    const m = detach(max(x, -1, { keepDims: true }));
    const shift = where(eq(m, -Infinity), 0, m); // keeps −∞ rows at −∞ − 0 instead of NaN
    const z = sub(x, shift);
    const s = sum(exp(z), -1, { keepDims: true });
    if (isLog) return sub(z, log(s));
    return div(exp(z), where(eq(s, 0), 1, s));
  });
}

/** Softmax over the last axis. Rows that are entirely −∞ give zeros. */
export const softmax = (x: Tensor): Tensor => softmaxImpl(x, false);
/** Log-softmax over the last axis. */
export const logSoftmax = (x: Tensor): Tensor => softmaxImpl(x, true);

/** Softmax over the last axis where mask (broadcastable, nonzero = visible) hides entries. */
export function maskedSoftmax(x: Tensor, mask: Tensor): Tensor {
  return tidy(() => softmax(where(mask, x, -Infinity)));
}

/** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) · weight. */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps = 1e-6): Tensor {
  const b = backendOf('rmsNorm', x, weight);
  requireFloat('rmsNorm', 'x', x);
  const [rows, cols] = rowsCols(x);
  if (weight && (weight.rank !== 1 || weight.size !== cols)) throw new Error(`rmsNorm: weight ${formatShape(weight.shape)} must be [${cols}]`);
  if (!hasKernel(b, 'rmsNorm') || !hasKernel(b, 'rmsNormBackward')) {
    return tidy(() => { const y = mul(x, rsqrt(add(mean(square(x), -1, { keepDims: true }), eps))); return weight ? mul(y, weight) : y; });
  }
  const y = empty(x.shape, x.dtype, b), rstd = empty([rows], x.dtype, b);
  b.rmsNorm(x.storage, weight?.storage ?? null, y.storage, rstd.storage, rows, cols, eps);
  const inputs = weight ? [x, weight] : [x];
  const saved = weight ? [x, weight, rstd] : [x, rstd];
  const out = record(y, 'rmsNorm', inputs, saved, (g) => {
    const dx = empty(x.shape, x.dtype, b);
    const dw = weight?.requiresGrad ? empty(weight.shape, weight.dtype, b) : null;
    b.rmsNormBackward(x.storage, weight?.storage ?? null, rstd.storage, g.storage, dx.storage, dw?.storage ?? null, rows, cols);
    return [dx, dw];
  });
  rstd.dispose(); // the node holds its storage while needed
  return out;
}

/** LayerNorm over the last axis, with optional weight and bias. */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  const b = backendOf('layerNorm', x, weight, bias);
  requireFloat('layerNorm', 'x', x);
  const [rows, cols] = rowsCols(x);
  for (const [name, p] of [['weight', weight], ['bias', bias]] as const) {
    if (p && (p.rank !== 1 || p.size !== cols)) throw new Error(`layerNorm: ${name} ${formatShape(p.shape)} must be [${cols}]`);
  }
  if (!hasKernel(b, 'layerNorm') || !hasKernel(b, 'layerNormBackward')) {
    return tidy(() => {
      const c = sub(x, mean(x, -1, { keepDims: true }));
      let y = mul(c, rsqrt(add(mean(square(c), -1, { keepDims: true }), eps)));
      if (weight) y = mul(y, weight);
      return bias ? add(y, bias) : y;
    });
  }
  const y = empty(x.shape, x.dtype, b), mu = empty([rows], x.dtype, b), rstd = empty([rows], x.dtype, b);
  b.layerNorm(x.storage, weight?.storage ?? null, bias?.storage ?? null, y.storage, mu.storage, rstd.storage, rows, cols, eps);
  const params = [weight, bias].filter((p): p is Tensor => p !== null);
  const out = record(y, 'layerNorm', [x, ...params], [x, mu, rstd, ...params], (g) => {
    const dx = empty(x.shape, x.dtype, b);
    const dw = weight?.requiresGrad ? empty(weight.shape, weight.dtype, b) : null;
    const db = bias?.requiresGrad ? empty(bias.shape, bias.dtype, b) : null;
    b.layerNormBackward(x.storage, weight?.storage ?? null, mu.storage, rstd.storage, g.storage, dx.storage, dw?.storage ?? null, db?.storage ?? null, rows, cols);
    const grads: (Tensor | null)[] = [dx];
    if (weight) grads.push(dw);
    if (bias) grads.push(db);
    return grads;
  });
  mu.dispose(); rstd.dispose();
  return out;
}

/** Rows of `table` (V, D) picked by int32 `ids` of any shape: out shape ids.shape + [D]. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  const b = backendOf('embedding', table, ids);
  requireDType('embedding', 'ids', ids, 'int32');
  if (table.rank !== 2) throw new Error(`embedding: table must be 2-D (vocab, dim), got ${formatShape(table.shape)}`);
  const [vocab, cols] = table.shape;
  b.checkValues(ids.storage, ids.size, { kind: 'index', limit: vocab, ignore: null }, 'embedding', 'id');
  const out = empty([...ids.shape, cols], table.dtype, b);
  b.gather(table.storage, ids.storage, out.storage, ids.size, cols);
  return record(out, 'embedding', [table], [ids], (g) => {
    const dt = empty(table.shape, table.dtype, b);
    b.fill(dt.storage, 0, 0, dt.size);
    b.scatterAdd(g.storage, ids.storage, dt.storage, ids.size, cols);
    return [dt];
  });
}

/** Options of {@link crossEntropy}. */
export interface CrossEntropyOptions {
  /** Targets equal to this are skipped (default −100, as PyTorch). */
  ignoreIndex?: number;
  /** 'mean' over non-ignored targets (default), 'sum', or 'none' (per position). */
  reduction?: 'mean' | 'sum' | 'none';
}

/** Fused softmax cross-entropy of logits (…, V) against int32 targets (…). */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const b = backendOf('crossEntropy', logits, targets);
  requireFloat('crossEntropy', 'logits', logits);
  requireDType('crossEntropy', 'targets', targets, 'int32');
  if (!sameShape(logits.shape.slice(0, -1), targets.shape)) {
    throw new Error(`crossEntropy: targets ${formatShape(targets.shape)} must match logits ${formatShape(logits.shape)} without the last axis`);
  }
  const ignore = opts.ignoreIndex ?? -100;
  const [rows, cols] = rowsCols(logits);
  b.checkValues(targets.storage, targets.size, { kind: 'index', limit: cols, ignore }, 'crossEntropy', 'id');
  let perRow: Tensor;
  if (hasKernel(b, 'crossEntropy') && hasKernel(b, 'crossEntropyBackward')) {
    const losses = empty(targets.shape, logits.dtype, b), lse = empty([rows], logits.dtype, b);
    b.crossEntropy(logits.storage, targets.storage, losses.storage, lse.storage, rows, cols, ignore);
    perRow = record(losses, 'crossEntropy', [logits], [logits, targets, lse], (g) => {
      const dl = empty(logits.shape, logits.dtype, b);
      b.crossEntropyBackward(logits.storage, targets.storage, lse.storage, g.storage, dl.storage, rows, cols, ignore);
      return [dl];
    });
    lse.dispose();
  } else {
    // −log softmax picked by a one-hot of the targets: an ignored target matches no column (loss 0).
    perRow = tidy(() => {
      const columns = tensorFrom(Int32Array.from({ length: cols }, (_, j) => j), [cols], 'int32', b);
      const onehot = eq(reshape(targets, [...targets.shape, 1]), columns);
      return neg(sum(mul(logSoftmax(logits), onehot), -1));
    });
  }
  const reduction = opts.reduction ?? 'mean';
  if (reduction === 'none') return perRow;
  // perRow is an intermediate now: free it with the reduction's own (the node keeps what it needs).
  const out = tidy(() => {
    if (reduction === 'sum') return sum(perRow);
    // The mean over the targets that count, counted on the device (no read of the targets).
    const counted = sum(ne(targets, tensorFrom([ignore], [], logits.dtype, b)));
    return div(sum(perRow), maximum(counted, 1));
  });
  perRow.dispose();
  return out;
}

/** Inverted dropout with a counter-hash mask (identical on every backend for a seed). */
export function dropout(x: Tensor, p: number, seed: number, training = true): Tensor {
  if (!(p >= 0 && p < 1)) throw new Error(`dropout: p must be in [0, 1), got ${p}`);
  if (!training || p === 0) return x;
  const b = backendOf('dropout', x);
  const mask = empty(x.shape, x.dtype, b);
  b.dropoutMask(mask.storage, x.size, p, seed);
  const y = mul(x, mask);
  mask.dispose(); // the mul node keeps its storage for the backward
  return y;
}

/** Options of {@link rotary}. */
export interface RotaryOptions {
  /** Position of the first row along T (decoding continues a sequence). Default 0. */
  offset?: number;
  /** Split x (B, T, H·D) into H heads (B, H, T, D) in the same pass. */
  heads?: number;
}

/**
 * Rotary position embedding, rotate-half pairs (i, i + D/2): row t turns pair i by the angle whose
 * cos and sin are cos[offset + t, i], sin[offset + t, i], tables (≥ offset + T, D/2) that are
 * constants (no gradient flows to them). x is (…, T, D), or with `heads` H, (B, T, H·D) and the
 * result (B, H, T, D). One kernel each way: the gradient is the inverse rotation (merging heads).
 */
export function rotary(x: Tensor, cos: Tensor, sin: Tensor, opts: RotaryOptions = {}): Tensor {
  const b = backendOf('rotary', x, cos, sin);
  requireFloat('rotary', 'x', x);
  if (cos.rank !== 2 || !sameShape(cos.shape, sin.shape)) throw new Error(`rotary: cos ${formatShape(cos.shape)} and sin ${formatShape(sin.shape)} must be equal (positions, D/2) tables`);
  if (cos.dtype !== x.dtype || sin.dtype !== x.dtype) throw new Error(`rotary: tables (${cos.dtype}, ${sin.dtype}) must have x's dtype ${x.dtype}`);
  const offset = opts.offset ?? 0, H = opts.heads;
  if (!(Number.isInteger(offset) && offset >= 0)) throw new Error(`rotary: offset must be a non-negative integer, got ${offset}`);
  const D = 2 * cos.shape[1];
  let B: number, T: number, outShape: number[];
  if (H === undefined) {
    if (x.rank < 2 || x.shape[x.rank - 1] !== D) throw new Error(`rotary: x ${formatShape(x.shape)} must be (…, T, ${D}) for tables ${formatShape(cos.shape)}`);
    T = x.shape[x.rank - 2];
    B = T * D === 0 ? 0 : x.size / (T * D);
    outShape = [...x.shape];
  } else {
    if (!(Number.isInteger(H) && H > 0)) throw new Error(`rotary: heads must be a positive integer, got ${H}`);
    if (x.rank !== 3 || x.shape[2] !== H * D) throw new Error(`rotary: x ${formatShape(x.shape)} must be (B, T, ${H}·${D}) for ${H} heads and tables ${formatShape(cos.shape)}`);
    [B, T] = x.shape;
    outShape = [B, H, T, D];
  }
  if (offset + T > cos.shape[0]) throw new Error(`rotary: positions up to ${offset + T} exceed the tables' ${cos.shape[0]} rows`);
  const heads = H ?? 1, split = H !== undefined;
  if (!hasKernel(b, 'rotary')) {
    return tidy(() => rotateHalf(split ? permute(reshape(x, [B, T, heads, D]), [0, 2, 1, 3]) : x, cos, sin, offset));
  }
  const y = empty(outShape, x.dtype, b);
  b.rotary(x.storage, cos.storage, sin.storage, y.storage, B, T, heads, D, offset, false, false, split);
  return record(y, 'rotary', [x], [cos, sin], (g) => {
    const dx = empty(x.shape, x.dtype, b);
    b.rotary(g.storage, cos.storage, sin.storage, dx.storage, B, T, heads, D, offset, true, split, false);
    return [dx];
  });
}

/** The rotary turn of x (…, T, D) at positions offset…offset+T−1, from core-kernel ops. */
export function rotateHalf(x: Tensor, cos: Tensor, sin: Tensor, offset: number): Tensor {
  const T = x.shape[x.rank - 2], D = x.shape[x.rank - 1], half = D / 2;
  return tidy(() => {
    const c = slice(cos, 0, offset, offset + T), s = slice(sin, 0, offset, offset + T);
    const a = slice(x, -1, 0, half), z = slice(x, -1, half, D);
    return concat([sub(mul(a, c), mul(z, s)), add(mul(z, c), mul(a, s))], -1);
  });
}

/** SwiGLU's gate silu(a) ⊙ b for same-shaped a, b (one kernel each way). */
export function swiglu(a: Tensor, b: Tensor): Tensor {
  const be = backendOf('swiglu', a, b);
  requireFloat('swiglu', 'a', a); requireFloat('swiglu', 'b', b);
  if (!sameShape(a.shape, b.shape) || a.dtype !== b.dtype) throw new Error(`swiglu: ${a.describe()} and ${b.describe()} must have one shape and dtype`);
  if (!hasKernel(be, 'swiglu') || !hasKernel(be, 'swigluBackward')) return tidy(() => mul(silu(a), b));
  const y = empty(a.shape, a.dtype, be);
  be.swiglu(a.storage, b.storage, y.storage, a.size);
  return record(y, 'swiglu', [a, b], [a, b], (g) => {
    const da = empty(a.shape, a.dtype, be), db = empty(b.shape, b.dtype, be);
    be.swigluBackward(a.storage, b.storage, g.storage, da.storage, db.storage, a.size);
    return [a.requiresGrad ? da : (da.dispose(), null), b.requiresGrad ? db : (db.dispose(), null)];
  });
}
