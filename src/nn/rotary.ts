// Rotary position embedding, "rotate half" convention (GPT-NeoX / Hugging Face LLaMA): feature i
// pairs with i + D/2, and pair i at position p turns by p·θ_i, θ_i = base^(−2i/D).
//   x'[i]       = x[i]·cos(pθ_i) − x[i+D/2]·sin(pθ_i)
//   x'[i+D/2]   = x[i+D/2]·cos(pθ_i) + x[i]·sin(pθ_i)
import type { Backend } from '../core/backend.ts';
import type { DType } from '../core/dtype.ts';
import { getBackend, keep, noGrad } from '../core/engine.ts';
import type { Tensor } from '../core/tensor.ts';
import { tensor } from '../ops/creation.ts';
import { rotary } from '../ops/nn.ts';

/** Rotary position embedding tables (cos, sin), grown on demand and cached; rotate-half convention. */
export class Rotary {
  private cos: Tensor | null = null;
  private sin: Tensor | null = null;
  private backend: Backend | null = null;
  private dtype: DType = 'float32';

  constructor(readonly dim: number, readonly base = 10000) {
    if (dim % 2 !== 0) throw new Error(`rotary: head dimension ${dim} must be even`);
  }

  /** cos and sin tables (≥ offset + T, D/2) covering positions [0, offset + T): row p, pair i. */
  tables(offset: number, T: number, dtype: DType = 'float32'): [Tensor, Tensor] {
    const need = offset + T;
    const b = getBackend();
    if (!this.cos || this.cos.shape[0] < need || this.backend !== b || this.dtype !== dtype) {
      this.build(Math.max(need, 2 * (this.cos?.shape[0] ?? 0), 64), b, dtype);
    }
    return [this.cos!, this.sin!];
  }

  private build(maxT: number, b: Backend, dtype: DType): void {
    this.cos?.dispose(); this.sin?.dispose();
    const D = this.dim, half = D / 2;
    const c = new Float64Array(maxT * half), s = new Float64Array(maxT * half);
    for (let p = 0; p < maxT; p++) {
      for (let i = 0; i < half; i++) {
        const a = p * Math.pow(this.base, (-2 * i) / D);
        c[p * half + i] = Math.cos(a);
        s[p * half + i] = Math.sin(a);
      }
    }
    noGrad(() => {
      this.cos = keep(tensor(c, [maxT, half], { dtype, backend: b }));
      this.sin = keep(tensor(s, [maxT, half], { dtype, backend: b }));
    });
    this.backend = b;
    this.dtype = dtype;
  }

  /** Rotates x (…, T, D) whose positions start at `offset`. */
  apply(x: Tensor, offset = 0): Tensor {
    const D = this.dim, T = x.shape[x.rank - 2];
    if (x.shape[x.rank - 1] !== D) throw new Error(`rotary: last axis of ${x.describe()} must be ${D}`);
    const [cos, sin] = this.tables(offset, T, x.dtype);
    return rotary(x, cos, sin, { offset });
  }

  dispose(): void { this.cos?.dispose(); this.sin?.dispose(); this.cos = this.sin = null; }
}
