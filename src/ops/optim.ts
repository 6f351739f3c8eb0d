// In-place optimizer updates (no gradient is recorded: they run under noGrad by nature).
import { hasKernel, type AdamWParams } from '../core/backend.ts';
import { noGrad, tidy } from '../core/engine.ts';
import { sameShape } from '../core/shape.ts';
import type { Tensor } from '../core/tensor.ts';
import { add, div, mul, sqrt, square, sub } from './elementwise.ts';
import { backendOf } from './util.ts';

/** One fused AdamW step on `param` in place, with its moment buffers m and v (same shape). */
export function adamwUpdate(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, p: AdamWParams): void {
  const b = backendOf('adamwUpdate', param, grad, m, v);
  for (const [name, t] of [['grad', grad], ['m', m], ['v', v]] as const) {
    if (!sameShape(t.shape, param.shape) || t.dtype !== param.dtype) throw new Error(`adamwUpdate: ${name} ${t.describe()} must match ${param.describe()}`);
  }
  if (hasKernel(b, 'adamw')) { b.adamw(param.storage, grad.storage, m.storage, v.storage, param.size, p); return; }
  // Composite: the same update from elementwise ops, copied back into the three buffers.
  noGrad(() => tidy(() => {
    const m1 = add(mul(m, p.beta1), mul(grad, 1 - p.beta1));
    const v1 = add(mul(v, p.beta2), mul(square(grad), 1 - p.beta2));
    const step = div(mul(m1, p.lr / p.bc1), add(sqrt(div(v1, p.bc2)), p.eps));
    const p1 = sub(mul(param, 1 - p.lr * p.weightDecay), step);
    for (const [to, from] of [[m, m1], [v, v1], [param, p1]] as const) b.copy(from.storage, 0, to.storage, 0, param.size);
  }));
}
