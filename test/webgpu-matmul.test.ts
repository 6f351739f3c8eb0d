// The webgpu backend's fast matmul (src/backends/webgpu/kernels/matmul.ts) against its reference
// twin, core.ts's matmulTiled, and a float64 product on the host: random shapes, transposes,
// batches with strides and offsets, accumulate, aligned (vec4) and unaligned layouts, every tile.
// The f16-operand paths are checked against the rounding bound of f16 operands. Small shapes only
// (software adapters are slow). Skips without a WebGPU adapter, saying why.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MatmulParams } from '../src/core/backend.ts';
import { backendByName } from '../src/index.ts';
import type { WebGPUBackend } from '../src/backends/webgpu/backend.ts';
import { matmulTiled } from '../src/backends/webgpu/kernels/core.ts';
import * as mm from '../src/backends/webgpu/kernels/matmul.ts';
import type { GpuStorage } from '../src/backends/webgpu/runtime.ts';
import { webgpuUnavailable } from './webgpu-helpers.ts';
import { Rng } from '../src/core/random.ts';

const why = await webgpuUnavailable();

/** A seeded generator (core/random.ts's mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

interface Case { p: MatmulParams; a: Float32Array; b: Float32Array; c0: Float32Array }

/** A random problem; `aligned` makes every row length, offset and stride a multiple of 4. */
function randomCase(r: () => number, aligned: boolean, maxDim = 70): Case {
  const dim = (): number => (aligned ? 4 * (1 + Math.floor(r() * (maxDim / 4))) : 1 + Math.floor(r() * maxDim));
  const pad = (): number => (aligned ? 4 * Math.floor(r() * 3) : Math.floor(r() * 7));
  const m = dim(), n = dim(), k = dim(), batch = 1 + Math.floor(r() * 3);
  const aOffset = pad(), bOffset = pad(), cOffset = pad();
  const aBatchStride = m * k + pad(), bBatchStride = k * n + pad(), cBatchStride = m * n + pad();
  const p: MatmulParams = {
    batch, m, n, k, transA: r() < 0.5, transB: r() < 0.5, aOffset, bOffset, cOffset,
    aBatchStride, bBatchStride, cBatchStride, accumulate: r() < 0.5,
  };
  const fill = (len: number): Float32Array => Float32Array.from({ length: len }, () => 2 * r() - 1);
  return {
    p, a: fill(aOffset + batch * aBatchStride), b: fill(bOffset + batch * bBatchStride), c0: fill(cOffset + batch * cBatchStride),
  };
}

/** The float64 product, and Σ|a||b| + |c0| per output (the scale of its rounding errors). */
function hostProduct(c: Case): { want: Float64Array; scale: Float64Array } {
  const { p, a, b, c0 } = c;
  const want = Float64Array.from(c0), scale = Float64Array.from(c0, Math.abs);
  for (let q = 0; q < p.batch; q++) {
    for (let i = 0; i < p.m; i++) {
      for (let j = 0; j < p.n; j++) {
        let s = 0, abs = 0;
        for (let l = 0; l < p.k; l++) {
          const x = a[p.aOffset + q * p.aBatchStride + (p.transA ? l * p.m + i : i * p.k + l)];
          const y = b[p.bOffset + q * p.bBatchStride + (p.transB ? j * p.k + l : l * p.n + j)];
          s += x * y; abs += Math.abs(x * y);
        }
        const at = p.cOffset + q * p.cBatchStride + i * p.n + j;
        want[at] = p.accumulate ? want[at] + s : s;
        scale[at] = p.accumulate ? scale[at] + abs : abs;
      }
    }
  }
  return { want, scale };
}

type Kernel = (a: GpuStorage, b: GpuStorage, out: GpuStorage, p: MatmulParams) => void;

async function runOn(be: WebGPUBackend, kernel: Kernel, c: Case): Promise<Float32Array> {
  const a = be.rt.alloc('float32', c.a.length), b = be.rt.alloc('float32', c.b.length), out = be.rt.alloc('float32', c.c0.length);
  be.rt.write(a, c.a); be.rt.write(b, c.b); be.rt.write(out, c.c0);
  kernel(a, b, out, c.p);
  const got = (await be.read(out, 0, c.c0.length)) as Float32Array;
  for (const s of [a, b, out]) be.rt.release(s);
  return got;
}

/** Largest |got − want| / (scale + 1e-30) over the outputs (entries outside C must stay c0). */
function worst(got: Float32Array, want: Float64Array, scale: Float64Array): number {
  let e = 0;
  for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got[i] - want[i]) / (scale[i] + 1e-30));
  return e;
}

const describe = (p: MatmulParams): string => `${p.batch}×(${p.m}×${p.k}${p.transA ? 'ᵀ' : ''}·${p.k}×${p.n}${p.transB ? 'ᵀ' : ''})${p.accumulate ? '+C' : ''} offsets ${p.aOffset},${p.bOffset},${p.cOffset}`;

if (why) {
  test('webgpu matmul', { skip: why }, () => {});
} else {
  const be = backendByName('webgpu') as WebGPUBackend;
  // float32 sums of ≤ 70 products: errors of a few ulps of Σ|a||b|.
  const F32_BOUND = 1e-5;

  test('register-tiled matmul matches matmulTiled and the float64 product on every tile', async () => {
    const r = rng(7);
    for (const [name, tile] of Object.entries(mm.TILES)) {
      if (!mm.tileFits(be.rt, tile)) continue;
      for (let t = 0; t < 6; t++) {
        const c = randomCase(r, t % 2 === 0);
        const { want, scale } = hostProduct(c);
        const twin = await runOn(be, (a, b, o, p) => matmulTiled(be.rt, a, b, o, p), c);
        const fast = await runOn(be, (a, b, o, p) => mm.matmulRegisterTiled(be.rt, a, b, o, p, tile), c);
        assert.ok(worst(twin, want, scale) < F32_BOUND, `matmulTiled ${describe(c.p)}`);
        assert.ok(worst(fast, want, scale) < F32_BOUND, `tile ${name} ${describe(c.p)}: error ${worst(fast, want, scale)}`);
        let diff = 0;
        for (let i = 0; i < twin.length; i++) diff = Math.max(diff, Math.abs(fast[i] - twin[i]) / (scale[i] + 1e-30));
        assert.ok(diff < 2 * F32_BOUND, `tile ${name} vs matmulTiled ${describe(c.p)}: ${diff}`);
      }
    }
  });

  test('tile edges: sizes one off the tile and the K step, and k = 0', async () => {
    const r = rng(11);
    const tile = mm.TILES['64x64'];
    for (const [m, n, k] of [[63, 65, 17], [65, 63, 15], [64, 64, 16], [1, 64, 1], [64, 1, 33], [5, 7, 0]]) {
      for (const [transA, transB] of [[false, false], [true, true]]) {
        const base = randomCase(r, false, 4);
        const p: MatmulParams = { ...base.p, batch: 2, m, n, k, transA, transB, aOffset: 1, bOffset: 2, cOffset: 3, aBatchStride: m * k + 1, bBatchStride: k * n, cBatchStride: m * n + 5, accumulate: true };
        const fill = (len: number): Float32Array => Float32Array.from({ length: len }, () => 2 * r() - 1);
        const c: Case = { p, a: fill(1 + 2 * p.aBatchStride), b: fill(2 + 2 * p.bBatchStride), c0: fill(3 + 2 * p.cBatchStride) };
        const { want, scale } = hostProduct(c);
        const fast = await runOn(be, (a, b, o, q) => mm.matmulRegisterTiled(be.rt, a, b, o, q, tile), c);
        assert.ok(worst(fast, want, scale) < F32_BOUND, `${describe(p)}: ${worst(fast, want, scale)}`);
      }
    }
  });

  test('the backend matmul picks a path by size and precision', () => {
    const p = (m: number, n: number, batch = 1): MatmulParams => ({ batch, m, n, k: 64, transA: false, transB: false, aOffset: 0, bOffset: 0, cOffset: 0, aBatchStride: 0, bBatchStride: 0, cBatchStride: 0, accumulate: false });
    assert.equal(mm.pickTile(p(8, 4096)), null);
    assert.equal(mm.pickTile(p(4096, 4096)), mm.TILES['128x128']);
    assert.equal(mm.pickTile(p(1024, 1024)), mm.TILES['64x64']);
    assert.equal(mm.pickTile(p(256, 256, 64)), mm.TILES['128x128']);
    assert.equal(mm.pickTile(p(256, 256, 32)), mm.TILES['128x64']);
    assert.equal(mm.pickTile(p(64, 64)), null);
    assert.equal(mm.pickTile(p(64, 64, 4)), mm.TILES['32x32']);
    assert.equal(mm.pickTile(p(4096, 4096), (t) => t.bm <= 64), mm.TILES['64x64']);
    assert.equal(mm.matmulPlan(be.rt, be.adapter, p(8, 8), 'f32').path, 'tiled16');
    assert.equal(mm.matmulPlan(be.rt, be.adapter, p(512, 512), 'f32').path, 'registerTiled');
    const f16 = mm.matmulPlan(be.rt, be.adapter, p(512, 512), 'f16').path;
    if (mm.hasSubgroupMatrix(be.rt, be.adapter)) assert.equal(f16, 'subgroupMatrix-f16');
    else assert.equal(f16, be.rt.has('shader-f16') ? 'registerTiled-f16' : 'registerTiled');
  });

  test('CUBIT_WEBGPU_MATMUL selects the precision', () => {
    const saved = process.env.CUBIT_WEBGPU_MATMUL;
    try {
      process.env.CUBIT_WEBGPU_MATMUL = 'f16';
      assert.equal(mm.matmulPrecisionFromEnv(), 'f16');
      delete process.env.CUBIT_WEBGPU_MATMUL;
      assert.equal(mm.matmulPrecisionFromEnv(), 'f32');
      process.env.CUBIT_WEBGPU_MATMUL = 'bf16';
      assert.throws(() => mm.matmulPrecisionFromEnv(), /CUBIT_WEBGPU_MATMUL must be 'f32' or 'f16', got 'bf16'/);
    } finally {
      if (saved === undefined) delete process.env.CUBIT_WEBGPU_MATMUL; else process.env.CUBIT_WEBGPU_MATMUL = saved;
    }
  });

  // f16 operands: each operand rounds with relative error ≤ 2⁻¹¹, so each product by ≤ 2·2⁻¹¹ + 2⁻²²:
  // |error| ≤ 9.8e-4·Σ|a||b| plus the f32 sums. The errors must also be far above f32's, or the
  // operands were not rounded at all.
  const F16_BOUND = 2 * 2 ** -11 + 2 ** -22 + F32_BOUND;

  async function checkF16(kernel: Kernel, label: string): Promise<string> {
    const r = rng(23);
    let worstSeen = 0, sumSq = 0, refSq = 0;
    for (let t = 0; t < 6; t++) {
      const c = randomCase(r, t % 2 === 0, 80);
      const { want, scale } = hostProduct(c);
      const got = await runOn(be, kernel, c);
      const e = worst(got, want, scale);
      assert.ok(e < F16_BOUND, `${label} ${describe(c.p)}: error ${e} of Σ|a||b| exceeds the f16 bound ${F16_BOUND}`);
      worstSeen = Math.max(worstSeen, e);
      for (let i = 0; i < want.length; i++) { sumSq += (got[i] - want[i]) ** 2; refSq += want[i] ** 2; }
    }
    assert.ok(worstSeen > 1e-5, `${label}: errors (${worstSeen}) look like f32: were the operands rounded to f16?`);
    const rel = Math.sqrt(sumSq / refSq);
    assert.ok(rel < 2e-3, `${label}: relative error ${rel} (Frobenius)`);
    return `${label}: worst error ${worstSeen.toExponential(2)} of Σ|a||b|, relative error ${rel.toExponential(2)} (Frobenius)`;
  }

  test('f16-operand register-tiled matmul: within the f16 rounding bound of the float64 product', { skip: !be.rt.has('shader-f16') && "no 'shader-f16' on this adapter" }, async (t) => {
    for (const name of ['64x64', '32x32']) {
      t.diagnostic(await checkF16((a, b, o, p) => mm.matmulRegisterTiled(be.rt, a, b, o, p, mm.TILES[name], true), `f16 tile ${name}`));
    }
  });

  test('subgroup-matrix matmul: within the f16 rounding bound of the float64 product', {
    skip: !mm.hasSubgroupMatrix(be.rt, be.adapter) && "no 16×16×16 f16→f32 subgroup matrices with a fixed subgroup size (an NVIDIA GPU with CUBIT_WEBGPU_UNSAFE=1 has them)",
  }, async (t) => {
    for (const [name, tile] of Object.entries(mm.SUBGROUP_TILES)) {
      t.diagnostic(await checkF16((a, b, o, p) => mm.matmulSubgroupMatrix(be.rt, be.adapter, a, b, o, p, tile), `subgroup matrix ${name}`));
    }
  });

  test('matmulPrecision f16 on the backend routes tensor matmuls through the f16 path', { skip: !be.rt.has('shader-f16') && "no 'shader-f16' on this adapter" }, async () => {
    const r = rng(5);
    const c = randomCase(r, true, 4);
    const p = { ...c.p, m: 128, n: 128, k: 64, batch: 1, transA: false, transB: true, aOffset: 0, bOffset: 0, cOffset: 0, accumulate: false };
    const fill = (len: number): Float32Array => Float32Array.from({ length: len }, () => 2 * r() - 1);
    const cc: Case = { p, a: fill(128 * 64), b: fill(64 * 128), c0: new Float32Array(128 * 128) };
    const { want, scale } = hostProduct(cc);
    const saved = be.matmulPrecision;
    try {
      be.matmulPrecision = 'f32';
      const f32 = await runOn(be, (a, b, o, q) => be.matmul(a, b, o, q), cc);
      be.matmulPrecision = 'f16';
      const f16 = await runOn(be, (a, b, o, q) => be.matmul(a, b, o, q), cc);
      assert.ok(worst(f32, want, scale) < F32_BOUND);
      const e16 = worst(f16, want, scale);
      assert.ok(e16 > 1e-5 && e16 < F16_BOUND, `f16 error ${e16}`);
    } finally {
      be.matmulPrecision = saved;
    }
  });
}
