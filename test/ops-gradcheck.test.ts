// Finite-difference gradient checks of every differentiable op, in float64 on the reference backend.
// L = Σ out ⊙ w for a fixed random w; central differences with eps = 1e-6 agree with exact float64
// gradients to ~1e-9 relative, so the default tolerance of 1e-6 leaves room only for rounding.
// Inputs avoid kinks (abs/relu at 0, max/min ties) and domain edges (log, sqrt, pow near 0).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as op from '../src/index.ts';
import { dropoutKeeps } from '../src/core/random.ts';
import type { Tensor } from '../src/index.ts';
import { gradcheck, randIds, randTensor, randValues, withBackend, type GradcheckOptions, type RandOptions } from './helpers.ts';

let seed = 100;
/** A float64 input requiring grad, with a fresh seed each call. */
const x = (shape: number[], o: RandOptions = {}): Tensor => randTensor(shape, { seed: seed++, requiresGrad: true, ...o });
/** A float64 input that does not require grad. */
const c = (shape: number[], o: RandOptions = {}): Tensor => randTensor(shape, { seed: seed++, ...o });
const pos = { low: 0.5, high: 2 };

/** Builds inputs on the reference backend, gradchecks fn, then frees them. */
function gc(name: string, fn: (...xs: Tensor[]) => Tensor, make: () => Tensor[], opts?: GradcheckOptions): void {
  test(name, () => {
    withBackend('reference', () => {
      const inputs = make();
      try { gradcheck(fn, inputs, opts); } finally { op.dispose(inputs); for (const t of inputs) t.grad?.dispose(); }
    });
  });
}

describe('unary', () => {
  gc('neg', op.neg, () => [x([3, 4])]);
  gc('abs', op.abs, () => [x([3, 4], { awayFrom: 0.1 })]);
  gc('exp', op.exp, () => [x([3, 4])]);
  gc('log', op.log, () => [x([3, 4], pos)]);
  gc('sqrt', op.sqrt, () => [x([3, 4], pos)]);
  gc('rsqrt', op.rsqrt, () => [x([3, 4], pos)]);
  gc('tanh', op.tanh, () => [x([3, 4])]);
  gc('sigmoid', op.sigmoid, () => [x([3, 4], { low: -6, high: 6 })]);
  gc('silu', op.silu, () => [x([3, 4], { low: -6, high: 6 })]);
  gc('gelu', op.gelu, () => [x([3, 4], { low: -4, high: 4 })]);
  gc('gelu in the erfc tail (|x| > 2.5)', op.gelu, () => [x([8], { low: 2.6, high: 5.5 })]);
  gc('relu', op.relu, () => [x([3, 4], { awayFrom: 0.1 })]);
  gc('square', op.square, () => [x([3, 4])]);
  gc('reciprocal', op.reciprocal, () => [x([3, 4], { awayFrom: 0.5 })]);
  gc('sign (zero gradient)', op.sign, () => [x([3, 4], { awayFrom: 0.1 })]);
  gc('pow, scalar exponent 2.5', (a) => op.pow(a, 2.5), () => [x([3, 4], pos)]);
  gc('pow, scalar exponent -1.5', (a) => op.pow(a, -1.5), () => [x([3, 4], pos)]);
  gc('pow, scalar exponent 3 on negative bases', (a) => op.pow(a, 3), () => [x([3, 4])]);
  gc('pow, scalar exponent 0', (a) => op.pow(a, 0), () => [x([3, 4], pos)]);
  gc('pow, tensor exponent', (a, p) => op.pow(a, p), () => [x([3, 4], pos), x([3, 4], { low: -2, high: 2 })]);
  gc('pow, tensor exponent broadcast', (a, p) => op.pow(a, p), () => [x([2, 3, 4], pos), x([3, 1], { low: -2, high: 2 })]);
  gc('pow, broadcast base', (a, p) => op.pow(a, p), () => [x([4], pos), x([3, 4], { low: -2, high: 2 })]);
});

describe('binary with broadcasting', () => {
  const pairs: [string, number[], number[]][] = [
    ['same shape', [3, 4], [3, 4]],
    ['row vector', [3, 4], [4]],
    ['column and 3-D', [2, 3, 4], [3, 1]],
    ['both broadcast', [1, 4], [3, 1]],
    ['scalar tensor', [], [2, 3]],
    ['1-sized leading dims', [1, 1, 4], [2, 3, 1]],
    ['same rank, 1-sized middle', [2, 1, 4], [2, 3, 4]],
  ];
  const ops: [string, (a: Tensor, b: Tensor) => Tensor, RandOptions][] = [
    ['add', op.add, {}], ['sub', op.sub, {}], ['mul', op.mul, {}],
    ['div', op.div, { awayFrom: 0.5 }],
    ['maximum', op.maximum, {}], ['minimum', op.minimum, {}],
  ];
  for (const [name, f, bOpts] of ops) {
    for (const [pname, sa, sb] of pairs) {
      gc(`${name} ${pname} ${JSON.stringify(sa)}·${JSON.stringify(sb)}`, f, () => [x(sa), x(sb, bOpts)]);
      gc(`${name} ${pname} reversed`, f, () => [x(sb), x(sa, bOpts)]);
    }
  }
  gc('add number', (a) => op.add(a, 2.5), () => [x([3, 4])]);
  gc('sub number − tensor', (a) => op.sub(1.5, a), () => [x([3, 4])]);
  gc('mul number', (a) => op.mul(a, -3), () => [x([3, 4])]);
  gc('div number / tensor', (a) => op.div(2, a), () => [x([3, 4], { awayFrom: 0.5 })]);
  gc('maximum with a number', (a) => op.maximum(a, 0.05), () => [x([3, 4])]);
  gc('minimum with a number', (a) => op.minimum(-0.05, a), () => [x([3, 4])]);
  gc('one operand without grad', (a, b) => op.mul(a, b), () => [x([3, 4]), c([4])]);
  gc('an input used twice (x·x + x)', (a) => op.add(op.mul(a, a), a), () => [x([3, 4])]);
  gc('a broadcast input used along two paths', (a, b) => op.mul(op.add(a, b), op.sub(b, a)), () => [x([3, 4]), x([4])]);
});

describe('where', () => {
  const cond = (shape: number[]): Tensor => op.gt(c(shape), 0);
  gc('where same shapes', (k, a, b) => op.where(k, a, b), () => [cond([3, 4]), x([3, 4]), x([3, 4])]);
  gc('where broadcast cond, a and b', (k, a, b) => op.where(k, a, b), () => [cond([3, 1]), x([4]), x([2, 1, 4])]);
  gc('where int32 cond', (k, a, b) => op.where(k, a, b), () => [op.cast(cond([3, 4]), 'int32'), x([3, 4]), x([1])]);
  gc('where number operands', (k, a) => op.where(k, op.where(k, a, 0.5), 2), () => [cond([3, 4]), x([3, 4])]);
});

describe('reductions', () => {
  const reducers: [string, (t: Tensor, axis?: number | number[], o?: { keepDims?: boolean }) => Tensor][] = [
    ['sum', op.sum], ['mean', op.mean], ['max', op.max], ['min', op.min], ['logsumexp', op.logsumexp],
  ];
  const axesCases: [string, number | number[] | undefined][] = [['axis 0', 0], ['axis -1', -1], ['axis 1', 1], ['axes [0, 2]', [0, 2]], ['axes [2, 0, 1]', [2, 0, 1]], ['all axes', undefined]];
  for (const [name, f] of reducers) {
    for (const [aname, axis] of axesCases) {
      for (const keepDims of [false, true]) {
        gc(`${name} ${aname}${keepDims ? ' keepDims' : ''}`, (t) => f(t, axis, { keepDims }), () => [x([3, 4, 5])]);
      }
    }
    gc(`${name} over a 1-sized axis`, (t) => f(t, 1), () => [x([3, 1, 2])]);
    gc(`${name} of a rank-0 tensor`, (t) => f(t), () => [x([])]);
  }
  test('max/min split the gradient evenly between ties', () => withBackend('reference', () => {
    const t = op.tensor([1, 3, 3, 2], [4], { dtype: 'float64', requiresGrad: true });
    op.max(t).backward();
    assert.deepEqual(Array.from(t.grad!.dataSync()), [0, 0.5, 0.5, 0]);
    t.grad!.dispose(); t.dispose();
  }));
});

describe('matmul', () => {
  const mm = (o: op.MatmulOptions = {}) => (a: Tensor, b: Tensor): Tensor => op.matmul(a, b, o);
  gc('2-D', mm(), () => [x([3, 4]), x([4, 5])]);
  gc('batched', mm(), () => [x([2, 3, 4]), x([2, 4, 5])]);
  gc('broadcast batch: one a for every b (stride 0)', mm(), () => [x([3, 4]), x([2, 4, 5])]);
  gc('broadcast batch: one b for every a (stride 0)', mm(), () => [x([2, 3, 4]), x([4, 5])]);
  gc('broadcast batch: [1,3,4]·[2,4,5]', mm(), () => [x([1, 3, 4]), x([2, 4, 5])]);
  gc('broadcast batch: [2,2,3,4]·[2,4,5]', mm(), () => [x([2, 2, 3, 4]), x([2, 4, 5])]);
  gc('mixed broadcast [2,1,m,k]·[1,3,k,n]', mm(), () => [x([2, 1, 3, 4]), x([1, 3, 4, 2])]);
  gc('1-D · 2-D', mm(), () => [x([4]), x([4, 5])]);
  gc('2-D · 1-D', mm(), () => [x([3, 4]), x([4])]);
  gc('1-D · 1-D', mm(), () => [x([4]), x([4])]);
  gc('3-D · 1-D', mm(), () => [x([2, 3, 4]), x([4])]);
  gc('1-D · 3-D', mm(), () => [x([4]), x([2, 4, 5])]);
  gc('m = n = k = 1', mm(), () => [x([1, 1]), x([1, 1])]);
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      const name = `transA=${transA} transB=${transB}`;
      const sa = (s: number[]): number[] => (transA ? [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]] : s);
      const sb = (s: number[]): number[] => (transB ? [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]] : s);
      gc(`2-D ${name}`, mm({ transA, transB }), () => [x(sa([3, 4])), x(sb([4, 5]))]);
      gc(`batched ${name}`, mm({ transA, transB }), () => [x(sa([2, 3, 4])), x(sb([2, 4, 5]))]);
      gc(`broadcast a ${name}`, mm({ transA, transB }), () => [x(sa([3, 4])), x(sb([2, 4, 5]))]);
      gc(`broadcast b ${name}`, mm({ transA, transB }), () => [x(sa([2, 3, 4])), x(sb([4, 5]))]);
      gc(`mixed broadcast ${name}`, mm({ transA, transB }), () => [x(sa([2, 1, 3, 4])), x(sb([1, 3, 4, 2]))]);
    }
  }
});

describe('shape ops', () => {
  gc('reshape', (t) => op.reshape(t, [4, 3]), () => [x([3, 4])]);
  gc('reshape with -1', (t) => op.reshape(t, [2, -1]), () => [x([3, 4])]);
  gc('flatten', (t) => op.flatten(t), () => [x([2, 3, 2])]);
  gc('squeeze all', (t) => op.squeeze(t), () => [x([1, 3, 1, 4])]);
  gc('squeeze one axis', (t) => op.squeeze(t, 2), () => [x([1, 3, 1, 4])]);
  gc('unsqueeze', (t) => op.unsqueeze(t, -1), () => [x([3, 4])]);
  gc('permute', (t) => op.permute(t, [2, 0, 1]), () => [x([2, 3, 4])]);
  gc('permute 4-D', (t) => op.permute(t, [1, 3, 0, 2]), () => [x([2, 3, 1, 4])]);
  gc('transpose default', (t) => op.transpose(t), () => [x([2, 3, 4])]);
  gc('transpose axes 0, 2', (t) => op.transpose(t, 0, 2), () => [x([2, 3, 4])]);
  gc('slice axis 1', (t) => op.slice(t, 1, 1, 3), () => [x([2, 4, 3])]);
  gc('slice axis 0', (t) => op.slice(t, 0, 1, 2), () => [x([3, 4])]);
  gc('slice last axis', (t) => op.slice(t, -1, 2, 5), () => [x([2, 3, 6])]);
  gc('concat axis 1', (a, b, d) => op.concat([a, b, d], 1), () => [x([2, 1, 3]), x([2, 3, 3]), x([2, 2, 3])]);
  gc('concat axis 0 with a non-grad input', (a, b) => op.concat([a, b], 0), () => [x([2, 3]), c([1, 3])]);
  gc('concat last axis', (a, b) => op.concat([a, b], -1), () => [x([2, 3]), x([2, 2])]);
  gc('stack axis 1', (a, b) => op.stack([a, b], 1), () => [x([2, 3]), x([2, 3])]);
  gc('clone', (t) => op.clone(t), () => [x([3, 4])]);
  gc('clone then in-graph reuse', (t) => op.mul(op.clone(t), t), () => [x([3, 4])]);
  gc('broadcastTo', (t) => op.broadcastTo(t, [2, 3, 4]), () => [x([3, 1])]);
  gc('broadcastTo from a scalar', (t) => op.broadcastTo(t, [2, 3]), () => [x([])]);
  gc('a chain: reshape → permute → slice → sum', (t) => op.sum(op.slice(op.permute(op.reshape(t, [2, 3, 2]), [1, 2, 0]), 0, 1, 3), 1), () => [x([12])]);
});

describe('neural-network ops', () => {
  gc('softmax 2-D', op.softmax, () => [x([3, 5])]);
  gc('softmax 3-D', op.softmax, () => [x([2, 3, 4])]);
  gc('softmax single column', op.softmax, () => [x([3, 1])]);
  gc('logSoftmax', op.logSoftmax, () => [x([3, 5])]);
  gc('logSoftmax 3-D', op.logSoftmax, () => [x([2, 3, 4])]);

  const causal = (t: number): Tensor => op.tensor(Int32Array.from({ length: t * t }, (_, i) => (i % t <= Math.floor(i / t) ? 1 : 0)), [t, t]);
  gc('maskedSoftmax causal, broadcast over batch', (t, m) => op.maskedSoftmax(t, m), () => [x([2, 4, 4]), causal(4)]);
  gc('maskedSoftmax float mask', (t, m) => op.maskedSoftmax(t, m), () => [x([3, 4]), op.gt(c([3, 4]), -0.5)]);
  test('maskedSoftmax: a fully masked row gives zero output and zero gradient', () => withBackend('reference', () => {
    const t = x([3, 4]);
    const mask = op.tensor(Int32Array.from([1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1]), [3, 4]);
    const res = gradcheck((a, m) => op.maskedSoftmax(a, m), [t, mask]);
    assert.deepEqual(Array.from(res.analytic[0]!.slice(4, 8)), [0, 0, 0, 0]);
    const y = op.tidy(() => Array.from(op.maskedSoftmax(t, mask).dataSync()));
    assert.deepEqual(y.slice(4, 8), [0, 0, 0, 0]);
    assert.ok(Math.abs(y[0] + y[2] + y[3] - 1) < 1e-15 && y[1] === 0);
    op.dispose([t, mask]);
  }));

  gc('rmsNorm with weight', (t, w) => op.rmsNorm(t, w), () => [x([3, 5]), x([5])]);
  gc('rmsNorm without weight', (t) => op.rmsNorm(t, null), () => [x([2, 3, 5])]);
  gc('rmsNorm with a large eps', (t, w) => op.rmsNorm(t, w, 0.5), () => [x([3, 5]), x([5])]);
  gc('rmsNorm weight without grad', (t, w) => op.rmsNorm(t, w), () => [x([3, 5]), c([5])]);
  gc('layerNorm with weight and bias', (t, w, b) => op.layerNorm(t, w, b), () => [x([3, 5]), x([5]), x([5])]);
  gc('layerNorm with weight only', (t, w) => op.layerNorm(t, w, null), () => [x([3, 5]), x([5])]);
  gc('layerNorm with bias only', (t, b) => op.layerNorm(t, null, b), () => [x([3, 5]), x([5])]);
  gc('layerNorm without affine', (t) => op.layerNorm(t, null, null), () => [x([2, 3, 5])]);

  gc('swiglu', (a, b) => op.swiglu(a, b), () => [x([3, 5], { low: -6, high: 6 }), x([3, 5])]);
  gc('swiglu, up branch only', (a, b) => op.swiglu(a, b), () => [c([4, 3], { low: -6, high: 6 }), x([4, 3])]);
  test('swiglu is silu(a) · b', () => withBackend('reference', () => {
    const a = randTensor([2, 7], { seed: 5, low: -5, high: 5 }), b = randTensor([2, 7], { seed: 6 });
    const want = op.mul(op.silu(a), b).dataSync(), got = op.swiglu(a, b).dataSync();
    got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-15 * Math.max(1, Math.abs(want[i])), `swiglu[${i}] = ${v}, want ${want[i]}`));
    assert.throws(() => op.swiglu(a, op.reshape(b, [7, 2])), /one shape/);
    op.dispose([a, b]);
  }));
  // Rotary with real angle tables (orthogonal turns) and with arbitrary ones (a linear map all the same).
  const angles = (P: number, half: number, f: (a: number) => number): Tensor =>
    op.tensor(Float64Array.from({ length: P * half }, (_, k) => f(Math.floor(k / half) * Math.pow(100, -k % half / half))), [P, half], { dtype: 'float64' });
  gc('rotary', (t, cs, sn) => op.rotary(t, cs, sn), () => [x([2, 3, 6]), angles(3, 3, Math.cos), angles(3, 3, Math.sin)]);
  gc('rotary with an offset, random tables', (t, cs, sn) => op.rotary(t, cs, sn, { offset: 2 }), () => [x([3, 4]), c([7, 2]), c([7, 2])]);
  gc('rotary splitting heads', (t, cs, sn) => op.rotary(t, cs, sn, { heads: 3, offset: 1 }), () => [x([2, 4, 12]), c([5, 2]), c([5, 2])]);
  test('rotary turns by the tables: a pair at angle a, then the inverse by gradient', () => withBackend('reference', () => {
    const t = op.tensor([1, 2, 3, 4], [1, 1, 4], { dtype: 'float64' });
    const cs = op.tensor([Math.cos(0.5), Math.cos(0.25)], [1, 2], { dtype: 'float64' }), sn = op.tensor([Math.sin(0.5), Math.sin(0.25)], [1, 2], { dtype: 'float64' });
    const y = Array.from(op.rotary(t, cs, sn).dataSync());
    const want = [Math.cos(0.5) - 3 * Math.sin(0.5), 2 * Math.cos(0.25) - 4 * Math.sin(0.25), 3 * Math.cos(0.5) + Math.sin(0.5), 4 * Math.cos(0.25) + 2 * Math.sin(0.25)];
    y.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-15, `rotary[${i}] = ${v}, want ${want[i]}`));
    assert.throws(() => op.rotary(t, cs, sn, { offset: 1 }), /exceed the tables/);
    assert.throws(() => op.rotary(op.tensor([1, 2, 3, 4, 5, 6], [1, 1, 6], { dtype: 'float64' }), cs, sn), /must be \(…, T, 4\)/);
    op.dispose([t, cs, sn]);
  }));

  gc('embedding with repeated ids', (tab, ids) => op.embedding(tab, ids), () => [x([5, 3]), op.tensor(Int32Array.from([1, 4, 1, 0, 1, 4]), [2, 3])]);
  gc('embedding 1-D ids', (tab, ids) => op.embedding(tab, ids), () => [x([6, 2]), randIds([7], 6, 3)]);

  const tg = (): Tensor => op.tensor(Int32Array.from([2, 0, 4, 4, 1, 3]), [2, 3]);
  const tgIgnored = (): Tensor => op.tensor(Int32Array.from([2, -100, 4, 4, -100, 3]), [2, 3]);
  gc('crossEntropy mean', (l, t) => op.crossEntropy(l, t), () => [x([2, 3, 5]), tg()]);
  gc('crossEntropy sum', (l, t) => op.crossEntropy(l, t, { reduction: 'sum' }), () => [x([2, 3, 5]), tg()]);
  gc('crossEntropy none', (l, t) => op.crossEntropy(l, t, { reduction: 'none' }), () => [x([2, 3, 5]), tg()]);
  gc('crossEntropy mean, ignoreIndex', (l, t) => op.crossEntropy(l, t), () => [x([2, 3, 5]), tgIgnored()]);
  gc('crossEntropy sum, ignoreIndex', (l, t) => op.crossEntropy(l, t, { reduction: 'sum' }), () => [x([2, 3, 5]), tgIgnored()]);
  gc('crossEntropy none, ignoreIndex', (l, t) => op.crossEntropy(l, t, { reduction: 'none' }), () => [x([2, 3, 5]), tgIgnored()]);
  gc('crossEntropy custom ignoreIndex', (l, t) => op.crossEntropy(l, t, { ignoreIndex: 4 }), () => [x([2, 3, 5]), tg()]);
  test('crossEntropy mean with an ignored target equals the mean over counted rows', () => withBackend('reference', () => {
    const l = c([2, 3, 5]);
    const [m, s] = op.tidy(() => [op.crossEntropy(l, tgIgnored()).item(), op.crossEntropy(l, tgIgnored(), { reduction: 'sum' }).item()]);
    assert.ok(Math.abs(m - s / 4) < 1e-14, `${m} vs ${s / 4}`);
    l.dispose();
  }));

  gc('dropout', (t) => op.dropout(t, 0.3, 7), () => [x([4, 5])]);
  test('dropout: the gradient equals the mask, and the mask is the shared counter hash', () => withBackend('reference', () => {
    const p = 0.3, s = 7;
    const t = x([4, 5]);
    const res = gradcheck((a) => op.dropout(a, p, s), [t], { seed: 1 });
    // With L = Σ y ⊙ w, dL/dx = mask ⊙ w, so recover the mask by dividing out w.
    const w = randValues(20, { seed: 1 });
    const mask = Array.from(res.analytic[0]!, (g, i) => g / w[i]);
    for (let i = 0; i < 20; i++) {
      const want = dropoutKeeps(s, i, p) ? 1 / (1 - p) : 0;
      assert.ok(Math.abs(mask[i] - want) < 1e-12, `mask[${i}] = ${mask[i]}, want ${want}`);
    }
    assert.ok(mask.some((v) => v === 0) && mask.some((v) => v !== 0), 'a 20-element mask at p = 0.3 should both keep and drop');
    t.dispose();
  }));
});

describe("Cubit's elementwise stages", () => {
  // The compositions the fused ops replace (src/mixers/functional.ts before them), in float64.
  const normComposite = (r: Tensor, a: Tensor, eps: number): Tensor =>
    op.mul(r, op.mul(op.rsqrt(op.maximum(op.sum(op.square(r), -1, { keepDims: true }), eps * eps)), op.reshape(a, [1, r.shape[1], 1, 1])));
  const lrrComposite = (v: Tensor, z: Tensor, lo: Tensor, ra: Tensor): Tensor =>
    op.mul(v, op.unsqueeze(op.add(op.reshape(lo, [1, lo.size, 1]), op.mul(op.reshape(ra, [1, ra.size, 1]), op.sigmoid(z))), -1));

  /** Rows of r (B, H, T, D) scaled to norms alternating around eps: row i has norm f_i · eps. */
  const rowsAround = (shape: number[], eps: number, factors: number[], s: number): Tensor => {
    const D = shape[3], r = randValues(shape.reduce((p, d) => p * d, 1), { seed: s });
    for (let i = 0; i < r.length / D; i++) {
      let n = 0;
      for (let j = 0; j < D; j++) n += r[i * D + j] ** 2;
      const f = factors[i % factors.length] * eps / Math.sqrt(n); // factor 0: a zero row
      for (let j = 0; j < D; j++) r[i * D + j] *= f;
    }
    return op.tensor(r, shape, { dtype: 'float64', requiresGrad: true });
  };

  gc('normalizeReference', (r, a) => op.normalizeReference(r, a), () => [x([2, 3, 4, 5]), x([3], { low: 0.5, high: 2 })]);
  // With D = 1 an unclamped row's r̂ = ±α has no r-gradient; the clamped rows carry it.
  gc('normalizeReference, 1-sized dims', (r, a) => op.normalizeReference(r, a, 0.5), () => [rowsAround([1, 1, 4, 1], 0.5, [0.3, 2, 0.6, 4], 40), x([1])]);
  // A large eps, so the finite differences (step 1e-6) stay on one side of the clamp in every row:
  // rows at 0.3·eps and 0.6·eps are clamped (r̂ = α r / eps), rows at 1.5·eps and 3·eps are not.
  gc('normalizeReference, rows on both sides of the eps clamp', (r, a) => op.normalizeReference(r, a, 0.5),
    () => [rowsAround([2, 2, 3, 4], 0.5, [0.3, 1.5, 0.6, 3], 41), x([2])]);
  gc('normalizeReference, refScale without gradient', (r, a) => op.normalizeReference(r, a), () => [x([1, 2, 3, 7]), c([2])]);
  gc('normalizeReference, r without gradient', (r, a) => op.normalizeReference(r, a), () => [c([2, 2, 3, 4]), x([2])]);
  gc('lrrValues', (v, z, lo, ra) => op.lrrValues(v, z, lo, ra), () => [x([2, 3, 4, 5]), x([2, 3, 4], { low: -4, high: 4 }), x([3]), x([3])]);
  gc('lrrValues, 1-sized dims', (v, z, lo, ra) => op.lrrValues(v, z, lo, ra), () => [x([1, 1, 2, 1]), x([1, 1, 2]), x([1]), x([1])]);
  gc('lrrValues, logits and bounds only', (v, z, lo, ra) => op.lrrValues(v, z, lo, ra), () => [c([2, 2, 3, 3]), x([2, 2, 3]), x([2]), x([2])]);
  gc('lrrValues, values only', (v, z, lo, ra) => op.lrrValues(v, z, lo, ra), () => [x([2, 2, 3, 3]), c([2, 2, 3]), c([2]), c([2])]);

  /** Forward and every input gradient of f and g agree to float64 rounding. */
  function sameAs(f: (...xs: Tensor[]) => Tensor, g: (...xs: Tensor[]) => Tensor, inputs: Tensor[], tol = 1e-13): void {
    const run = (fn: (...xs: Tensor[]) => Tensor): Float64Array[] => op.tidy(() => {
      const y = fn(...inputs);
      y.backward(randTensor(y.shape, { seed: 7 }));
      const res = [Float64Array.from(y.dataSync()), ...inputs.map((t) => Float64Array.from(t.grad!.dataSync()))];
      for (const t of inputs) { t.grad!.dispose(); t.grad = null; }
      return res;
    });
    const want = run(g), got = run(f);
    want.forEach((w, k) => w.forEach((v, i) => {
      assert.ok(Math.abs(got[k][i] - v) <= tol * Math.max(1, Math.abs(v)), `${k === 0 ? 'output' : `gradient ${k - 1}`}[${i}] = ${got[k][i]}, want ${v}`);
    }));
    op.dispose(inputs);
  }

  test('normalizeReference matches max(‖r‖², eps²) composed of ops, clamp included (zero rows, rows below eps)', () => withBackend('reference', () => {
    const eps = 1e-6;
    // Zero rows (r̂ = 0, dr = α g / eps), rows below and above eps.
    const r = rowsAround([2, 3, 4, 6], eps, [0, 0.01, 1e6, 0.5, 2, 1e3, 0.999], 3);
    sameAs((t, a) => op.normalizeReference(t, a, eps), (t, a) => normComposite(t, a, eps), [r, x([3], { low: 0.5, high: 2 })]);
  }));
  test('normalizeReference: below eps the gradient is α · dy / eps (no term through the norm)', () => withBackend('reference', () => {
    const eps = 0.1;
    const r = rowsAround([1, 1, 2, 3], eps, [0.5], 8), a = op.tensor([1.5], [1], { dtype: 'float64', requiresGrad: true });
    const g = randTensor([1, 1, 2, 3], { seed: 9 });
    op.normalizeReference(r, a, eps).backward(g);
    const gv = g.dataSync(), rv = r.dataSync(), dr = r.grad!.dataSync();
    dr.forEach((v, i) => assert.ok(Math.abs(v - 1.5 * gv[i] / eps) <= 1e-12, `dr[${i}] = ${v}, want ${1.5 * gv[i] / eps}`));
    const dAlpha = Array.from(gv).reduce((s, v, i) => s + v * rv[i] / eps, 0);
    assert.ok(Math.abs(a.grad!.item() - dAlpha) <= 1e-12, `dα = ${a.grad!.item()}, want ${dAlpha}`);
    op.dispose([r, a, g, r.grad!, a.grad!]);
  }));
  test('lrrValues matches (lower + range · sigmoid(z)) ⊙ v composed of ops', () => withBackend('reference', () => {
    sameAs(op.lrrValues, lrrComposite, [x([3, 2, 5, 7]), x([3, 2, 5], { low: -30, high: 30 }), x([2]), x([2])]);
  }));
  test('bad shapes name the argument', () => withBackend('reference', () => {
    const r = c([2, 3, 4, 5]);
    assert.throws(() => op.normalizeReference(r, c([2])), /normalizeReference: refScale must have shape \[3\]/);
    assert.throws(() => op.normalizeReference(r, c([3]), 0), /normalizeReference: eps/);
    assert.throws(() => op.normalizeReference(c([4, 5]), c([3])), /normalizeReference: r must be \(B, H, T, D\)/);
    assert.throws(() => op.lrrValues(r, c([2, 3, 5]), c([3]), c([3])), /lrrValues: lrrLogits must have shape \[2, 3, 4\]/);
    assert.throws(() => op.lrrValues(r, c([2, 3, 4]), c([3]), c([1])), /lrrValues: lrrRange must have shape \[3\]/);
    assert.throws(() => op.lrrValues(r, c([2, 3, 4], { dtype: 'float32' }), c([3]), c([3])), /lrrValues: lrrLogits is float32/);
    op.dispose([r]);
  }));
});
