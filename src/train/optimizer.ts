// AdamW (Loshchilov & Hutter) with decoupled weight decay, one fused kernel call per parameter:
//   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  p ← p·(1 − lr·wd) − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)
// (PyTorch's torch.optim.AdamW, the ε outside the square root).
//
// Which parameters decay (nanoGPT's rule): every tensor of rank ≥ 2 — the projections, the
// SwiGLU matrices, the local-linear projection and the token embedding (tied to the output layer
// by default, so it is a matrix of the head too). Tensors of rank ≤ 1 do not: the RMSNorm weights
// and Cubit's per-head scalars (refScale, logLambda, lrrLower, lrrRange), which set a scale or a
// ridge rather than a feature map; pulling them towards 0 would change what the mixer computes
// (λ → 1, α → 0) instead of regularising it.
import { noGrad } from '../core/engine.ts';
import type { Tensor } from '../core/tensor.ts';
import { zeros } from '../ops/creation.ts';
import { adamwUpdate } from '../ops/optim.ts';

/** AdamW's hyperparameters. */
export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay of the parameters `decays` selects. */
  weightDecay: number;
}

/** The default decay rule: matrices (rank ≥ 2) decay, vectors and scalars do not. */
export function decaysByDefault(_name: string, p: Tensor): boolean {
  return p.rank >= 2;
}

/** A parameter's optimizer slot: its moments, and whether it decays. */
export interface AdamWSlot {
  name: string;
  param: Tensor;
  m: Tensor;
  v: Tensor;
  decay: boolean;
}

/** Plain-data moments of one parameter (what a checkpoint stores). */
export interface MomentRecord {
  shape: readonly number[];
  data: Float32Array | Float64Array;
}

/**
 * The AdamW optimizer (decoupled weight decay, bias-corrected moments), over a model's named
 * parameters; its moments are saved in checkpoints.
 */
export class AdamW {
  readonly slots: AdamWSlot[];
  /** Updates taken (the t of the bias corrections); skipped steps do not count. */
  step = 0;

  constructor(params: readonly [string, Tensor][], readonly options: AdamWOptions, decays: (name: string, p: Tensor) => boolean = decaysByDefault) {
    const { beta1, beta2, eps, weightDecay } = options;
    if (!(beta1 >= 0 && beta1 < 1)) throw new Error(`AdamW: beta1 must be in [0, 1), got ${beta1}`);
    if (!(beta2 >= 0 && beta2 < 1)) throw new Error(`AdamW: beta2 must be in [0, 1), got ${beta2}`);
    if (!(eps > 0)) throw new Error(`AdamW: eps must be positive, got ${eps}`);
    if (!(weightDecay >= 0)) throw new Error(`AdamW: weightDecay must be ≥ 0, got ${weightDecay}`);
    const seen = new Set<string>();
    this.slots = params.map(([name, param]) => {
      if (seen.has(name)) throw new Error(`AdamW: parameter '${name}' is listed twice`);
      seen.add(name);
      const opts = { dtype: param.dtype, backend: param.backend };
      return { name, param, m: zeros(param.shape, opts).keep(), v: zeros(param.shape, opts).keep(), decay: decays(name, param) };
    });
  }

  /** Names of the parameters that decay (for logs and tests). */
  get decayed(): string[] { return this.slots.filter((s) => s.decay).map((s) => s.name); }

  /**
   * One update of every parameter that has a gradient, at learning rate `lr`. Parameters without
   * a gradient are left alone (their moments too).
   */
  update(lr: number): void {
    if (!(lr >= 0 && Number.isFinite(lr))) throw new Error(`AdamW.update: lr must be a finite number ≥ 0, got ${lr}`);
    const { beta1, beta2, eps, weightDecay } = this.options;
    this.step++;
    const bc1 = 1 - beta1 ** this.step, bc2 = 1 - beta2 ** this.step;
    noGrad(() => {
      for (const s of this.slots) {
        const g = s.param.grad;
        if (!g || g.isDisposed) continue;
        adamwUpdate(s.param, g, s.m, s.v, { lr, beta1, beta2, eps, weightDecay: s.decay ? weightDecay : 0, bc1, bc2 });
      }
    });
  }

  /** The moments as named tensors: `m.<param>` and `v.<param>` (checkpoint names). */
  stateTensors(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const s of this.slots) { out.set(`m.${s.name}`, s.m); out.set(`v.${s.name}`, s.v); }
    return out;
  }

  /**
   * Restores the moments and the step count. Every parameter's m and v must be present with its
   * shape; anything missing, extra or misshapen is one error naming it.
   */
  loadState(step: number, moments: Map<string, MomentRecord>, where = 'optimizer state'): void {
    if (!Number.isInteger(step) || step < 0) throw new Error(`${where}: step must be a non-negative integer, got ${step}`);
    const expected = new Set<string>();
    for (const s of this.slots) {
      for (const [key, t] of [[`m.${s.name}`, s.m], [`v.${s.name}`, s.v]] as const) {
        expected.add(key);
        const rec = moments.get(key);
        if (!rec) throw new Error(`${where}: no tensor '${key}'`);
        if (rec.shape.length !== t.shape.length || rec.shape.some((d, i) => d !== t.shape[i])) {
          throw new Error(`${where}: '${key}' has shape [${rec.shape.join(', ')}], the parameter [${t.shape.join(', ')}]`);
        }
      }
    }
    for (const key of moments.keys()) if (!expected.has(key)) throw new Error(`${where}: unexpected tensor '${key}' (no such parameter)`);
    for (const s of this.slots) {
      s.m.backend.write(s.m.storage, moments.get(`m.${s.name}`)!.data);
      s.v.backend.write(s.v.storage, moments.get(`v.${s.name}`)!.data);
    }
    this.step = step;
  }

  dispose(): void {
    for (const s of this.slots) { s.m.dispose(); s.v.dispose(); }
  }
}
