// The basic layers of a decoder: Linear, Embedding, RMSNorm and the SwiGLU feed-forward.
import type { Tensor } from '../core/tensor.ts';
import { matmul } from '../ops/matmul.ts';
import { embedding, rmsNorm, swiglu } from '../ops/nn.ts';
import { constantInit, normalInit, type Rng } from './init.ts';
import { Module } from './module.ts';

/** y = x Wᵀ with W stored (out, in) as PyTorch's nn.Linear; no bias. */
export class Linear extends Module {
  readonly weight: Tensor;
  constructor(readonly inFeatures: number, readonly outFeatures: number, rng: Rng, std = 0.02) {
    super();
    this.weight = this.param('weight', normalInit([outFeatures, inFeatures], rng, std));
  }
  forward(x: Tensor): Tensor {
    return matmul(x, this.weight, { transB: true });
  }
}

/** A (vocab, dim) lookup table: ids → rows. */
export class Embedding extends Module {
  readonly weight: Tensor;
  constructor(readonly vocab: number, readonly dim: number, rng: Rng, std = 0.02) {
    super();
    this.weight = this.param('weight', normalInit([vocab, dim], rng, std));
  }
  forward(ids: Tensor): Tensor {
    return embedding(this.weight, ids);
  }
}

/** Root-mean-square normalisation over the last axis, with a learned per-feature scale. */
export class RMSNorm extends Module {
  readonly weight: Tensor;
  constructor(readonly dim: number, readonly eps = 1e-6) {
    super();
    this.weight = this.param('weight', constantInit([dim], 1));
  }
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}

/** SwiGLU: down(silu(gate(x)) ⊙ up(x)). */
export class SwiGLU extends Module {
  readonly gate: Linear;
  readonly up: Linear;
  readonly down: Linear;
  constructor(dim: number, hidden: number, rng: Rng, downStd = 0.02) {
    super();
    this.gate = this.child('gate', new Linear(dim, hidden, rng));
    this.up = this.child('up', new Linear(dim, hidden, rng));
    this.down = this.child('down', new Linear(hidden, dim, rng, downStd));
  }
  forward(x: Tensor): Tensor {
    return this.down.forward(swiglu(this.gate.forward(x), this.up.forward(x)));
  }
}
