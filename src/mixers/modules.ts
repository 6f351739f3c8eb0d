// Token-mixer modules: projections, rotary embedding, the functional mixers, and decode caches.
// Each maps x (B, T, dModel) to (B, T, dModel): heads are split from the projections, mixed, merged
// and projected by W_o. Decoding keeps per-layer caches (CUBIT.md §4) in a MixerState.
import { keep, noGrad, tidy } from '../core/engine.ts';
import { formatShape } from '../core/shape.ts';
import { empty, type Tensor } from '../core/tensor.ts';
import { add, div, exp, ge, mul, neg, sub, where } from '../ops/elementwise.ts';
import { matmul, matmulRows } from '../ops/matmul.ts';
import { softmax } from '../ops/nn.ts';
import { concat, reshape, slice } from '../ops/shape.ts';
import { mergeHeads, splitHeads } from '../ops/heads.ts';
import { constantInit, normalInit, type Rng } from '../nn/init.ts';
import { Linear } from '../nn/layers.ts';
import { Module } from '../nn/module.ts';
import { Rotary } from '../nn/rotary.ts';
import { cubitAttention, localLinearAttention, localLinearDecode } from './functional.ts';
import { lrrValues, normalizeReference, softmaxAttention } from '../ops/mixers.ts';

/** Sizes and options every token-mixer module takes. */
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
  /** Init std of the output projection (default 0.02; models pass 0.02/√(2·layers)). */
  outStd?: number;
}

/** Options of a mixer module's forward pass. */
export interface MixerForwardOptions {
  /** Packed documents: int32 (B, T) or (T); tokens attend within their own document only. */
  docIds?: Tensor | null;
}

/** Where a cache's visible positions lie: rows [start, end) along axis 2 of buf (B, H, capacity, ·). */
export interface CacheRows { buf: Tensor; start: number; end: number }

interface Cache { buf: Tensor; start: number; length: number; snapshot: Tensor | null }

/**
 * A mixer's decode cache: named (B, H, L, ·) tensors kept out of memory scopes, and the number of
 * tokens seen. One state per mixer (layer) and generation; all batch rows advance together.
 * dispose() frees it. Each cache lives in a buffer with spare capacity along T (doubling when it
 * grows) written in place, so a decode step costs no O(context) copy or allocation; a sliding
 * window slides through the buffer and is moved back to its front when it reaches the end.
 */
export class MixerState {
  position = 0;
  batch = -1;
  private readonly cache = new Map<string, Cache>();

  /** The visible positions of cache `name`, contiguous (B, H, L, ·); owned by the state until it changes. */
  get(name: string): Tensor {
    const c = this.entry(name);
    if (c.start === 0 && c.length === c.buf.shape[2]) return c.buf;
    if (!c.snapshot) c.snapshot = keep(noGrad(() => slice(c.buf, 2, c.start, c.start + c.length)));
    return c.snapshot;
  }

  /** Replaces cache `name` by t (B, H, L, ·), which the state then owns. */
  set(name: string, t: Tensor): void {
    keep(t);
    const old = this.cache.get(name);
    this.cache.set(name, { buf: t, start: 0, length: t.shape[2], snapshot: null });
    if (old) this.release(old, t);
  }

  /** The rows of cache `name` that a decode step reads in place (see matmulRows). */
  rows(name: string): CacheRows {
    const c = this.entry(name);
    return { buf: c.buf, start: c.start, end: c.start + c.length };
  }

  /**
   * Appends t (B, H, n, ·) along T, keeping only the last `window` positions (null: all). `fresh`
   * drops what was cached first. Amortised O(n) per call: old rows move only when the buffer grows
   * or a full window returns to the buffer's front.
   */
  append(name: string, t: Tensor, window: number | null, fresh = false): void {
    if (t.rank !== 4) throw new Error(`mixer state: cache '${name}' takes (B, H, n, D) tensors, got ${formatShape(t.shape)}`);
    const [B, H, n, D] = t.shape;
    const old = fresh ? undefined : this.cache.get(name);
    if (old && (old.buf.shape[0] !== B || old.buf.shape[1] !== H || old.buf.shape[3] !== D || old.buf.dtype !== t.dtype)) {
      throw new Error(`mixer state: cannot append ${t.describe()} to cache '${name}' of ${old.buf.describe()}`);
    }
    const fromT = window === null ? n : Math.min(n, window); // t's last rows that stay visible
    const keepOld = !old ? 0 : window === null ? old.length : Math.min(old.length, window - fromT);
    const need = keepOld + fromT;
    const oldEnd = old ? old.start + old.length : 0;
    let c: Cache;
    if (old && oldEnd + fromT <= old.buf.shape[2]) {
      c = old; // room after the visible rows: write there
      c.start = oldEnd - keepOld;
    } else if (old && need <= old.buf.shape[2] && oldEnd - keepOld >= keepOld) {
      c = old; // a full window at the end of the buffer: move its rows to the front (no overlap)
      copyRows(old.buf, oldEnd - keepOld, old.buf, 0, keepOld);
      c.start = 0;
    } else {
      const capacity = Math.max(16, 2 * need, old ? 2 * old.buf.shape[2] : 0);
      const buf = keep(empty([B, H, capacity, D], t.dtype, t.backend));
      if (old) copyRows(old.buf, oldEnd - keepOld, buf, 0, keepOld);
      c = { buf, start: 0, length: 0, snapshot: null };
      const prev = this.cache.get(name);
      this.cache.set(name, c);
      if (prev) this.release(prev, buf);
    }
    copyRows(t, n - fromT, c.buf, c.start + keepOld, fromT);
    c.length = need;
    if (c.snapshot) { c.snapshot.dispose(); c.snapshot = null; }
  }

  /** Cached tensors by name, each (B, H, L, ·) as get() gives it (tests, memory accounting). */
  entries(): [string, Tensor][] { return [...this.cache.keys()].map((name) => [name, this.get(name)]); }

  dispose(): void {
    for (const c of this.cache.values()) this.release(c, null);
    this.cache.clear();
    this.position = 0;
    this.batch = -1;
  }

  private entry(name: string): Cache {
    const c = this.cache.get(name);
    if (!c) throw new Error(`mixer state: no cached '${name}' (decode from a fresh state with step())`);
    return c;
  }

  private release(c: Cache, unless: Tensor | null): void {
    c.snapshot?.dispose();
    if (c.buf !== unless) c.buf.dispose();
  }
}

/** dst rows [dstRow, +count) ← src rows [srcRow, +count) along axis 2, for every (b, h) block. */
function copyRows(src: Tensor, srcRow: number, dst: Tensor, dstRow: number, count: number): void {
  if (count === 0) return;
  const [B, H, srcT, D] = src.shape, dstT = dst.shape[2];
  for (let bh = 0; bh < B * H; bh++) {
    src.backend.copy(src.storage, (bh * srcT + srcRow) * D, dst.storage, (bh * dstT + dstRow) * D, count * D);
  }
}

/** The per-token projections shared by every mixer, and the forward/decode plumbing. */
export abstract class TokenMixer extends Module {
  abstract readonly kind: string;
  readonly dModel: number;
  readonly nHeads: number;
  readonly headDim: number;
  readonly window: number | null;
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

  /** (B, H, T, Dh) → (B, T, H·Dh). */
  protected mergeHeads(x: Tensor): Tensor {
    return mergeHeads(x);
  }

  /**
   * The projections of x (B, n, dModel) by each Linear of `parts`, split into heads (B, heads, n,
   * dim), the `rotate` ones turned by rotary from position `offset`. Fused: one GEMM through the
   * weights concatenated along their output axis (a small copy per call; the parameters stay
   * separate tensors), then one splitHeads pass per part, whose gradients meet in one buffer so the
   * backward is one GEMM for x and one for the weights.
   */
  protected projectHeads(x: Tensor, offset: number, parts: readonly { lin: Linear; heads?: number; rotate: boolean }[]): Tensor[] {
    const w = parts.length === 1 ? parts[0].lin.weight : concat(parts.map((p) => p.lin.weight), 0);
    const y = matmul(x, w, { transB: true });
    const rotate = this.rotary !== null && parts.some((p) => p.rotate);
    const [cos, sin] = rotate ? this.rotary!.tables(offset, x.shape[1], x.dtype) : [null, null];
    return splitHeads(y, parts.map((p) => {
      const heads = p.heads ?? this.nHeads;
      return { heads, dim: p.lin.outFeatures / heads, rotate: rotate && p.rotate };
    }), { cos, sin, offset });
  }

  /** Appends `t` (B, H, n, ·) to a cache along T, keeping only the last `window` positions. */
  protected append(state: MixerState, name: string, t: Tensor, fresh: boolean): void {
    state.append(name, t, this.window, fresh);
  }

  /** The visible positions of a cache as a (B, H, L, ·) tensor of this scope (a copy unless whole). */
  protected cached(state: MixerState, name: string): Tensor {
    const { buf, start, end } = state.rows(name);
    return start === 0 && end === buf.shape[2] ? buf : slice(buf, 2, start, end);
  }

  /** softmax(q kᵀ / √Dh) v for queries that see every cached key (a decode step), read in place. */
  protected attendAll(q: Tensor, k: CacheRows, v: CacheRows): Tensor {
    const logits = matmulRows(q, k.buf, k.start, k.end, { transB: true });
    return matmulRows(softmax(mul(logits, 1 / Math.sqrt(this.headDim))), v.buf, v.start, v.end);
  }

  protected maskOptions(options: MixerForwardOptions) {
    return { window: this.window, docIds: options.docIds ?? null };
  }
}

/** Causal softmax attention (the baseline mixer), with a (k, v) cache for decoding. */
export class SoftmaxMixer extends TokenMixer {
  readonly kind = 'softmax';

  /** q, k (rotated) and v (B, H, n, Dh) of tokens starting at `offset`. */
  private inputs(x: Tensor, offset: number): Tensor[] {
    return this.projectHeads(x, offset, [{ lin: this.wq, rotate: true }, { lin: this.wk, rotate: true }, { lin: this.wv, rotate: false }]);
  }

  protected mix(x: Tensor, options: MixerForwardOptions): Tensor {
    const [q, k, v] = this.inputs(x, 0);
    return softmaxAttention(q, k, v, this.maskOptions(options));
  }

  protected prefill(x: Tensor, state: MixerState): Tensor {
    const [q, k, v] = this.inputs(x, 0);
    this.append(state, 'k', k, true);
    this.append(state, 'v', v, true);
    return softmaxAttention(q, k, v, this.maskOptions({}));
  }

  protected decodeOne(x: Tensor, state: MixerState): Tensor {
    const [q, k, v] = this.inputs(x, state.position);
    this.append(state, 'k', k, false);
    this.append(state, 'v', v, false);
    return this.attendAll(q, state.rows('k'), state.rows('v'));
  }
}

/** The sizes and options of a {@link CubitMixer}. */
export interface CubitMixerConfig extends MixerConfig {
  /** Shared-key ablation: r = k, no W_r (default false: r = W_r x, the paper's stronger default). */
  sharedKey?: boolean;
  /** Initial value of the refScale parameter ρ (default 1); the mixer uses α = |ρ| (see CubitMixer). */
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
 * sharedKey), wlrr (dModel → H), wo, and per head refScale (ρ, with α = |ρ|), logLambda, lrrLower,
 * lrrRange. Rotary turns q, k and r; r̂ is normalised from the turned r (rotation keeps the norm).
 * Decoding caches (k, r̂, X) per head (§4): X_t = (s_t v_t − Σ_{j<t} w_j X_j) / (w_t + λ).
 *
 * α = |ρ| keeps the solve well conditioned (docs/MIXERS.md, "Conditioning"): with α ≥ 0 each
 * pivot W_ii + λ is at least about 1/(visible keys), for any λ ≥ 0; with α < 0 the self-similarity
 * is the row's smallest logit, the pivots fall towards λ and X grows exponentially along the
 * sequence (float32 overflows within tens to hundreds of tokens). It is the identity for ρ ≥ 0.
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
    const parts = [{ lin: this.wq, rotate: true }, { lin: this.wk, rotate: true }, { lin: this.wv, rotate: false }];
    if (this.wr) parts.push({ lin: this.wr, rotate: true });
    const heads = this.projectHeads(x, offset, this.wlrr ? [...parts, { lin: this.wlrr, heads: this.nHeads, rotate: false }] : parts);
    const [q, k, v] = heads;
    const r = this.wr ? heads[3] : k;
    // The LRR logits come out as H heads of one feature: (B, H, n, 1) → (B, H, n).
    const z = this.wlrr ? heads[heads.length - 1] : null;
    const lrrLogits = z ? reshape(z, z.shape.slice(0, 3)) : null;
    return { q, k, v, r, lrrLogits, refScale: this.alpha(), logLambda: this.logLambda, lrrLower: this.lrrLower, lrrRange: this.lrrRange };
  }

  /**
   * α = |ρ| per head (H), the reference scale the mixer uses. Its derivative is taken as +1 at
   * ρ = 0 (abs's would be 0), so a head started at α = 0 can still learn.
   */
  alpha(): Tensor {
    return where(ge(this.refScale, 0), this.refScale, neg(this.refScale));
  }

  protected mix(x: Tensor, options: MixerForwardOptions): Tensor {
    return cubitAttention(this.inputs(x, 0), { ...this.maskOptions(options), normEps: this.normEps }).output;
  }

  protected prefill(x: Tensor, state: MixerState): Tensor {
    const inp = this.inputs(x, 0);
    const { output, solution } = cubitAttention(inp, { ...this.maskOptions({}), normEps: this.normEps });
    this.append(state, 'k', inp.k, true);
    this.append(state, 'rHat', normalizeReference(inp.r, inp.refScale, this.normEps), true);
    this.append(state, 'x', solution, true);
    return output;
  }

  protected decodeOne(x: Tensor, state: MixerState): Tensor {
    const H = this.nHeads;
    const { q, k, v, r, lrrLogits, refScale } = this.inputs(x, state.position);
    this.append(state, 'rHat', normalizeReference(r, refScale, this.normEps), false);
    const rHat = state.rows('rHat');
    const L = rHat.end - rHat.start; // visible positions, this one included
    const w = softmax(matmulRows(r, rHat.buf, rHat.start, rHat.end, { transB: true })); // (B, H, 1, L): row t of W
    let res = lrrLogits ? lrrValues(v, lrrLogits, this.lrrLower!, this.lrrRange!) : v;
    if (L > 1) {
      const prev = state.rows('x'); // its last L − 1 rows pair with w's first L − 1 entries
      res = sub(res, matmulRows(slice(w, 3, 0, L - 1), prev.buf, prev.end - (L - 1), prev.end));
    }
    const xt = div(res, add(slice(w, 3, L - 1, L), reshape(exp(this.logLambda), [1, H, 1, 1])));
    this.append(state, 'k', k, false);
    this.append(state, 'x', xt, false);
    return this.attendAll(q, state.rows('k'), state.rows('x'));
  }
}

/** The sizes and options of a {@link LocalLinearMixer}. */
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
    const [qRaw, kRaw, v] = this.projectHeads(x, offset, [{ lin: this.wq, rotate: false }, { lin: this.wk, rotate: false }, { lin: this.wv, rotate: false }]);
    const rot = (t: Tensor): Tensor => (this.rotary ? this.rotary.apply(t, offset) : t);
    const P = this.projection ? reshape(this.projection, [1, this.nHeads, this.headDim, this.projection.shape[2]]) : null;
    const feature = (t: Tensor): Tensor => {
      const f = matmul(t, P!);
      return this.featureRotary ? this.featureRotary.apply(f, offset) : f;
    };
    return {
      q: rot(qRaw), k: rot(kRaw), v,
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
    this.append(state, 'k', k, false);
    this.append(state, 'v', v, false);
    if (features) this.append(state, 'kFeatures', features.k, false);
    // Its kernel reads contiguous caches; its own per-step work (L·m² outer products) dominates the copy.
    const fc = features ? { q: features.q, k: this.cached(state, 'kFeatures') } : null;
    return localLinearDecode(q, this.cached(state, 'k'), this.cached(state, 'v'), { ridge: this.ridge, features: fc });
  }

  override dispose(): void {
    super.dispose();
    this.featureRotary?.dispose();
  }
}
