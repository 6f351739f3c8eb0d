// The webgpu backend's fused neural-network kernels (src/backends/webgpu/kernels/nn.ts) against
// the reference backend's, kernel by kernel, where the conformance suite's shapes do not reach:
// a 50k-column vocabulary row, long normalised rows, sums over many rows (several chunks of the
// two-pass column sums, bit-identical run to run), many AdamW steps, a merge with a missing part,
// rows of −∞, the Cubit row stages with some gradients not wanted, and a whole small model. Small enough for the
// software adapters (lavapipe, GLES); skips where no WebGPU adapter exists.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backendByName, Decoder, tensor, withBackend } from '../src/index.ts';
import { ReferenceBackend } from '../src/backends/reference/backend.ts';
import type { Backend, FusedKernels, Storage } from '../src/core/backend.ts';
import type { TypedArray } from '../src/core/dtype.ts';
import { Rng } from '../src/index.ts';
import { relErr } from './helpers.ts';
import { webgpuUnavailable } from './webgpu-helpers.ts';

type Fused = Backend & FusedKernels;

/** An input: float32 values, or int32 ids. */
type In = Float32Array | Int32Array;
/** A float32 output of `length` values (outputs start at a sentinel, so an unwritten cell shows). */
interface Out { length: number }

const SENTINEL = 12345;

/** Runs `fn` on `be` with the inputs written and the outputs allocated; returns the outputs read back. */
async function run(be: Backend, inputs: Record<string, In>, outputs: Record<string, Out>,
  fn: (be: Fused, s: Record<string, Storage>) => void): Promise<Record<string, TypedArray>> {
  const s: Record<string, Storage> = {};
  for (const [k, v] of Object.entries(inputs)) {
    s[k] = be.alloc(v instanceof Int32Array ? 'int32' : 'float32', v.length);
    be.write(s[k], v);
  }
  for (const [k, o] of Object.entries(outputs)) {
    s[k] = be.alloc('float32', o.length);
    be.write(s[k], new Float32Array(o.length).fill(SENTINEL));
  }
  fn(be as Fused, s);
  const res: Record<string, TypedArray> = {};
  for (const k of Object.keys(outputs)) res[k] = await be.read(s[k], 0, outputs[k].length);
  for (const st of Object.values(s)) be.free(st);
  return res;
}

/** The same call on the reference and on webgpu; every output within `tol` (relErr) of the reference's. */
async function compare(what: string, inputs: Record<string, In>, outputs: Record<string, Out>,
  fn: (be: Fused, s: Record<string, Storage>) => void, tol: number | Record<string, number>): Promise<Record<string, TypedArray>> {
  const want = await run(new ReferenceBackend(), inputs, outputs, fn);
  const got = await run(backendByName('webgpu'), inputs, outputs, fn);
  for (const k of Object.keys(outputs)) {
    const t = typeof tol === 'number' ? tol : tol[k];
    const e = relErr(got[k], want[k]);
    assert.ok(e <= t, `${what}: ${k} relErr ${e.toExponential(2)} > ${t.toExponential(2)}`);
  }
  return got;
}

const rng = new Rng(7);
function floats(n: number, scale = 1): Float32Array { return Float32Array.from({ length: n }, () => rng.normal() * scale); }

/** float32 accumulation of L terms (the conformance suite's red(L)). */
const red = (len: number): number => 1e-6 * Math.sqrt(Math.max(len, 1));

const why = await webgpuUnavailable();
describe('webgpu fused nn kernels against the reference', { skip: why ?? undefined }, () => {
  test('cross-entropy over a 50 000-column vocabulary, one row ignored', async () => {
    const rows = 3, cols = 50000;
    const targets = Int32Array.from([49999, -100, 17]);
    const inputs = { logits: floats(rows * cols, 3), targets, dloss: Float32Array.from([0.5, 2, -1.25]) };
    const got = await compare('crossEntropy 50k', inputs, { losses: { length: rows }, lse: { length: rows }, dlogits: { length: rows * cols } }, (be, s) => {
      be.crossEntropy(s.logits, s.targets, s.losses, s.lse, rows, cols, -100);
      be.crossEntropyBackward(s.logits, s.targets, s.lse, s.dloss, s.dlogits, rows, cols, -100);
    }, red(cols));
    assert.equal(got.losses[1], 0, 'an ignored row has loss 0');
    assert.ok(got.dlogits.subarray(cols, 2 * cols).every((v) => v === 0), 'an ignored row has zero gradient');
  });

  test('softmax and log-softmax of a 50 000-column row, and rows of −∞', async () => {
    const cols = 50000, x = floats(3 * cols, 4);
    x.fill(-Infinity, cols, 2 * cols);
    for (let j = 0; j < cols; j += 3) x[2 * cols + j] = -Infinity;
    const dy = floats(3 * cols);
    for (const log of [false, true]) {
      const got = await compare(`softmax log=${log}`, { x, dy }, { y: { length: 3 * cols }, dx: { length: 3 * cols } }, (be, s) => {
        be.softmax(s.x, s.y, 3, cols, log);
        be.softmaxBackward(s.y, s.dy, s.dx, 3, cols, log);
      }, red(cols));
      assert.ok(got.y.subarray(cols, 2 * cols).every((v) => v === (log ? -Infinity : 0)), 'an all −∞ row gives 0 (softmax) / −∞ (log)');
    }
  });

  test('rmsNorm and layerNorm of 20 000-column rows, forward and backward', async () => {
    const rows = 2, cols = 20000;
    const inputs = { x: floats(rows * cols, 2), w: floats(cols), b: floats(cols), dy: floats(rows * cols) };
    const outs = { y: { length: rows * cols }, rstd: { length: rows }, dx: { length: rows * cols }, dw: { length: cols } };
    await compare('rmsNorm long rows', inputs, outs, (be, s) => {
      be.rmsNorm(s.x, s.w, s.y, s.rstd, rows, cols, 1e-6);
      be.rmsNormBackward(s.x, s.w, s.rstd, s.dy, s.dx, s.dw, rows, cols);
    }, red(cols));
    await compare('layerNorm long rows', inputs, { ...outs, mean: { length: rows }, db: { length: cols } }, (be, s) => {
      be.layerNorm(s.x, s.w, s.b, s.y, s.mean, s.rstd, rows, cols, 1e-5);
      be.layerNormBackward(s.x, s.w, s.mean, s.rstd, s.dy, s.dx, s.dw, s.db, rows, cols);
    }, red(cols));
  });

  test('weight and bias gradients summed over 700 rows (many chunks), identical bits run to run', async () => {
    const rows = 700, cols = 37;
    const inputs = { x: floats(rows * cols), w: floats(cols), dy: floats(rows * cols) };
    const outs = { y: { length: rows * cols }, mean: { length: rows }, rstd: { length: rows }, dx: { length: rows * cols }, dw: { length: cols }, db: { length: cols } };
    const ln = (be: Fused, s: Record<string, Storage>): void => {
      be.layerNorm(s.x, s.w, null, s.y, s.mean, s.rstd, rows, cols, 1e-5);
      be.layerNormBackward(s.x, s.w, s.mean, s.rstd, s.dy, s.dx, s.dw, s.db, rows, cols);
    };
    const first = await compare('layerNorm 700 rows', inputs, outs, ln, red(rows));
    const again = await run(backendByName('webgpu'), inputs, outs, ln);
    assert.deepEqual(again.dw, first.dw, 'dw bit-identical across runs');
    assert.deepEqual(again.db, first.db, 'db bit-identical across runs');
    await compare('rmsNorm 700 rows', inputs, { y: outs.y, rstd: outs.rstd, dx: outs.dx, dw: outs.dw }, (be, s) => {
      be.rmsNorm(s.x, null, s.y, s.rstd, rows, cols, 1e-6);
      be.rmsNormBackward(s.x, null, s.rstd, s.dy, s.dx, s.dw, rows, cols);
    }, red(rows));
  });

  test('200 AdamW steps track the reference', async () => {
    const n = 1031, steps = 200;
    const grads = floats(n * steps);
    const inputs = { p0: floats(n), g: grads };
    await compare('adamw', inputs, { p: { length: n }, m: { length: n }, v: { length: n } }, (be, s) => {
      be.copy(s.p0, 0, s.p, 0, n);
      be.fill(s.m, 0, 0, n);
      be.fill(s.v, 0, 0, n);
      const g = be.alloc('float32', n);
      for (let t = 1; t <= steps; t++) {
        be.copy(s.g, (t - 1) * n, g, 0, n);
        be.adamw(s.p, g, s.m, s.v, n, { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, bc1: 1 - 0.9 ** t, bc2: 1 - 0.95 ** t });
      }
      be.free(g);
    }, 1e-5);
  });

  test('mergeHeads with a missing part writes zeros in its columns', async () => {
    const B = 2, T = 5, parts = [{ heads: 3, dim: 4, rotate: true }, { heads: 2, dim: 3, rotate: false }, { heads: 1, dim: 4, rotate: true }];
    const C = parts.reduce((a, q) => a + q.heads * q.dim, 0);
    const inputs = { x0: floats(B * 3 * T * 4), x2: floats(B * T * 4), cos: floats((T + 2) * 2), sin: floats((T + 2) * 2) };
    const got = await compare('mergeHeads', inputs, { y: { length: B * T * C } }, (be, s) => {
      be.mergeHeads([s.x0, null, s.x2], s.y, B, T, parts, s.cos, s.sin, 2);
    }, 1e-6);
    for (let r = 0; r < B * T; r++) assert.ok(got.y.subarray(r * C + 12, r * C + 18).every((v) => v === 0), `row ${r}: the missing part's columns are 0`);
  });

  test('normalizeReference and lrrValues backward over many rows, with some gradients not wanted', async () => {
    const B = 3, H = 2, T = 150, D = 24, rows = B * H * T;
    const r = floats(rows * D);
    r.fill(0, 5 * D, 6 * D); // a zero row: the norm is clamped at eps
    const inputs = { r, alpha: Float32Array.from([0.7, 1.9]), dy: floats(rows * D), v: floats(rows * D), z: floats(rows, 2),
      lower: Float32Array.from([0.2, 0.5]), range: Float32Array.from([1.5, 0.8]) };
    const tol = red(B * T * D);
    await compare('normalizeReference', inputs, { out: { length: rows * D }, dr: { length: rows * D }, dAlpha: { length: H } }, (be, s) => {
      be.normalizeReference(s.r, s.alpha, s.out, B, H, T, D, 1e-6);
      be.normalizeReferenceBackward(s.r, s.alpha, s.dy, s.dr, s.dAlpha, B, H, T, D, 1e-6);
    }, tol);
    await compare('normalizeReferenceBackward, dα only', inputs, { dAlpha: { length: H } }, (be, s) => {
      be.normalizeReferenceBackward(s.r, s.alpha, s.dy, null, s.dAlpha, B, H, T, D, 1e-6);
    }, tol);
    await compare('lrrValues', inputs, { y: { length: rows * D }, dv: { length: rows * D }, dz: { length: rows }, dLower: { length: H }, dRange: { length: H } }, (be, s) => {
      be.lrrValues(s.v, s.z, s.lower, s.range, s.y, B, H, T, D);
      be.lrrValuesBackward(s.v, s.z, s.lower, s.range, s.dy, s.dv, s.dz, s.dLower, s.dRange, B, H, T, D);
    }, tol);
    await compare('lrrValuesBackward, per-head sums only', inputs, { dRange: { length: H } }, (be, s) => {
      be.lrrValuesBackward(s.v, s.z, s.lower, s.range, s.dy, null, null, null, s.dRange, B, H, T, D);
    }, tol);
    await compare('lrrValuesBackward, dz only', inputs, { dz: { length: rows } }, (be, s) => {
      be.lrrValuesBackward(s.v, s.z, s.lower, s.range, s.dy, null, s.dz, null, null, B, H, T, D);
    }, tol);
  });

  test('a small decoder: loss and every parameter gradient as the reference, softmax and Cubit mixers', async () => {
    const B = 2, T = 24, r = new Rng(3);
    const ids = Int32Array.from({ length: B * T }, () => r.int(256));
    const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 5 === 0 ? -100 : r.int(256)));
    const lossAndGrads = (be: string, mixer: 'softmax' | 'cubit'): Promise<[string, ArrayLike<number>][]> => withBackend(be, async () => {
      const model = new Decoder({ dModel: 32, nLayers: 2, nHeads: 2, mixer }, 1);
      const loss = model.loss(tensor(ids, [B, T], { dtype: 'int32' }), tensor(targets, [B, T], { dtype: 'int32' }));
      loss.backward();
      const out: [string, ArrayLike<number>][] = [['loss', await loss.data()]];
      for (const [name, p] of model.namedParameters()) out.push([name, await p.grad!.data()]);
      return out;
    });
    for (const mixer of ['softmax', 'cubit'] as const) {
      const want = await lossAndGrads('reference', mixer), got = await lossAndGrads('webgpu', mixer);
      want.forEach(([name, w], i) => {
        const e = relErr(got[i][1], w);
        assert.ok(e <= 1e-5, `${mixer} decoder: ${name} relErr ${e.toExponential(2)} > 1e-5`);
      });
    }
  });
});
