// Making tensors: from values, constants and seeded random numbers.
import type { Backend } from '../core/backend.ts';
import type { DType, TypedArray } from '../core/dtype.ts';
import { getBackend } from '../core/engine.ts';
import { Rng } from '../core/random.ts';
import { checkShape, sizeOf, type Shape } from '../core/shape.ts';
import { empty, Tensor, tensorFrom } from '../core/tensor.ts';

/**
 * Options of the tensor constructors ({@link tensor}, {@link zeros}, …): dtype (default float32),
 * requiresGrad, backend (default the active one), name.
 */
export interface TensorOptions {
  dtype?: DType;
  requiresGrad?: boolean;
  backend?: Backend;
  name?: string;
}

type Nested = number | readonly Nested[];

function flatten(values: Nested, shape: number[], depth: number, out: number[]): void {
  if (typeof values === 'number') { out.push(values); return; }
  if (shape.length === depth) shape.push(values.length);
  else if (shape[depth] !== values.length) throw new Error('tensor: ragged nested array');
  for (const v of values) flatten(v, shape, depth + 1, out);
}

function finish(t: Tensor, opts: TensorOptions): Tensor {
  t.requiresGrad = opts.requiresGrad ?? false;
  if (opts.name) t.name = opts.name;
  return t;
}

/**
 * tensor(values, shape?, options): values is a typed array, a flat number array (with shape), a
 * nested array (shape inferred) or a number. dtype defaults to the typed array's, else float32.
 *
 *     const x = tensor([1, 2, 3, 4, 5, 6], [2, 3], { requiresGrad: true });
 */
export function tensor(values: TypedArray | Nested, shape?: Shape, opts: TensorOptions = {}): Tensor {
  let flat: ArrayLike<number>;
  let inferred: number[] = [];
  if (ArrayBuffer.isView(values)) flat = values as TypedArray;
  else if (typeof values === 'number') flat = [values];
  else { const out: number[] = []; flatten(values, inferred, 0, out); flat = out; }
  const s = shape ?? (typeof values === 'number' ? [] : ArrayBuffer.isView(values) ? [flat.length] : inferred);
  checkShape(s);
  const dtype = opts.dtype ?? (values instanceof Float64Array ? 'float64' : values instanceof Int32Array ? 'int32' : 'float32');
  return finish(tensorFrom(flat, s, dtype, opts.backend ?? getBackend()), opts);
}

/** A tensor of `shape` filled with `value`. */
export function full(shape: Shape, value: number, opts: TensorOptions = {}): Tensor {
  const t = empty(shape, opts.dtype ?? 'float32', opts.backend ?? getBackend());
  t.backend.fill(t.storage, value, 0, t.size);
  return finish(t, opts);
}

/** A tensor of `shape` filled with 0. */
export const zeros = (shape: Shape, opts: TensorOptions = {}): Tensor => full(shape, 0, opts);
/** A tensor of `shape` filled with 1. */
export const ones = (shape: Shape, opts: TensorOptions = {}): Tensor => full(shape, 1, opts);

/** Zeros with the shape, dtype and backend of `t`. */
export function zerosLike(t: Tensor): Tensor { return full(t.shape, 0, { dtype: t.dtype, backend: t.backend }); }

/** 0, 1, … n−1 (int32 by default). */
export function arange(n: number, opts: TensorOptions = {}): Tensor {
  const v = Array.from({ length: n }, (_, i) => i);
  return tensor(v, [n], { dtype: 'int32', ...opts });
}

/** Normal(mean, std) values from a seeded generator (or a passed Rng, which advances). */
export function randn(shape: Shape, opts: TensorOptions & { seed?: number; rng?: Rng; mean?: number; std?: number } = {}): Tensor {
  const rng = opts.rng ?? new Rng(opts.seed ?? 0);
  const n = sizeOf(shape), mean = opts.mean ?? 0, std = opts.std ?? 1;
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = mean + std * rng.normal();
  return tensor(v, shape, { dtype: 'float32', ...opts });
}

/** Uniform [low, high) values from a seeded generator (or a passed Rng). */
export function rand(shape: Shape, opts: TensorOptions & { seed?: number; rng?: Rng; low?: number; high?: number } = {}): Tensor {
  const rng = opts.rng ?? new Rng(opts.seed ?? 0);
  const n = sizeOf(shape), lo = opts.low ?? 0, hi = opts.high ?? 1;
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = lo + (hi - lo) * rng.next();
  return tensor(v, shape, { dtype: 'float32', ...opts });
}
