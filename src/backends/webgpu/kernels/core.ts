// The core kernels (CoreBackend) in WGSL: data movement, elementwise, reduce, a plain tiled
// matmul, triangular solve, gather / scatter-add and the dropout mask. Each kernel is generated
// for the dtypes and op it runs with and compiled once (GpuRuntime caches pipelines by text).
// Their reference twins are the reference backend's loops; test/conformance.ts compares them.
import type { BinaryOp, MatmulParams, ReduceOp, UnaryOp, ValueRule } from '../../../core/backend.ts';
import type { DType } from '../../../core/dtype.ts';
import { grid1d, ParamWriter, type GpuRuntime, type GpuStorage } from '../runtime.ts';
import { elementwiseMain, MATH, WG, wgslType } from '../wgsl.ts';

/** Highest rank of the strided kernels after merging contiguous axes. */
export const MAX_RANK = 8;

const launch = (rt: GpuRuntime, count: number): [number, number] => grid1d(count, WG, rt.limits.maxComputeWorkgroupsPerDimension);

// ---- fill, copy, cast ----

export function fill(rt: GpuRuntime, out: GpuStorage, value: number, offset: number, length: number): void {
  if (length <= 0) return;
  const t = wgslType(out.dtype);
  const k = rt.kernel(`fill_${t}`, /* wgsl */ `
struct P { offset: u32, length: u32, bits: u32 }
@group(0) @binding(0) var<storage, read_write> out: array<${t}>;
@group(0) @binding(1) var<uniform> p: P;
${elementwiseMain(`  if (i < p.length) { out[p.offset + i] = bitcast<${t}>(p.bits); }`)}`, ['read_write']);
  const pw = new ParamWriter().u32(offset, length);
  if (out.dtype === 'int32') pw.i32(value); else pw.f32(value);
  rt.run(k, [out], pw, launch(rt, length));
}

export function copy(rt: GpuRuntime, src: GpuStorage, srcOffset: number, out: GpuStorage, outOffset: number, length: number): void {
  if (length <= 0) return;
  if (src.buffer !== out.buffer) { rt.copyBuffer(src, srcOffset, out, outOffset, length); return; }
  // WebGPU cannot copy a buffer onto itself: go through a temporary.
  const tmp = rt.alloc(src.dtype, length);
  rt.copyBuffer(src, srcOffset, tmp, 0, length);
  rt.copyBuffer(tmp, 0, out, outOffset, length);
  rt.release(tmp);
}

export function cast(rt: GpuRuntime, src: GpuStorage, out: GpuStorage, length: number): void {
  if (length <= 0) return;
  if (src.dtype === out.dtype) { copy(rt, src, 0, out, 0, length); return; }
  const from = wgslType(src.dtype), to = wgslType(out.dtype);
  // float → int truncates toward zero, as the reference's Math.trunc.
  const k = rt.kernel(`cast_${from}_${to}`, /* wgsl */ `
struct P { length: u32 }
@group(0) @binding(0) var<storage, read> src: array<${from}>;
@group(0) @binding(1) var<storage, read_write> out: array<${to}>;
@group(0) @binding(2) var<uniform> p: P;
${elementwiseMain(`  if (i < p.length) { out[i] = ${to}(src[i]); }`)}`, ['read', 'read_write']);
  rt.run(k, [src, out], new ParamWriter().u32(length), launch(rt, length));
}

// ---- strided views (stridedCopy, binary, where) ----

/**
 * Merges adjacent axes that every operand walks contiguously (stride[d] = stride[d+1]·shape[d+1]),
 * drops 1-sized axes, and checks the rank fits the kernels.
 */
export function coalesce(shape: readonly number[], strides: readonly (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const sh: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = sh.length - 1;
    if (last >= 0 && strides.every((s, o) => st[o][last] === s[d] * shape[d])) {
      sh[last] *= shape[d];
      strides.forEach((s, o) => { st[o][last] = s[d]; });
    } else {
      sh.push(shape[d]);
      strides.forEach((s, o) => st[o].push(s[d]));
    }
  }
  if (sh.length > MAX_RANK) throw new Error(`webgpu: a strided view of rank ${sh.length} exceeds the kernels' ${MAX_RANK} (after merging contiguous axes)`);
  return { shape: sh, strides: st };
}

/** The uniform fields of a strided launch: total, rank, shape[8] and each operand's strides[8]. */
function stridedParams(total: number, shape: readonly number[], strides: readonly number[][], extra: number[] = []): ParamWriter {
  const pw = new ParamWriter(16 + 8 * (1 + strides.length));
  pw.u32(total, shape.length, extra[0] ?? 0, extra[1] ?? 0);
  for (let d = 0; d < MAX_RANK; d++) pw.u32(shape[d] ?? 1);
  for (const s of strides) for (let d = 0; d < MAX_RANK; d++) pw.i32(s[d] ?? 0);
  return pw;
}

/** WGSL for the strided uniform and `offsets(i)`: operand offsets of output element i. */
function stridedHeader(operands: number): string {
  const fields = Array.from({ length: operands }, (_, o) => `s${o}: array<vec4<i32>, 2>,`).join(' ');
  const decls = Array.from({ length: operands }, (_, o) => `var o${o} = 0;`).join(' ');
  const adds = Array.from({ length: operands }, (_, o) => `o${o} += c * p.s${o}[d / 4u][d % 4u];`).join(' ');
  const ret = Array.from({ length: operands }, (_, o) => `o${o}`).join(', ');
  return /* wgsl */ `
struct P { total: u32, rank: u32, e0: u32, e1: u32, shape: array<vec4<u32>, 2>, ${fields} }
fn offsets(i: u32) -> array<i32, ${operands}> {
  var rest = i;
  ${decls}
  for (var k = 0u; k < p.rank; k++) {
    let d = p.rank - 1u - k;
    let n = p.shape[d / 4u][d % 4u];
    let c = i32(rest % n);
    rest = rest / n;
    ${adds}
  }
  return array<i32, ${operands}>(${ret});
}`;
}

export function stridedCopy(rt: GpuRuntime, src: GpuStorage, srcOffset: number, shape: readonly number[], srcStrides: readonly number[], out: GpuStorage, outOffset: number): void {
  const total = shape.reduce((a, d) => a * d, 1);
  if (total === 0) return;
  const v = coalesce(shape, [srcStrides]);
  const t = wgslType(src.dtype);
  const k = rt.kernel(`stridedCopy_${t}`, /* wgsl */ `
@group(0) @binding(0) var<storage, read> src: array<${t}>;
@group(0) @binding(1) var<storage, read_write> out: array<${t}>;
@group(0) @binding(2) var<uniform> p: P;
${stridedHeader(1)}
${elementwiseMain(`  if (i >= p.total) { return; }
  let o = offsets(i);
  out[p.e1 + i] = src[i32(p.e0) + o[0]];`)}`, ['read', 'read_write']);
  rt.run(k, [src, out], stridedParams(total, v.shape, v.strides, [srcOffset, outOffset]), launch(rt, total));
}

const BINARY_EXPR: Record<BinaryOp, string> = {
  add: 'a + b', sub: 'a - b', mul: 'a * b', div: 'a / b',
  // NaN in a wins, as the reference's (a >= b || isNaN(a)) ? a : b.
  maximum: 'select(b, a, a >= b || a != a)', minimum: 'select(b, a, a <= b || a != a)',
  pow: 'powJs(a, b)',
  gt: 'select(0.0, 1.0, a > b)', ge: 'select(0.0, 1.0, a >= b)', lt: 'select(0.0, 1.0, a < b)',
  le: 'select(0.0, 1.0, a <= b)', eq: 'select(0.0, 1.0, a == b)', ne: 'select(0.0, 1.0, a != b)',
};

/** Integer arithmetic where both inputs and the output are int32 (sums of ids, masks). */
const BINARY_INT: Partial<Record<BinaryOp, string>> = {
  add: 'a + b', sub: 'a - b', mul: 'a * b', maximum: 'max(a, b)', minimum: 'min(a, b)',
  gt: 'select(0, 1, a > b)', ge: 'select(0, 1, a >= b)', lt: 'select(0, 1, a < b)',
  le: 'select(0, 1, a <= b)', eq: 'select(0, 1, a == b)', ne: 'select(0, 1, a != b)',
};

export function binary(rt: GpuRuntime, op: BinaryOp, a: GpuStorage, aStrides: readonly number[], b: GpuStorage, bStrides: readonly number[], out: GpuStorage, shape: readonly number[]): void {
  const total = shape.reduce((x, d) => x * d, 1);
  if (total === 0) return;
  const v = coalesce(shape, [aStrides, bStrides]);
  const ta = wgslType(a.dtype), tb = wgslType(b.dtype), to = wgslType(out.dtype);
  const intOp = ta === 'i32' && tb === 'i32' && to === 'i32' ? BINARY_INT[op] : undefined;
  const ct = intOp ? 'i32' : 'f32';
  const k = rt.kernel(`binary_${op}_${ta}${tb}${to}`, /* wgsl */ `${MATH}
@group(0) @binding(0) var<storage, read> A: array<${ta}>;
@group(0) @binding(1) var<storage, read> B: array<${tb}>;
@group(0) @binding(2) var<storage, read_write> out: array<${to}>;
@group(0) @binding(3) var<uniform> p: P;
${stridedHeader(2)}
${elementwiseMain(`  if (i >= p.total) { return; }
  let o = offsets(i);
  let a = ${ct}(A[o[0]]);
  let b = ${ct}(B[o[1]]);
  out[i] = ${to}(${intOp ?? BINARY_EXPR[op]});`)}`, ['read', 'read', 'read_write']);
  rt.run(k, [a, b, out], stridedParams(total, v.shape, v.strides), launch(rt, total));
}

export function where(rt: GpuRuntime, cond: GpuStorage, cStrides: readonly number[], a: GpuStorage, aStrides: readonly number[], b: GpuStorage, bStrides: readonly number[], out: GpuStorage, shape: readonly number[]): void {
  const total = shape.reduce((x, d) => x * d, 1);
  if (total === 0) return;
  const v = coalesce(shape, [cStrides, aStrides, bStrides]);
  const tc = wgslType(cond.dtype), ta = wgslType(a.dtype), tb = wgslType(b.dtype), to = wgslType(out.dtype);
  const k = rt.kernel(`where_${tc}${ta}${tb}${to}`, /* wgsl */ `
@group(0) @binding(0) var<storage, read> C: array<${tc}>;
@group(0) @binding(1) var<storage, read> A: array<${ta}>;
@group(0) @binding(2) var<storage, read> B: array<${tb}>;
@group(0) @binding(3) var<storage, read_write> out: array<${to}>;
@group(0) @binding(4) var<uniform> p: P;
${stridedHeader(3)}
${elementwiseMain(`  if (i >= p.total) { return; }
  let o = offsets(i);
  out[i] = select(${to}(B[o[2]]), ${to}(A[o[1]]), C[o[0]] != ${tc}(0));`)}`, ['read', 'read', 'read', 'read_write']);
  rt.run(k, [cond, a, b, out], stridedParams(total, v.shape, v.strides), launch(rt, total));
}

// ---- elementwise unary ----

const UNARY_EXPR: Record<UnaryOp, string> = {
  neg: '-x', abs: 'abs(x)', exp: 'exp(x)', log: 'log(x)', sqrt: 'sqrt(x)', rsqrt: '1.0 / sqrt(x)',
  tanh: 'safeTanh(x)', sigmoid: 'safeSigmoid(x)', silu: 'x * safeSigmoid(x)', gelu: 'gelu32(x)',
  relu: 'select(0.0, x, x > 0.0)', square: 'x * x', reciprocal: '1.0 / x', pow: 'powJs(x, s)', sign: 'sign(x)',
};

/** f'(x) given x and y = f(x) (the reference's unaryDerivative). */
const UNARY_GRAD: Record<UnaryOp, string> = {
  neg: '-1.0', abs: 'sign(x)', exp: 'y', log: '1.0 / x', sqrt: '0.5 / y', rsqrt: '-0.5 * y * y * y',
  tanh: '1.0 - y * y', sigmoid: 'y * (1.0 - y)',
  silu: 'safeSigmoid(x) * (1.0 + x * (1.0 - safeSigmoid(x)))', gelu: 'geluGrad32(x)',
  relu: 'select(0.0, 1.0, x > 0.0)', square: '2.0 * x', reciprocal: '-y * y',
  pow: 'select(s * powJs(x, s - 1.0), 0.0, s == 0.0)', sign: '0.0',
};

const UNARY_INT: Partial<Record<UnaryOp, string>> = {
  neg: '-x', abs: 'abs(x)', relu: 'max(x, 0)', square: 'x * x', sign: 'sign(x)',
};

export function unary(rt: GpuRuntime, op: UnaryOp, x: GpuStorage, out: GpuStorage, length: number, scalar: number): void {
  if (length <= 0) return;
  const tx = wgslType(x.dtype), to = wgslType(out.dtype);
  const intOp = tx === 'i32' && to === 'i32' ? UNARY_INT[op] : undefined;
  const k = rt.kernel(`unary_${op}_${tx}${to}`, /* wgsl */ `${MATH}
struct P { length: u32, s: f32 }
@group(0) @binding(0) var<storage, read> X: array<${tx}>;
@group(0) @binding(1) var<storage, read_write> out: array<${to}>;
@group(0) @binding(2) var<uniform> p: P;
${elementwiseMain(`  if (i >= p.length) { return; }
  let s = p.s;
  let x = ${intOp ? 'X[i]' : 'f32(X[i])'};
  out[i] = ${to}(${intOp ?? UNARY_EXPR[op]});`)}`, ['read', 'read_write']);
  rt.run(k, [x, out], new ParamWriter().u32(length).f32(scalar), launch(rt, length));
}

export function unaryBackward(rt: GpuRuntime, op: UnaryOp, x: GpuStorage, y: GpuStorage, dy: GpuStorage, dx: GpuStorage, length: number, scalar: number): void {
  if (length <= 0) return;
  // Only the operands the derivative reads are bound (a binding the shader never reads is dropped
  // by the compiler, which some drivers mishandle).
  const expr = UNARY_GRAD[op];
  const inputs = [...(/\bx\b/.test(expr) ? [['X', 'x', x] as const] : []), ...(/\by\b/.test(expr) ? [['Y', 'y', y] as const] : [])];
  const decls = inputs.map(([b], j) => `@group(0) @binding(${j}) var<storage, read> ${b}: array<f32>;`).join('\n');
  const lets = inputs.map(([b, v]) => `  let ${v} = ${b}[i];`).join('\n');
  const n = inputs.length;
  const k = rt.kernel(`unaryBackward_${op}`, /* wgsl */ `${MATH}
struct P { length: u32, s: f32 }
${decls}
@group(0) @binding(${n}) var<storage, read> DY: array<f32>;
@group(0) @binding(${n + 1}) var<storage, read_write> DX: array<f32>;
@group(0) @binding(${n + 2}) var<uniform> p: P;
${elementwiseMain(`  if (i >= p.length) { return; }
  let s = p.s;
${lets}
  DX[i] = DY[i] * (${expr});`)}`, [...inputs.map(() => 'read' as const), 'read', 'read_write']);
  rt.run(k, [...inputs.map(([, , st]) => st), dy, dx], new ParamWriter().u32(length).f32(scalar), launch(rt, length));
}

// ---- reduce ----

const REDUCE_INIT: Record<ReduceOp, string> = { sum: '0.0', max: '-f32Inf()', min: 'f32Inf()' };
/** acc ∘ v; NaN propagates through max and min as in the reference. */
const REDUCE_STEP: Record<ReduceOp, string> = {
  sum: 'acc + v', max: 'select(acc, v, v > acc || v != v)', min: 'select(acc, v, v < acc || v != v)',
};

/**
 * The middle axis of (outer, len, inner). inner = 1 (row reductions: losses, norms): a workgroup
 * per row, a tree over its threads. Otherwise a thread per output walks its column, coalesced
 * across inner.
 */
export function reduce(rt: GpuRuntime, op: ReduceOp, x: GpuStorage, out: GpuStorage, outer: number, len: number, inner: number): void {
  if (outer * inner === 0) return;
  const t = wgslType(x.dtype), to = wgslType(out.dtype);
  const pw = new ParamWriter().u32(outer, len, inner);
  if (inner === 1) {
    const k = rt.kernel(`reduceRows_${op}_${t}${to}`, /* wgsl */ `${MATH}
struct P { outer: u32, len: u32, inner: u32 }
@group(0) @binding(0) var<storage, read> X: array<${t}>;
@group(0) @binding(1) var<storage, read_write> out: array<${to}>;
@group(0) @binding(2) var<uniform> p: P;
fn combine(acc: f32, v: f32) -> f32 { return ${REDUCE_STEP[op]}; }
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  var acc = ${REDUCE_INIT[op]};
  if (row < p.outer) {
    for (var j = lid; j < p.len; j += ${WG}u) { acc = combine(acc, f32(X[row * p.len + j])); }
  }
  part[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] = combine(part[lid], part[lid + s]); }
    workgroupBarrier();
  }
  if (lid == 0u && row < p.outer) { out[row] = ${to}(part[0]); }
}`, ['read', 'read_write']);
    const [gx, gy] = grid1d(outer, 1, rt.limits.maxComputeWorkgroupsPerDimension);
    rt.run(k, [x, out], pw, [gx, gy]);
    return;
  }
  const k = rt.kernel(`reduceCols_${op}_${t}${to}`, /* wgsl */ `${MATH}
struct P { outer: u32, len: u32, inner: u32 }
@group(0) @binding(0) var<storage, read> X: array<${t}>;
@group(0) @binding(1) var<storage, read_write> out: array<${to}>;
@group(0) @binding(2) var<uniform> p: P;
fn combine(acc: f32, v: f32) -> f32 { return ${REDUCE_STEP[op]}; }
${elementwiseMain(`  if (i >= p.outer * p.inner) { return; }
  let o = i / p.inner;
  let c = i % p.inner;
  var acc = ${REDUCE_INIT[op]};
  for (var j = 0u; j < p.len; j++) { acc = combine(acc, f32(X[(o * p.len + j) * p.inner + c])); }
  out[i] = ${to}(acc);`)}`, ['read', 'read_write']);
  rt.run(k, [x, out], pw, launch(rt, outer * inner));
}

// ---- matmul ----

const TILE = 16;

/**
 * C_p = op(A_p)·op(B_p) (+ C_p): 16×16 output tiles staged through workgroup memory, a thread per
 * output, batches along z. The plain kernel every adapter runs; kernels/matmul.ts has the fast one.
 */
export function matmulTiled(rt: GpuRuntime, a: GpuStorage, b: GpuStorage, out: GpuStorage, p: MatmulParams): void {
  if (p.batch === 0 || p.m === 0 || p.n === 0) return;
  const k = rt.kernel('matmulTiled', /* wgsl */ `
struct P { m: u32, n: u32, k: u32, transA: u32, transB: u32, aOffset: u32, bOffset: u32, cOffset: u32,
  aBatch: u32, bBatch: u32, cBatch: u32, accumulate: u32, zBase: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
var<workgroup> ta: array<array<f32, ${TILE}>, ${TILE}>;
var<workgroup> tb: array<array<f32, ${TILE}>, ${TILE}>;
fn loadA(q: u32, i: u32, l: u32) -> f32 {
  if (i >= p.m || l >= p.k) { return 0.0; }
  let base = p.aOffset + q * p.aBatch;
  if (p.transA != 0u) { return A[base + l * p.m + i]; }
  return A[base + i * p.k + l];
}
fn loadB(q: u32, l: u32, j: u32) -> f32 {
  if (l >= p.k || j >= p.n) { return 0.0; }
  let base = p.bOffset + q * p.bBatch;
  if (p.transB != 0u) { return B[base + j * p.k + l]; }
  return B[base + l * p.n + j];
}
@compute @workgroup_size(${TILE}, ${TILE})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let q = wid.z + p.zBase;
  let i = wid.y * ${TILE}u + lid.y;
  let j = wid.x * ${TILE}u + lid.x;
  var acc = 0.0;
  for (var l0 = 0u; l0 < p.k; l0 += ${TILE}u) {
    ta[lid.y][lid.x] = loadA(q, i, l0 + lid.x);
    tb[lid.y][lid.x] = loadB(q, l0 + lid.y, j);
    workgroupBarrier();
    for (var l = 0u; l < ${TILE}u; l++) { acc += ta[lid.y][l] * tb[l][lid.x]; }
    workgroupBarrier();
  }
  if (i < p.m && j < p.n) {
    let c = p.cOffset + q * p.cBatch + i * p.n + j;
    C[c] = select(acc, C[c] + acc, p.accumulate != 0u);
  }
}`, ['read', 'read', 'read_write']);
  const max = rt.limits.maxComputeWorkgroupsPerDimension;
  for (let z0 = 0; z0 < p.batch; z0 += max) {
    const pw = new ParamWriter().u32(p.m, p.n, p.k, p.transA ? 1 : 0, p.transB ? 1 : 0, p.aOffset, p.bOffset, p.cOffset,
      p.aBatchStride, p.bBatchStride, p.cBatchStride, p.accumulate ? 1 : 0, z0);
    rt.run(k, [a, b, out], pw, [Math.ceil(p.n / TILE), Math.ceil(p.m / TILE), Math.min(max, p.batch - z0)]);
  }
}

// ---- triangular solve ----

/** A thread per (batch, column) substitutes down (L) or up (Lᵀ), keeping x in `out` as it goes. */
export function triangularSolve(rt: GpuRuntime, l: GpuStorage, b: GpuStorage, out: GpuStorage, batch: number, n: number, k: number, transpose: boolean): void {
  if (batch * n * k === 0) return;
  const kern = rt.kernel('triangularSolve', /* wgsl */ `
struct P { batch: u32, n: u32, k: u32, transpose: u32 }
@group(0) @binding(0) var<storage, read> L: array<f32>;
@group(0) @binding(1) var<storage, read> Bm: array<f32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
${elementwiseMain(`  if (i >= p.batch * p.k) { return; }
  let q = i / p.k;
  let c = i % p.k;
  let lo = q * p.n * p.n;
  let bo = q * p.n * p.k;
  for (var s = 0u; s < p.n; s++) {
    var acc = Bm[bo + s * p.k + c];
    if (p.transpose != 0u) {
      let r = p.n - 1u - s;
      acc = Bm[bo + r * p.k + c];
      for (var j = r + 1u; j < p.n; j++) { acc -= L[lo + j * p.n + r] * X[bo + j * p.k + c]; }
      X[bo + r * p.k + c] = acc / L[lo + r * p.n + r];
    } else {
      for (var j = 0u; j < s; j++) { acc -= L[lo + s * p.n + j] * X[bo + j * p.k + c]; }
      X[bo + s * p.k + c] = acc / L[lo + s * p.n + s];
    }
  }`)}`, ['read', 'read', 'read_write']);
  rt.run(kern, [l, b, out], new ParamWriter().u32(batch, n, k, transpose ? 1 : 0), launch(rt, batch * k));
}

// ---- gather, scatter-add, dropout ----

export function gather(rt: GpuRuntime, table: GpuStorage, ids: GpuStorage, out: GpuStorage, count: number, cols: number): void {
  if (count * cols === 0) return;
  const t = wgslType(table.dtype);
  const k = rt.kernel(`gather_${t}`, /* wgsl */ `
struct P { count: u32, cols: u32 }
@group(0) @binding(0) var<storage, read> table: array<${t}>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<${t}>;
@group(0) @binding(3) var<uniform> p: P;
${elementwiseMain(`  if (i >= p.count * p.cols) { return; }
  let r = i / p.cols;
  out[i] = table[u32(ids[r]) * p.cols + i % p.cols];`)}`, ['read', 'read', 'read_write']);
  rt.run(k, [table, ids, out], new ParamWriter().u32(count, cols), launch(rt, count * cols));
}

/**
 * dtable[ids[i], :] += dy[i, :] with a compare-and-swap float add (WGSL has no float atomics).
 * Rows sharing an id add in an unspecified order, so sums may differ in the last bits run to run.
 */
export function scatterAdd(rt: GpuRuntime, dy: GpuStorage, ids: GpuStorage, dtable: GpuStorage, count: number, cols: number): void {
  if (count * cols === 0) return;
  const k = rt.kernel('scatterAdd', /* wgsl */ `
struct P { count: u32, cols: u32 }
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> dtable: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> p: P;
${elementwiseMain(`  if (i >= p.count * p.cols) { return; }
  let at = u32(ids[i / p.cols]) * p.cols + i % p.cols;
  let add = dy[i];
  var old = atomicLoad(&dtable[at]);
  loop {
    let r = atomicCompareExchangeWeak(&dtable[at], old, bitcast<u32>(bitcast<f32>(old) + add));
    if (r.exchanged) { break; }
    old = r.old_value;
  }`)}`, ['read', 'read', 'read_write']);
  rt.run(k, [dy, ids, dtable], new ParamWriter().u32(count, cols), launch(rt, count * cols));
}

/** WGSL of core/random.ts's hash32 (u32 products wrap like Math.imul). */
export const HASH32 = /* wgsl */ `
fn hash32(seed: u32, index: u32) -> u32 {
  var h = (seed * 0x9e3779b1u) ^ (index * 0x85ebca77u);
  h ^= h >> 16u; h *= 0x85ebca6bu;
  h ^= h >> 13u; h *= 0xc2b2ae35u;
  h ^= h >> 16u;
  return h;
}`;

export function dropoutMask(rt: GpuRuntime, out: GpuStorage, length: number, p: number, seed: number): void {
  if (length <= 0) return;
  // keep ⇔ hash ≥ p·2³², i.e. hash ≥ ⌈p·2³²⌉ for an integer hash; p·2³² ≥ 2³² keeps nothing.
  const t = Math.ceil(p * 4294967296);
  const k = rt.kernel('dropoutMask', /* wgsl */ `${HASH32}
struct P { length: u32, seed: u32, threshold: u32, none: u32, scale: f32 }
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> p: P;
${elementwiseMain(`  if (i >= p.length) { return; }
  let keep = p.none == 0u && hash32(p.seed, i) >= p.threshold;
  out[i] = select(0.0, p.scale, keep);`)}`, ['read_write']);
  rt.run(k, [out], new ParamWriter().u32(length, seed >>> 0, Math.min(t, 4294967295), t >= 4294967296 ? 1 : 0).f32(1 / (1 - p)), launch(rt, length));
}

// ---- value checks ----

/** WGSL of "value v fails rule" for checkValues (the same rules as core/backend.ts's valueError). */
export function ruleFails(rule: ValueRule, dtype: DType): string {
  const v = dtype === 'int32' ? 'f32(x)' : 'x';
  switch (rule.kind) {
    case 'finite': return dtype === 'int32' ? 'false' : '!isFinite32(x)';
    // exp(v) is finite in float64 (the reference's test) up to v = 709.78; −∞ gives 0, finite.
    case 'expFinite': return dtype === 'int32' ? 'false' : '(isNan32(x) || x > 709.782712893384)';
    case 'positive': case 'choleskyDiagonal': return `!(${v} > 0.0 && isFinite32(${v}))`;
    case 'index': {
      const ok = `(${v} >= 0.0 && ${v} < ${rule.limit}.0)`;
      return rule.ignore === null ? `!${ok}` : `!(${v} == ${rule.ignore}.0 || ${ok})`;
    }
  }
}

/** Records into slots[2·id] the least index whose value fails `rule`, and its value into slots[2·id+1]. */
export function checkValues(rt: GpuRuntime, s: GpuStorage, length: number, rule: ValueRule, slots: GpuStorage, id: number): void {
  if (length <= 0) return;
  const t = wgslType(s.dtype);
  const scan = rt.kernel(`checkValues_${JSON.stringify(rule)}_${t}`, /* wgsl */ `${MATH}
struct P { length: u32, id: u32 }
@group(0) @binding(0) var<storage, read> X: array<${t}>;
@group(0) @binding(1) var<storage, read_write> slots: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> p: P;
${elementwiseMain(`  if (i >= p.length) { return; }
  let x = X[i];
  if (${ruleFails(rule, s.dtype)}) { atomicMin(&slots[2u * p.id], i); }`)}`, ['read', 'read_write']);
  rt.run(scan, [s, slots], new ParamWriter().u32(length, id), launch(rt, length));
  const fetch = rt.kernel(`checkValuesFetch_${t}`, /* wgsl */ `
struct P { id: u32 }
@group(0) @binding(0) var<storage, read> X: array<${t}>;
@group(0) @binding(1) var<storage, read_write> slots: array<u32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(1)
fn main() {
  let at = slots[2u * p.id];
  if (at != 0xffffffffu) { slots[2u * p.id + 1u] = bitcast<u32>(X[at]); }
}`, ['read', 'read_write']);
  rt.run(fetch, [s, slots], new ParamWriter().u32(id), [1]);
}

