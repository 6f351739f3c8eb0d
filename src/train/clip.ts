// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): the norm of all gradients taken
// as one vector; when it exceeds maxNorm every gradient is scaled in place by maxNorm / (norm + 1e-6).
// It runs on the gradients' backend: clipGradNormOnDevice reads nothing back, so a training step
// can read its loss and norm together, once (clipGradNorm is the same with that read).
import { noGrad, tidy } from '../core/engine.ts';
import { tensorFrom, type Tensor } from '../core/tensor.ts';
import { add, div, eq, gt, mul, sqrt, square, sub, where } from '../ops/elementwise.ts';
import { sum } from '../ops/reduce.ts';
import { reshape } from '../ops/shape.ts';

const gradsOf = (params: readonly Tensor[]): Tensor[] => params.flatMap((p) => (p.grad && !p.grad.isDisposed ? [p.grad] : []));

/** ‖(g₁, g₂, …)‖₂ as a one-element tensor on the gradients' backend, or null when none has a gradient. */
function normTensor(grads: readonly Tensor[]): Tensor | null {
  if (grads.length === 0) return null;
  return tidy(() => sqrt(grads.map((g) => sum(square(reshape(g, [g.size])))).reduce((a, b) => add(a, b))));
}

/** ‖(g₁, g₂, …)‖₂ over the parameters' gradients; NaN/∞ when any gradient is. Parameters without a gradient count as zero. */
export function gradNorm(params: readonly Tensor[]): number {
  const norm = noGrad(() => normTensor(gradsOf(params)));
  if (!norm) return 0;
  try { return norm.item(); } finally { norm.dispose(); }
}

/** Multiplies every gradient in place by `factor` (a number, or a one-element tensor of their dtype). */
export function scaleGradients(params: readonly Tensor[], factor: number | Tensor): void {
  noGrad(() => {
    for (const g of gradsOf(params)) {
      const f = typeof factor === 'number' ? tensorFrom([factor], [1], g.dtype, g.backend) : factor;
      // The one-element factor broadcasts with stride 0; elementwise kernels allow out to alias an input.
      g.backend.binary('mul', g.storage, [1], f.storage, [0], g.storage, [g.size]);
      if (f !== factor) f.dispose();
    }
  });
}

/** What {@link clipGradNorm} did. */
export interface ClipResult {
  /** The global norm before clipping (NaN/∞ when a gradient is not finite; nothing is scaled then). */
  norm: number;
  /** The factor applied (1 when the norm was within bounds). */
  scale: number;
}

/**
 * Clips the gradients to a global norm of at most maxNorm (maxNorm 0: only measures) on their
 * backend, reading nothing back. Returns the norm before clipping as a kept one-element tensor
 * for the caller to dispose (null when no parameter has a gradient).
 */
export function clipGradNormOnDevice(params: readonly Tensor[], maxNorm: number): Tensor | null {
  if (!(maxNorm >= 0)) throw new Error(`clipGradNorm: maxNorm must be ≥ 0, got ${maxNorm}`);
  return noGrad(() => {
    const norm = normTensor(gradsOf(params));
    if (!norm || maxNorm === 0) return norm?.keep() ?? null;
    // Scaled only where the norm is finite (x − x = 0) and above maxNorm; else by 1.
    const scale = tidy(() => where(mul(eq(sub(norm, norm), 0), gt(norm, maxNorm)), div(maxNorm, add(norm, 1e-6)), 1));
    scaleGradients(params, scale);
    scale.dispose();
    return norm.keep();
  });
}

/** Clips the gradients to a global norm of at most maxNorm (maxNorm 0: only measures): one read. */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): ClipResult {
  const t = clipGradNormOnDevice(params, maxNorm);
  if (!t) return { norm: 0, scale: 1 };
  const norm = t.item();
  t.dispose();
  if (maxNorm === 0 || !Number.isFinite(norm) || norm <= maxNorm) return { norm, scale: 1 };
  return { norm, scale: maxNorm / (norm + 1e-6) };
}
