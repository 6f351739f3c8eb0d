// The fused neural-network kernels (FusedKernels other than the sequence mixers) in WGSL: row
// softmax, RMSNorm and LayerNorm, cross-entropy, rotary and the head layouts, SwiGLU, AdamW, and
// Cubit's per-row stages (normalizeReference, lrrValues). Their reference twins are the reference
// backend's loops (src/backends/reference/), compared by test/conformance.ts and webgpu-nn.test.ts.
//
// Row kernels give each row a segment of TPR threads (32…256, by the row's length) inside a
// 256-thread workgroup, so short rows share a workgroup; a thread strides over its row's columns
// (coalesced, and any length works, e.g. a 50k-column vocabulary) and a tree in workgroup memory
// combines the segment. Sums over rows (dw, db, per-head gradients) are two-pass and fixed-order,
// never atomics, so every run gives the same bits. Subgroup operations are not used: WGSL does
// not fix which invocations share a subgroup, and these kernels are bound by memory, not by the
// tree. Each kernel binds only the storages it touches (at most 8). Kernels whose values depend on
// their row (cross-entropy's backward, lrrValues) run as row kernels too, so a row's scalars are read
// once per thread rather than once per value.
import type { AdamWParams, HeadsBlock } from '../../../core/backend.ts';
import { grid1d, ParamWriter, type Access, type GpuRuntime, type GpuStorage } from '../runtime.ts';
import { elementwiseMain, MATH, WG } from '../wgsl.ts';

const launch = (rt: GpuRuntime, count: number): [number, number] => grid1d(count, WG, rt.limits.maxComputeWorkgroupsPerDimension);

// ---- bindings ----

/** A storage a kernel may bind: its WGSL name, element type and access; absent when null. */
type Binding = [name: string, s: GpuStorage | null, access: Access, type?: 'f32' | 'i32'];

/** The declarations, storages and accesses of the non-null bindings, then the uniform `p: P`. */
function bindings(list: readonly Binding[]): { decls: string; storages: GpuStorage[]; access: Access[] } {
  const present = list.filter((b) => b[1] !== null);
  const decls = present.map(([name, , access, type = 'f32'], i) =>
    `@group(0) @binding(${i}) var<storage, ${access}> ${name}: array<${type}>;`).join('\n');
  return {
    decls: `${decls}\n@group(0) @binding(${present.length}) var<uniform> p: P;`,
    storages: present.map((b) => b[1]!),
    access: present.map((b) => b[2]),
  };
}

/** Compiles (cached by text) and records one dispatch of a kernel over its bindings. */
function dispatch(rt: GpuRuntime, name: string, struct: string, list: readonly Binding[], body: (decls: string) => string,
  params: ParamWriter, groups: readonly [number, number?, number?]): void {
  const b = bindings(list);
  const k = rt.kernel(name, `${MATH}\nstruct P { ${struct} }\n${body(b.decls)}`, b.access);
  rt.run(k, b.storages, params, groups);
}

// ---- row kernels ----

/**
 * Threads per row: a power of two from 32 to 256 giving each thread about 8 columns, so a row of
 * the model's width (512) takes 64 threads and a workgroup four rows (fewer barriers per row).
 */
function threadsPerRow(cols: number): number {
  let t = 32;
  while (t < WG && t * 8 < cols) t *= 2;
  return t;
}

/**
 * The frame of a row kernel: `row`, `lane` (0…TPR−1) and `seg` (the row's segment) for each thread,
 * and `rowReduce(v, …, slot)`, which returns to every thread of a segment `combine` folded over its
 * lanes' values. rowReduce has barriers: call it in uniform control flow (every thread, valid row or
 * not). Consecutive reductions use slots 0 and 1 (their own cells): on GLES (llvmpipe) layerNorm's
 * second reduction through the same cells as its first came out wrong (its variance, deterministic
 * and ~15% off, even with extra barriers; lavapipe was right; not root-caused, and a two-reduction
 * toy kernel did not show it).
 */
function rowFrame(tpr: number, type: string, combine: string, body: string): string {
  return /* wgsl */ `
const TPR = ${tpr}u;
var<workgroup> red: array<${type}, ${2 * WG}>;
fn combine(a: ${type}, b: ${type}) -> ${type} { ${combine} }
fn rowReduce(v: ${type}, lane: u32, seg: u32, slot: u32) -> ${type} {
  let base = slot * ${WG}u + seg * TPR;
  red[base + lane] = v;
  workgroupBarrier();
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { red[base + lane] = combine(red[base + lane], red[base + lane + s]); }
    workgroupBarrier();
  }
  return red[base];
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let lane = lid % TPR;
  let seg = lid / TPR;
  let row = (wid.x + wid.y * nwg.x) * ${WG / tpr}u + seg;
  let valid = row < p.rows;
  let base = row * p.cols;
${body}
}`;
}

/** Workgroups for `rows` rows of `tpr` threads each. */
function rowGroups(rt: GpuRuntime, rows: number, tpr: number): [number, number] {
  return grid1d(Math.ceil(rows / (WG / tpr)), 1, rt.limits.maxComputeWorkgroupsPerDimension);
}

const SUM = 'return a + b;';

/**
 * A running (max, Σ exp(x − max)) of a row, and how two merge: one pass over the row instead of
 * a pass for the max and another for the sum. Entries of −∞ add nothing; NaN propagates.
 */
const STATS = /* wgsl */ `
fn addStat(st: vec2<f32>, x: f32) -> vec2<f32> {
  if (x > st.x) { return vec2<f32>(x, select(st.y * exp(st.x - x), 0.0, st.y == 0.0) + 1.0); }
  if (x == -f32Inf()) { return st; }
  return vec2<f32>(st.x, st.y + exp(x - st.x));
}`;
const STATS_COMBINE = /* wgsl */ `
  let hi = select(a, b, b.x > a.x);
  let lo = select(b, a, b.x > a.x);
  if (lo.y == 0.0) { return hi; }
  return vec2<f32>(hi.x, hi.y + lo.y * exp(lo.x - hi.x));`;
/** The row's stats in `st` (every thread of the segment), from the row at base in X. */
const ROW_STATS = /* wgsl */ `
  var acc = vec2<f32>(-f32Inf(), 0.0);
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { acc = addStat(acc, X[base + j]); } }
  let st = rowReduce(acc, lane, seg, 0u);`;

export function softmax(rt: GpuRuntime, x: GpuStorage, out: GpuStorage, rows: number, cols: number, log: boolean): void {
  if (rows * cols === 0) return;
  const tpr = threadsPerRow(cols);
  // A row whose max is −∞ (all −∞, or all NaN as the reference's max skips NaN) gives 0 / −∞.
  const value = log ? 'select((x - st.x) - log(st.y), -f32Inf(), allInf)' : 'select(exp(x - st.x) / st.y, 0.0, allInf)';
  dispatch(rt, `softmax${log ? 'Log' : ''}`, 'rows: u32, cols: u32', [['X', x, 'read'], ['Out', out, 'read_write']], (decls) => `${decls}${STATS}
${rowFrame(tpr, 'vec2<f32>', STATS_COMBINE, `${ROW_STATS}
  let allInf = st.x == -f32Inf();
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { let x = X[base + j]; Out[base + j] = ${value}; } }`)}`,
  new ParamWriter().u32(rows, cols), rowGroups(rt, rows, tpr));
}

export function softmaxBackward(rt: GpuRuntime, y: GpuStorage, dy: GpuStorage, dx: GpuStorage, rows: number, cols: number, log: boolean): void {
  if (rows * cols === 0) return;
  const tpr = threadsPerRow(cols);
  // log: dx = dy − softmax · Σdy; plain: dx = y (dy − Σ dy·y).
  const term = log ? 'G[base + j]' : 'G[base + j] * Y[base + j]';
  const value = log ? 'g - select(exp(yj), 0.0, yj == -f32Inf()) * dot' : 'yj * (g - dot)';
  dispatch(rt, `softmaxBackward${log ? 'Log' : ''}`, 'rows: u32, cols: u32',
    [['Y', y, 'read'], ['G', dy, 'read'], ['DX', dx, 'read_write']], (decls) => `${decls}
${rowFrame(tpr, 'f32', SUM, `
  var acc = 0.0;
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { acc += ${term}; } }
  let dot = rowReduce(acc, lane, seg, 0u);
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { let yj = Y[base + j]; let g = G[base + j]; DX[base + j] = ${value}; } }`)}`,
  new ParamWriter().u32(rows, cols), rowGroups(rt, rows, tpr));
}

export function rmsNorm(rt: GpuRuntime, x: GpuStorage, w: GpuStorage | null, out: GpuStorage, rstd: GpuStorage, rows: number, cols: number, eps: number): void {
  if (rows === 0) return;
  const tpr = threadsPerRow(cols);
  dispatch(rt, 'rmsNorm', 'rows: u32, cols: u32, eps: f32',
    [['X', x, 'read'], ['W', w, 'read'], ['Out', out, 'read_write'], ['Rstd', rstd, 'read_write']], (decls) => `${decls}
${rowFrame(tpr, 'f32', SUM, `
  var acc = 0.0;
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { let v = X[base + j]; acc += v * v; } }
  let rs = 1.0 / sqrt(rowReduce(acc, lane, seg, 0u) / f32(p.cols) + p.eps);
  if (!valid) { return; }
  if (lane == 0u) { Rstd[row] = rs; }
  for (var j = lane; j < p.cols; j += TPR) { Out[base + j] = X[base + j] * rs${w ? ' * W[j]' : ''}; }`)}`,
  new ParamWriter().u32(rows, cols).f32(eps), rowGroups(rt, rows, tpr));
}

export function rmsNormBackward(rt: GpuRuntime, x: GpuStorage, w: GpuStorage | null, rstd: GpuStorage, dy: GpuStorage, dx: GpuStorage,
  dw: GpuStorage | null, rows: number, cols: number): void {
  if (rows * cols === 0) { if (dw && cols > 0) fillZero(rt, dw, cols); return; }
  const tpr = threadsPerRow(cols);
  // dx = rs·g·w − x·rs³·mean(g·w·x)
  const gw = w ? 'G[base + j] * W[j]' : 'G[base + j]';
  dispatch(rt, 'rmsNormBackward', 'rows: u32, cols: u32',
    [['X', x, 'read'], ['W', w, 'read'], ['Rstd', rstd, 'read'], ['G', dy, 'read'], ['DX', dx, 'read_write']], (decls) => `${decls}
${rowFrame(tpr, 'f32', SUM, `
  var acc = 0.0;
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { acc += ${gw} * X[base + j]; } }
  let dot = rowReduce(acc, lane, seg, 0u);
  if (!valid) { return; }
  let rs = Rstd[row];
  let c = rs * rs * rs * dot / f32(p.cols);
  for (var j = lane; j < p.cols; j += TPR) { DX[base + j] = rs * ${gw} - X[base + j] * c; }`)}`,
  new ParamWriter().u32(rows, cols), rowGroups(rt, rows, tpr));
  if (dw) columnSums(rt, 'rmsNormDw', [['X', x, 'read'], ['Rstd', rstd, 'read'], ['G', dy, 'read']], ['G[i] * X[i] * Rstd[r]'], [dw], rows, cols);
}

export function layerNorm(rt: GpuRuntime, x: GpuStorage, w: GpuStorage | null, b: GpuStorage | null, out: GpuStorage, mean: GpuStorage, rstd: GpuStorage,
  rows: number, cols: number, eps: number): void {
  if (rows === 0) return;
  const tpr = threadsPerRow(cols);
  dispatch(rt, 'layerNorm', 'rows: u32, cols: u32, eps: f32',
    [['X', x, 'read'], ['W', w, 'read'], ['Bias', b, 'read'], ['Out', out, 'read_write'], ['Mean', mean, 'read_write'], ['Rstd', rstd, 'read_write']],
    (decls) => `${decls}
${rowFrame(tpr, 'f32', SUM, `
  var acc = 0.0;
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { acc += X[base + j]; } }
  let mu = rowReduce(acc, lane, seg, 0u) / f32(p.cols);
  // The variance as the mean of squared deviations (a second pass over the row, from cache), not
  // E[x²] − μ², which cancels.
  acc = 0.0;
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { let d = X[base + j] - mu; acc += d * d; } }
  let rs = 1.0 / sqrt(rowReduce(acc, lane, seg, 1u) / f32(p.cols) + p.eps);
  if (!valid) { return; }
  if (lane == 0u) { Mean[row] = mu; Rstd[row] = rs; }
  for (var j = lane; j < p.cols; j += TPR) { Out[base + j] = (X[base + j] - mu) * rs${w ? ' * W[j]' : ''}${b ? ' + Bias[j]' : ''}; }`)}`,
    new ParamWriter().u32(rows, cols).f32(eps), rowGroups(rt, rows, tpr));
}

export function layerNormBackward(rt: GpuRuntime, x: GpuStorage, w: GpuStorage | null, mean: GpuStorage, rstd: GpuStorage, dy: GpuStorage, dx: GpuStorage,
  dw: GpuStorage | null, db: GpuStorage | null, rows: number, cols: number): void {
  if (rows * cols === 0) {
    for (const s of [dw, db]) if (s && cols > 0) fillZero(rt, s, cols);
    return;
  }
  const tpr = threadsPerRow(cols);
  // dx = rs·(g·w − mean(g·w) − x̂·mean(g·w·x̂)), x̂ = (x − μ)·rs
  const gw = w ? 'G[base + j] * W[j]' : 'G[base + j]';
  dispatch(rt, 'layerNormBackward', 'rows: u32, cols: u32',
    [['X', x, 'read'], ['W', w, 'read'], ['Mean', mean, 'read'], ['Rstd', rstd, 'read'], ['G', dy, 'read'], ['DX', dx, 'read_write']],
    (decls) => `${decls}
${rowFrame(tpr, 'vec2<f32>', SUM, `
  var mu = 0.0;
  var rs = 0.0;
  if (valid) { mu = Mean[row]; rs = Rstd[row]; }
  var acc = vec2<f32>(0.0, 0.0);
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { let gw = ${gw}; acc += vec2<f32>(gw, gw * (X[base + j] - mu) * rs); } }
  let s = rowReduce(acc, lane, seg, 0u) / f32(p.cols);
  if (!valid) { return; }
  for (var j = lane; j < p.cols; j += TPR) { DX[base + j] = rs * (${gw} - s.x - (X[base + j] - mu) * rs * s.y); }`)}`,
    new ParamWriter().u32(rows, cols), rowGroups(rt, rows, tpr));
  const terms: string[] = [], outs: GpuStorage[] = [];
  if (dw) { terms.push('G[i] * (X[i] - Mean[r]) * Rstd[r]'); outs.push(dw); }
  if (db) { terms.push('G[i]'); outs.push(db); }
  if (outs.length === 0) return;
  const list: Binding[] = [['G', dy, 'read']];
  if (dw) list.push(['X', x, 'read'], ['Mean', mean, 'read'], ['Rstd', rstd, 'read']);
  columnSums(rt, 'layerNormDwDb', list, terms, outs, rows, cols);
}

export function crossEntropy(rt: GpuRuntime, logits: GpuStorage, targets: GpuStorage, losses: GpuStorage, lse: GpuStorage,
  rows: number, cols: number, ignoreIndex: number): void {
  if (rows === 0) return;
  const tpr = threadsPerRow(cols);
  dispatch(rt, 'crossEntropy', 'rows: u32, cols: u32, ignore: i32',
    [['X', logits, 'read'], ['Target', targets, 'read', 'i32'], ['Loss', losses, 'read_write'], ['Lse', lse, 'read_write']], (decls) => `${decls}${STATS}
${rowFrame(tpr, 'vec2<f32>', STATS_COMBINE, `${ROW_STATS}
  if (!valid || lane != 0u) { return; }
  // A row with no finite maximum has no log-sum-exp (the reference's sum is NaN there).
  let l = select(st.x + log(st.y), f32Nan(), st.x == -f32Inf());
  Lse[row] = l;
  let t = Target[row];
  if (t == p.ignore) { Loss[row] = 0.0; } else { Loss[row] = l - X[base + u32(t)]; }`)}`,
  new ParamWriter().u32(rows, cols).i32(ignoreIndex), rowGroups(rt, rows, tpr));
}

export function crossEntropyBackward(rt: GpuRuntime, logits: GpuStorage, targets: GpuStorage, lse: GpuStorage, dloss: GpuStorage, dlogits: GpuStorage,
  rows: number, cols: number, ignoreIndex: number): void {
  if (rows * cols === 0) return;
  // A row kernel without a reduction: each thread reads its row's target, loss gradient and lse once.
  const tpr = threadsPerRow(cols);
  dispatch(rt, 'crossEntropyBackward', 'rows: u32, cols: u32, ignore: i32',
    [['X', logits, 'read'], ['Target', targets, 'read', 'i32'], ['Lse', lse, 'read'], ['DLoss', dloss, 'read'], ['DX', dlogits, 'read_write']], (decls) => `${decls}
${rowFrame(tpr, 'f32', SUM, `
  if (!valid) { return; }
  let t = Target[row];
  if (t == p.ignore) {
    for (var j = lane; j < p.cols; j += TPR) { DX[base + j] = 0.0; }
    return;
  }
  let g = DLoss[row];
  let l = Lse[row];
  for (var j = lane; j < p.cols; j += TPR) { DX[base + j] = g * exp(X[base + j] - l) - select(0.0, g, u32(t) == j); }`)}`,
  new ParamWriter().u32(rows, cols).i32(ignoreIndex), rowGroups(rt, rows, tpr));
}

// ---- sums over rows (dw, db, per-head gradients), in a fixed order ----

/** Columns and row lanes of a columnPass workgroup: 32 adjacent columns (a coalesced 128-byte row piece) × 8 lanes down the rows. */
const COLS_WG = 32, LANES = 8;

/**
 * Partial[k][c][j] = Σ_{r in chunk c} term_k(r, i = r·cols + j), chunks of `per` rows: a workgroup
 * per (32 columns, chunk), its 8 lanes striding down the chunk's rows, then a tree over the lanes.
 * Every thread waits on few loads in turn (at most per / 8), so neither a long column nor many
 * chunks leaves the GPU waiting on one load after another.
 */
function columnPass(rt: GpuRuntime, name: string, inputs: readonly Binding[], terms: readonly string[], partial: GpuStorage,
  rows: number, cols: number, per: number, first = 0): void {
  const chunks = Math.ceil(rows / per);
  const K = terms.length;
  dispatch(rt, name, 'rows: u32, cols: u32, per: u32, chunks: u32, first: u32', [...inputs, ['Partial', partial, 'read_write']], (decls) => `${decls}
var<workgroup> red: array<array<array<f32, ${COLS_WG}>, ${LANES}>, ${K}>;
@compute @workgroup_size(${COLS_WG}, ${LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x * ${COLS_WG}u + lid.x;
  let c = wid.y;
  var acc: array<f32, ${K}>;
  if (j < p.cols) {
    let end = min(p.rows, (c + 1u) * p.per);
    for (var r = c * p.per + lid.y; r < end; r += ${LANES}u) {
      let i = r * p.cols + j;
      ${terms.map((t, k) => `acc[${k}] += ${t};`).join(' ')}
    }
  }
  for (var k = 0u; k < ${K}u; k++) { red[k][lid.y][lid.x] = acc[k]; }
  workgroupBarrier();
  for (var s = ${LANES / 2}u; s > 0u; s >>= 1u) {
    if (lid.y < s) { for (var k = 0u; k < ${K}u; k++) { red[k][lid.y][lid.x] += red[k][lid.y + s][lid.x]; } }
    workgroupBarrier();
  }
  if (lid.y == 0u && j < p.cols) { for (var k = 0u; k < ${K}u; k++) { Partial[(k * p.chunks + c) * p.cols + j] = red[k][0][lid.x]; } }
}`, new ParamWriter().u32(rows, cols, per, chunks, first), [Math.ceil(cols / COLS_WG), chunks]);
}

/**
 * out_k[j] = Σ_r term_k(r, i = r·cols + j) for each term: columnPass into partial sums per chunk of
 * rows, then columnPass again over the chunks (one pass when there is one chunk and one term).
 */
function columnSums(rt: GpuRuntime, name: string, inputs: readonly Binding[], terms: readonly string[], outs: readonly GpuStorage[], rows: number, cols: number): void {
  // Chunks of at least 64 rows, at most 128 chunks: a few thousand workgroups in the first pass
  // for the LM's B·T rows, and a short second pass.
  const per = Math.max(64, Math.ceil(rows / 128)), chunks = Math.ceil(rows / per);
  if (chunks === 1 && outs.length === 1) { columnPass(rt, name, inputs, terms, outs[0], rows, cols, rows); return; }
  const partial = rt.alloc('float32', terms.length * chunks * cols);
  columnPass(rt, name, inputs, terms, partial, rows, cols, per);
  outs.forEach((out, k) => columnPass(rt, 'columnSumsFinish', [['Chunks', partial, 'read']], ['Chunks[p.first + i]'], out, chunks, cols, chunks, k * chunks * cols));
  rt.release(partial);
}

function fillZero(rt: GpuRuntime, out: GpuStorage, length: number): void {
  dispatch(rt, 'nnZero', 'length: u32', [['Out', out, 'read_write']], (decls) => `${decls}
${elementwiseMain('  if (i < p.length) { Out[i] = 0.0; }')}`, new ParamWriter().u32(length), launch(rt, length));
}

// ---- rotary and head layouts ----

/** Where a (B, T, H, D) block lives: token rows of `width` columns from `col`, or heads first (B, H, T, D). */
interface Layout { tokens: boolean; width: number; col: number }
const headsFirst: Layout = { tokens: false, width: 0, col: 0 };

/**
 * dst ← src for one block of H heads of D features, each in its layout; `rotate` turns the pairs
 * (i, i + D/2) of row t by the tables at offset + t (sign −1: the inverse); src null writes zeros.
 * A thread per destination element (per pair when rotating), in destination order.
 */
function moveHeads(rt: GpuRuntime, src: GpuStorage | null, srcAt: Layout, dst: GpuStorage, dstAt: Layout, B: number, T: number, H: number, D: number,
  rotate: { cos: GpuStorage; sin: GpuStorage; offset: number; sign: number } | null): void {
  const units = rotate ? D / 2 : D;
  const count = B * T * H * units;
  if (count === 0) return;
  const kind = !src ? 'zero' : rotate ? 'rotate' : 'copy';
  const move = {
    zero: 'Dst[o + u] = 0.0;',
    copy: 'Dst[o + u] = Src[at(p.srcTokens, p.srcWidth, p.srcCol, b, t, h) + u];',
    rotate: `let s0 = at(p.srcTokens, p.srcWidth, p.srcCol, b, t, h);
  let half = p.D / 2u;
  let a = Src[s0 + u];
  let z = Src[s0 + u + half];
  let tab = (p.offset + t) * half + u;
  let c = Cos[tab];
  let sn = p.sign * Sin[tab];
  Dst[o + u] = a * c - z * sn;
  Dst[o + u + half] = z * c + a * sn;`,
  }[kind];
  const list: Binding[] = [['Src', src, 'read'], ['Dst', dst, 'read_write'], ['Cos', rotate?.cos ?? null, 'read'], ['Sin', rotate?.sin ?? null, 'read']];
  dispatch(rt, `heads_${kind}`, 'count: u32, B: u32, T: u32, H: u32, D: u32, units: u32, offset: u32, sign: f32, '
    + 'srcTokens: u32, srcWidth: u32, srcCol: u32, dstTokens: u32, dstWidth: u32, dstCol: u32', list, (decls) => `${decls}
fn at(tokens: u32, width: u32, col: u32, b: u32, t: u32, h: u32) -> u32 {
  if (tokens != 0u) { return (b * p.T + t) * width + col + h * p.D; }
  return ((b * p.H + h) * p.T + t) * p.D;
}
${elementwiseMain(`  if (i >= p.count) { return; }
  let u = i % p.units;
  var r = i / p.units;
  var b = 0u; var t = 0u; var h = 0u;
  if (p.dstTokens != 0u) { h = r % p.H; r /= p.H; t = r % p.T; b = r / p.T; }
  else { t = r % p.T; r /= p.T; h = r % p.H; b = r / p.H; }
  let o = at(p.dstTokens, p.dstWidth, p.dstCol, b, t, h);
  ${move}`)}`,
  new ParamWriter().u32(count, B, T, H, D, units, rotate?.offset ?? 0).f32(rotate?.sign ?? 1)
    .u32(srcAt.tokens ? 1 : 0, srcAt.width, srcAt.col, dstAt.tokens ? 1 : 0, dstAt.width, dstAt.col), launch(rt, count));
}

export function rotary(rt: GpuRuntime, x: GpuStorage, cos: GpuStorage, sin: GpuStorage, out: GpuStorage, B: number, T: number, H: number, D: number,
  offset: number, inverse: boolean, xHeadsFirst: boolean, outHeadsFirst: boolean): void {
  const tokens: Layout = { tokens: true, width: H * D, col: 0 };
  moveHeads(rt, x, xHeadsFirst ? headsFirst : tokens, out, outHeadsFirst ? headsFirst : tokens, B, T, H, D,
    { cos, sin, offset, sign: inverse ? -1 : 1 });
}

/** Each part's column block of the (B·T, C) token rows, in order. */
function partLayouts(parts: readonly HeadsBlock[]): Layout[] {
  const width = parts.reduce((s, q) => s + q.heads * q.dim, 0);
  let col = 0;
  return parts.map((q) => { const at = { tokens: true, width, col }; col += q.heads * q.dim; return at; });
}

export function splitHeads(rt: GpuRuntime, y: GpuStorage, outs: readonly GpuStorage[], B: number, T: number, parts: readonly HeadsBlock[],
  cos: GpuStorage | null, sin: GpuStorage | null, offset: number): void {
  partLayouts(parts).forEach((at, k) => {
    const q = parts[k];
    moveHeads(rt, y, at, outs[k], headsFirst, B, T, q.heads, q.dim, q.rotate && cos && sin ? { cos, sin, offset, sign: 1 } : null);
  });
}

export function mergeHeads(rt: GpuRuntime, xs: readonly (GpuStorage | null)[], out: GpuStorage, B: number, T: number, parts: readonly HeadsBlock[],
  cos: GpuStorage | null, sin: GpuStorage | null, offset: number): void {
  partLayouts(parts).forEach((at, k) => {
    const q = parts[k], x = xs[k];
    moveHeads(rt, x, headsFirst, out, at, B, T, q.heads, q.dim, x && q.rotate && cos && sin ? { cos, sin, offset, sign: -1 } : null);
  });
}

// ---- elementwise ----

export function swiglu(rt: GpuRuntime, a: GpuStorage, b: GpuStorage, out: GpuStorage, length: number): void {
  if (length <= 0) return;
  dispatch(rt, 'swiglu', 'length: u32', [['A', a, 'read'], ['Bv', b, 'read'], ['Out', out, 'read_write']], (decls) => `${decls}
${elementwiseMain(`  if (i >= p.length) { return; }
  let x = A[i];
  Out[i] = x * safeSigmoid(x) * Bv[i];`)}`, new ParamWriter().u32(length), launch(rt, length));
}

export function swigluBackward(rt: GpuRuntime, a: GpuStorage, b: GpuStorage, dy: GpuStorage, da: GpuStorage, db: GpuStorage, length: number): void {
  if (length <= 0) return;
  dispatch(rt, 'swigluBackward', 'length: u32',
    [['A', a, 'read'], ['Bv', b, 'read'], ['G', dy, 'read'], ['DA', da, 'read_write'], ['DB', db, 'read_write']], (decls) => `${decls}
${elementwiseMain(`  if (i >= p.length) { return; }
  let x = A[i];
  let s = safeSigmoid(x);
  let g = G[i];
  DB[i] = g * (x * s);
  DA[i] = g * Bv[i] * (s * (1.0 + x * (1.0 - s)));`)}`, new ParamWriter().u32(length), launch(rt, length));
}

export function adamw(rt: GpuRuntime, param: GpuStorage, grad: GpuStorage, m: GpuStorage, v: GpuStorage, length: number, q: AdamWParams): void {
  if (length <= 0) return;
  dispatch(rt, 'adamw', 'length: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, decay: f32, bc1: f32, bc2: f32',
    [['Param', param, 'read_write'], ['Grad', grad, 'read'], ['M', m, 'read_write'], ['V', v, 'read_write']], (decls) => `${decls}
${elementwiseMain(`  if (i >= p.length) { return; }
  let g = Grad[i];
  let mi = p.beta1 * M[i] + (1.0 - p.beta1) * g;
  let vi = p.beta2 * V[i] + (1.0 - p.beta2) * g * g;
  M[i] = mi;
  V[i] = vi;
  Param[i] = Param[i] * p.decay - p.lr * (mi / p.bc1) / (sqrt(vi / p.bc2) + p.eps);`)}`,
  new ParamWriter().u32(length).f32(q.lr, q.beta1, q.beta2, q.eps, 1 - q.lr * q.weightDecay, q.bc1, q.bc2), launch(rt, length));
}

// ---- Cubit's per-row stages (B·H·T rows of D; row i belongs to head ⌊i / T⌋ mod H) ----

/** 1 / max(‖r‖, eps) from ‖r‖², and whether the clamp holds (the norm wins ties; NaN stays NaN). */
const INV_NORM = /* wgsl */ `
fn clamped(ss: f32) -> bool { return !(ss >= p.eps * p.eps) && !isNan32(ss); }
fn invNorm(ss: f32) -> f32 { return 1.0 / sqrt(select(ss, p.eps * p.eps, clamped(ss))); }`;

export function normalizeReference(rt: GpuRuntime, r: GpuStorage, alpha: GpuStorage, out: GpuStorage, B: number, H: number, T: number, D: number, eps: number): void {
  const rows = B * H * T;
  if (rows * D === 0) return;
  const tpr = threadsPerRow(D);
  dispatch(rt, 'normalizeReference', 'rows: u32, cols: u32, T: u32, H: u32, eps: f32', [['R', r, 'read'], ['Alpha', alpha, 'read'], ['Out', out, 'read_write']],
    (decls) => `${decls}${INV_NORM}
${rowFrame(tpr, 'f32', SUM, `
  var acc = 0.0;
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { let v = R[base + j]; acc += v * v; } }
  let s = invNorm(rowReduce(acc, lane, seg, 0u));
  if (!valid) { return; }
  let scale = Alpha[(row / p.T) % p.H] * s;
  for (var j = lane; j < p.cols; j += TPR) { Out[base + j] = scale * R[base + j]; }`)}`,
    new ParamWriter().u32(rows, D, T, H).f32(eps), rowGroups(rt, rows, tpr));
}

export function normalizeReferenceBackward(rt: GpuRuntime, r: GpuStorage, alpha: GpuStorage, dy: GpuStorage, dr: GpuStorage | null, dAlpha: GpuStorage | null,
  B: number, H: number, T: number, D: number, eps: number): void {
  const rows = B * H * T;
  if (dAlpha && (rows === 0 || D === 0)) fillZero(rt, dAlpha, H);
  if (rows * D === 0 || (!dr && !dAlpha)) return;
  const tpr = threadsPerRow(D);
  // Per row s·(g·r) for dα, summed per head afterwards in a fixed order.
  const rowDa = dAlpha ? rt.alloc('float32', rows) : null;
  dispatch(rt, 'normalizeReferenceBackward', 'rows: u32, cols: u32, T: u32, H: u32, eps: f32',
    [['R', r, 'read'], ['Alpha', dr ? alpha : null, 'read'], ['G', dy, 'read'], ['DR', dr, 'read_write'], ['RowDa', rowDa, 'read_write']],
    (decls) => `${decls}${INV_NORM}
${rowFrame(tpr, 'vec2<f32>', SUM, `
  var acc = vec2<f32>(0.0, 0.0);
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { let v = R[base + j]; acc += vec2<f32>(v * v, G[base + j] * v); } }
  let t = rowReduce(acc, lane, seg, 0u);
  if (!valid) { return; }
  let s = invNorm(t.x);
  let gr = t.y;
  ${rowDa ? 'if (lane == 0u) { RowDa[row] = s * gr; }' : ''}
  ${dr ? `let a = Alpha[(row / p.T) % p.H];
  let c = select(a * s * s * s * gr, 0.0, clamped(t.x));
  for (var j = lane; j < p.cols; j += TPR) { DR[base + j] = a * s * G[base + j] - c * R[base + j]; }` : ''}`)}`,
    new ParamWriter().u32(rows, D, T, H).f32(eps), rowGroups(rt, rows, tpr));
  if (rowDa && dAlpha) { headSums(rt, rowDa, [dAlpha], B, H, T); rt.release(rowDa); }
}

export function lrrValues(rt: GpuRuntime, v: GpuStorage, z: GpuStorage, lower: GpuStorage, range: GpuStorage, out: GpuStorage, B: number, H: number, T: number, D: number): void {
  const rows = B * H * T;
  if (rows * D === 0) return;
  // A row kernel without a reduction: the row's scale s is formed once per thread, not per value.
  const tpr = threadsPerRow(D);
  dispatch(rt, 'lrrValues', 'rows: u32, cols: u32, T: u32, H: u32',
    [['V', v, 'read'], ['Z', z, 'read'], ['Lower', lower, 'read'], ['Range', range, 'read'], ['Out', out, 'read_write']], (decls) => `${decls}
${rowFrame(tpr, 'f32', SUM, `
  if (!valid) { return; }
  let h = (row / p.T) % p.H;
  let s = Lower[h] + Range[h] * safeSigmoid(Z[row]);
  for (var j = lane; j < p.cols; j += TPR) { Out[base + j] = s * V[base + j]; }`)}`,
    new ParamWriter().u32(rows, D, T, H), rowGroups(rt, rows, tpr));
}

export function lrrValuesBackward(rt: GpuRuntime, v: GpuStorage, z: GpuStorage, lower: GpuStorage, range: GpuStorage, dy: GpuStorage,
  dv: GpuStorage | null, dz: GpuStorage | null, dLower: GpuStorage | null, dRange: GpuStorage | null, B: number, H: number, T: number, D: number): void {
  const rows = B * H * T;
  const heads = dLower || dRange;
  if (rows === 0 || D === 0) {
    for (const s of [dLower, dRange]) if (s) fillZero(rt, s, H);
    if (dz && rows > 0) fillZero(rt, dz, rows);
    return;
  }
  if (!dv && !dz && !heads) return;
  const tpr = threadsPerRow(D);
  // Per row g·v and σ·(g·v) for dLower and dRange, summed per head afterwards in a fixed order.
  const rowSums = heads ? rt.alloc('float32', 2 * rows) : null;
  dispatch(rt, 'lrrValuesBackward', 'rows: u32, cols: u32, T: u32, H: u32',
    [['V', v, 'read'], ['Z', z, 'read'], ['Lower', dv ? lower : null, 'read'], ['Range', dv || dz ? range : null, 'read'], ['G', dy, 'read'],
      ['DV', dv, 'read_write'], ['DZ', dz, 'read_write'], ['RowSums', rowSums, 'read_write']], (decls) => `${decls}
${rowFrame(tpr, 'f32', SUM, `
  var acc = 0.0;
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { acc += G[base + j] * V[base + j]; } }
  let gv = rowReduce(acc, lane, seg, 0u);
  if (!valid) { return; }
  let h = (row / p.T) % p.H;
  let sg = safeSigmoid(Z[row]);
  if (lane == 0u) {
    ${dz ? 'DZ[row] = Range[h] * sg * (1.0 - sg) * gv;' : ''}
    ${rowSums ? 'RowSums[row] = gv; RowSums[p.rows + row] = sg * gv;' : ''}
  }
  ${dv ? `let s = Lower[h] + Range[h] * sg;
  for (var j = lane; j < p.cols; j += TPR) { DV[base + j] = s * G[base + j]; }` : ''}`)}`,
    new ParamWriter().u32(rows, D, T, H), rowGroups(rt, rows, tpr));
  if (rowSums) { headSums(rt, rowSums, [dLower, dRange], B, H, T); rt.release(rowSums); }
}

/**
 * outs[k][h] = Σ_{b, t} rowValues[k·rows + (b·H + h)·T + t] (rows = B·H·T; a null out is skipped):
 * each (b, h) block of T values summed by a row kernel, then each head's B block sums in order.
 */
function headSums(rt: GpuRuntime, rowValues: GpuStorage, outs: readonly (GpuStorage | null)[], B: number, H: number, T: number): void {
  const rows = B * H, tpr = threadsPerRow(T);
  const blocks = rt.alloc('float32', rows);
  outs.forEach((out, k) => {
    if (!out) return;
    dispatch(rt, 'blockSums', 'rows: u32, cols: u32, first: u32', [['X', rowValues, 'read'], ['Out', blocks, 'read_write']], (decls) => `${decls}
${rowFrame(tpr, 'f32', SUM, `
  var acc = 0.0;
  if (valid) { for (var j = lane; j < p.cols; j += TPR) { acc += X[p.first + base + j]; } }
  let total = rowReduce(acc, lane, seg, 0u);
  if (valid && lane == 0u) { Out[row] = total; }`)}`, new ParamWriter().u32(rows, T, k * rows * T), rowGroups(rt, rows, tpr));
    columnPass(rt, 'headSums', [['Blocks', blocks, 'read']], ['Blocks[i]'], out, B, H, B);
  });
  rt.release(blocks);
}
