// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): the norm of all gradients taken
// as one vector; when it exceeds maxNorm every gradient is scaled in place by maxNorm / (norm + 1e-6).
import { noGrad, tidy } from '../core/engine.ts';
import { tensorFrom, type Tensor } from '../core/tensor.ts';
import { square } from '../ops/elementwise.ts';
import { sum } from '../ops/reduce.ts';
import { reshape } from '../ops/shape.ts';

/** ‖(g₁, g₂, …)‖₂ over the parameters' gradients (float64 across tensors); NaN/∞ when any gradient is. Parameters without a gradient count as zero. */
export function gradNorm(params: readonly Tensor[]): number {
  let total = 0;
  noGrad(() => {
    for (const p of params) {
      const g = p.grad;
      if (!g || g.isDisposed) continue;
      total += tidy(() => sum(square(reshape(g, [g.size]))).item());
    }
  });
  return Math.sqrt(total);
}

/** Multiplies every gradient by `factor` in place. */
export function scaleGradients(params: readonly Tensor[], factor: number): void {
  const scalars = new Map<string, Tensor>();
  try {
    for (const p of params) {
      const g = p.grad;
      if (!g || g.isDisposed) continue;
      const b = g.backend, key = `${b.name}:${g.dtype}`;
      let s = scalars.get(key);
      if (!s) { s = tensorFrom([factor], [1], g.dtype, b).keep(); scalars.set(key, s); }
      // The one-element factor broadcasts with stride 0; elementwise kernels allow out to alias an input.
      b.binary('mul', g.storage, [1], s.storage, [0], g.storage, [g.size]);
    }
  } finally {
    for (const s of scalars.values()) s.dispose();
  }
}

/** What {@link clipGradNorm} did. */
export interface ClipResult {
  /** The global norm before clipping (NaN/∞ when a gradient is not finite; nothing is scaled then). */
  norm: number;
  /** The factor applied (1 when the norm was within bounds). */
  scale: number;
}

/** Clips the gradients to a global norm of at most maxNorm (maxNorm 0: only measures). */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): ClipResult {
  if (!(maxNorm >= 0)) throw new Error(`clipGradNorm: maxNorm must be ≥ 0, got ${maxNorm}`);
  const norm = gradNorm(params);
  if (!Number.isFinite(norm) || maxNorm === 0 || norm <= maxNorm) return { norm, scale: 1 };
  const scale = maxNorm / (norm + 1e-6);
  scaleGradients(params, scale);
  return { norm, scale };
}
