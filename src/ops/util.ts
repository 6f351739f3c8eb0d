// Helpers shared by the op files.
import type { Backend } from '../core/backend.ts';
import type { DType } from '../core/dtype.ts';
import { getBackend } from '../core/engine.ts';
import { broadcastShapes, broadcastStrides, formatShape, sameShape, type Shape } from '../core/shape.ts';
import { empty, record, type Tensor } from '../core/tensor.ts';

/** The backend an op runs on: its inputs' (which must agree). */
export function backendOf(op: string, ...ts: (Tensor | null | undefined)[]): Backend {
  let b: Backend | null = null;
  for (const t of ts) {
    if (!t) continue;
    t.assertLive(op);
    if (b && t.backend !== b) throw new Error(`${op}: inputs live on different backends ('${b.name}' and '${t.backend.name}')`);
    b = t.backend;
  }
  return b ?? getBackend();
}

export function requireFloat(op: string, name: string, t: Tensor): void {
  if (t.dtype === 'int32') throw new Error(`${op}: ${name} must be a float tensor, got int32${formatShape(t.shape)}`);
}

export function requireDType(op: string, name: string, t: Tensor, dtype: DType): void {
  if (t.dtype !== dtype) throw new Error(`${op}: ${name} must be ${dtype}, got ${t.dtype}${formatShape(t.shape)}`);
}

export function requireRank(op: string, name: string, t: Tensor, rank: number): void {
  if (t.rank !== rank) throw new Error(`${op}: ${name} must have rank ${rank}, got shape ${formatShape(t.shape)}`);
}

/** The dtype two float operands compute in (float64 wins: the reference's oracles). */
export function resultDType(op: string, a: Tensor, b: Tensor): DType {
  if (a.dtype === b.dtype) return a.dtype;
  if (a.dtype === 'int32') return b.dtype;
  if (b.dtype === 'int32') return a.dtype;
  throw new Error(`${op}: dtypes ${a.dtype} and ${b.dtype} do not mix; cast one first`);
}

/** Materialises t read with broadcasting as `shape`. */
export function expandTo(t: Tensor, shape: Shape): Tensor {
  const out = empty(shape, t.dtype, t.backend);
  t.backend.stridedCopy(t.storage, 0, shape, broadcastStrides(t.shape, shape), out.storage, 0);
  return out;
}

/**
 * Sums a gradient of the broadcast shape back to an operand's shape: the adjoint of broadcasting.
 * Returns g itself when no axis was broadcast.
 */
export function sumToShape(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const b = g.backend;
  const lead = g.rank - shape.length;
  // Reduce axis by axis from the last; each is (outer, len, inner) over the current shape.
  let cur = g;
  let curShape = [...g.shape];
  for (let ax = g.rank - 1; ax >= 0; ax--) {
    const target = ax < lead ? 1 : shape[ax - lead];
    if (curShape[ax] === target) continue;
    const outer = curShape.slice(0, ax).reduce((x, y) => x * y, 1);
    const inner = curShape.slice(ax + 1).reduce((x, y) => x * y, 1);
    const next = [...curShape];
    next[ax] = 1;
    const out = empty(next, g.dtype, b);
    b.reduce('sum', cur.storage, out.storage, outer, curShape[ax], inner);
    if (cur !== g) cur.dispose();
    cur = out;
    curShape = next;
  }
  // Same element count as `shape` now: drop the leading 1s by viewing.
  const res = empty(shape, g.dtype, b);
  b.copy(cur.storage, 0, res.storage, 0, res.size);
  if (cur !== g) cur.dispose();
  return res;
}

export function broadcastPair(op: string, a: Tensor, b: Tensor): number[] {
  return broadcastShapes(a.shape, b.shape, op);
}

/** x broadcast (copied) to `shape`; its gradient sums back. */
export function broadcastTo(x: Tensor, shape: Shape): Tensor {
  backendOf('broadcastTo', x);
  broadcastShapes(x.shape, shape, 'broadcastTo');
  if (sameShape(x.shape, shape)) return x;
  return record(expandTo(x, shape), 'broadcastTo', [x], [], (g) => [sumToShape(g, x.shape)]);
}
