// Parameter initialisation (documented in docs/MODEL.md): normal(0, 0.02) for projections and
// embeddings as GPT-2, output projections of residual branches scaled by 1/√(2·layers).
import type { Rng } from '../core/random.ts';
import { full, randn } from '../ops/creation.ts';
import type { Tensor } from '../core/tensor.ts';

/** A tensor of normal(0, std) values drawn from `rng` (default std 0.02, as GPT-2). */
export function normalInit(shape: readonly number[], rng: Rng, std = 0.02): Tensor {
  return randn(shape, { rng, std });
}

/** A tensor of `shape` filled with `value` (e.g. RMSNorm weights 1). */
export function constantInit(shape: readonly number[], value: number): Tensor {
  return full(shape, value);
}

export type { Rng };
