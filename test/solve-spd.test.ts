// solveSpd's Cholesky factor three ways: the reference's fused `cholesky` kernel (float64), the
// composite of core kernels beside the op (a core-only view of the reference in float64, and of the
// native backend in float32), and the native backend's C kernels (cholesky.c: the same bits as the
// reference's on float32), on random shapes and batches;
// the factor's definition (L Lᵀ = A, zeros above the diagonal, the upper triangle of A unread);
// and the error for a matrix that is not positive definite, the same on every path.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { coreOnly } from '../src/backends/core-only.ts';
import { registerBackend } from '../src/core/engine.ts';
import { dispose, Rng, solveSpd, tensor, tidy, type DType } from '../src/index.ts';
import { backend, nativeTestOptions, relErr, requireNative, withBackend } from './helpers.ts';
import { webgpuUnavailable } from './webgpu-helpers.ts';

registerBackend('reference-core', () => coreOnly(backend('reference')));
registerBackend('native-core', () => coreOnly(backend('native')));

interface Problem { lead: number[]; n: number; k: number; a: Float64Array; b: Float64Array; g: Float64Array }

/**
 * A random batch of SPD matrices M Mᵀ + c·I (c in [0.5, n]), with noise in their unread upper
 * triangles; right-hand sides, and an upstream gradient for X.
 */
function problem(rng: Rng, lead: number[], n: number, k: number): Problem {
  const batch = lead.reduce((p, d) => p * d, 1);
  const a = new Float64Array(batch * n * n), b = Float64Array.from({ length: batch * n * k }, () => rng.normal());
  for (let p = 0; p < batch; p++) {
    const m = Float64Array.from({ length: n * n }, () => rng.normal());
    const c = 0.5 + rng.next() * (n - 0.5);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        let s = i === j ? c : 0;
        for (let l = 0; l < n; l++) s += m[i * n + l] * m[j * n + l];
        a[p * n * n + i * n + j] = s;
        if (j < i) a[p * n * n + j * n + i] = 1e3 * rng.normal(); // above the diagonal: never read
      }
    }
  }
  return { lead, n, k, a, b, g: Float64Array.from(b, () => rng.normal()) };
}

/** X = A⁻¹ B and its gradients ∂A, ∂B for the upstream gradient p.g on backend `name` in `dtype`. */
function solveOn(name: string, dtype: DType, p: Problem): { x: Float64Array; da: Float64Array; db: Float64Array } {
  return withBackend(name, () => tidy(() => {
    const a = tensor(p.a, [...p.lead, p.n, p.n], { dtype, requiresGrad: true });
    const b = tensor(p.b, [...p.lead, p.n, p.k], { dtype, requiresGrad: true });
    const x = solveSpd(a, b);
    x.backward(tensor(p.g, x.shape, { dtype }));
    const res = { x: Float64Array.from(x.dataSync()), da: Float64Array.from(a.grad!.dataSync()), db: Float64Array.from(b.grad!.dataSync()) };
    dispose([a.grad!, b.grad!]);
    return res;
  }));
}

const rng = new Rng(12);
const shapes: [number[], number, number][] = [[[1], 1, 1], [[4], 2, 1], [[3], 7, 2], [[2, 5], 16, 1], [[9], 31, 3], [[2], 64, 1]];
const problems = shapes.map(([lead, n, k]) => problem(rng, lead, n, k));
const label = (p: Problem): string => `(${[...p.lead, p.n].join(', ')}, ${p.n}) · k=${p.k}`;

describe('solveSpd: fused kernel, composite and reference agree', () => {
  for (const p of problems) {
    test(`float64: the reference's kernel and the composite of core kernels, ${label(p)}`, () => {
      const want = solveOn('reference', 'float64', p), got = solveOn('reference-core', 'float64', p);
      for (const key of ['x', 'da', 'db'] as const) {
        const e = relErr(got[key], want[key]);
        assert.ok(e <= 1e-12, `${key}: relErr ${e.toExponential(2)}`);
      }
    });
    test(`float32: the native kernel and the native composite against the float64 reference, ${label(p)}`, nativeTestOptions(), () => {
      requireNative();
      const want = solveOn('reference', 'float64', p);
      // float32 (u ≈ 6e-8) on matrices of condition up to ~8n/c: seen ≤ 2.5e-7·√n, bound 4e-6·√n.
      for (const name of ['native', 'native-core']) {
        const got = solveOn(name, 'float32', p);
        for (const key of ['x', 'da', 'db'] as const) {
          const e = relErr(got[key], want[key]);
          assert.ok(e <= 4e-6 * Math.sqrt(p.n), `${name} ${key}: relErr ${e.toExponential(2)}`);
        }
      }
    });
  }

  test(`float32: the native kernels (C) give the reference's bits for X and ∂B, ∂A to float32 matmul rounding`, nativeTestOptions(), () => {
    requireNative();
    for (const p of problems) {
      const want = solveOn('reference', 'float32', p), got = solveOn('native', 'float32', p);
      assert.deepEqual(got.x, want.x, `${label(p)}: X`);
      assert.deepEqual(got.db, want.db, `${label(p)}: ∂B`);
      const e = relErr(got.da, want.da);
      assert.ok(e <= 1e-6, `${label(p)}: ∂A relErr ${e.toExponential(2)}`);
    }
  });

  test('the reference kernel writes the Cholesky factor: L Lᵀ = A on the lower triangle, zeros above', () => {
    const p = problems[4], be = backend('reference'), n = p.n, batch = 9;
    const a = be.alloc('float64', p.a.length), l = be.alloc('float64', p.a.length);
    be.write(a, p.a);
    be.cholesky!(a, l, batch, n);
    const L = be.readSync!(l, 0, l.length);
    let worst = 0;
    for (let q = 0; q < batch; q++) {
      const o = q * n * n;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          if (j > i) { assert.equal(L[o + i * n + j], 0, `matrix ${q}: L[${i}, ${j}] above the diagonal`); continue; }
          let s = 0;
          for (let t = 0; t <= j; t++) s += L[o + i * n + t] * L[o + j * n + t];
          worst = Math.max(worst, Math.abs(s - p.a[o + i * n + j]) / Math.abs(p.a[o + i * n + i]));
        }
        assert.ok(L[o + i * n + i] > 0, `matrix ${q}: diagonal ${i}`);
      }
    }
    assert.ok(worst <= 1e-13, `L Lᵀ − A: ${worst.toExponential(2)}`);
    be.free(a); be.free(l);
  });
});

describe('solveSpd: a matrix that is not positive definite', () => {
  // Matrix 2 of 3 is indefinite (pivot 1 is 1 − 4 < 0), matrix 1 is singular further on; both
  // paths report the first failing matrix, with no host read.
  const a = [4, 0, 0, 0, 4, 0, 0, 0, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 2, 1, 0, 0, 0, 1];
  const b = Array.from({ length: 9 }, (_, i) => i + 1);
  for (const name of ['reference', 'reference-core', 'native', 'native-core']) {
    test(`on '${name}': a one-line error naming solveSpd and the matrix, no read back`, name.startsWith('native') ? nativeTestOptions() : {}, () => {
      if (name.startsWith('native')) requireNative();
      const be = backend(name);
      withBackend(name, () => {
        const before = be.hostReads;
        assert.throws(() => tidy(() => solveSpd(tensor(a, [3, 3, 3]), tensor(b, [3, 3, 1]))),
          (e: Error) => /^solveSpd: matrix 1 of the batch is not positive definite \(diag\(L\)\[1\] = (NaN|0)\)$/.test(e.message));
        assert.equal(be.hostReads, before, 'host reads');
        // The first matrix alone is fine; the third alone fails as matrix 0.
        assert.deepEqual(tidy(() => solveSpd(tensor(a.slice(0, 9), [3, 3]), tensor(b.slice(0, 3), [3, 1])).toArray()), [[0.25], [0.5], [0.75]]);
        assert.throws(() => tidy(() => solveSpd(tensor(a.slice(18), [1, 3, 3]), tensor(b.slice(6), [1, 3, 1]))), /matrix 0 of the batch is not positive definite \(diag\(L\)\[1\]/);
      });
    });
  }

  // A GPU backend cannot throw at once: its check sets a flag that the next read reports.
  test('on webgpu: the same error at the next read, and none before it', async (t) => {
    const why = await webgpuUnavailable();
    if (why) { t.skip(why); return; }
    const x = withBackend('webgpu', () => solveSpd(tensor(a, [3, 3, 3]), tensor(b, [3, 3, 1])));
    await assert.rejects(x.data(), /^Error: solveSpd: matrix 1 of the batch is not positive definite \(diag\(L\)\[1\] = (NaN|0)\)$/);
    x.dispose();
  });
});
