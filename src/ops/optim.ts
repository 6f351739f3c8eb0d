// In-place optimizer updates (no gradient is recorded: they run under noGrad by nature).
import type { AdamWParams } from '../core/backend.ts';
import { sameShape } from '../core/shape.ts';
import type { Tensor } from '../core/tensor.ts';
import { backendOf } from './util.ts';

/** One fused AdamW step on `param` in place, with its moment buffers m and v (same shape). */
export function adamwUpdate(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, p: AdamWParams): void {
  const b = backendOf('adamwUpdate', param, grad, m, v);
  for (const [name, t] of [['grad', grad], ['m', m], ['v', v]] as const) {
    if (!sameShape(t.shape, param.shape) || t.dtype !== param.dtype) throw new Error(`adamwUpdate: ${name} ${t.describe()} must match ${param.describe()}`);
  }
  b.adamw(param.storage, grad.storage, m.storage, v.storage, param.size, p);
}
