// The native streaming mixer kernels (native/src/krr.c, attention.c, mixer_simd.h) against their
// dense float64 reference twins (src/backends/reference/mixers.ts), at the kernel level, on the
// same float32 inputs: random shapes (T in {1, 5, 64, 67, 200}, D in {1, 8, 32}, blocks of
// {1, 7, 64, ≥ T} rows, B·H from 1 to 9, and 16: below P (the CPUs available, clamped to [4, 16];
// mixer.h) each (b, h) is split across tasks, from P on
// it is one task), causal / sliding-window / packed-document masks, forward
// (X, lse, out) and every gradient, plus a long T = 2048 case. Each runs under every ISA the CPU
// has, at 1 and 2 threads; the two thread counts must agree bit for bit (tasks are whole (b, h)
// rows or row blocks, never split by thread count).
//
// Tolerance: relErr ≤ 1e-4 (‖got − want‖/‖want‖), as for the golden vectors: the kernels round
// to float32 at every product (~1e-7 each) and the KRR solve can amplify that by the condition
// number of W + λI; 1e-4 leaves room for that and none for a wrong mask, block edge or term.
// The backward kernels get the same X / out on both sides (the reference uses them as given).
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { MixerDims, SavedState, Storage } from '../src/core/backend.ts';
import type { DType, TypedArray } from '../src/core/dtype.ts';
import { Rng } from '../src/core/random.ts';
import { loadNativeAddon, type NativeAddon, type NativeIsa } from '../src/backends/native/addon.ts';
import { NativeBackend } from '../src/backends/native/backend.ts';
import { ReferenceBackend } from '../src/backends/reference/backend.ts';
import { nativeTestOptions, relErr, requireNative } from './helpers.ts';

const TOL = 1e-4;

interface Case {
  B: number; H: number; T: number; D: number; window: number; blockSize: number;
  /** 'runs': contiguous documents (as packing makes); 'mixed': ids recurring after another document. */
  docs: 'none' | 'runs' | 'mixed';
  seed: number;
}

interface Inputs {
  r: Float32Array; rHat: Float32Array; y: Float32Array; logLambda: Float32Array; g: Float32Array;
  q: Float32Array; k: Float32Array; v: Float32Array; scale: number; docIds: Int32Array | null;
}

/** rHat_t = α(t) r_t / max(‖r_t‖, 1e-6) for each row t of D, as the mixer forms r̂. */
function setRHat(r: Float32Array, rHat: Float32Array, D: number, alpha: (t: number) => number): void {
  for (let t = 0; t < r.length / D; t++) {
    let s = 0;
    for (let j = 0; j < D; j++) s += r[t * D + j] ** 2;
    const f = alpha(t) / Math.max(Math.sqrt(s), 1e-6);
    for (let j = 0; j < D; j++) rHat[t * D + j] = f * r[t * D + j];
  }
}

/**
 * Rows t (except those `keep` names) get r_t[0] = 0 and r̂_t = (their old ‖r̂_t‖) r_t / ‖r_t‖:
 * r̂ orthogonal to e_0.
 */
function orthogonalToE0(inp: Inputs, D: number, keep: (t: number) => boolean = () => false): void {
  const rows = inp.r.length / D, alpha = Array.from({ length: rows }, (_, t) => Math.hypot(...inp.rHat.subarray(t * D, (t + 1) * D)));
  const rHat = inp.rHat.slice();
  for (let t = 0; t < rows; t++) if (!keep(t)) inp.r[t * D] = 0;
  setRHat(inp.r, rHat, D, (t) => alpha[t]);
  for (let t = 0; t < rows; t++) if (!keep(t)) inp.rHat.set(rHat.subarray(t * D, (t + 1) * D), t * D);
}

function makeInputs(c: Case): Inputs {
  const rng = new Rng(c.seed);
  const n = c.B * c.H * c.T * c.D;
  const normal = (scale = 1): Float32Array => Float32Array.from({ length: n }, () => scale * rng.normal());
  const r = normal(), y = normal(), g = normal(), q = normal(), k = normal(), v = normal();
  // r̂ = α r / ‖r‖ as the mixer makes it: then r_i·r̂_i is the largest logit of row i and W + λI
  // is well conditioned (a random r̂ lets the solve grow exponentially along the sequence).
  const alpha = Float32Array.from({ length: c.H }, () => 0.5 + 2.5 * rng.next());
  const rHat = new Float32Array(n);
  setRHat(r, rHat, c.D, (t) => alpha[Math.floor(t / c.T) % c.H]);
  const logLambda = Float32Array.from({ length: c.H }, () => -8 + 8 * rng.next());
  let docIds: Int32Array | null = null;
  if (c.docs !== 'none') {
    docIds = new Int32Array(c.B * c.T);
    for (let b = 0; b < c.B; b++) {
      let id = 0;
      for (let t = 0; t < c.T; t++) {
        if (t > 0 && rng.next() < 0.08) id = c.docs === 'runs' ? id + 1 : (id + 1) % 3;
        docIds[b * c.T + t] = id;
      }
    }
  }
  return { r, rHat, y, logLambda, g, q, k, v, scale: 1 / Math.sqrt(c.D), docIds };
}

/** A storage of `be` holding `values` (as float64 on the reference, so it computes in float64). */
function store(be: ReferenceBackend, values: ArrayLike<number>, dtype: DType): Storage {
  const s = be.alloc(dtype, values.length);
  be.write(s, values);
  return s;
}

/** The kernels' shape and mask for case c, its document ids (if any) stored on `be`. */
function mixerDims(be: ReferenceBackend, c: Case, inp: Inputs): MixerDims {
  const docIds = inp.docIds ? store(be, inp.docIds, 'int32') : null;
  if (be instanceof NativeBackend) be.blockSize = c.blockSize;
  return { B: c.B, H: c.H, T: c.T, D: c.D, window: c.window, docIds };
}

type Outputs = Record<string, TypedArray>;

/**
 * All four kernels on one backend. The backward kernels read `given` (X and out) when passed, so
 * that both sides differentiate at the same point; otherwise their own forward's.
 */
function runKernels(be: ReferenceBackend, c: Case, inp: Inputs, given?: Outputs): Outputs {
  const f = be.name === 'native' ? 'float32' : 'float64';
  const { B, H, T, D } = c;
  const n = B * H * T * D;
  const S = (v: ArrayLike<number>): Storage => store(be, v, f);
  const Z = (len: number): Storage => be.alloc(f, len);
  const d = mixerDims(be, c, inp);
  const read = (s: Storage): TypedArray => be.readSync(s, 0, s.length).slice();
  const r = S(inp.r), rHat = S(inp.rHat), y = S(inp.y), ll = S(inp.logLambda), g = S(inp.g);
  // The CPU backends' saved state (backend.ts: [lse, W X − X] and [lse]) is read and, for the
  // backward at the other side's point, replaced here: a test of the CPU kernels may know it.
  const x = Z(n);
  const [lse, wx] = be.krrSolve(r, rHat, y, ll, x, d).storages;
  const xs = given ? S(given.x) : x, wxs = given ? S(given.wxMinusX) : wx;
  const dr = Z(n), drHat = Z(n), dy = Z(n), dl = Z(B * H);
  be.krrSolveBackward(r, rHat, ll, xs, { storages: [lse, wxs] }, g, dr, drHat, dy, dl, d);
  const q = S(inp.q), k = S(inp.k), v = S(inp.v);
  const out = Z(n);
  const attnState: SavedState = be.attention(q, k, v, out, inp.scale, d);
  const [lse2] = attnState.storages;
  const outs = given ? S(given.out) : out;
  const dq = Z(n), dk = Z(n), dv = Z(n);
  be.attentionBackward(q, k, v, outs, attnState, g, inp.scale, dq, dk, dv, d);
  return {
    x: read(x), lse: read(lse), wxMinusX: read(wx), dr: read(dr), drHat: read(drHat), dy: read(dy), dLambda: read(dl),
    out: read(out), attnLse: read(lse2), dq: read(dq), dk: read(dk), dv: read(dv),
  };
}

const label = (c: Case): string =>
  `B=${c.B} H=${c.H} T=${c.T} D=${c.D} block=${c.blockSize}${c.window ? ` window=${c.window}` : ''}${c.docs !== 'none' ? ` docs=${c.docs}` : ''}`;

function isas(addon: NativeAddon): NativeIsa[] {
  return addon.supportedIsas();
}

/** Native (every ISA, 1 and 2 threads) against the reference; 1 and 2 threads bit-identical. */
function check(c: Case, tweak?: (inp: Inputs) => void): void {
  requireNative();
  const addon = loadNativeAddon()!;
  const native = new NativeBackend(addon), ref = new ReferenceBackend();
  const inp = makeInputs(c);
  tweak?.(inp);
  for (const isa of isas(addon)) {
    addon.setIsa(isa);
    native.setThreads(1);
    const one = runKernels(native, c, inp);
    native.setThreads(2);
    const two = runKernels(native, c, inp);
    const want = runKernels(ref, c, inp, one);
    for (const key of Object.keys(want)) {
      const e = relErr(one[key], want[key]);
      assert.ok(e <= TOL, `${label(c)} ${isa} ${key}: relErr ${e.toExponential(2)} > ${TOL}`);
      assert.deepEqual(two[key], one[key], `${label(c)} ${isa} ${key}: 2 threads differ from 1`);
    }
  }
}

describe('native streaming mixers vs the float64 reference', nativeTestOptions(), () => {
  after(() => {
    const addon = loadNativeAddon();
    if (addon) { addon.setIsa('auto'); addon.setThreads(0); }
  });

  // Every (T, D, block) combination, with masks and batch shapes rotated through the cases.
  const masks: { window: (T: number) => number; docs: Case['docs'] }[] = [
    { window: () => 0, docs: 'none' },
    { window: (T) => Math.max(1, Math.floor(T / 3)), docs: 'none' },
    { window: () => 0, docs: 'runs' },
    { window: (T) => Math.max(1, Math.floor(T / 4)), docs: 'runs' },
    { window: () => 0, docs: 'mixed' },
    { window: () => 1, docs: 'none' },
  ];
  // B·H below P (mixer.h: 4 on machines with ≤ 4 CPUs, up to 16) splits each (b, h) across tasks;
  // from P on, one task each (the case below with B·H = 16 takes that path on any machine).
  const shapes: [number, number][] = [[1, 1], [2, 3], [1, 3], [2, 4], [3, 2], [2, 1], [3, 3]];
  let n = 0;
  for (const T of [1, 5, 64, 67, 200]) {
    for (const D of [1, 8, 32]) {
      for (const blockSize of [1, 7, 64, T + 3]) {
        const m = masks[n % masks.length], [B, H] = shapes[n % shapes.length];
        const c: Case = { B, H, T, D, window: m.window(T), blockSize, docs: m.docs, seed: 100 + n++ };
        // blocks of 1 row at T = 200 cost many tiny calls: one mask is enough there
        if (blockSize === 1 && T === 200 && n % 3 !== 0) continue;
        test(label(c), () => check(c));
      }
    }
  }

  test('one task per (b, h): B·H = 16', () => {
    check({ B: 4, H: 4, T: 67, D: 8, window: 0, blockSize: 16, docs: 'runs', seed: 9 });
    check({ B: 8, H: 2, T: 40, D: 16, window: 9, blockSize: 64, docs: 'none', seed: 10 });
  });

  test('odd head dims and a block wider than the vector (D = 33, 17; block 20)', () => {
    check({ B: 1, H: 2, T: 90, D: 33, window: 0, blockSize: 20, docs: 'runs', seed: 7 });
    check({ B: 2, H: 1, T: 45, D: 17, window: 9, blockSize: 20, docs: 'none', seed: 8 });
  });

  test('long sequence: T = 2048 (causal, and a 300-token window with documents)', () => {
    check({ B: 1, H: 1, T: 2048, D: 32, window: 0, blockSize: 64, docs: 'none', seed: 11 });
    check({ B: 1, H: 1, T: 2048, D: 16, window: 300, blockSize: 64, docs: 'runs', seed: 12 });
  });

  // W near the identity: with α = 12 and |r| ≈ 4 each row's own weight is ~1 − 1e-5, where the
  // backward's softmax row sums −Z_i·(W X − X)_i need W X − X summed without the diagonal weight:
  // taken as Y − (1 + λ) X instead, it cancels to float32 ulps of X and dr, dr̂ are off by ~3e-4
  // (α = 10) to ~7e-3 (α = 15) relative; summed as the kernels do, ~1e-5.
  test('W near the identity (α = 12): W X − X and the gradients keep their precision', () => {
    const sharpen = (c: Case) => (inp: Inputs): void => setRHat(inp.r, inp.rHat, c.D, () => 12);
    for (const c of [
      { B: 2, H: 2, T: 200, D: 16, window: 0, blockSize: 64, docs: 'none', seed: 41 },
      { B: 1, H: 1, T: 150, D: 16, window: 40, blockSize: 32, docs: 'runs', seed: 42 },
    ] as Case[]) check(c, sharpen(c));
  });

  // The KRR forward forms the off-diagonal weights against the Cauchy-Schwarz bound
  // |r_i| max_j |r̂_j| instead of a running max (mixer_simd.h); a bound far above the row's largest
  // logit would lose the weights to underflow, and the block must be redone with the online max.
  // Here r̂_0 = 30 e_0 while every later r_i has r_i[0] = 0 (r̂_i = α r_i/|r_i| as usual): key 0's
  // logits are 0, ordinary, but its norm puts the bound of every block whose span holds key 0
  // hundreds (base 2) above the rows' largest logits, so only the fallback gives the answer.
  // Only the rows that fail fall back: with `far`, rows from 100 on get |r| = 1000 along e_0 (their
  // logits 0, their bound ~1000 above), so rows 64..99 keep the bound's weights and rows 100..127
  // take the online ones, in the same block [64, 128).
  test('a loose logit bound (one long r̂ row) falls back to the online softmax', () => {
    const tweak = (c: Case, far = false) => (inp: Inputs): void => {
      const { D } = c;
      orthogonalToE0(inp, D, (t) => !far && t % c.T === 0);
      for (let t = 0; t < inp.r.length / D; t++) {
        const r = inp.r.subarray(t * D, (t + 1) * D), rh = inp.rHat.subarray(t * D, (t + 1) * D);
        if (!far && t % c.T === 0) { rh.fill(0); rh[0] = 30; }
        if (far && t % c.T >= 100) { r.fill(0); r[0] = 1000; }
      }
    };
    for (const c of [
      { B: 1, H: 2, T: 150, D: 8, window: 0, blockSize: 16, docs: 'none', seed: 51 },
      { B: 2, H: 3, T: 150, D: 8, window: 0, blockSize: 16, docs: 'none', seed: 52 },
      { B: 1, H: 1, T: 200, D: 32, window: 90, blockSize: 64, docs: 'none', seed: 53 },
    ] as Case[]) check(c, tweak(c));
    for (const c of [
      { B: 1, H: 2, T: 200, D: 16, window: 0, blockSize: 64, docs: 'none', seed: 54 },
      { B: 2, H: 2, T: 200, D: 32, window: 0, blockSize: 64, docs: 'none', seed: 55 },
    ] as Case[]) check(c, tweak(c, true));
  });

  test('block size changes only rounding: blocks of 1, 13, 64 and T agree to 1e-5', () => {
    requireNative();
    const native = new NativeBackend(loadNativeAddon()!);
    const base: Case = { B: 1, H: 2, T: 150, D: 32, window: 0, blockSize: 64, docs: 'runs', seed: 21 };
    const inp = makeInputs(base);
    const want = runKernels(native, base, inp);
    for (const blockSize of [1, 13, 150]) {
      const got = runKernels(native, { ...base, blockSize }, inp, want);
      for (const key of Object.keys(want)) {
        const e = relErr(got[key], want[key]);
        assert.ok(e <= 1e-5, `block ${blockSize} vs 64, ${key}: relErr ${e.toExponential(2)}`);
      }
    }
  });

  test('prefix consistency: outputs at t < 100 ignore tokens ≥ 100', () => {
    requireNative();
    const native = new NativeBackend(loadNativeAddon()!);
    const c: Case = { B: 1, H: 1, T: 160, D: 8, window: 0, blockSize: 64, docs: 'none', seed: 31 };
    const inp = makeInputs(c);
    const a = runKernels(native, c, inp);
    const changed: Inputs = { ...inp };
    for (const key of ['r', 'rHat', 'y', 'q', 'k', 'v'] as const) {
      const t = inp[key].slice();
      for (let i = 100 * c.D; i < t.length; i++) t[i] = -3 * t[i] + 1;
      changed[key] = t;
    }
    const b = runKernels(native, c, changed);
    for (const key of ['x', 'out'] as const) {
      assert.deepEqual(b[key].subarray(0, 100 * c.D), a[key].subarray(0, 100 * c.D), `${key} changed before t = 100`);
    }
  });

  // The KRR forward's fallback to the online softmax (a row whose bound was loose) is decided row
  // by row: here rows ≥ 100 get |r| = 1000 along e_0, to which every r̂ is orthogonal, so their
  // bound is ~1000 (base 2) above their logits and they fall back, in the block [64, 128) that
  // rows 64..99 share. Redoing the whole block would change those rows' rounding.
  test('prefix consistency: a later row of the block falling back leaves earlier rows bit-identical', () => {
    requireNative();
    const addon = loadNativeAddon()!;
    const native = new NativeBackend(addon);
    for (const c of [
      { B: 1, H: 1, T: 160, D: 8, window: 0, blockSize: 64, docs: 'none', seed: 33 },
      { B: 1, H: 4, T: 160, D: 32, window: 0, blockSize: 64, docs: 'none', seed: 34 },
    ] as Case[]) {
      const inp = makeInputs(c);
      orthogonalToE0(inp, c.D);
      const changed: Inputs = { ...inp, r: inp.r.slice() };
      for (let t = 0; t < inp.r.length / c.D; t++) {
        if (t % c.T < 100) continue;
        changed.r.fill(0, t * c.D, (t + 1) * c.D);
        changed.r[t * c.D] = 1000;
      }
      for (const isa of isas(addon)) {
        addon.setIsa(isa);
        const a = runKernels(native, c, inp), b = runKernels(native, c, changed);
        for (let bh = 0; bh < c.B * c.H; bh++) {
          const at = (x: TypedArray): TypedArray => x.subarray(bh * c.T * c.D, (bh * c.T + 100) * c.D);
          assert.deepEqual(at(b.x), at(a.x), `${label(c)} ${isa} x of head ${bh} changed before t = 100`);
        }
      }
    }
  });

  test('scratch memory carries nothing between calls: NaN inputs, then clean ones give the clean result', () => {
    requireNative();
    const addon = loadNativeAddon()!;
    const native = new NativeBackend(addon);
    for (const c of [
      { B: 1, H: 1, T: 150, D: 32, window: 0, blockSize: 64, docs: 'none', seed: 41 },
      { B: 2, H: 3, T: 150, D: 32, window: 0, blockSize: 64, docs: 'none', seed: 42 },
    ] as Case[]) {
      for (const isa of isas(addon)) {
        addon.setIsa(isa);
        const inp = makeInputs(c);
        const clean = runKernels(native, c, inp);
        const poisoned: Inputs = { ...inp };
        for (const key of ['r', 'rHat', 'y', 'g', 'q', 'k', 'v'] as const) poisoned[key] = inp[key].map(() => NaN);
        // Other block sizes and windows lay the same scratch out differently, so NaN lands where
        // the clean call's products skip (the masked half of the diagonal tiles).
        for (const blockSize of [7, 33, 64, 150]) for (const window of [0, 20]) runKernels(native, { ...c, blockSize, window }, poisoned);
        const again = runKernels(native, c, inp);
        for (const key of Object.keys(clean)) assert.deepEqual(again[key], clean[key], `${label(c)} ${isa} ${key} after a NaN call`);
      }
    }
  });

  // cubitSolve: the KRR solve with r̂ = α r/max(‖r‖, eps) formed in the forward and s ⊙ v (LRR) in
  // both directions, against the reference's composition of the three kernels. Cases cover one
  // task per (b, h) (B·H = 16) and the split form (B·H < 4), masks, LRR on and off, and rows of r
  // below eps.
  describe('cubitSolve (the stages fused into the solve)', () => {
    const cases: (Case & { lrr: boolean })[] = [
      { B: 2, H: 2, T: 130, D: 32, window: 0, blockSize: 64, docs: 'none', seed: 71, lrr: true },
      { B: 1, H: 2, T: 97, D: 8, window: 30, blockSize: 16, docs: 'runs', seed: 72, lrr: true },
      { B: 1, H: 1, T: 70, D: 33, window: 0, blockSize: 7, docs: 'mixed', seed: 73, lrr: false },
      { B: 3, H: 2, T: 40, D: 16, window: 0, blockSize: 64, docs: 'none', seed: 74, lrr: false },
      { B: 4, H: 4, T: 50, D: 8, window: 0, blockSize: 16, docs: 'runs', seed: 75, lrr: true },
    ];
    const run = (be: ReferenceBackend, c: Case & { lrr: boolean }, inp: Inputs, extra: { alpha: Float32Array; z: Float32Array; lower: Float32Array; range: Float32Array },
      given?: Outputs): Outputs => {
      const f = be.name === 'native' ? 'float32' : 'float64';
      const { B, H, T, D } = c, n = B * H * T * D;
      const S = (v: ArrayLike<number>): Storage => store(be, v, f);
      const Z = (len: number): Storage => be.alloc(f, len);
      const d = mixerDims(be, c, inp);
      const read = (s: Storage): TypedArray => be.readSync(s, 0, s.length).slice();
      const r = S(inp.r), alpha = S(extra.alpha), v = S(inp.y), ll = S(inp.logLambda), g = S(inp.g);
      const lrr = c.lrr ? { logits: S(extra.z), lower: S(extra.lower), range: S(extra.range) } : null;
      const x = Z(n);
      const [rHat, lse, wx] = be.cubitSolve(r, alpha, v, lrr, ll, 1e-6, x, d).storages;
      const at = (key: string, s: Storage): Storage => (given ? S(given[key]) : s);
      const dr = Z(n), dv = Z(n), dAlpha = Z(B * H), dLambda = Z(B * H);
      const lrrGrads = c.lrr ? { dLogits: Z(B * H * T), dLower: Z(B * H), dRange: Z(B * H) } : null;
      be.cubitSolveBackward(r, alpha, v, lrr, ll, 1e-6, at('x', x), { storages: [at('rHat', rHat), lse, at('wxMinusX', wx)] }, g, dr, dv, dAlpha, lrrGrads, dLambda, d);
      const out: Outputs = { x: read(x), rHat: read(rHat), lse: read(lse), wxMinusX: read(wx), dr: read(dr), dv: read(dv), dAlpha: read(dAlpha), dLambda: read(dLambda) };
      if (lrrGrads) Object.assign(out, { dz: read(lrrGrads.dLogits), dLower: read(lrrGrads.dLower), dRange: read(lrrGrads.dRange) });
      return out;
    };
    // The per-(b, h) sums dAlpha = Σ_t (∂r̂_t · r_t)/‖r_t‖ and dLower = Σ_t Z_t · v_t (dRange
    // weights its terms by σ) may cancel to far below their terms (here dAlpha ~1e-3 from terms of
    // ~1), so their error is measured against the terms' size: Σ_t ‖∂r̂_t‖ and Σ_t ‖Z_t‖‖v_t‖,
    // from the float64 reference's unfused backward at the same point.
    const sumScales = (ref: ReferenceBackend, c: Case, inp: Inputs, at: Outputs): Record<string, number[]> => {
      const { B, H, T, D } = c, n = B * H * T * D;
      const S = (v: ArrayLike<number>): Storage => store(ref, v, 'float64');
      const d = mixerDims(ref, c, inp);
      const dr = ref.alloc('float64', n), drHat = ref.alloc('float64', n), dy = ref.alloc('float64', n), dl = ref.alloc('float64', B * H);
      ref.krrSolveBackward(S(inp.r), S(at.rHat), S(inp.logLambda), S(at.x), { storages: [S(at.lse), S(at.wxMinusX)] }, S(inp.g), dr, drHat, dy, dl, d);
      const gh = ref.readSync(drHat, 0, n), z = ref.readSync(dy, 0, n);
      const norm = (a: ArrayLike<number>, o: number): number => { let q = 0; for (let j = 0; j < D; j++) q += a[o + j] ** 2; return Math.sqrt(q); };
      const alphaScale: number[] = [], lrrScale: number[] = [];
      for (let bh = 0; bh < B * H; bh++) {
        let sa = 0, sl = 0;
        for (let t = 0; t < T; t++) {
          const o = (bh * T + t) * D;
          sa += norm(gh, o);
          sl += norm(z, o) * norm(inp.y, o);
        }
        alphaScale.push(sa);
        lrrScale.push(sl);
      }
      return { dAlpha: alphaScale, dLower: lrrScale, dRange: lrrScale };
    };
    for (const c of cases) {
      test(`${label(c)} lrr=${c.lrr}`, () => {
        requireNative();
        const addon = loadNativeAddon()!;
        const native = new NativeBackend(addon), ref = new ReferenceBackend();
        const inp = makeInputs(c), rng = new Rng(c.seed + 1000);
        const nr = c.B * c.H * c.T;
        const extra = {
          alpha: Float32Array.from({ length: c.H }, () => 0.5 + 2.5 * rng.next()),
          z: Float32Array.from({ length: nr }, () => 4 * rng.normal()),
          lower: Float32Array.from({ length: c.H }, () => 0.3 + 0.4 * rng.next()),
          range: Float32Array.from({ length: c.H }, () => 1 + rng.next()),
        };
        inp.r.fill(0, 3 * c.D, 4 * c.D); // a row below eps: r̂ = 0 there, and its gradient skips the norm
        for (const isa of isas(addon)) {
          addon.setIsa(isa);
          native.setThreads(1);
          const one = run(native, c, inp, extra);
          native.setThreads(2);
          const two = run(native, c, inp, extra);
          const want = run(ref, c, inp, extra, one);
          const scale = sumScales(ref, c, inp, one);
          for (const key of Object.keys(want)) {
            if (key in scale) {
              for (let bh = 0; bh < c.B * c.H; bh++) {
                const err = Math.abs(one[key][bh] - want[key][bh]);
                assert.ok(err <= TOL * scale[key][bh], `${label(c)} ${isa} ${key}[${bh}]: |error| ${err.toExponential(2)} > ${TOL} × ${scale[key][bh].toExponential(2)}`);
              }
            } else {
              const e = relErr(one[key], want[key]);
              assert.ok(e <= TOL, `${label(c)} ${isa} ${key}: relErr ${e.toExponential(2)} > ${TOL}`);
            }
            assert.deepEqual(two[key], one[key], `${label(c)} ${isa} ${key}: 2 threads differ from 1`);
          }
        }
      });
    }
  });

  test('bad arguments throw naming the argument', () => {
    requireNative();
    const addon = loadNativeAddon()!;
    const f = (n: number): Float32Array => new Float32Array(n);
    assert.throws(() => addon.krrSolve(f(8), f(8), f(7), f(1), f(8), f(4), f(8), 1, 1, 4, 2, 0, null, 64), /krrSolve: y is too short: 8 elements from offset 0 reach past its length 7/);
    assert.throws(() => addon.krrSolve(f(8), f(8), f(8), f(1), f(8), f(4), f(6), 1, 1, 4, 2, 0, null, 64), /krrSolve: wxMinusX is too short: 8 elements from offset 0 reach past its length 6/);
    assert.throws(() => addon.attention(f(8), f(8), f(8), f(8), f(4), 1, 1, 1, 4, 2, 0, new Int32Array(3), 64), /attention: docIds has 3 ids, needs B\*T = 4/);
    assert.throws(() => addon.attention(f(8), f(8), f(8), f(8), f(4), Infinity, 1, 1, 4, 2, 0, null, 64), /attention: argument 6 \(scale\) must be finite/);
    assert.throws(() => addon.krrSolveBackward(f(8), f(8), f(1), f(8), f(4), f(8), f(8), f(8), f(8), f(8), f(1), 1, 1, 4, 2, 0, null, 0),
      /krrSolveBackward: argument 18 \(blockSize\) must be >= 1/);
    assert.throws(() => addon.cubitSolve(f(8), f(1), f(8), f(4), null, f(1), f(1), 1e-6, f(8), f(8), f(4), f(8), 1, 1, 4, 2, 0, null, 64),
      /cubitSolve: lrrLogits needs lrrLower and lrrRange/);
    assert.throws(() => addon.cubitSolve(f(8), f(1), f(8), null, null, null, f(1), 0, f(8), f(8), f(4), f(8), 1, 1, 4, 2, 0, null, 64),
      /cubitSolve: eps must be positive and finite/);
    assert.throws(() => addon.attentionBackward(f(8), f(8), f(8), f(8), f(4), f(8), 1, f(8), f(8), f(8), 1, 1, 4, 0, 0, null, 8),
      /attentionBackward: argument 14 \(D\) must be in \[1, 2\^31\)/);
    // The table's checks: every array's length against the dims, types and counts by position.
    const solveBwd = (over: Record<number, unknown>): void => {
      const args: unknown[] = [f(8), f(1), f(8), f(4), f(1), f(1), f(1), 1e-6, f(8), f(8), f(4), f(8),
        f(8), f(8), f(8), f(1), f(4), f(1), f(1), f(1), 1, 1, 4, 2, 0, null, 64];
      for (const [i, x] of Object.entries(over)) args[Number(i)] = x;
      (addon.cubitSolveBackward as (...a: unknown[]) => void)(...args);
    };
    assert.doesNotThrow(() => solveBwd({}));
    assert.throws(() => solveBwd({ 16: f(3) }), /^RangeError: cubitSolveBackward: dLrrLogits is too short: 4 elements from offset 0 reach past its length 3$/);
    assert.throws(() => solveBwd({ 19: f(0) }), /cubitSolveBackward: dLambda is too short: 1 elements/);
    assert.throws(() => solveBwd({ 20: 2 }), /cubitSolveBackward: r is too short: 16 elements/);
    assert.throws(() => solveBwd({ 17: null }), /^TypeError: cubitSolveBackward: lrrLogits needs dLrrLogits, dLrrLower and dLrrRange$/);
    assert.throws(() => solveBwd({ 14: new Int32Array(8) }), /^TypeError: cubitSolveBackward: argument 15 \(dv\) must be a Float32Array$/);
    assert.throws(() => solveBwd({ 25: f(4) }), /^TypeError: cubitSolveBackward: argument 26 \(docIds\) must be a Int32Array$/);
    assert.throws(() => solveBwd({ 21: 2 ** 31 }), /^RangeError: cubitSolveBackward: argument 22 \(H\) must be in \[1, 2\^31\), got 2147483648$/);
    assert.throws(() => solveBwd({ 24: -1 }), /^TypeError: cubitSolveBackward: argument 25 \(window\) must be a non-negative integer$/);
    assert.throws(() => solveBwd({ 20: 2 ** 16, 21: 2 ** 15 }), /cubitSolveBackward: B\*H and B\*T must stay below 2\^31/);
    assert.throws(() => solveBwd({ 20: 2 ** 15, 21: 2 ** 15, 22: 2 ** 15, 23: 2 ** 31 - 1 }), /cubitSolveBackward: sizes .* overflow/);
    assert.throws(() => (addon.cubitSolveBackward as (...a: unknown[]) => void)(f(8)), /^TypeError: cubitSolveBackward: expected 27 arguments, got 1$/);
    assert.throws(() => addon.attentionBackward(f(8), f(8), f(8), f(8), f(3), f(8), 1, f(8), f(8), f(8), 1, 1, 4, 2, 0, null, 8),
      /attentionBackward: lse is too short: 4 elements/);
    assert.throws(() => addon.krrSolveBackward(f(8), f(8), f(1), f(8), f(4), f(8), f(8), f(8), f(8), f(8), f(1), 2, 1, 2, 2, 0, null, 4),
      /krrSolveBackward: dLambda is too short: 2 elements/);
  });
});
