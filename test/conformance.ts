// The conformance suite: a backend against the reference in float32 on the same inputs, forward
// outputs and every input gradient, on random shapes (odd sizes, 1-sized and empty dimensions,
// broadcasting). conformance(name) runs every case once on the reference backend and then on the
// backend registered as `name` (the native one under every instruction set the CPU supports and at
// 1 and 3 threads). The cases cover every kernel of the Backend table, so a kernel a backend
// overrides later is compared without new code; a last test fails when the native backend
// overrides a kernel, or webgpu has a fused kernel, that no case calls. Run on a core-only view (src/backends/core-only.ts) it
// tests the composites the ops run when a backend lacks a fused kernel. New backend: add a
// conformance-<name>.test.ts calling conformance('<name>').
//
// Tolerances (relErr = ‖native − ref‖ / ‖ref‖; u = 2⁻²⁴ ≈ 6e-8, float32's unit roundoff). The
// reference computes in float64 and rounds once into float32, so it is the best float32 answer:
//   EXACT = 0            data movement and selection (copy, strided copy, gather, where, compare,
//                        max/min, neg/abs/relu/sign, cast, fill): any difference is a bug.
//   ARITH = 1e-6 (~16u)  IEEE arithmetic (+ − × ÷ √), a few roundings per element.
//   TRANS = 1e-5         transcendental functions (exp, log, tanh, erf, pow): a few ulps from
//                        polynomial approximations, amplified where f is near 0.
//   red(L) = 1e-6·√L     float32 accumulation of L terms (typical error u·√L; 16× margin):
//                        reductions, softmax/norm rows, the broadcast-summing gradients.
//   mm = red(max(m, n, k)) matmul and its gradients (inner dims k, n and m).
//   A case's tolerance is the largest that applies to what it computes. A backend whose float32
//   arithmetic is coarser declares its unitRoundoff; every tolerance then scales by it / 2⁻²⁴.
// CUBIT_TEST_TRACE=1 names each case and variant on stderr as it starts (to find a hang);
// CUBIT_TEST_VERBOSE=1 prints the cases closest to their tolerance.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as op from '../src/index.ts';
import { Rng, type Tensor } from '../src/index.ts';
import type { NativeIsa } from '../src/backends/native/addon.ts';
import { NativeBackend } from '../src/backends/native/backend.ts';
import { ReferenceBackend } from '../src/backends/reference/backend.ts';
import { WebGPUBackend } from '../src/backends/webgpu/backend.ts';
import { FUSED_KERNELS } from '../src/core/backend.ts';
import { backend, nativeTestOptions, relErr, requireNative, withBackend } from './helpers.ts';

const EXACT = 0, ARITH = 1e-6, TRANS = 1e-5;
const red = (len: number): number => 1e-6 * Math.sqrt(Math.max(len, 1));
const mm = (m: number, n: number, k: number): number => red(Math.max(m, n, k));

interface Input {
  shape: number[];
  values: Float32Array | Int32Array;
  grad: boolean;
}

interface Case {
  name: string;
  inputs: Input[];
  fn: (...xs: Tensor[]) => Tensor;
  fwdTol: number;
  gradTol: number;
}

const cases: Case[] = [];
let seed = 1;

const sizeOf = (s: readonly number[]): number => s.reduce((p, d) => p * d, 1);

interface FloatOpts { low?: number; high?: number; awayFrom?: number; grad?: boolean }

/** Seeded float32 values: standard normal, or uniform in [low, high); |x| ≥ awayFrom. */
function floats(shape: number[], o: FloatOpts = {}): Input {
  const rng = new Rng(seed++);
  const v = new Float32Array(sizeOf(shape));
  for (let i = 0; i < v.length; i++) {
    let x = o.low !== undefined ? o.low + ((o.high ?? 1) - o.low) * rng.next() : rng.normal();
    if (o.awayFrom !== undefined && Math.abs(x) < o.awayFrom) x += x < 0 ? -o.awayFrom : o.awayFrom;
    v[i] = x;
  }
  return { shape, values: v, grad: o.grad ?? true };
}

function ints(shape: number[], n: number, o: { ignore?: number; every?: number } = {}): Input {
  const rng = new Rng(seed++);
  const v = Int32Array.from({ length: sizeOf(shape) }, (_, i) => (o.every && i % o.every === o.every - 1 ? o.ignore! : rng.int(n)));
  return { shape, values: v, grad: false };
}

function add(name: string, inputs: Input[], fn: (...xs: Tensor[]) => Tensor, fwdTol: number, gradTol = fwdTol): void {
  cases.push({ name: `${name} ${inputs.map((i) => JSON.stringify(i.shape)).join('·')}`, inputs, fn, fwdTol, gradTol });
}

// ---- random shapes ----

const shapeRng = new Rng(2024);
const POOL = [1, 2, 3, 5, 7, 8, 9, 13, 16, 17, 31, 33];
function randShape(rank: number, maxSize = 4000): number[] {
  for (;;) {
    const s = Array.from({ length: rank }, () => POOL[shapeRng.int(POOL.length)]);
    if (sizeOf(s) <= maxSize) return s;
  }
}
/** A shape that broadcasts against s: some leading axes dropped, some axes set to 1. */
function partner(s: number[]): number[] {
  const drop = shapeRng.int(s.length + 1);
  return s.slice(drop).map((d) => (shapeRng.next() < 0.35 ? 1 : d));
}
/** How many elements of the broadcast result each element of `small` was read by. */
const fanIn = (big: number[], small: number[]): number => sizeOf(big) / Math.max(sizeOf(small), 1);

// ---- elementwise ----

const unaryDomain: Record<string, FloatOpts> = {
  log: { low: 0.05, high: 4 }, sqrt: { low: 0.05, high: 4 }, rsqrt: { low: 0.05, high: 4 },
  reciprocal: { awayFrom: 0.2 }, abs: { awayFrom: 1e-3 }, relu: { awayFrom: 1e-3 }, sign: {},
  sigmoid: { low: -12, high: 12 }, silu: { low: -12, high: 12 }, gelu: { low: -6, high: 6 }, tanh: { low: -5, high: 5 },
  exp: { low: -10, high: 10 },
};
const unaryTol: Record<string, [number, number]> = {
  neg: [EXACT, EXACT], abs: [EXACT, EXACT], relu: [EXACT, EXACT], sign: [EXACT, EXACT],
  square: [ARITH, ARITH], sqrt: [ARITH, ARITH], reciprocal: [ARITH, ARITH], rsqrt: [ARITH, ARITH],
};
const unaryOps: [string, (x: Tensor) => Tensor][] = [
  ['neg', op.neg], ['abs', op.abs], ['exp', op.exp], ['log', op.log], ['sqrt', op.sqrt], ['rsqrt', op.rsqrt],
  ['tanh', op.tanh], ['sigmoid', op.sigmoid], ['silu', op.silu], ['gelu', op.gelu], ['relu', op.relu],
  ['square', op.square], ['reciprocal', op.reciprocal], ['sign', op.sign],
];
for (const [name, f] of unaryOps) {
  const [ft, gt] = unaryTol[name] ?? [TRANS, TRANS];
  for (const shape of [[1031], randShape(2), randShape(3), [3, 0]]) add(name, [floats(shape, unaryDomain[name])], f, ft, gt);
}
for (const p of [2, 0.5, -1.5, 3, 0]) {
  add(`pow ^${p}`, [floats([517], p === 3 ? {} : { low: 0.1, high: 3 })], (x) => op.pow(x, p), TRANS);
}

const binaryOps: [string, (a: Tensor, b: Tensor) => Tensor, number, FloatOpts][] = [
  ['add', op.add, EXACT, {}], ['sub', op.sub, EXACT, {}], ['mul', op.mul, EXACT, {}],
  ['div', op.div, ARITH, { awayFrom: 0.3 }], ['maximum', op.maximum, EXACT, {}], ['minimum', op.minimum, EXACT, {}],
];
for (const [name, f, ft, bOpts] of binaryOps) {
  const pairs: [number[], number[]][] = [[[37, 29], [37, 29]], [[3, 0, 2], [2]], [[4, 5], []]];
  for (let i = 0; i < 4; i++) { const s = randShape(1 + shapeRng.int(4)); pairs.push(shapeRng.next() < 0.5 ? [s, partner(s)] : [partner(s), s]); }
  for (const [sa, sb] of pairs) {
    const big = op.noGrad(() => sizeOf(sa) >= sizeOf(sb) ? sa : sb);
    // Gradients of a broadcast operand sum over its fan-in; div's also divide and multiply.
    const gt = Math.max(ft, ARITH * (name === 'div' ? 4 : 1), red(Math.max(fanIn(big, sa), fanIn(big, sb))));
    add(name, [floats(sa), floats(sb, bOpts)], f, ft, name === 'add' || name === 'sub' ? Math.max(ft, gt) : gt);
  }
}
add('pow, tensor exponent', [floats([7, 33], { low: 0.1, high: 3 }), floats([33], { low: -2, high: 2 })], (a, b) => op.pow(a, b), TRANS, Math.max(TRANS, red(7)));
add('add a number', [floats([1031])], (a) => op.add(a, 0.7), EXACT);
add('div a number by a tensor', [floats([1031], { awayFrom: 0.3 })], (a) => op.div(3, a), ARITH);
for (const cmp of ['gt', 'ge', 'lt', 'le', 'eq', 'ne'] as const) {
  // Ties matter for ge/le/eq/ne: b reuses a's values where it can.
  const a = floats([9, 31]), b = floats([31]);
  for (let j = 0; j < 31; j += 3) b.values[j] = a.values[j];
  add(cmp, [a, b], (x, y) => op[cmp](x, y), EXACT);
}
{
  const s = randShape(3);
  add('where, broadcast condition', [floats(s), floats(partner(s)), floats(partner(s))], (a, b, c) => op.where(op.gt(a, 0), b, c), EXACT, red(sizeOf(s)));
  add('where, int32 condition', [ints([13, 17], 2), floats([13, 17]), floats([17])], (k, b, c) => op.where(k, b, c), EXACT, red(13));
}

// ---- data movement ----

for (const [shape, perm] of [[[5, 7, 9], [2, 0, 1]], [[2, 3, 1, 17], [3, 1, 0, 2]], [[33, 31], [1, 0]], [[4, 0, 3], [2, 1, 0]]] as [number[], number[]][]) {
  add(`permute ${JSON.stringify(perm)}`, [floats(shape)], (x) => op.permute(x, perm), EXACT);
}
add('slice', [floats([7, 13, 5])], (x) => op.slice(x, 1, 3, 11), EXACT);
add('slice, empty range', [floats([7, 13])], (x) => op.slice(x, 1, 4, 4), EXACT);
add('concat', [floats([3, 5, 7]), floats([3, 1, 7]), floats([3, 9, 7])], (a, b, c) => op.concat([a, b, c], 1), EXACT);
add('stack', [floats([5, 9]), floats([5, 9])], (a, b) => op.stack([a, b], 2), EXACT);
add('clone', [floats([1031])], (x) => op.clone(x), EXACT);
add('broadcastTo', [floats([7, 1, 9])], (x) => op.broadcastTo(x, [3, 7, 5, 9]), EXACT, red(15));
add('cast to int32 and back', [floats([257], { low: -50, high: 50, grad: false })], (x) => op.cast(op.cast(x, 'int32'), 'float32'), EXACT);
add('cast int32 to float32', [ints([100], 1000)], (x) => op.cast(x, 'float32'), EXACT);
add('fill', [floats([1])], (x) => op.add(op.full([1031], 2.5), x), EXACT, red(1031));

// ---- reductions ----

for (const [name, f, ft] of [['sum', op.sum, 1], ['max', op.max, 0], ['min', op.min, 0], ['mean', op.mean, 1]] as const) {
  for (const [shape, axis] of [[[1031], undefined], [[13, 17, 9], 1], [[13, 17, 9], 0], [[13, 17, 9], -1], [[13, 17, 9], [0, 2]], [[5, 1, 7], 1], [[3, 0, 4], 2]] as [number[], number | number[] | undefined][]) {
    const axes = axis === undefined ? shape.map((_, i) => i) : typeof axis === 'number' ? [axis < 0 ? axis + shape.length : axis] : axis;
    const len = axes.reduce((p, a) => p * shape[a], 1);
    if (len === 0 && name !== 'sum' && name !== 'mean') continue; // max of nothing is −∞ on both, but its gradient is 0/0
    add(`${name} axis ${JSON.stringify(axis)}`, [floats(shape)], (x) => f(x, axis), ft ? red(len) : EXACT, name === 'sum' ? EXACT : name === 'mean' ? ARITH : ARITH);
  }
}
add('logsumexp', [floats([9, 65])], (x) => op.logsumexp(x, -1), Math.max(TRANS, red(65)));

// ---- matmul ----

const dims = [1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129];
const dim = (): number => dims[shapeRng.int(dims.length)];
const tr = (s: number[], t: boolean): number[] => (t ? [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]] : s);
for (const transA of [false, true]) {
  for (const transB of [false, true]) {
    const o = { transA, transB };
    const mmCase = (label: string, ba: number[], bb: number[], m: number, n: number, k: number): void => {
      add(`matmul ${label} tA=${+transA} tB=${+transB}`, [floats(tr([...ba, m, k], transA)), floats(tr([...bb, k, n], transB))], (a, b) => op.matmul(a, b, o), mm(m, n, k), mm(m, n, k * Math.max(sizeOf(ba), sizeOf(bb))));
    };
    mmCase('2-D', [], [], dim(), dim(), dim());
    mmCase('2-D large', [], [], 67, 131, 259);
    mmCase('batched', [3], [3], dim(), dim(), dim());
    mmCase('broadcast a (stride 0)', [], [2, 3], dim(), dim(), dim());
    mmCase('broadcast b (stride 0)', [4], [], dim(), dim(), dim());
    mmCase('mixed broadcast', [2, 1], [1, 3], dim(), dim(), dim());
    mmCase('m = n = k = 1', [2], [2], 1, 1, 1);
    mmCase('k = 0', [], [], 5, 7, 0);
    mmCase('m = 0', [], [], 0, 7, 5);
  }
}
add('matmul 1-D · 2-D', [floats([33]), floats([33, 17])], (a, b) => op.matmul(a, b), mm(1, 17, 33));
add('matmul 2-D · 1-D', [floats([17, 33]), floats([33])], (a, b) => op.matmul(a, b), mm(17, 1, 33));
add('matmul 1-D · 1-D', [floats([129]), floats([129])], (a, b) => op.matmul(a, b), mm(1, 1, 129));

// ---- fused neural-network kernels ----

for (const [rows, cols] of [[1, 1], [7, 1], [13, 5], [9, 33], [3, 1031], [0, 8]]) {
  const t = Math.max(TRANS, red(cols));
  add('softmax', [floats([rows, cols], { low: -8, high: 8 })], op.softmax, t);
  add('logSoftmax', [floats([rows, cols], { low: -8, high: 8 })], op.logSoftmax, t);
}
{
  // A mask hiding a whole row (zeros out, zero gradient) and parts of others.
  const mask = ints([6, 17], 2);
  for (let j = 0; j < 17; j++) mask.values[2 * 17 + j] = 0;
  add('maskedSoftmax with a fully masked row', [floats([2, 6, 17]), mask], (x, m) => op.maskedSoftmax(x, m), Math.max(TRANS, red(17)));
}
for (const [rows, cols] of [[7, 1], [13, 7], [5, 64], [9, 1031], [0, 4]]) {
  const t = Math.max(ARITH, red(cols), red(rows));
  // With one column rmsNorm's x-gradient is g·w·rs·eps/(x² + eps): with a small eps it is a
  // cancellation of two nearly equal terms, far below their rounding error in float32. A large eps
  // keeps it well-conditioned there.
  const eps = cols === 1 ? 0.5 : 1e-6;
  add('rmsNorm with weight', [floats([rows, cols]), floats([cols])], (x, w) => op.rmsNorm(x, w, eps), t);
  add('rmsNorm', [floats([rows, cols])], (x) => op.rmsNorm(x, null, eps), t);
  add('layerNorm with weight and bias', [floats([rows, cols]), floats([cols]), floats([cols])], (x, w, b) => op.layerNorm(x, w, b), t);
  add('layerNorm', [floats([rows, cols])], (x) => op.layerNorm(x, null, null), t);
}
add('layerNorm with weight only', [floats([3, 5, 31]), floats([31])], (x, w) => op.layerNorm(x, w, null), red(31));
add('rmsNorm, constant rows (rstd at eps)', [{ shape: [4, 9], values: new Float32Array(36), grad: true }, floats([9])], (x, w) => op.rmsNorm(x, w, 1e-5), ARITH);

// Rotary: each pair is turned in double and rounded once, as the reference does: bit-identical.
// The tables are random (the kernel only reads them) and have rows to spare past offset + T.
for (let i = 0; i < 4; i++) {
  const [B, T] = randShape(2, 200), D = 2 * POOL[shapeRng.int(POOL.length)], offset = shapeRng.int(5);
  const rows = offset + T + shapeRng.int(3);
  const tab = (): Input => floats([rows, D / 2], { grad: false });
  add(`rotary offset ${offset}`, [floats([B, T, D]), tab(), tab()], (x, c, s) => op.rotary(x, c, s, { offset }), EXACT);
  const H = POOL[shapeRng.int(6)];
  add(`rotary splitting ${H} heads, offset ${offset}`, [floats([B, T, H * D]), tab(), tab()], (x, c, s) => op.rotary(x, c, s, { offset, heads: H }), EXACT);
}
for (const shape of [[1031], [3, 5, 64], [0, 7]]) {
  add('swiglu', [floats(shape, { low: -12, high: 12 }), floats(shape)], (a, b) => op.swiglu(a, b), TRANS);
}
add('swiglu, gate without gradient', [floats([9, 33], { low: -12, high: 12, grad: false }), floats([9, 33])], (a, b) => op.swiglu(a, b), TRANS);
add('rotary, rank 4', [floats([2, 3, 5, 6]), floats([5, 3], { grad: false }), floats([5, 3], { grad: false })], (x, c, s) => op.rotary(x, c, s), EXACT);
add('rotary, empty batch', [floats([0, 3, 8]), floats([3, 2], { grad: false }), floats([3, 2], { grad: false })], (x, c, s) => op.rotary(x, c, s, { heads: 2 }), EXACT);

// Head layouts (splitHeads / mergeHeads): data movement, plus the rotary turn for rotated parts
// (in double, rounded once, as rotary): bit-identical. The parts' outputs are flattened and joined
// so one case covers every part's forward and its gradient into the shared (B, T, C) buffer.
for (let i = 0; i < 4; i++) {
  const [B, T] = randShape(2, 120), D = 2 * POOL[shapeRng.int(5)], H = POOL[shapeRng.int(5)], offset = shapeRng.int(4);
  const parts: op.HeadsPart[] = [{ heads: H, dim: D, rotate: true }, { heads: H, dim: D }, { heads: POOL[shapeRng.int(4)], dim: 1 }, { heads: 1, dim: D, rotate: true }];
  const C = parts.reduce((s, p) => s + p.heads * p.dim, 0), rows = offset + T + shapeRng.int(3);
  const tab = (): Input => floats([rows, D / 2], { grad: false });
  add(`splitHeads ${H}×${D}, offset ${offset}`, [floats([B, T, C]), tab(), tab()],
    (y, c, s) => op.concat(op.splitHeads(y, parts, { cos: c, sin: s, offset }).map((t) => op.flatten(t))), EXACT);
  add(`mergeHeads`, [floats([B, H, T, D])], (x) => op.mergeHeads(x), EXACT);
}
// Big enough (≥ 2¹⁸ elements) for the kernels to split the token rows across threads.
add('splitHeads, threaded', [floats([2, 600, 260]), floats([600, 16], { grad: false }), floats([600, 16], { grad: false })],
  (y, c, s) => op.concat(op.splitHeads(y, [{ heads: 4, dim: 32, rotate: true }, { heads: 4, dim: 32 }, { heads: 4, dim: 1 }], { cos: c, sin: s }).map((t) => op.flatten(t))), EXACT);
add('splitHeads, empty batch', [floats([0, 3, 8]), floats([3, 2], { grad: false }), floats([3, 2], { grad: false })],
  (y, c, s) => op.concat(op.splitHeads(y, [{ heads: 1, dim: 4, rotate: true }, { heads: 2, dim: 2 }], { cos: c, sin: s }).map((t) => op.flatten(t))), EXACT);

add('embedding, repeated ids', [floats([13, 9]), ints([5, 7], 13)], (t, i) => op.embedding(t, i), EXACT, red(35));
add('embedding, wide rows', [floats([50, 257]), ints([31], 50)], (t, i) => op.embedding(t, i), EXACT, red(31));
add('embedding, no ids', [floats([5, 3]), ints([0], 5)], (t, i) => op.embedding(t, i), EXACT);
for (const reduction of ['none', 'sum', 'mean'] as const) {
  for (const [rows, cols] of [[1, 1], [17, 5], [9, 1031]]) {
    const t = Math.max(TRANS, red(cols), reduction === 'none' ? 0 : red(rows));
    add(`crossEntropy ${reduction}`, [floats([rows, cols], { low: -6, high: 6 }), ints([rows], cols)], (l, y) => op.crossEntropy(l, y, { reduction }), t);
  }
  add(`crossEntropy ${reduction}, ignored targets`, [floats([3, 7, 33]), ints([3, 7], 33, { ignore: -100, every: 4 })], (l, y) => op.crossEntropy(l, y, { reduction }), Math.max(TRANS, red(33)));
}
add('crossEntropy, every target ignored', [floats([4, 9]), ints([4], 9, { ignore: -100, every: 1 })], (l, y) => op.crossEntropy(l, y), EXACT);
add('dropout p = 0.3', [floats([1031])], (x) => op.dropout(x, 0.3, 11), ARITH);
add('dropout p = 0.9, 3-D', [floats([3, 7, 33])], (x) => op.dropout(x, 0.9, 12345), ARITH);
add('adamw, 3 steps', [floats([1031], { grad: false }), floats([1031], { grad: false }), floats([1031], { grad: false }), floats([1031], { low: 0, high: 2, grad: false })], (p, g, m, v) => {
  for (let t = 1; t <= 3; t++) {
    op.adamwUpdate(p, g, m, v, { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, bc1: 1 - 0.9 ** t, bc2: 1 - 0.95 ** t });
  }
  return op.concat([p, m, v]);
}, ARITH);

// ---- sequence mixers ----

for (const [B, H, T, D, window] of [[1, 1, 1, 1, 0], [2, 3, 17, 8, 0], [1, 2, 33, 5, 7], [2, 1, 65, 16, 0]]) {
  const shape = [B, H, T, D];
  const mo = { window: window || null };
  const t = Math.max(TRANS, red(T * D));
  add(`softmaxAttention w=${window}`, [floats(shape), floats(shape), floats(shape)], (q, k, v) => op.softmaxAttention(q, k, v, mo), t);
  // λ = e^{logLambda} in [0.6, 1.6]: W + λI then has eigenvalues in (λ, 1 + λ].
  add(`causalKrrSolve w=${window}`, [floats(shape, { low: -1, high: 1 }), floats(shape, { low: -1, high: 1 }), floats(shape), floats([H], { low: -0.5, high: 0.5 })],
    (r, rh, y, ll) => op.causalKrrSolve(r, rh, y, ll, mo), t);
  // The same solve with r̂ and s ⊙ v formed inside its kernel (LRR on, then off).
  add(`cubitSolve w=${window}`, [floats(shape, { low: -1, high: 1 }), floats([H], { low: 0.5, high: 2 }), floats(shape), floats([B, H, T], { low: -4, high: 4 }),
    floats([H], { low: 0.3, high: 0.7 }), floats([H], { low: 1, high: 2 }), floats([H], { low: -0.5, high: 0.5 })],
  (r, a, v, z, lo, ra, ll) => op.cubitSolve(r, a, v, { logits: z, lower: lo, range: ra }, ll, mo), t);
  add(`cubitSolve without LRR w=${window}`, [floats(shape, { low: -1, high: 1 }), floats([H], { low: 0.5, high: 2 }), floats(shape), floats([H], { low: -0.5, high: 0.5 })],
    (r, a, v, ll) => op.cubitSolve(r, a, v, null, ll, mo), t);
}
// Cubit's elementwise stages: row dots of D, per-head gradients summed over B·T rows of D.
for (const [B, H, T, D] of [[1, 1, 1, 1], [2, 3, 17, 5], [1, 2, 9, 33], [3, 1, 7, 8], [2, 2, 1, 31]]) {
  const shape = [B, H, T, D], rowTol = Math.max(ARITH, red(D)), headTol = red(B * T * D);
  // With D = 1, r/‖r‖ = ±1 does not depend on r: ∂r is 0 up to each side's rounding, so a relative
  // error means nothing there and only α's gradient is compared.
  add('normalizeReference', [floats(shape, { grad: D > 1 }), floats([H], { low: 0.5, high: 2 })], (r, a) => op.normalizeReference(r, a), rowTol, headTol);
  add('lrrValues', [floats(shape), floats([B, H, T], { low: -12, high: 12 }), floats([H]), floats([H])], op.lrrValues, rowTol, headTol);
}
{
  // Big enough (≥ 2¹⁸ elements) for the kernels to split rows across threads, cutting heads apart.
  const shape = [2, 3, 1400, 33], headTol = red(2 * 1400 * 33);
  add('normalizeReference, threaded', [floats(shape), floats([3], { low: 0.5, high: 2 })], (r, a) => op.normalizeReference(r, a), red(33), headTol);
  add('lrrValues, threaded', [floats(shape), floats([2, 3, 1400], { low: -12, high: 12 }), floats([3]), floats([3])], op.lrrValues, red(33), headTol);
}
{
  // Rows on both sides of the clamp: zero rows, rows at 0.3·eps and at 2·eps … (eps = 0.5).
  const r = floats([2, 3, 5, 7]);
  const v = r.values as Float32Array;
  for (let i = 0; i < 30; i++) {
    let n = 0;
    for (let j = 0; j < 7; j++) n += v[i * 7 + j] ** 2;
    const f = [0, 0.3, 2, 0.8, 5][i % 5] * 0.5 / Math.sqrt(n);
    for (let j = 0; j < 7; j++) v[i * 7 + j] *= f;
  }
  add('normalizeReference across the eps clamp', [r, floats([3])], (x, a) => op.normalizeReference(x, a, 0.5), Math.max(ARITH, red(7)), red(10 * 7));
  add('normalizeReference, r without gradient', [floats([2, 2, 3, 4], { grad: false }), floats([2])], (x, a) => op.normalizeReference(x, a), red(4), red(6 * 4));
  add('normalizeReference, refScale without gradient', [floats([2, 2, 3, 4]), floats([2], { grad: false })], (x, a) => op.normalizeReference(x, a), red(4));
  add('lrrValues, values only', [floats([2, 2, 3, 9]), floats([2, 2, 3], { grad: false }), floats([2], { grad: false }), floats([2], { grad: false })], op.lrrValues, ARITH);
  add('lrrValues, logits only', [floats([2, 2, 3, 9], { grad: false }), floats([2, 2, 3]), floats([2], { grad: false }), floats([2], { grad: false })], op.lrrValues, ARITH, red(9));
}
{
  const docIds = Int32Array.from({ length: 2 * 21 }, (_, i) => Math.floor((i % 21) / 8) + (i >= 21 ? 10 : 0));
  const ids: Input = { shape: [2, 21], values: docIds, grad: false };
  add('softmaxAttention with packed documents', [floats([2, 2, 21, 6]), floats([2, 2, 21, 6]), floats([2, 2, 21, 6]), ids], (q, k, v, d) => op.softmaxAttention(q, k, v, { docIds: d }), Math.max(TRANS, red(21 * 6)));
  add('causalKrrSolve with packed documents', [floats([2, 2, 21, 6], { low: -1, high: 1 }), floats([2, 2, 21, 6], { low: -1, high: 1 }), floats([2, 2, 21, 6]), floats([2], { low: -0.5, high: 0.5 }), ids],
    (r, rh, y, ll, d) => op.causalKrrSolve(r, rh, y, ll, { docIds: d }), 10 * Math.max(TRANS, red(21 * 6)));
  // Ids that recur after another document: the mask is "same id", whatever the layout.
  const recurring: Input = { shape: [2, 21], values: Int32Array.from({ length: 2 * 21 }, (_, i) => [4, 4, 9, 4, 9, 9, 2][(i % 21) % 7] + (i >= 21 ? 1 : 0)), grad: false };
  add('softmaxAttention with recurring document ids', [floats([2, 2, 21, 6]), floats([2, 2, 21, 6]), floats([2, 2, 21, 6]), recurring], (q, k, v, d) => op.softmaxAttention(q, k, v, { docIds: d }), Math.max(TRANS, red(21 * 6)));
  add('cubitSolve with recurring document ids', [floats([2, 2, 21, 6], { low: -1, high: 1 }), floats([2], { low: 0.5, high: 2 }), floats([2, 2, 21, 6]), floats([2], { low: -0.5, high: 0.5 }), recurring],
    (r, a, v, ll, d) => op.cubitSolve(r, a, v, null, ll, { docIds: d }), 10 * Math.max(TRANS, red(21 * 6)));
}

// ---- batched SPD solve (the local linear mixer's: a Cholesky factor, two triangular solves) ----

// A = M Mᵀ + n·I has its eigenvalues in [n, ~5n] (those of M Mᵀ lie in [0, ~4n]): condition ≤ ~5,
// so a float32 solve is good to red(n). The gradient reaches M through the product.
const spd = (m: Tensor): Tensor => {
  const n = m.shape[m.rank - 1];
  return op.add(op.matmul(m, m, { transB: true }), op.tensor(Float32Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? n : 0)), [n, n]));
};
for (const [lead, n, k] of [[[1], 1, 1], [[3], 5, 2], [[7], 17, 1], [[2], 33, 3], [[5], 64, 1], [[2, 3], 9, 1], [[0], 4, 1]] as [number[], number, number][]) {
  add(`solveSpd n=${n}`, [floats([...lead, n, n]), floats([...lead, n, k])], (m, b) => op.solveSpd(spd(m), b), Math.max(ARITH, red(n)));
}

// ---- the runner ----

interface Result { shape: readonly number[]; out: Float64Array; grads: (Float64Array | null)[] }

/** Runs a case on backend `name`; reads back asynchronously (a GPU backend has no synchronous read). */
async function runOn(name: string, c: Case): Promise<Result> {
  const { y, xs } = withBackend(name, () => {
    const xs = c.inputs.map((i) => op.tensor(i.values.slice(), i.shape, { requiresGrad: i.grad && i.values instanceof Float32Array }));
    const y = c.fn(...xs);
    if (y.requiresGrad) {
      const rng = new Rng(777);
      op.tidy(() => y.backward(op.tensor(Float32Array.from({ length: y.size }, () => rng.normal()), y.shape)));
    }
    return { y, xs };
  });
  try {
    const res: Result = { shape: y.shape, out: Float64Array.from(await y.data()), grads: [] };
    for (const x of xs) {
      if (!x.requiresGrad) { res.grads.push(null); continue; }
      res.grads.push(x.grad ? Float64Array.from(await x.grad.data()) : new Float64Array(x.size));
    }
    return res;
  } finally {
    for (const x of xs) { x.grad?.dispose(); x.grad = null; x.dispose(); }
    y.dispose();
  }
}

/** Kernels of the Backend table (methods of ReferenceBackend that are not memory bookkeeping). */
const bookkeeping = new Set(['constructor', 'alloc', 'free', 'write', 'readSync', 'read', 'memory', 'resetPeak', 'trim']);
const kernelNames = Object.getOwnPropertyNames(ReferenceBackend.prototype).filter((k) => !bookkeeping.has(k));
const called = new Set<string>();

/**
 * Backends whose own kernels must each be called by some case (spied while they run): every
 * kernel native overrides, and webgpu's fused kernels.
 */
const ownKernels: Record<string, () => string[]> = {
  native: () => Object.getOwnPropertyNames(NativeBackend.prototype).filter((k) => kernelNames.includes(k)),
  webgpu: () => Object.getOwnPropertyNames(WebGPUBackend.prototype).filter((k) => (FUSED_KERNELS as readonly string[]).includes(k)),
};

/** Records which of `names` (default: every kernel) a backend calls while fn runs (instance properties shadow the prototype). */
async function spying<T>(be: object, fn: () => Promise<T>, into: Set<string> = called, names: readonly string[] = kernelNames): Promise<T> {
  const inst = be as Record<string, unknown>;
  const spied = names.filter((k) => typeof inst[k] === 'function');
  for (const k of spied) {
    const orig = (inst[k] as (...a: unknown[]) => unknown);
    inst[k] = function (this: unknown, ...a: unknown[]) { into.add(k); return orig.apply(this, a); };
  }
  try { return await fn(); } finally { for (const k of spied) delete inst[k]; }
}

interface Variant { isa: NativeIsa; threads: number }

function variants(): Variant[] {
  const nb = backend('native') as NativeBackend;
  const isas = nb.addon.supportedIsas();
  const dflt = nb.threads();
  return [...isas.map((isa) => ({ isa, threads: dflt })), { isa: isas[0], threads: 1 }, { isa: isas[0], threads: 3 }];
}

async function withVariant<T>(v: Variant, fn: () => Promise<T>): Promise<T> {
  const nb = backend('native') as NativeBackend;
  const prevThreads = nb.threads();
  nb.addon.setIsa(v.isa);
  nb.setThreads(v.threads);
  try { return await fn(); } finally { nb.addon.setIsa('auto'); nb.setThreads(prevThreads); }
}

function compare(c: Case, want: Result, got: Result, where: string): void {
  assert.deepEqual(got.shape, want.shape, `${c.name} [${where}]: output shape`);
  const e = relErr(got.out, want.out);
  assert.ok(e <= c.fwdTol, `${c.name} [${where}]: output relErr ${e.toExponential(2)} > ${c.fwdTol.toExponential(2)}`);
  want.grads.forEach((g, i) => {
    if (!g) return;
    const eg = relErr(got.grads[i]!, g);
    assert.ok(eg <= c.gradTol, `${c.name} [${where}]: gradient of input ${i} relErr ${eg.toExponential(2)} > ${c.gradTol.toExponential(2)}`);
  });
}

const worst: { name: string; ratio: number }[] = [];

export interface ConformanceOptions {
  /**
   * The backend runs composites of core kernels (a core-only view): a case whose fused kernel
   * rounds once (EXACT) rounds each intermediate there, so its tolerance is at least ARITH.
   */
  composites?: boolean;
  /**
   * The backend computes in float32 only (a GPU: no float64 accumulation), so a case the CPU
   * backends round once (EXACT: rotary, head layouts) rounds each operation: at least ARITH.
   */
  float32Only?: boolean;
}

/** The suite for the backend registered as `name` (native: under every ISA and thread count). */
export function conformance(name: string, options: ConformanceOptions = {}): void {
  const isNative = name === 'native';
  const floor = options.composites || options.float32Only ? ARITH : 0;
  // Tolerances are written for IEEE float32 (u = 2⁻²⁴); a backend with coarser arithmetic says so.
  const scaleOf = (): number => (backend(name).unitRoundoff ?? 2 ** -24) / 2 ** -24;
  const opts = name.startsWith('native') ? nativeTestOptions() : {};
  describe(`conformance of '${name}' against the reference, float32`, () => {
    for (const c of cases) {
      test(c.name, opts, async (t) => {
        if (name.startsWith('native')) requireNative();
        // With the fused kernels hidden, only a case whose op has a fused kernel runs a composite;
        // the rest would run the very kernels the plain suite already compares.
        const fused = new Set<string>();
        const want = options.composites ? await spying(backend('reference'), () => runOn('reference', c), fused, FUSED_KERNELS) : await runOn('reference', c);
        if (options.composites && fused.size === 0) { t.skip('calls no fused kernel: the plain suite covers it'); return; }
        const scale = scaleOf();
        for (const v of isNative ? variants() : [null]) {
          if (process.env.CUBIT_TEST_TRACE) process.stderr.write(`${c.name} [${v ? `${v.isa} ${v.threads}` : name}]\n`);
          const where = v ? `${v.isa}, ${v.threads} threads` : name;
          const got = v ? await withVariant(v, () => spying(backend('native'), () => runOn(name, c)))
            : ownKernels[name] ? await spying(backend(name), () => runOn(name, c)) : await runOn(name, c);
          const tc = { ...c, fwdTol: scale * Math.max(c.fwdTol, floor), gradTol: scale * Math.max(c.gradTol, floor) };
          compare(tc, want, got, where);
          const e = Math.max(relErr(got.out, want.out) / (tc.fwdTol || Infinity), ...want.grads.map((g, i) => (g ? relErr(got.grads[i]!, g) / (tc.gradTol || Infinity) : 0)));
          worst.push({ name: `${c.name} [${where}]`, ratio: e });
        }
      });
    }

    const own = ownKernels[name];
    if (!own) return;
    test(`every kernel the ${name} backend overrides was called by some case`, opts, () => {
      if (isNative) requireNative();
      const overridden = own();
      const missing = overridden.filter((k) => !called.has(k));
      assert.deepEqual(missing, [], `${name} kernels without a comparison case: ${missing.join(', ')}`);
      if (process.env.CUBIT_TEST_VERBOSE) {
        worst.sort((a, b) => b.ratio - a.ratio);
        console.log('closest to tolerance (error / tol):', worst.slice(0, 15).map((w) => `${w.ratio.toFixed(3)} ${w.name}`).join('\n  '));
        console.log(`${name} overrides:`, overridden.join(', '));
      }
    });
  });
}
