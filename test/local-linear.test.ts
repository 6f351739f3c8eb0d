// The local linear regression mixer (CUBIT.md §5): against a direct float64 per-query evaluation of
// the formula, float64 finite differences, and its defining properties (weights sum to one, linear
// functions of the keys are reproduced, ρ → ∞ recovers softmax attention).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { dispose, localLinearAttention, localLinearDecode, softmaxAttention, tensor, tidy, withBackend, type DType, type Tensor } from '../src/index.ts';
import { gradcheck, nativeTestOptions, randTensor, randValues, relErr, requireNative } from './helpers.ts';

interface Case {
  B: number; H: number; T: number; D: number; Dv: number;
  q: Float64Array; k: Float64Array; v: Float64Array;
  /** (D, m) or (H, D, m), or null for the identity. */
  proj: { shape: number[]; data: Float64Array } | null;
  /** Linear-term coordinates given directly: (B, H, T, m) for queries and keys. */
  features?: { m: number; q: Float64Array; k: Float64Array };
  ridge: number | number[];
  window?: number; docs?: Int32Array;
}

function makeCase(B: number, H: number, T: number, D: number, Dv: number, seed: number, extra: Partial<Case> = {}): Case {
  return {
    B, H, T, D, Dv, q: randValues(B * H * T * D, { seed }), k: randValues(B * H * T * D, { seed: seed + 1 }),
    v: randValues(B * H * T * Dv, { seed: seed + 2 }), proj: null, ridge: 0.5, ...extra,
  };
}

/** Solves A x = b (n×n, k right-hand sides) by Gaussian elimination with partial pivoting. */
function gaussSolve(A: number[][], Bm: number[][]): number[][] {
  const n = A.length, a = A.map((r) => [...r]), b = Bm.map((r) => [...r]);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let i = c + 1; i < n; i++) if (Math.abs(a[i][c]) > Math.abs(a[piv][c])) piv = i;
    [a[c], a[piv]] = [a[piv], a[c]]; [b[c], b[piv]] = [b[piv], b[c]];
    for (let i = c + 1; i < n; i++) {
      const f = a[i][c] / a[c][c];
      for (let j = c; j < n; j++) a[i][j] -= f * a[c][j];
      for (let j = 0; j < b[i].length; j++) b[i][j] -= f * b[c][j];
    }
  }
  for (let i = n - 1; i >= 0; i--) {
    for (let j = 0; j < b[i].length; j++) {
      let s = b[i][j];
      for (let l = i + 1; l < n; l++) s -= a[i][l] * b[l][j];
      b[i][j] = s / a[i][i];
    }
  }
  return b;
}

/**
 * §5 evaluated literally, per query, in float64: weights p_ij, centred covariances C_i and B_i of
 * the projected keys, out_i = v̄_i − (k̄_i − q_i)ᵀ (C_i + ρI)⁻¹ B_i.
 */
function direct(c: Case): Float64Array {
  const { B, H, T, D, Dv } = c;
  const out = new Float64Array(B * H * T * Dv);
  const scale = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const bh = b * H + h;
      const vec = (a: Float64Array, t: number, w: number) => Array.from(a.subarray((bh * T + t) * w, (bh * T + t + 1) * w));
      const m = c.features ? c.features.m : c.proj ? c.proj.shape[c.proj.shape.length - 1] : D;
      const project = (x: number[]): number[] => {
        if (!c.proj) return x;
        const base = c.proj.shape.length === 3 ? h * D * m : 0;
        return Array.from({ length: m }, (_, j) => x.reduce((s, xi, i) => s + xi * c.proj!.data[base + i * m + j], 0));
      };
      const rho = typeof c.ridge === 'number' ? c.ridge : c.ridge[h];
      for (let i = 0; i < T; i++) {
        const qi = vec(c.q, i, D);
        const J: number[] = [];
        for (let j = 0; j <= i; j++) {
          if (c.window && j <= i - c.window) continue;
          if (c.docs && c.docs[j] !== c.docs[i]) continue;
          J.push(j);
        }
        const logits = J.map((j) => scale * vec(c.k, j, D).reduce((s, kj, l) => s + kj * qi[l], 0));
        const mx = Math.max(...logits);
        const e = logits.map((x) => Math.exp(x - mx));
        const z = e.reduce((s, x) => s + x, 0);
        const p = e.map((x) => x / z);
        const kp = J.map((j) => (c.features ? vec(c.features.k, j, m) : project(vec(c.k, j, D))));
        const vs = J.map((j) => vec(c.v, j, Dv));
        const kBar = Array.from({ length: m }, (_, a) => J.reduce((s, _j, n) => s + p[n] * kp[n][a], 0));
        const vBar = Array.from({ length: Dv }, (_, a) => J.reduce((s, _j, n) => s + p[n] * vs[n][a], 0));
        const C = Array.from({ length: m }, (_, a) => Array.from({ length: m }, (_, bb) =>
          J.reduce((s, _j, n) => s + p[n] * (kp[n][a] - kBar[a]) * (kp[n][bb] - kBar[bb]), 0) + (a === bb ? rho : 0)));
        const Bm = Array.from({ length: m }, (_, a) => Array.from({ length: Dv }, (_, d) =>
          J.reduce((s, _j, n) => s + p[n] * (kp[n][a] - kBar[a]) * vs[n][d], 0)));
        const Z = gaussSolve(C, Bm);
        const qp = c.features ? vec(c.features.q, i, m) : project(qi);
        for (let d = 0; d < Dv; d++) {
          let corr = 0;
          for (let a = 0; a < m; a++) corr += (kBar[a] - qp[a]) * Z[a][d];
          out[(bh * T + i) * Dv + d] = vBar[d] - corr;
        }
      }
    }
  }
  return out;
}

/** localLinearAttention on the active backend in `dtype`, as a float64 copy. */
function run(c: Case, dtype: DType, over: { v?: Float64Array; ridge?: number } = {}): Float64Array {
  return tidy(() => {
    const s = [c.B, c.H, c.T, c.D];
    const out = localLinearAttention(tensor(c.q, s, { dtype }), tensor(c.k, s, { dtype }), tensor(over.v ?? c.v, [c.B, c.H, c.T, c.Dv], { dtype }), {
      ridge: over.ridge ?? (typeof c.ridge === 'number' ? c.ridge : tensor(c.ridge, [c.H], { dtype })),
      projection: c.proj ? tensor(c.proj.data, c.proj.shape, { dtype }) : null,
      features: c.features ? { q: tensor(c.features.q, [c.B, c.H, c.T, c.features.m], { dtype }), k: tensor(c.features.k, [c.B, c.H, c.T, c.features.m], { dtype }) } : null,
      window: c.window, docIds: c.docs ? tensor(c.docs, [c.T]) : null,
    });
    return Float64Array.from(out.dataSync());
  });
}

const docs = Int32Array.from([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2]);
const cases: [string, Case][] = [
  ['identity projection, D = Dv = 3', makeCase(2, 2, 12, 3, 3, 1)],
  ['Dv ≠ D, per-head ridge', makeCase(1, 2, 12, 4, 5, 11, { ridge: [0.3, 2] })],
  ['shared (D, m) projection, m = 2', makeCase(2, 2, 12, 5, 5, 21, { proj: { shape: [5, 2], data: randValues(10, { seed: 24 }) } })],
  ['per-head (H, D, m) projection, m = 3', makeCase(1, 3, 12, 4, 4, 31, { proj: { shape: [3, 4, 3], data: randValues(36, { seed: 34 }) } })],
  ['window 5 and documents', makeCase(2, 1, 12, 3, 3, 41, { window: 5, docs })],
  ['features given directly (m = 2)', makeCase(1, 2, 12, 4, 4, 51, { features: { m: 2, q: randValues(48, { seed: 54 }), k: randValues(48, { seed: 55 }) } })],
];

describe('matches the direct per-query float64 evaluation of §5', () => {
  for (const [name, c] of cases) {
    test(`${name}: reference float64 within 1e-12`, () => {
      withBackend('reference', () => {
        const e = relErr(run(c, 'float64'), direct(c));
        assert.ok(e <= 1e-12, `relErr ${e.toExponential(2)}`);
      });
    });
    test(`${name}: reference float32 within 1e-5`, () => {
      withBackend('reference', () => {
        const e = relErr(run(c, 'float32'), direct(c));
        assert.ok(e <= 1e-5, `relErr ${e.toExponential(2)}`);
      });
    });
    test(`${name}: native float32 within 1e-5`, nativeTestOptions(), () => {
      requireNative();
      withBackend('native', () => {
        const e = relErr(run(c, 'float32'), direct(c));
        assert.ok(e <= 1e-5, `relErr ${e.toExponential(2)}`);
      });
    });
  }
});

describe('gradcheck (float64 finite differences)', () => {
  const gc = (name: string, fn: (...xs: Tensor[]) => Tensor, make: () => Tensor[]): void => {
    test(name, () => withBackend('reference', () => {
      const inputs = make();
      try { gradcheck(fn, inputs); } finally { dispose(inputs); for (const t of inputs) t.grad?.dispose(); }
    }));
  };
  const x = (shape: number[], seed: number, o: { low?: number; high?: number } = {}): Tensor => randTensor(shape, { seed, requiresGrad: true, ...o });
  gc('q, k, v (identity projection, number ridge)', (q, k, v) => localLinearAttention(q, k, v, { ridge: 0.7 }),
    () => [x([2, 2, 6, 3], 1), x([2, 2, 6, 3], 2), x([2, 2, 6, 3], 3)]);
  gc('q, k, v, ridge tensor, (D, m) projection, window and documents', (q, k, v, rho, P) =>
    localLinearAttention(q, k, v, { ridge: rho, projection: P, window: 4, docIds: tensor(Int32Array.from([0, 0, 0, 1, 1, 1, 1]), [7]) }),
  () => [x([1, 2, 7, 4], 4), x([1, 2, 7, 4], 5), x([1, 2, 7, 2], 6), x([2], 7, { low: 0.3, high: 1.5 }), x([4, 2], 8)]);
  gc('features given directly', (q, k, v, fq, fk) => localLinearAttention(q, k, v, { ridge: 0.6, features: { q: fq, k: fk }, window: 5 }),
    () => [x([1, 2, 7, 3], 13), x([1, 2, 7, 3], 14), x([1, 2, 7, 3], 15), x([1, 2, 7, 2], 16), x([1, 2, 7, 2], 17)]);
  gc('localLinearDecode: one query over a cache, with features', (q, k, v, fq, fk) => localLinearDecode(q, k, v, { ridge: 0.6, features: { q: fq, k: fk } }),
    () => [x([1, 2, 1, 3], 18), x([1, 2, 6, 3], 19), x([1, 2, 6, 3], 20), x([1, 2, 1, 2], 21), x([1, 2, 6, 2], 22)]);
  gc('per-head (H, D, m) projection', (q, k, v, P) => localLinearAttention(q, k, v, { ridge: 0.4, projection: P }),
    () => [x([2, 2, 5, 3], 9), x([2, 2, 5, 3], 10), x([2, 2, 5, 3], 11), x([2, 3, 2], 12)]);
});

describe('properties', () => {
  test('the weights sum to one: a constant v gives that constant at every position', () => {
    withBackend('reference', () => {
      for (const [name, c] of cases) {
        const v = new Float64Array(c.B * c.H * c.T * c.Dv);
        for (let n = 0; n < v.length; n++) v[n] = 0.25 + (n % c.Dv) - Math.floor(n / (c.T * c.Dv));
        const e = relErr(run(c, 'float64', { v }), v);
        assert.ok(e <= 1e-13, `${name}: relErr ${e.toExponential(2)}`);
      }
    });
  });

  test('a linear function of the keys is reproduced at the query (ρ → 0, ≥ D + 1 keys), unlike NW', () => {
    withBackend('reference', () => {
      const c = makeCase(1, 1, 24, 3, 3, 51);
      const A = [[0.7, -1.2, 0.4], [2.0, 0.3, -0.5], [-0.6, 0.9, 1.1]], b0 = [0.1, -0.3, 0.2];
      const lin = (x: Float64Array, t: number): number[] => A.map((row, d) => b0[d] + row.reduce((s, a, l) => s + a * x[t * 3 + l], 0));
      const v = new Float64Array(24 * 3);
      for (let t = 0; t < 24; t++) v.set(lin(c.k, t), t * 3);
      const got = run(c, 'float64', { v, ridge: 1e-9 });
      const want = new Float64Array(24 * 3);
      for (let t = 0; t < 24; t++) want.set(lin(c.q, t), t * 3);
      const from = 8; // enough keys for C to be well-conditioned
      const e = relErr(got.subarray(from * 3), want.subarray(from * 3));
      assert.ok(e < 1e-5, `local linear relErr ${e.toExponential(2)}`);
      const nw = tidy(() => Float64Array.from(softmaxAttention(tensor(c.q, [1, 1, 24, 3], { dtype: 'float64' }), tensor(c.k, [1, 1, 24, 3], { dtype: 'float64' }),
        tensor(v, [1, 1, 24, 3], { dtype: 'float64' })).dataSync()));
      assert.ok(relErr(nw.subarray(from * 3), want.subarray(from * 3)) > 0.1, 'NW should not reproduce the linear function (the test would be vacuous)');
    });
  });

  test('ρ → ∞ tends to softmax (NW) attention, at rate 1/ρ', () => {
    withBackend('reference', () => {
      const [, c] = cases[4];
      const nw = tidy(() => {
        const s = [c.B, c.H, c.T, c.D];
        return Float64Array.from(softmaxAttention(tensor(c.q, s, { dtype: 'float64' }), tensor(c.k, s, { dtype: 'float64' }), tensor(c.v, s, { dtype: 'float64' }),
          { window: c.window, docIds: tensor(c.docs!, [c.T]) }).dataSync());
      });
      const e1 = relErr(run(c, 'float64', { ridge: 1e4 }), nw), e2 = relErr(run(c, 'float64', { ridge: 1e6 }), nw);
      assert.ok(e2 < 1e-5, `ρ = 1e6: relErr ${e2.toExponential(2)}`);
      assert.ok(e1 / e2 > 50 && e1 / e2 < 200, `error should fall like 1/ρ: ${e1.toExponential(2)} → ${e2.toExponential(2)}`);
    });
  });

  test('the first token of each document returns its own value', () => {
    withBackend('reference', () => {
      const [, c] = cases[4];
      const got = run(c, 'float64');
      for (let b = 0; b < c.B; b++) for (const t of [0, 4, 9]) {
        const at = (b * c.T + t) * c.Dv;
        assert.ok(relErr(got.subarray(at, at + c.Dv), c.v.subarray(at, at + c.Dv)) < 1e-14, `b ${b} t ${t}`);
      }
    });
  });
});
