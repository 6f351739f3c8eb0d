// Reductions over one axis or all axes. Multi-axis reductions reduce one axis at a time.
import type { ReduceOp } from '../core/backend.ts';
import { tidy } from '../core/engine.ts';
import { normalizeAxis, sizeOf } from '../core/shape.ts';
import { empty, record, type Tensor } from '../core/tensor.ts';
import { div, eq, exp, log, mul, sub, add } from './elementwise.ts';
import { detach, reshape } from './shape.ts';
import { backendOf, expandTo, requireFloat } from './util.ts';

/** Options of the reductions ({@link sum}, {@link mean}, {@link max}, …). */
export interface ReduceOptions {
  /** Keep the reduced axes as size 1 (default false). */
  keepDims?: boolean;
}

type Axes = number | readonly number[] | undefined;

function axesOf(x: Tensor, axis: Axes, op: string): number[] {
  if (axis === undefined) return x.shape.map((_, i) => i);
  const list = typeof axis === 'number' ? [axis] : [...axis];
  const norm = list.map((a) => normalizeAxis(a, x.rank, op));
  return [...new Set(norm)].sort((p, q) => q - p); // last first keeps earlier axis numbers valid
}

function reduceAxis(op: ReduceOp, x: Tensor, axis: number): Tensor {
  const b = backendOf(op, x);
  requireFloat(op, 'x', x);
  const outer = sizeOf(x.shape.slice(0, axis));
  const len = x.shape[axis];
  const inner = sizeOf(x.shape.slice(axis + 1));
  const shape = [...x.shape];
  shape[axis] = 1;
  const out = empty(shape, x.dtype, b);
  b.reduce(op, x.storage, out.storage, outer, len, inner);
  if (op === 'sum') return record(out, 'sum', [x], [], (g) => [expandTo(g, x.shape)]);
  // max/min: the gradient goes to the arg-extreme entries, split evenly between ties.
  return record(out, op, [x], [x, out], (g) => {
    const hit = eq(x, out);
    const count = reduceAxis('sum', hit, axis);
    return [mul(hit, div(g, count))];
  });
}

// Composite ops run in tidy() so that their intermediates are freed even outside a caller's scope
// (the recorded nodes keep what the backward needs).
function reduceMany(op: ReduceOp, x: Tensor, axis: Axes, opts: ReduceOptions): Tensor {
  const axes = axesOf(x, axis, op);
  return tidy(() => {
    let cur = x;
    for (const a of axes) cur = reduceAxis(op, cur, a);
    if (opts.keepDims) return cur === x ? reshape(x, x.shape) : cur;
    const shape = x.shape.filter((_, i) => !axes.includes(i));
    return reshape(cur, shape);
  });
}

/** The sum over `axis` (a number, a list, or all axes when omitted). */
export const sum = (x: Tensor, axis?: Axes, opts: ReduceOptions = {}): Tensor => reduceMany('sum', x, axis, opts);
/** The largest value over `axis` (all axes when omitted); the gradient goes to the first maximum. */
export const max = (x: Tensor, axis?: Axes, opts: ReduceOptions = {}): Tensor => reduceMany('max', x, axis, opts);
/** The smallest value over `axis` (all axes when omitted); the gradient goes to the first minimum. */
export const min = (x: Tensor, axis?: Axes, opts: ReduceOptions = {}): Tensor => reduceMany('min', x, axis, opts);

/** The mean over `axis` (a number, a list, or all axes when omitted). */
export function mean(x: Tensor, axis?: Axes, opts: ReduceOptions = {}): Tensor {
  const n = axesOf(x, axis, 'mean').reduce((p, a) => p * x.shape[a], 1);
  return tidy(() => div(sum(x, axis, opts), n));
}

/** log Σ exp(x) over the axes, stable: the max is subtracted as a constant (exact gradient). */
export function logsumexp(x: Tensor, axis?: Axes, opts: ReduceOptions = {}): Tensor {
  return tidy(() => {
    const m = detach(max(x, axis, { keepDims: true }));
    const lse = add(log(sum(exp(sub(x, m)), axis, { keepDims: true })), m);
    if (opts.keepDims) return lse;
    return reshape(lse, x.shape.filter((_, i) => !axesOf(x, axis, 'logsumexp').includes(i)));
  });
}
