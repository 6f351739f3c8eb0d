// Properties of the mixers that hold on every backend: the streaming block size changes nothing
// beyond rounding, no output sees the future, documents are isolated, X is prefix-consistent, and
// the native kernels agree with the reference on long sequences. Plus float64 gradient checks of
// the ops on random inputs and the α → ∞ limit of CUBIT.md §2.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  causalKrrSolve, cubitAttention, cubitSolve, dispose, getBackend, localLinearAttention, lrrValues, noGrad, normalizeReference, softmaxAttention,
  solveSpd, tensor, tidy, withBackend, type DType, type MixerOptions, type Tensor,
} from '../src/index.ts';
import { gradcheck, nativeTestOptions, randTensor, randValues, relErr, requireNative, withBlockSize } from './helpers.ts';

// ---- inputs as plain float64 arrays, so the same values can be loaded on any backend/dtype ----

interface CubitValues {
  B: number; H: number; T: number; D: number;
  q: Float64Array; k: Float64Array; v: Float64Array; r: Float64Array | null; z: Float64Array;
  refScale: number[]; logLambda: number[]; lower: number[]; range: number[];
  /** ∂L/∂output for backward. */
  g: Float64Array;
}

function cubitValues(B: number, H: number, T: number, D: number, seed: number, shared = false): CubitValues {
  const n = B * H * T * D;
  const scaled = (a: Float64Array, s: number): Float64Array => a.map((x) => x * s);
  return {
    B, H, T, D,
    q: scaled(randValues(n, { seed }), 0.7), k: scaled(randValues(n, { seed: seed + 1 }), 0.7), v: randValues(n, { seed: seed + 2 }),
    r: shared ? null : randValues(n, { seed: seed + 3 }), z: randValues(B * H * T, { seed: seed + 4 }),
    refScale: Array.from({ length: H }, (_, h) => 1 + 1.5 * h), logLambda: Array.from({ length: H }, (_, h) => Math.log(h % 2 ? 1e-2 : 1e-4)),
    lower: Array.from({ length: H }, () => 0.5), range: Array.from({ length: H }, () => 1.5),
    g: randValues(n, { seed: seed + 5 }),
  };
}

interface CubitRun { output: Float64Array; solution: Float64Array; grads: Record<string, Float64Array> }

/** Cubit forward (and backward when grads) on the active backend; float64 copies of the results. */
function runCubit(val: CubitValues, dtype: DType, options: MixerOptions, grads = true): CubitRun {
  return tidy(() => {
    const { B, H, T, D } = val;
    const mk = (a: ArrayLike<number>, shape: number[]): Tensor => tensor(Float64Array.from(a), shape, { dtype, requiresGrad: grads });
    const t = {
      q: mk(val.q, [B, H, T, D]), k: mk(val.k, [B, H, T, D]), v: mk(val.v, [B, H, T, D]), r: val.r ? mk(val.r, [B, H, T, D]) : null,
      lrrLogits: mk(val.z, [B, H, T]), refScale: mk(val.refScale, [H]), logLambda: mk(val.logLambda, [H]),
      lrrLower: mk(val.lower, [H]), lrrRange: mk(val.range, [H]),
    };
    const { output, solution } = cubitAttention(t, options);
    const res: CubitRun = { output: Float64Array.from(output.dataSync()), solution: Float64Array.from(solution.dataSync()), grads: {} };
    if (grads) {
      output.backward(tensor(Float64Array.from(val.g), output.shape, { dtype }));
      for (const [name, x] of Object.entries(t)) {
        if (!x) continue;
        res.grads[name] = Float64Array.from(x.grad!.dataSync());
        x.grad!.dispose(); x.grad = null;
      }
    }
    return res;
  });
}

function assertRunsClose(got: CubitRun, want: CubitRun, tol: number, label: string): void {
  for (const key of ['output', 'solution'] as const) {
    const e = relErr(got[key], want[key]);
    assert.ok(e <= tol, `${label}: ${key} relErr ${e.toExponential(2)} > ${tol}`);
  }
  for (const name of Object.keys(want.grads)) {
    const e = relErr(got.grads[name], want.grads[name]);
    assert.ok(e <= tol, `${label}: ∂${name} relErr ${e.toExponential(2)} > ${tol}`);
  }
}

/** Document ids (T) in runs of the given lengths. */
function docs(...lengths: number[]): Int32Array {
  const out: number[] = [];
  lengths.forEach((len, id) => { for (let i = 0; i < len; i++) out.push(id); });
  return Int32Array.from(out);
}

/** Mask configurations exercised everywhere; docIds are made on the active backend when used. */
const masks: { name: string; window?: number; docs?: Int32Array }[] = [
  { name: 'causal' },
  { name: 'window 13', window: 13 },
  { name: 'documents', docs: docs(1, 30, 8, 41, 20) },
  { name: 'documents + window 9', window: 9, docs: docs(25, 2, 48, 25) },
];

function maskOptions(m: typeof masks[number]): MixerOptions {
  return { window: m.window, docIds: m.docs ? tensor(m.docs, [m.docs.length]) : null };
}

const backends: { name: string; dtype: DType; opts: { skip?: string } }[] = [
  { name: 'reference', dtype: 'float64', opts: {} },
  { name: 'reference', dtype: 'float32', opts: {} },
  { name: 'native', dtype: 'float32', opts: nativeTestOptions() },
];

function onBackend<T>(name: string, fn: () => T): T {
  if (name === 'native') requireNative();
  return withBackend(name, fn);
}

// ---- block size ----

describe('the streaming block size changes nothing beyond rounding', () => {
  const val = cubitValues(2, 2, 100, 16, 7);
  for (const be of backends) {
    for (const m of masks) {
      test(`${be.name} ${be.dtype}, ${m.name}: block sizes 1, 7, 64, T, T + 5`, be.opts, () => {
        onBackend(be.name, () => {
          const tol = be.dtype === 'float64' ? 1e-12 : 2e-5;
          const base = withBlockSize(64, () => runCubit(val, be.dtype, maskOptions(m)));
          for (const bs of [1, 7, val.T, val.T + 5]) {
            assertRunsClose(withBlockSize(bs, () => runCubit(val, be.dtype, maskOptions(m))), base, tol, `blockSize ${bs} vs 64`);
          }
        });
      });
    }
  }
});

// ---- T = 1 ----

describe('T = 1', () => {
  for (const be of backends) {
    test(`${be.name} ${be.dtype}: X = s v / (1 + λ) and out = X`, be.opts, () => {
      onBackend(be.name, () => {
        const val = cubitValues(2, 3, 1, 5, 11);
        const res = runCubit(val, be.dtype, {});
        const want = new Float64Array(val.v.length);
        for (let bh = 0; bh < 6; bh++) {
          const h = bh % 3, s = val.lower[h] + val.range[h] / (1 + Math.exp(-val.z[bh]));
          for (let c = 0; c < 5; c++) want[bh * 5 + c] = (s * val.v[bh * 5 + c]) / (1 + Math.exp(val.logLambda[h]));
        }
        const tol = be.dtype === 'float64' ? 1e-14 : 1e-6;
        assert.ok(relErr(res.solution, want) <= tol, `solution relErr ${relErr(res.solution, want)}`);
        assert.ok(relErr(res.output, want) <= tol, `output relErr ${relErr(res.output, want)}`);
        // W = [1] whatever r is: no gradient reaches r, q or k, and α only through nothing.
        for (const name of ['q', 'k', 'r', 'refScale']) assert.equal(relErr(res.grads[name], new Float64Array(res.grads[name].length)), 0, `∂${name} must vanish`);
      });
    });
  }
});

// ---- long sequences: native against the reference ----

test('T = 1024: native float32 matches the float64 reference (outputs and gradients)', nativeTestOptions(), () => {
  requireNative();
  const val = cubitValues(1, 2, 1024, 32, 21);
  const m = { name: 'documents + window', window: 300, docs: docs(700, 324) };
  const want = withBackend('reference', () => runCubit(val, 'float64', maskOptions(m)));
  const wantCausal = withBackend('reference', () => runCubit(val, 'float64', {}));
  withBackend('native', () => {
    assertRunsClose(runCubit(val, 'float32', maskOptions(m)), want, 1e-4, 'native T=1024 window+docs');
    assertRunsClose(runCubit(val, 'float32', {}), wantCausal, 1e-4, 'native T=1024 causal');
  });
});

// ---- causality, documents, prefixes ----

/** Every mixer as a function of the token values, returning its (B, H, T, D) outputs. */
const mixers: { name: string; run: (val: CubitValues, dtype: DType, o: MixerOptions) => Float64Array[] }[] = [
  { name: 'cubitAttention', run: (val, dtype, o) => { const r = runCubit(val, dtype, o, false); return [r.output, r.solution]; } },
  {
    name: 'softmaxAttention',
    run: (val, dtype, o) => tidy(() => {
      const s = [val.B, val.H, val.T, val.D];
      return [Float64Array.from(softmaxAttention(tensor(val.q, s, { dtype }), tensor(val.k, s, { dtype }), tensor(val.v, s, { dtype }), o).dataSync())];
    }),
  },
  {
    name: 'localLinearAttention',
    run: (val, dtype, o) => tidy(() => {
      const s = [val.B, val.H, val.T, val.D];
      const out = localLinearAttention(tensor(val.q, s, { dtype }), tensor(val.k, s, { dtype }), tensor(val.v, s, { dtype }), { ...o, ridge: 0.5 });
      return [Float64Array.from(out.dataSync())];
    }),
  },
];

/** The values at positions [t0, t1) of every (B, H, T, ·) row block. */
function positions(a: Float64Array, val: CubitValues, width: number, t0: number, t1: number): Float64Array {
  const out: number[] = [];
  for (let bh = 0; bh < val.B * val.H; bh++) for (let t = t0; t < t1; t++) for (let c = 0; c < width; c++) out.push(a[(bh * val.T + t) * width + c]);
  return Float64Array.from(out);
}

/** A copy of val with the tokens at positions where `pick(t)` holds replaced by fresh values. */
function perturb(val: CubitValues, pick: (t: number) => boolean, seed: number): CubitValues {
  const n = { ...val, q: val.q.slice(), k: val.k.slice(), v: val.v.slice(), r: val.r?.slice() ?? null, z: val.z.slice() };
  const fresh = randValues(val.q.length * 4 + val.z.length, { seed });
  let f = 0;
  for (let bh = 0; bh < val.B * val.H; bh++) {
    for (let t = 0; t < val.T; t++) {
      if (!pick(t)) continue;
      for (let c = 0; c < val.D; c++) {
        const i = (bh * val.T + t) * val.D + c;
        n.q[i] = fresh[f++]; n.k[i] = fresh[f++]; n.v[i] = fresh[f++];
        if (n.r) n.r[i] = fresh[f++];
      }
      n.z[bh * val.T + t] = fresh[f++];
    }
  }
  return n;
}

describe('no output sees the future; documents are isolated', () => {
  const val = cubitValues(2, 2, 40, 6, 31);
  const cut = 23; // tokens ≥ cut change
  for (const be of backends) {
    for (const mixer of mixers) {
      if (mixer.name === 'localLinearAttention' && be.name === 'native') continue; // composed of ops only: the reference run covers it
      test(`${mixer.name}, ${be.name} ${be.dtype}: changing tokens ≥ ${cut} leaves outputs < ${cut} bit-identical`, be.opts, () => {
        onBackend(be.name, () => {
          for (const m of masks.filter((x) => !x.docs)) {
            const before = mixer.run(val, be.dtype, maskOptions(m));
            const after = mixer.run(perturb(val, (t) => t >= cut, 99), be.dtype, maskOptions(m));
            before.forEach((a, i) => {
              assert.deepEqual(positions(after[i], val, val.D, 0, cut), positions(a, val, val.D, 0, cut), `${m.name}: output ${i} before ${cut} changed`);
              assert.ok(relErr(positions(after[i], val, val.D, cut, val.T), positions(a, val, val.D, cut, val.T)) > 1e-3, 'the perturbation must reach later outputs');
            });
          }
        });
      });
      test(`${mixer.name}, ${be.name} ${be.dtype}: changing one document leaves the others bit-identical`, be.opts, () => {
        onBackend(be.name, () => {
          const ids = docs(12, 15, 13);
          const o = (): MixerOptions => ({ docIds: tensor(ids, [40]) });
          const before = mixer.run(val, be.dtype, o());
          const after = mixer.run(perturb(val, (t) => ids[t] === 0, 77), be.dtype, o());
          before.forEach((a, i) => {
            assert.deepEqual(positions(after[i], val, val.D, 12, 40), positions(a, val, val.D, 12, 40), `output ${i} of documents 1 and 2 changed`);
            assert.ok(relErr(positions(after[i], val, val.D, 0, 12), positions(a, val, val.D, 0, 12)) > 1e-3, 'the perturbation must reach document 0');
          });
          // And a middle document, whose change must not leak backwards or forwards.
          const mid = mixer.run(perturb(val, (t) => ids[t] === 1, 78), be.dtype, o());
          before.forEach((a, i) => {
            assert.deepEqual(positions(mid[i], val, val.D, 0, 12), positions(a, val, val.D, 0, 12), `output ${i} of document 0 changed`);
            assert.deepEqual(positions(mid[i], val, val.D, 27, 40), positions(a, val, val.D, 27, 40), `output ${i} of document 2 changed`);
          });
        });
      });
    }
  }
});

describe('prefix consistency: X and the output of a prefix are those of the whole sequence', () => {
  for (const be of backends) {
    test(`${be.name} ${be.dtype}`, be.opts, () => {
      onBackend(be.name, () => {
        const T = 70, val = cubitValues(1, 2, T, 8, 41);
        for (const m of [{ window: undefined }, { window: 17 }]) {
          const full = runCubit(val, be.dtype, { window: m.window }, false);
          for (const P of [1, 33, 64, 65]) {
            const pre: CubitValues = {
              ...val, T: P,
              q: positions(val.q, val, 8, 0, P), k: positions(val.k, val, 8, 0, P), v: positions(val.v, val, 8, 0, P),
              r: positions(val.r!, val, 8, 0, P), z: positions(val.z, val, 1, 0, P), g: new Float64Array(0),
            };
            const part = runCubit(pre, be.dtype, { window: m.window }, false);
            const tol = be.dtype === 'float64' ? 0 : 1e-6;
            assert.ok(relErr(part.solution, positions(full.solution, val, 8, 0, P)) <= tol, `window ${m.window}: X of the first ${P} tokens differs`);
            assert.ok(relErr(part.output, positions(full.output, val, 8, 0, P)) <= tol, `window ${m.window}: output of the first ${P} tokens differs`);
          }
        }
      });
    });
  }
});

// ---- limits ----

test('α → ∞ gives W → I: X = s v / (1 + λ) and Cubit is attention over the rescaled values', () => {
  withBackend('reference', () => {
    const val = cubitValues(1, 2, 12, 8, 51);
    val.refScale = [400, 400];
    const res = runCubit(val, 'float64', {}, false);
    tidy(() => {
      const s = [1, 2, 12, 8];
      const y = new Float64Array(val.v.length);
      for (let i = 0; i < val.z.length; i++) {
        const h = Math.floor(i / 12) % 2, sc = (val.lower[h] + val.range[h] / (1 + Math.exp(-val.z[i]))) / (1 + Math.exp(val.logLambda[h]));
        for (let c = 0; c < 8; c++) y[i * 8 + c] = sc * val.v[i * 8 + c];
      }
      assert.ok(relErr(res.solution, y) < 1e-9, `X relErr ${relErr(res.solution, y)}`);
      const att = softmaxAttention(tensor(val.q, s, { dtype: 'float64' }), tensor(val.k, s, { dtype: 'float64' }), tensor(y, s, { dtype: 'float64' }));
      assert.ok(relErr(res.output, att) < 1e-9);
    });
  });
});

test('α > 0 keeps M invertible as λ → 0 (λ = e⁻⁶⁰): X stays finite and solves M X = Y', () => {
  withBackend('reference', () => tidy(() => {
    const [B, H, T, D] = [1, 1, 30, 4];
    const r = randTensor([B, H, T, D], { seed: 3 });
    const norm = r.square().sum(-1, { keepDims: true }).sqrt();
    const rHat = r.div(norm).mul(0.05); // small α: W near the running mean, X large
    const y = randTensor([B, H, T, D], { seed: 4 });
    const x = causalKrrSolve(r, rHat, y, tensor([-60], [1], { dtype: 'float64' }));
    // M X recomputed densely must give Y back.
    const logits = r.matmul(rHat, { transB: true }).dataSync();
    const X = x.dataSync(), Y = y.dataSync();
    const back = new Float64Array(T * D);
    for (let i = 0; i < T; i++) {
      let mx = -Infinity;
      for (let j = 0; j <= i; j++) mx = Math.max(mx, logits[i * T + j]);
      let z = 0;
      for (let j = 0; j <= i; j++) z += Math.exp(logits[i * T + j] - mx);
      for (let j = 0; j <= i; j++) {
        const p = Math.exp(logits[i * T + j] - mx) / z + (i === j ? Math.exp(-60) : 0);
        for (let c = 0; c < D; c++) back[i * D + c] += p * X[j * D + c];
      }
    }
    assert.ok(X.every(Number.isFinite));
    assert.ok(relErr(back, Y) < 1e-10, `M X vs Y relErr ${relErr(back, Y)}`);
  }));
});

// ---- float64 gradient checks of the ops on random inputs ----

describe('gradcheck (float64, reference)', () => {
  const gc = (name: string, fn: (...xs: Tensor[]) => Tensor, make: () => Tensor[]): void => {
    test(name, () => withBackend('reference', () => {
      const inputs = make();
      try { gradcheck(fn, inputs); } finally { dispose(inputs); for (const t of inputs) t.grad?.dispose(); }
    }));
  };
  const x = (shape: number[], seed: number, scale = 1): Tensor => {
    const t = randTensor(shape, { seed });
    const s = scale === 1 ? t : tidy(() => t.mul(scale)).keep();
    if (s !== t) t.dispose();
    s.requiresGrad = true;
    return s;
  };
  const ids = (): Tensor => tensor(docs(3, 5, 2), [10]);
  for (const o of [{}, { window: 3 }, { docIds: true }, { window: 4, docIds: true }] as const) {
    const label = JSON.stringify(o);
    const opts = (): MixerOptions => ({ window: 'window' in o ? o.window : undefined, docIds: 'docIds' in o ? ids() : null });
    gc(`softmaxAttention ${label}`, (q, k, v) => softmaxAttention(q, k, v, opts()), () => [x([2, 2, 10, 3], 1), x([2, 2, 10, 3], 2), x([2, 2, 10, 3], 3)]);
    gc(`causalKrrSolve ${label} (∂logLambda summed over the batch)`, (r, rh, y, ll) => causalKrrSolve(r, rh, y, ll, opts()),
      () => [x([2, 2, 10, 3], 4), x([2, 2, 10, 3], 5), x([2, 2, 10, 3], 6), x([2], 7, 2)]);
    gc(`cubitAttention ${label}`, (q, k, v, r, z, a, ll, lo, ra) => cubitAttention({ q, k, v, r, lrrLogits: z, refScale: a, logLambda: ll, lrrLower: lo, lrrRange: ra }, opts()).output,
      () => [x([2, 2, 10, 3], 8), x([2, 2, 10, 3], 9), x([2, 2, 10, 3], 10), x([2, 2, 10, 3], 11), x([2, 2, 10], 12), x([2], 13), x([2], 14), x([2], 15), x([2], 16)]);
  }
  gc('cubitSolve without LRR', (r, a, v, ll) => cubitSolve(r, a, v, null, ll, { window: 4 }),
    () => [x([2, 2, 10, 3], 27), x([2], 28), x([2, 2, 10, 3], 29), x([2], 30)]);
  gc('cubitSolve with LRR, documents', (r, a, v, z, lo, ra, ll) => cubitSolve(r, a, v, { logits: z, lower: lo, range: ra }, ll, { docIds: ids() }),
    () => [x([2, 2, 10, 3], 31), x([2], 32), x([2, 2, 10, 3], 33), x([2, 2, 10], 34), x([2], 35), x([2], 36), x([2], 37)]);
  gc('cubitAttention, shared key (r = k), solution output', (q, k, v, z, a, ll, lo, ra) => cubitAttention({ q, k, v, lrrLogits: z, refScale: a, logLambda: ll, lrrLower: lo, lrrRange: ra }).solution,
    () => [x([1, 2, 9, 4], 17), x([1, 2, 9, 4], 18), x([1, 2, 9, 4], 19), x([1, 2, 9], 20), x([2], 21), x([2], 22), x([2], 23), x([2], 24)]);
  gc('solveSpd', (a, b) => solveSpd(a.matmul(a, { transB: true }).add(tensor([2, 0, 0, 0, 2, 0, 0, 0, 2], [3, 3], { dtype: 'float64' })), b),
    () => [x([4, 3, 3], 25), x([4, 3, 2], 26)]);
});

// cubitSolve fuses normalizeReference, lrrValues and causalKrrSolve into one op: the same values and
// gradients as the three composed, on every backend (float64: to rounding; float32: within 1e-5,
// the kernels' own rounding), with LRR on and off, r = 0 rows (the norm floor) included.
describe('cubitSolve equals normalizeReference + lrrValues + causalKrrSolve', () => {
  for (const be of backends) {
    for (const lrrOn of [true, false]) {
      test(`${be.name} ${be.dtype}, LRR ${lrrOn ? 'on' : 'off'}`, be.opts, () => onBackend(be.name, () => tidy(() => {
        const val = cubitValues(2, 2, 70, 8, 81);
        val.r!.fill(0, 8 * 5, 8 * 6); // token 5 of (b, h) = 0
        const mk = (a: ArrayLike<number>, shape: number[]): Tensor => {
          const t = tensor(Float64Array.from(a), shape, { dtype: be.dtype });
          t.requiresGrad = true;
          return t;
        };
        const shape = [val.B, val.H, val.T, val.D];
        const r = mk(val.r!, shape), v = mk(val.v, shape), a = mk(val.refScale, [val.H]), ll = mk(val.logLambda, [val.H]);
        const z = mk(val.z, [val.B, val.H, val.T]), lo = mk(val.lower, [val.H]), ra = mk(val.range, [val.H]);
        const g = tensor(Float64Array.from(val.g), shape, { dtype: be.dtype });
        const leaves = lrrOn ? [r, a, v, z, lo, ra, ll] : [r, a, v, ll];
        const opts = { window: 50 };
        const run = (fused: boolean): Float64Array[] => {
          for (const t of leaves) { t.grad?.dispose(); t.grad = null; }
          const x = fused
            ? cubitSolve(r, a, v, lrrOn ? { logits: z, lower: lo, range: ra } : null, ll, opts)
            : causalKrrSolve(r, normalizeReference(r, a), lrrOn ? lrrValues(v, z, lo, ra) : v, ll, opts);
          x.backward(g);
          return [x, ...leaves.map((t) => t.grad!)].map((t) => Float64Array.from(t.dataSync()));
        };
        const fused = run(true), composed = run(false);
        const tol = be.dtype === 'float64' ? 1e-11 : 1e-5;
        const names = ['X', ...(lrrOn ? ['r', 'refScale', 'v', 'lrrLogits', 'lrrLower', 'lrrRange', 'logLambda'] : ['r', 'refScale', 'v', 'logLambda'])];
        names.forEach((name, i) => {
          const e = relErr(fused[i], composed[i]);
          assert.ok(e <= tol, `${name}: relErr ${e.toExponential(2)} > ${tol}`);
        });
      })));
    }
  }
});

test('cubitAttention: r = 0 at a token gives finite gradients (the norm floor)', () => {
  withBackend('reference', () => tidy(() => {
    const val = cubitValues(1, 1, 5, 3, 61);
    val.r!.fill(0, 6, 9); // token 2
    const res = runCubit(val, 'float64', {});
    for (const [name, g] of Object.entries(res.grads)) assert.ok(g.every(Number.isFinite), `∂${name} is not finite`);
  }));
});

// ---- memory ----

describe('no storage outlives its use', () => {
  for (const be of backends.filter((b) => b.dtype === 'float32')) {
    test(`${be.name}: forward + backward outside any scope frees everything once results are disposed`, be.opts, () => {
      onBackend(be.name, () => {
        const b = getBackend();
        const mk = (s: number[], seed: number): Tensor => randTensor(s, { seed, dtype: 'float32', requiresGrad: true });
        const inp = {
          q: mk([2, 2, 9, 4], 1), k: mk([2, 2, 9, 4], 2), v: mk([2, 2, 9, 4], 3), r: mk([2, 2, 9, 4], 4), lrrLogits: mk([2, 2, 9], 5),
          refScale: mk([2], 6), logLambda: mk([2], 7), lrrLower: mk([2], 8), lrrRange: mk([2], 9),
        };
        const ridge = mk([2], 10);
        const before = b.memory().bytesInUse;
        for (let it = 0; it < 2; it++) {
          const docIds = tensor(Int32Array.from([0, 0, 0, 1, 1, 1, 1, 2, 2]), [9]);
          const { output, solution } = cubitAttention(inp, { docIds, window: 4 });
          const ll = localLinearAttention(inp.q, inp.k, inp.v, { ridge, docIds });
          const att = softmaxAttention(inp.q, inp.k, inp.v, { docIds });
          const g = randTensor(output.shape, { seed: 11, dtype: 'float32' });
          output.backward(g); ll.backward(g); att.backward(g);
          dispose([output, solution, ll, att, g, docIds]);
          for (const t of [...Object.values(inp), ridge]) { assert.ok(t.grad, 'every input receives a gradient'); t.grad.dispose(); t.grad = null; }
          assert.equal(b.memory().bytesInUse, before, `iteration ${it}: storage leaked`);
        }
        // Forward only (the graph is dropped without backward), and under noGrad.
        const ids = tensor(Int32Array.from([0, 0, 0, 1, 1, 1, 1, 2, 2]), [9]), proj = randTensor([4, 2], { dtype: 'float32' });
        dispose(cubitAttention(inp, { docIds: ids }));
        noGrad(() => dispose(localLinearAttention(inp.q, inp.k, inp.v, { projection: proj })));
        dispose([ids, proj]);
        assert.equal(b.memory().bytesInUse, before, 'forward-only / noGrad passes leaked storage');
        dispose([...Object.values(inp), ridge]);
      });
    });
  }
});
