// Head layouts for fused projections. A mixer projects x once through its concatenated weights
// (one GEMM for q, k, v, …) into y (B, T, C); splitHeads cuts y's columns into per-part heads
// (B, H, T, D), rotating the parts that take rotary on the way, one pass per part; mergeHeads
// turns (B, H, T, D) back into token rows (B, T, H·D). Tensors are always contiguous here, so this
// replaces a reshape + permute copy (+ a rotary pass) per projection, and the gradient of all the
// parts lands in one (B, T, C) buffer that the projection's single backward GEMM reads.
import { hasKernel, type HeadsBlock } from '../core/backend.ts';
import { isGradEnabled, keep, tidy } from '../core/engine.ts';
import { formatShape, sameShape } from '../core/shape.ts';
import { empty, record, view, type Tensor } from '../core/tensor.ts';
import { rotateHalf } from './nn.ts';
import { permute, reshape, slice } from './shape.ts';
import { backendOf, requireFloat } from './util.ts';

/** One block of y's columns: `heads` heads of `dim` features each, rotated or not. */
export interface HeadsPart {
  heads: number;
  dim: number;
  /** Turn the pairs (i, i + dim/2) by the rotary tables (default false). */
  rotate?: boolean;
}

/** Options of {@link splitHeads}: rotary tables to apply while splitting. */
export interface SplitHeadsOptions {
  /** cos and sin tables (≥ offset + T, dim/2) of the rotated parts; constants (no gradient). */
  cos?: Tensor | null;
  sin?: Tensor | null;
  /** Position of y's first row along T (decoding continues a sequence). Default 0. */
  offset?: number;
}

/**
 * Splits y (B, T, C) into one (B, heads, T, dim) tensor per part, the parts taking consecutive
 * column blocks that cover C exactly (part p, head h: columns start_p + h·dim …). Rotated parts turn
 * row t by the tables at position offset + t (rotate-half, as rotary()). Differentiable in y: the
 * gradient of every part is written into one (B, T, C) gradient, the inverse rotation applied.
 */
export function splitHeads(y: Tensor, parts: readonly HeadsPart[], opts: SplitHeadsOptions = {}): Tensor[] {
  const op = 'splitHeads';
  const { cos = null, sin = null } = opts;
  const b = backendOf(op, y, cos, sin);
  requireFloat(op, 'y', y);
  if (y.rank !== 3) throw new Error(`${op}: y must be (B, T, C), got ${formatShape(y.shape)}`);
  const [B, T, C] = y.shape;
  const offset = opts.offset ?? 0;
  if (!(Number.isInteger(offset) && offset >= 0)) throw new Error(`${op}: offset must be a non-negative integer, got ${offset}`);
  if (parts.length === 0) throw new Error(`${op}: no parts`);
  let width = 0;
  for (const [i, p] of parts.entries()) {
    if (!(Number.isInteger(p.heads) && p.heads > 0 && Number.isInteger(p.dim) && p.dim > 0)) {
      throw new Error(`${op}: part ${i} needs positive integer heads and dim, got ${p.heads} × ${p.dim}`);
    }
    width += p.heads * p.dim;
    if (!p.rotate) continue;
    if (!cos || !sin) throw new Error(`${op}: part ${i} rotates but no cos/sin tables were given`);
    if (cos.rank !== 2 || !sameShape(cos.shape, sin.shape)) throw new Error(`${op}: cos ${formatShape(cos.shape)} and sin ${formatShape(sin.shape)} must be equal (positions, dim/2) tables`);
    if (cos.dtype !== y.dtype || sin.dtype !== y.dtype) throw new Error(`${op}: tables (${cos.dtype}, ${sin.dtype}) must have y's dtype ${y.dtype}`);
    if (2 * cos.shape[1] !== p.dim) throw new Error(`${op}: part ${i} has dim ${p.dim} but the tables ${formatShape(cos.shape)} turn dim ${2 * cos.shape[1]}`);
    if (offset + T > cos.shape[0]) throw new Error(`${op}: positions up to ${offset + T} exceed the tables' ${cos.shape[0]} rows`);
  }
  if (width !== C) throw new Error(`${op}: the parts cover ${width} columns but y ${formatShape(y.shape)} has ${C}`);

  if (!hasKernel(b, 'splitHeads') || !hasKernel(b, 'mergeHeads')) {
    // Composite: slice each part's columns, move its heads to axis 1, turn it if it rotates.
    let col = 0;
    return parts.map((p) => tidy(() => {
      const cols = slice(y, 2, col, (col += p.heads * p.dim));
      const heads = permute(reshape(cols, [B, T, p.heads, p.dim]), [0, 2, 1, 3]);
      return p.rotate ? rotateHalf(heads, cos!, sin!, offset) : heads;
    }));
  }
  const blocks: HeadsBlock[] = parts.map((p) => ({ heads: p.heads, dim: p.dim, rotate: !!p.rotate }));
  const anyRotate = blocks.some((p) => p.rotate);
  const [cs, sn] = anyRotate ? [cos!.storage, sin!.storage] : [null, null];
  const outs = blocks.map((p) => empty([B, p.heads, T, p.dim], y.dtype, b));
  b.splitHeads(y.storage, outs.map((t) => t.storage), B, T, blocks, cs, sn, offset);
  if (!isGradEnabled() || !y.requiresGrad) return outs;

  // The gradient: one merge pass of every part's gradient into one (B, T, C) buffer. Each part's
  // node stashes its gradient (a kept view) and the first to run returns that buffer, unfilled, as
  // the gradient of `src` (a private view of y that only the parts read, so the engine hands the
  // same buffer to src's node); src's node runs after every part (they consume it), merges the
  // stashed gradients into the buffer (zeros for parts that got none) and passes it on to y.
  const stash: (Tensor | null)[] = blocks.map(() => null);
  const src = record(view(y, y.shape), `${op}.merge`, [y], anyRotate ? [cos!, sin!] : [], (g) => {
    b.mergeHeads(stash.map((t) => t?.storage ?? null), g.storage, B, T, blocks, cs, sn, offset);
    for (const [i, t] of stash.entries()) { t?.dispose(); stash[i] = null; }
    return [g];
  });
  let handedOut = false;
  const recorded = outs.map((out, i) => record(out, op, [src], [], (g) => {
    stash[i] = keep(view(g, g.shape));
    if (handedOut) return [null];
    handedOut = true;
    return [empty([B, T, C], y.dtype, b)];
  }));
  src.dispose(); // the parts' nodes keep src's node (and through it y's) alive
  return recorded;
}
/** (B, H, T, D) → (B, T, H·D): the heads side by side in each token row. Differentiable (the gradient is the split). */
export function mergeHeads(x: Tensor): Tensor {
  const op = 'mergeHeads';
  const b = backendOf(op, x);
  requireFloat(op, 'x', x);
  if (x.rank !== 4) throw new Error(`${op}: x must be (B, H, T, D), got ${formatShape(x.shape)}`);
  const [B, H, T, D] = x.shape;
  if (!hasKernel(b, 'splitHeads') || !hasKernel(b, 'mergeHeads')) return tidy(() => reshape(permute(x, [0, 2, 1, 3]), [B, T, H * D]));
  const out = empty([B, T, H * D], x.dtype, b);
  const block = [{ heads: H, dim: D, rotate: false }];
  b.mergeHeads([x.storage], out.storage, B, T, block, null, null, 0);
  return record(out, op, [x], [], (g) => {
    const dx = empty(x.shape, x.dtype, b);
    b.splitHeads(g.storage, [dx.storage], B, T, block, null, null, 0);
    return [dx];
  });
}
