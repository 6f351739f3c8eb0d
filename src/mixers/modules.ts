// Token-mixer modules: projections, rotary embedding, the functional mixers, and decode caches.
// Each maps x (B, T, dModel) to (B, T, dModel): heads are split from the projections, mixed, merged
// and projected by W_o. Decoding keeps per-layer caches (CUBIT.md §4) in a MixerState.
import { keep, noGrad, tidy } from '../core/engine.ts';
import { formatShape } from '../core/shape.ts';
import type { Tensor } from '../core/tensor.ts';
import { add, div, exp, mul, sigmoid, sub } from '../ops/elementwise.ts';
import { matmul } from '../ops/matmul.ts';
import { softmax } from '../ops/nn.ts';
import { concat, permute, reshape, slice, unsqueeze } from '../ops/shape.ts';
import { constantInit, normalInit, type Rng } from '../nn/init.ts';
import { Linear } from '../nn/layers.ts';
import { Module } from '../nn/module.ts';
import { Rotary } from '../nn/rotary.ts';
import { cubitAttention, localLinearAttention, localLinearDecode, lrrScale, referenceVectors } from './functional.ts';
import { softmaxAttention } from '../ops/mixers.ts';

export interface MixerConfig {
  dModel: number;
  nHeads: number;
  /** Per-head dimension (default dModel / nHeads). */
  headDim?: number;
  /** Rotary embedding on q, k (and Cubit's r): default true. */
  rotary?: boolean;
  rotaryBase?: number;
  /** Sliding window (positive integer) or null/omitted for full causal context. */
  window?: number | null;
  /** Rows per streaming block of the native kernels (default 64). */
  blockSize?: number;
  /** Init std of the output projection (default 0.02; models pass 0.02/√(2·layers)). */
  outStd?: number;
}

export interface MixerForwardOptions {
  /** Packed documents: int32 (B, T) or (T); tokens attend within their own document only. */
  docIds?: Tensor | null;
}

/**
 * A mixer's decode cache: named tensors kept out of memory scopes (replacing one disposes the old),
 * and the number of tokens seen. One state per mixer (layer) and generation; all batch rows advance
 * together. dispose() frees it.
 */
export class MixerState {
  position = 0;
  batch = -1;
  private readonly cache = new Map<string, Tensor>();

  get(name: string): Tensor {
    const t = this.cache.get(name);
    if (!t) throw new Error(`mixer state: no cached '${name}' (decode from a fresh state with step())`);
    return t;
  }

  set(name: string, t: Tensor): void {
    keep(t);
    const old = this.cache.get(name);
    this.cache.set(name, t);
    if (old && old !== t) old.dispose();
  }

  /** Cached tensors by name (tests, memory accounting). */
  entries(): [string, Tensor][] { return [...this.cache.entries()]; }

  dispose(): void {
    for (const t of this.cache.values()) t.dispose();
    this.cache.clear();
    this.position = 0;
    this.batch = -1;
  }
}

/** The per-token projections shared by every mixer, and the forward/decode plumbing. */
export abstract class TokenMixer extends Module {
  abstract readonly kind: string;
  readonly dModel: number;
  readonly nHeads: number;
  readonly headDim: number;
  readonly window: number | null;
  readonly blockSize: number | undefined;
  readonly wq: Linear;
  readonly wk: Linear;
  readonly wv: Linear;
  readonly wo: Linear;
  protected readonly rotary: Rotary | null;

  constructor(cfg: MixerConfig, rng: Rng) {
    super();
    const { dModel, nHeads } = cfg;
    const name = new.target.name;
    if (!(Number.isInteger(dModel) && dModel > 0)) throw new Error(`${name}: dModel must be a positive integer, got ${dModel}`);
    if (!(Number.isInteger(nHeads) && nHeads > 0)) throw new Error(`${name}: nHeads must be a positive integer, got ${nHeads}`);
    const headDim = cfg.headDim ?? dModel / nHeads;
    if (!(Number.isInteger(headDim) && headDim > 0)) throw new Error(`${name}: headDim must be a positive integer (dModel ${dModel} / nHeads ${nHeads} is ${headDim}; set headDim)`);
    if (cfg.window !== undefined && cfg.window !== null && !(Number.isInteger(cfg.window) && cfg.window > 0)) {
      throw new Error(`${name}: window must be a positive integer or null, got ${cfg.window}`);
    }
    const useRotary = cfg.rotary ?? true;
    if (useRotary && headDim % 2 !== 0) throw new Error(`${name}: rotary embedding needs an even headDim, got ${headDim}`);
    this.dModel = dModel; this.nHeads = nHeads; this.headDim = headDim;
    this.window = cfg.window ?? null;
    this.blockSize = cfg.blockSize;
    const inner = nHeads * headDim;
    this.wq = this.child('wq', new Linear(dModel, inner, rng));
    this.wk = this.child('wk', new Linear(dModel, inner, rng));
    this.wv = this.child('wv', new Linear(dModel, inner, rng));
    this.wo = this.child('wo', new Linear(inner, dModel, rng, cfg.outStd ?? 0.02));
    this.rotary = useRotary ? new Rotary(headDim, cfg.rotaryBase) : null;
  }

  /** x (B, T, dModel) → (B, T, dModel). Differentiable in x and every parameter. */
  forward(x: Tensor, options: MixerForwardOptions = {}): Tensor {
    this.checkInput(x);
    return tidy(() => this.wo.forward(this.mergeHeads(this.mix(x, options))));
  }

  /** A fresh decode state (free it with dispose()). */
  initState(): MixerState { return new MixerState(); }

  /**
   * Decodes the tokens x (B, n, dModel) that follow those already in `state`, returning their
   * outputs (B, n, dModel) and updating the state. From a fresh state the n tokens run as one
   * prefill (the parallel kernels); later calls take tokens one at a time. Equals forward() on the
   * whole sequence up to rounding. Runs without recording gradients (generation).
   */
  step(x: Tensor, state: MixerState): Tensor {
    this.checkInput(x);
    const [B, n] = x.shape;
    if (state.position > 0 && state.batch !== B) throw new Error(`${this.constructor.name}.step: batch ${B} differs from the state's ${state.batch}`);
    return noGrad(() => tidy(() => {
      let heads: Tensor;
      if (state.position === 0) {
        heads = this.prefill(x, state);
        state.position = n;
      } else {
        const outs: Tensor[] = [];
        for (let i = 0; i < n; i++) {
          outs.push(this.decodeOne(slice(x, 1, i, i + 1), state));
          state.position++;
        }
        heads = outs.length === 1 ? outs[0] : concat(outs, 2);
      }
      state.batch = B;
      return this.wo.forward(this.mergeHeads(heads));
    }));
  }

  /** The mixed heads (B, H, T, Dh) of a whole sequence. */
  protected abstract mix(x: Tensor, options: MixerForwardOptions): Tensor;
  /** Like mix for the first tokens of a generation, filling the state's caches. */
  protected abstract prefill(x: Tensor, state: MixerState): Tensor;
  /** One token x (B, 1, dModel) at position state.position: its heads (B, H, 1, Dh); updates caches. */
  protected abstract decodeOne(x: Tensor, state: MixerState): Tensor;

  override dispose(): void {
    super.dispose();
    this.rotary?.dispose();
  }

  // ---- helpers for subclasses ----

  protected checkInput(x: Tensor): void {
    if (x.rank !== 3 || x.shape[2] !== this.dModel || x.shape[0] < 1 || x.shape[1] < 1) {
      throw new Error(`${this.constructor.name}: input must be (B, T, ${this.dModel}), got ${formatShape(x.shape)}`);
    }
  }

  /** (B, T, H·Dh) → (B, H, T, Dh). */
  protected splitHeads(x: Tensor): Tensor {
    const [B, T] = x.shape;
    return permute(reshape(x, [B, T, this.nHeads, this.headDim]), [0, 2, 1, 3]);
  }

  /** (B, H, T, Dh) → (B, T, H·Dh). */
  protected mergeHeads(x: Tensor): Tensor {
    const [B, H, T, D] = x.shape;
    return reshape(permute(x, [0, 2, 1, 3]), [B, T, H * D]);
  }

  /** Projects, splits and (for q, k, r) rotates from position `offset`. */
  protected project(lin: Linear, x: Tensor, offset: number, rotate: boolean): Tensor {
    const y = lin.forward(x);
    return rotate && this.rotary ? this.rotary.applyHeads(y, this.nHeads, offset) : this.splitHeads(y);
  }

  /** Appends `t` (B, H, n, ·) to a cache along T, keeping only the last `window` positions. */
  protected append(state: MixerState, name: string, t: Tensor, fresh: boolean): Tensor {
    let c = fresh ? t : concat([state.get(name), t], 2);
    const L = c.shape[2];
    if (this.window !== null && L > this.window) c = slice(c, 2, L - this.window, L);
    state.set(name, c);
    return c;
  }

  /** softmax(q kᵀ / √Dh) v for queries that see every cached key (a decode step). */
  protected attendAll(q: Tensor, k: Tensor, v: Tensor): Tensor {
    return matmul(softmax(mul(matmul(q, k, { transB: true }), 1 / Math.sqrt(this.headDim))), v);
  }

  protected maskOptions(options: MixerForwardOptions) {
    return { window: this.window, docIds: options.docIds ?? null, blockSize: this.blockSize };
  }
}

/** Causal softmax attention (the baseline mixer), with a (k, v) cache for decoding. */
export class SoftmaxMixer extends TokenMixer {
  readonly kind = 'softmax';

  protected mix(x: Tensor, options: MixerForwardOptions): Tensor {
    const q = this.project(this.wq, x, 0, true), k = this.project(this.wk, x, 0, true), v = this.project(this.wv, x, 0, false);
    return softmaxAttention(q, k, v, this.maskOptions(options));
  }

  protected prefill(x: Tensor, state: MixerState): Tensor {
    const q = this.project(this.wq, x, 0, true), k = this.project(this.wk, x, 0, true), v = this.project(this.wv, x, 0, false);
    this.append(state, 'k', k, true);
    this.append(state, 'v', v, true);
    return softmaxAttention(q, k, v, this.maskOptions({}));
  }

  protected decodeOne(x: Tensor, state: MixerState): Tensor {
    const t = state.position;
    const q = this.project(this.wq, x, t, true);
    const k = this.append(state, 'k', this.project(this.wk, x, t, true), false);
    const v = this.append(state, 'v', this.project(this.wv, x, t, false), false);
    return this.attendAll(q, k, v);
  }
}

export interface CubitMixerConfig extends MixerConfig {
  /** Shared-key ablation: r = k, no W_r (default false: r = W_r x, the paper's stronger default). */
  sharedKey?: boolean;
  /** Initial α (default 1). */
  refScale?: number;
  /** Initial λ (default 1e-6; log-parameterised). */
  lambda?: number;
  /** Limited-Range Rescale on (default) or off (s ≡ 1: no W_lrr, no lower/range parameters). */
  lrr?: boolean;
  /** Initial LRR bounds: s ∈ [lower, lower + range] (defaults 0.5 and 1.5). */
  lrrLower?: number;
  lrrRange?: number;
  /** Floor of ‖r‖ in r̂ (default 1e-6). */
  normEps?: number;
}

/**
 * Cubit (CUBIT.md §2): attention over X = (W + λI)⁻¹ (s ⊙ v). Parameters: wq, wk, wv, wr (unless
 * sharedKey), wlrr (dModel → H), wo, and per head refScale (α), logLambda, lrrLower, lrrRange.
 * Rotary turns q, k and r; r̂ is normalised from the turned r (rotation keeps the norm). Decoding
 * caches (k, r̂, X) per head (§4): X_t = (s_t v_t − Σ_{j<t} w_j X_j) / (w_t + λ).
 */
export class CubitMixer extends TokenMixer {
  readonly kind = 'cubit';
  readonly sharedKey: boolean;
  readonly wr: Linear | null;
  readonly wlrr: Linear | null;
  readonly refScale: Tensor;
  readonly logLambda: Tensor;
  readonly lrrLower: Tensor | null;
  readonly lrrRange: Tensor | null;
  readonly normEps: number;

  constructor(cfg: CubitMixerConfig, rng: Rng) {
    super(cfg, rng);
    const H = this.nHeads;
    this.sharedKey = cfg.sharedKey ?? false;
    this.wr = this.sharedKey ? null : this.child('wr', new Linear(this.dModel, H * this.headDim, rng));
    const lrr = cfg.lrr ?? true;
    this.wlrr = lrr ? this.child('wlrr', new Linear(this.dModel, H, rng)) : null;
    const lambda = cfg.lambda ?? 1e-6;
    if (!(lambda > 0 && Number.isFinite(lambda))) throw new Error(`CubitMixer: lambda must be positive and finite, got ${lambda}`);
    this.refScale = this.param('refScale', constantInit([H], cfg.refScale ?? 1));
    this.logLambda = this.param('logLambda', constantInit([H], Math.log(lambda)));
    this.lrrLower = lrr ? this.param('lrrLower', constantInit([H], cfg.lrrLower ?? 0.5)) : null;
    this.lrrRange = lrr ? this.param('lrrRange', constantInit([H], cfg.lrrRange ?? 1.5)) : null;
    this.normEps = cfg.normEps ?? 1e-6;
  }

  /** q, k, v, r (B, H, n, Dh) and the LRR logits (B, H, n) of tokens starting at `offset`. */
  private inputs(x: Tensor, offset: number) {
    const q = this.project(this.wq, x, offset, true), k = this.project(this.wk, x, offset, true), v = this.project(this.wv, x, offset, false);
    const r = this.wr ? this.project(this.wr, x, offset, true) : k;
    const lrrLogits = this.wlrr ? permute(this.wlrr.forward(x), [0, 2, 1]) : null;
    return { q, k, v, r, lrrLogits, refScale: this.refScale, logLambda: this.logLambda, lrrLower: this.lrrLower, lrrRange: this.lrrRange };
  }

  protected mix(x: Tensor, options: MixerForwardOptions): Tensor {
    return cubitAttention(this.inputs(x, 0), { ...this.maskOptions(options), normEps: this.normEps }).output;
  }

  protected prefill(x: Tensor, state: MixerState): Tensor {
    const inp = this.inputs(x, 0);
    const { output, solution } = cubitAttention(inp, { ...this.maskOptions({}), normEps: this.normEps });
    this.append(state, 'k', inp.k, true);
    this.append(state, 'rHat', referenceVectors(inp.r, this.refScale, this.normEps), true);
    this.append(state, 'x', solution, true);
    return output;
  }

  protected decodeOne(x: Tensor, state: MixerState): Tensor {
    const H = this.nHeads;
    const { q, k, v, r, lrrLogits } = this.inputs(x, state.position);
    const rHat = this.append(state, 'rHat', referenceVectors(r, this.refScale, this.normEps), false);
    const L = rHat.shape[2]; // visible positions, this one included
    const w = softmax(matmul(r, rHat, { transB: true })); // (B, H, 1, L): row t of W
    let res = lrrLogits ? mul(unsqueeze(lrrScale(lrrLogits, this.lrrLower!, this.lrrRange!), -1), v) : v;
    if (L > 1) {
      const prev = state.get('x');
      const xPrev = slice(prev, 2, prev.shape[2] - (L - 1), prev.shape[2]);
      res = sub(res, matmul(slice(w, 3, 0, L - 1), xPrev));
    }
    const xt = div(res, add(slice(w, 3, L - 1, L), reshape(exp(this.logLambda), [1, H, 1, 1])));
    const kc = this.append(state, 'k', k, false);
    const xc = this.append(state, 'x', xt, false);
    return this.attendAll(q, kc, xc);
  }
}

export interface LocalLinearMixerConfig extends MixerConfig {
  /** Ridge ρ (default 1). */
  ridge?: number;
  /**
   * Rank m of the learnt projection (H, Dh, m) in which the linear term lives; omitted or ≥ headDim:
   * no projection (the full, rotated key space). Must be even when rotary is on.
   */
  rank?: number;
}

/**
 * Local linear regression attention (CUBIT.md §5), with a cache for decoding. The weights use the
 * rotated q·k. The linear term lives in the rotated key space, or with `rank` m in features
 * q' = rot_m(q P), k' = rot_m(k P) of the unrotated projections turned by an m-dimensional rotary:
 * projecting rotated keys would make the output depend on absolute positions (rotations and P do
 * not commute), this keeps it relative, so packed documents equal separate runs.
 */
export class LocalLinearMixer extends TokenMixer {
  readonly kind = 'local-linear';
  readonly ridge: number;
  readonly projection: Tensor | null;
  private readonly featureRotary: Rotary | null;

  constructor(cfg: LocalLinearMixerConfig, rng: Rng) {
    super(cfg, rng);
    this.ridge = cfg.ridge ?? 1;
    if (!(this.ridge > 0 && Number.isFinite(this.ridge))) throw new Error(`LocalLinearMixer: ridge must be positive and finite, got ${cfg.ridge}`);
    const rank = cfg.rank;
    if (rank !== undefined && !(Number.isInteger(rank) && rank > 0)) throw new Error(`LocalLinearMixer: rank must be a positive integer, got ${rank}`);
    const projected = rank !== undefined && rank < this.headDim;
    if (projected && this.rotary && rank % 2 !== 0) throw new Error(`LocalLinearMixer: rank must be even with rotary on (its features are rotated), got ${rank}`);
    // N(0, 1/Dh) keeps k' = k P at the scale of k's entries.
    this.projection = projected ? this.param('projection', normalInit([this.nHeads, this.headDim, rank], rng, 1 / Math.sqrt(this.headDim))) : null;
    this.featureRotary = projected && this.rotary ? new Rotary(rank, cfg.rotaryBase) : null;
  }

  /** q, k (rotated), v, and the linear term's features (null: the rotated q, k) from `offset`. */
  private inputs(x: Tensor, offset: number) {
    const qRaw = this.project(this.wq, x, offset, false), kRaw = this.project(this.wk, x, offset, false);
    const rot = (t: Tensor): Tensor => (this.rotary ? this.rotary.apply(t, offset) : t);
    const P = this.projection ? reshape(this.projection, [1, this.nHeads, this.headDim, this.projection.shape[2]]) : null;
    const feature = (t: Tensor): Tensor => {
      const f = matmul(t, P!);
      return this.featureRotary ? this.featureRotary.apply(f, offset) : f;
    };
    return {
      q: rot(qRaw), k: rot(kRaw), v: this.project(this.wv, x, offset, false),
      features: P ? { q: feature(qRaw), k: feature(kRaw) } : null,
    };
  }

  protected mix(x: Tensor, options: MixerForwardOptions): Tensor {
    const { q, k, v, features } = this.inputs(x, 0);
    return localLinearAttention(q, k, v, { ...this.maskOptions(options), ridge: this.ridge, features });
  }

  protected prefill(x: Tensor, state: MixerState): Tensor {
    const { q, k, v, features } = this.inputs(x, 0);
    this.append(state, 'k', k, true);
    this.append(state, 'v', v, true);
    if (features) this.append(state, 'kFeatures', features.k, true);
    return localLinearAttention(q, k, v, { ...this.maskOptions({}), ridge: this.ridge, features });
  }

  protected decodeOne(x: Tensor, state: MixerState): Tensor {
    const { q, k, v, features } = this.inputs(x, state.position);
    const kc = this.append(state, 'k', k, false);
    const vc = this.append(state, 'v', v, false);
    const fc = features ? { q: features.q, k: this.append(state, 'kFeatures', features.k, false) } : null;
    return localLinearDecode(q, kc, vc, { ridge: this.ridge, features: fc });
  }

  override dispose(): void {
    super.dispose();
    this.featureRotary?.dispose();
  }
}
