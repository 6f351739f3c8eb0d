// Reshaping and rearranging. reshape-like ops are views (shared storage); the rest copy through
// the stridedCopy kernel, whose adjoint is another strided copy or a scatter into zeros.
import { tidy } from '../core/engine.ts';
import { formatShape, normalizeAxis, sizeOf, stridesOf, type Shape } from '../core/shape.ts';
import { empty, record, view, type Tensor } from '../core/tensor.ts';
import { backendOf } from './util.ts';

/** A view with a new shape of the same size; one dimension may be −1 (inferred). */
export function reshape(x: Tensor, shape: Shape): Tensor {
  backendOf('reshape', x);
  const s = [...shape];
  const hole = s.indexOf(-1);
  if (hole >= 0) {
    const rest = sizeOf(s.filter((_, i) => i !== hole));
    if (rest === 0 || x.size % rest !== 0) throw new Error(`reshape: cannot infer -1 reshaping ${formatShape(x.shape)} to ${formatShape(shape)}`);
    s[hole] = x.size / rest;
  }
  if (sizeOf(s) !== x.size) throw new Error(`reshape: ${formatShape(x.shape)} (${x.size} elements) cannot become ${formatShape(shape)}`);
  const out = view(x, s);
  return record(out, 'reshape', [x], [], (g) => [view(g, x.shape)]);
}

/** x as one axis of x.size elements. */
export function flatten(x: Tensor): Tensor { return reshape(x, [x.size]); }

/** x with a new axis of size 1 at `axis` (negative counts from the end). */
export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normalizeAxis(axis < 0 ? axis + x.rank + 1 : axis, x.rank + 1, 'unsqueeze');
  const s = [...x.shape];
  s.splice(a, 0, 1);
  return reshape(x, s);
}

/** x without `axis` (which must have size 1), or without every axis of size 1 when omitted. */
export function squeeze(x: Tensor, axis?: number): Tensor {
  if (axis === undefined) return reshape(x, x.shape.filter((d) => d !== 1));
  const a = normalizeAxis(axis, x.rank, 'squeeze');
  if (x.shape[a] !== 1) throw new Error(`squeeze: axis ${axis} of ${formatShape(x.shape)} is not 1`);
  return reshape(x, x.shape.filter((_, i) => i !== a));
}

/** Reorders axes: out.shape[i] = x.shape[perm[i]]. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const b = backendOf('permute', x);
  if (perm.length !== x.rank || [...perm].sort((p, q) => p - q).some((p, i) => p !== i)) {
    throw new Error(`permute: ${JSON.stringify(perm)} is not a permutation of the ${x.rank} axes of ${formatShape(x.shape)}`);
  }
  const st = stridesOf(x.shape);
  const shape = perm.map((p) => x.shape[p]);
  const out = empty(shape, x.dtype, b);
  b.stridedCopy(x.storage, 0, shape, perm.map((p) => st[p]), out.storage, 0);
  return record(out, 'permute', [x], [], (g) => {
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => { inv[p] = i; });
    return [permute(g, inv)];
  });
}

/** Swaps two axes (default: the last two). */
export function transpose(x: Tensor, a = -2, c = -1): Tensor {
  const i = normalizeAxis(a, x.rank, 'transpose'), j = normalizeAxis(c, x.rank, 'transpose');
  const perm = x.shape.map((_, k) => k);
  perm[i] = j; perm[j] = i;
  return permute(x, perm);
}

/** x[…, start:end, …] along one axis (a copy). */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const b = backendOf('slice', x);
  const a = normalizeAxis(axis, x.rank, 'slice');
  const len = x.shape[a];
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > len || start > end) {
    throw new Error(`slice: range [${start}, ${end}) is outside axis ${a} of length ${len}`);
  }
  const shape = [...x.shape];
  shape[a] = end - start;
  const st = stridesOf(x.shape);
  const out = empty(shape, x.dtype, b);
  b.stridedCopy(x.storage, start * st[a], shape, st, out.storage, 0);
  return record(out, 'slice', [x], [], (g) => {
    const dx = empty(x.shape, g.dtype, b);
    b.fill(dx.storage, 0, 0, dx.size);
    scatterSlice(g, dx, a, start);
    return [dx];
  });
}

/** Writes src into dst at offset `start` along `axis` (shapes agree elsewhere). */
function scatterSlice(src: Tensor, dst: Tensor, axis: number, start: number): void {
  const b = dst.backend;
  const dstStrides = stridesOf(dst.shape);
  // Copy through the outer blocks: each block of src along axis is contiguous in dst too.
  const outer = sizeOf(src.shape.slice(0, axis));
  const block = sizeOf(src.shape.slice(axis));
  for (let o = 0; o < outer; o++) {
    b.copy(src.storage, o * block, dst.storage, o * (axis === 0 ? 0 : dstStrides[axis - 1]) + start * dstStrides[axis], block);
  }
}

/** Joins tensors along an existing axis. */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new Error('concat: no tensors');
  const b = backendOf('concat', ...xs);
  const a = normalizeAxis(axis, xs[0].rank, 'concat');
  for (const t of xs) {
    if (t.rank !== xs[0].rank || t.shape.some((d, i) => i !== a && d !== xs[0].shape[i]) || t.dtype !== xs[0].dtype) {
      throw new Error(`concat: ${t.describe()} does not match ${xs[0].describe()} outside axis ${a}`);
    }
  }
  const shape = [...xs[0].shape];
  shape[a] = xs.reduce((s, t) => s + t.shape[a], 0);
  const out = empty(shape, xs[0].dtype, b);
  let at = 0;
  for (const t of xs) { scatterSlice(t, out, a, at); at += t.shape[a]; }
  return record(out, 'concat', xs, [], (g) => {
    let start = 0;
    return xs.map((t) => { const s = start; start += t.shape[a]; return t.requiresGrad ? slice(g, a, s, s + t.shape[a]) : null; });
  });
}

/** Stacks same-shaped tensors along a new axis. */
export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  return tidy(() => concat(xs.map((t) => unsqueeze(t, axis)), axis));
}

/** A copy that owns its storage (breaks a view's sharing). */
export function clone(x: Tensor): Tensor {
  const b = backendOf('clone', x);
  const out = empty(x.shape, x.dtype, b);
  b.copy(x.storage, 0, out.storage, 0, x.size);
  return record(out, 'clone', [x], [], (g) => [g]);
}

/** A tensor sharing x's values with no gradient history. */
export function detach(x: Tensor): Tensor {
  backendOf('detach', x);
  return view(x, x.shape);
}
