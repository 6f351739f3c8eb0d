// The streaming Cubit / KRR solve of CUBIT.md §3 in WGSL (krrSolve, cubitSolve and their
// backwards): O(T·D) memory per head, no T×T buffer. Reference twins: the reference backend's
// dense float64 oracles (backends/reference/mixers.ts); test/conformance.ts compares them.
//
// GPU mapping. The solve is sequential across row blocks of BK rows and parallel across (b, h)
// and within a block, so the work is split in two kinds of kernel:
// - fully parallel passes over (row or key block, b·h) workgroups, flash-attention style, each
//   looping over its tiles of the other axis: the rows' log-sum-exp (forward, first), and in the
//   backward ∂r (over rows) and ∂r̂ (over keys), whose tiles are finished as soon as they are
//   formed (dS_ij = P_ij ((Z_i·X_i − Z_i·X_j) + Z_i·h_i), SPEC §3.2, with the row scalars
//   Z_i·X_i and Z_i·h_i from the adjoint solve). Two kernels instead of one with atomics: every
//   sum has a fixed order (deterministic, no float atomics).
// - the sequential sweep, two dispatches per block: a split-K "partial" kernel over (chunk of
//   earlier keys (forward) or later rows (adjoint), b·h) that sums that chunk's contribution
//   Σ P_ij X_j (or Σ P_ijᵀ Z_i) into its own slot, and a "close" kernel per (b, h) that adds the
//   slots in order, forms the diagonal tile and does the BK×BK triangular substitution, a thread
//   per column of Y (the columns are independent given W). Because the log-sum-exp is known
//   before the sweep, P = exp(S − lse) is final in every tile: the chunks' sums simply add (no
//   running max to reconcile), and the chunks give the GPU (chunks × B·H) workgroups per block
//   instead of B·H (64 for B = H = 8, too few for a large GPU). T = 32768 with BK = 64 is 512
//   blocks: 1024 dispatches per sweep, each covering every (b, h).
// Saved for the backward (backend-private): the rows' lse, h = W X − X (SPEC §3.1) and, for
// cubitSolve, r̂. Tile sizes come from the device's workgroup memory (48 KiB on NVIDIA, 32 KiB on
// the software adapters). Loop bounds over D and the tiles come from the uniform, not constants:
// fully unrolled loops made software adapters (LLVM) compile a kernel for minutes.
import type { LrrGradStorages, LrrStorages, MixerDims, SavedState } from '../../../core/backend.ts';
import { grid1d, ParamWriter, type Access, type GpuRuntime, type GpuStorage } from '../runtime.ts';
import { elementwiseMain, MATH, WG } from '../wgsl.ts';

/** Threads per workgroup of the tiled kernels (at least the largest block of rows). */
const TG = 256;

/** A logit below every real one: masked entries (WGSL may assume no infinities). */
const NEG = '-3.0e38';

/** Rows per block of the sequential sweep. */
const SOLVE_ROWS = [64, 32, 16, 8];
/** Key (or row) tiles of the inner loops. */
const TILES = [32, 16, 8, 4];
/** The sweep's chunks: at most about this many per block (their slots are O(T·D) in all). */
const MAX_CHUNKS = 64;

interface Plan {
  B: number; H: number; T: number; D: number; BH: number; window: number;
  /** sweep block rows; the inner tile; the parallel kernels' rows and tile */
  bk: number; kt: number; pr: number; pt: number;
  /** keys (rows) per chunk, and chunk slots per (b, h) */
  chunk: number; gcap: number;
}

/** The largest tiles whose workgroup arrays (in floats) fit the device. */
function plan(rt: GpuRuntime, d: MixerDims): Plan {
  const { B, H, T, D, window } = d;
  const budget = Math.floor(rt.limits.maxComputeWorkgroupStorageSize / 4) - 128;
  // fwdPartial / adjPartial: a block of BK rows of D, two tiles of D, the BK×KT weights.
  const sweep = (bk: number, kt: number): number => (bk + 2 * kt) * (D + 1) + bk * kt + 2 * kt;
  // dr / drh: two row blocks of D, two tiles of D, the weights, per-row scalars.
  const par = (rows: number, kt: number): number => 2 * (rows + kt) * (D + 1) + rows * kt + 3 * Math.max(rows, kt);
  let bk = 0, kt = 0, pr = 0, pt = 0;
  for (const b of SOLVE_ROWS) {
    const k = TILES.find((t) => sweep(b, t) <= budget && b * b + b <= budget);
    if (k) { bk = b; kt = k; break; }
  }
  for (const b of SOLVE_ROWS) {
    const k = TILES.find((t) => t <= b && par(b, t) <= budget);
    if (k) { pr = b; pt = k; break; }
  }
  if (!bk || !pr) throw new Error(`webgpu cubit solve: head dimension D = ${D} needs more workgroup memory than this device's ${rt.limits.maxComputeWorkgroupStorageSize} bytes`);
  const chunk = kt * Math.max(4, Math.ceil(T / (kt * MAX_CHUNKS)));
  return { B, H, T, D, BH: B * H, window: window > 0 ? window : 0, bk, kt, pr, pt, chunk, gcap: Math.max(1, Math.ceil(T / chunk)) };
}

/** The uniform block every kernel here reads (fields in this order). */
const PARAMS = /* wgsl */ `
struct P { n: u32, T: u32, H: u32, window: u32, blk: u32, groups: u32, chunk: u32, gcap: u32, eps: f32, dim: u32, kt: u32, pt: u32 }`;

function params(pl: Plan, fields: { n?: number; blk?: number; groups?: number; eps?: number } = {}): ParamWriter {
  return new ParamWriter().u32(fields.n ?? 0, pl.T, pl.H, pl.window, fields.blk ?? 0, fields.groups ?? 0, pl.chunk, pl.gcap).f32(fields.eps ?? 0)
    .u32(pl.D, pl.kt, pl.pt);
}

type Bind = readonly [name: string, access: Access, elem?: 'f32' | 'i32'];

/** Storage declarations in binding order, then the uniform; docIds last when given. */
function bindings(binds: readonly Bind[]): string {
  return binds.map(([n, a, t = 'f32'], i) => `@group(0) @binding(${i}) var<storage, ${a}> ${n}: array<${t}>;`).join('\n')
    + `\n@group(0) @binding(${binds.length}) var<uniform> p: P;`;
}

/**
 * The mask (SPEC §2.3): visible(b, i, j); the first key a row sees; one past the last row that
 * sees a key.
 */
function maskFns(docs: boolean): string {
  return /* wgsl */ `
fn visible(b: u32, i: u32, j: u32) -> bool {
  if (j > i || (p.window > 0u && j + p.window <= i)) { return false; }
  ${docs ? 'return docs[b * p.T + i] == docs[b * p.T + j];' : 'return true;'}
}
fn firstKey(i: u32) -> u32 { return select(0u, i + 1u - p.window, p.window > 0u && i + 1u > p.window); }
fn rowEnd(j: u32) -> u32 { return select(p.T, min(p.T, j + p.window), p.window > 0u); }`;
}

const DOCS: Bind = ['docs', 'read', 'i32'];
const withDocs = (binds: Bind[], d: MixerDims): Bind[] => (d.docIds ? [...binds, DOCS] : binds);
const docStorage = (d: MixerDims): GpuStorage[] => (d.docIds ? [d.docIds as GpuStorage] : []);

/** A workgroup's loop `for e in [0, n)` spread over its threads. */
const spread = (n: number | string, body: string): string => `for (var e = lid; e < ${n}u; e += ${TG}u) {\n${body}\n}`;

/**
 * Loads rows [start, start + rows) of the (B·H·T, D) tensor `src` into `dst`, zeros past `end`.
 * Workgroup rows are D + 1 apart: threads that read the same column of different rows (a tile's
 * dot products) then hit different memory banks instead of one.
 */
function loadRows(dst: string, src: string, rows: number, D: number, start: string, end: string): string {
  return spread(rows * D, `  let q = ${start} + e / ${D}u;
  ${dst}[(e / ${D}u) * ${D + 1}u + e % ${D}u] = select(0.0, ${src}[(base + q) * ${D}u + e % ${D}u], q < ${end});`);
}

/**
 * A rows × cols tile of dot products over D between rows of workgroup arrays (rows D + 1 apart):
 * for each pair [rowArr, colArr], d<p>[m] = rowArr[ri] · colArr[kj]. A thread takes one column kj
 * and every (TG / cols)-th row, so the column's value is loaded once per c for all its rows;
 * then `finish` runs per entry with ri, kj, mt and the d arrays in scope.
 */
function tileDotsPlain(rows: number, cols: number, D: number, pairs: readonly (readonly [string, string])[], finish: string): string {
  const per = Math.ceil((rows * cols) / TG), step = TG / cols;
  // Zeroed explicitly: lavapipe kept the values of a declaration inside a loop from the last pass.
  const decl = pairs.map((_, q) => `var d${q}: array<f32, ${per}>;\n      for (var mt = 0u; mt < ${per}u; mt++) { d${q}[mt] = 0.0; }`).join('\n      ');
  const loads = pairs.map(([, col], q) => `let v${q} = ${col}[kj * ${D + 1}u + c];`).join('\n        ');
  const fmas = pairs.map(([row], q) => `d${q}[mt] += ${row}[ri * ${D + 1}u + c] * v${q};`).join('\n          ');
  return /* wgsl */ `{
      let kj = lid % ${cols}u;
      ${decl}
      for (var c = 0u; c < p.dim; c++) {
        ${loads}
        for (var mt = 0u; mt < ${per}u; mt++) {
          let ri = min(lid / ${cols}u + mt * ${step}u, ${rows - 1}u);
          ${fmas}
        }
      }
      for (var mt = 0u; mt < ${per}u; mt++) {
        let ri = lid / ${cols}u + mt * ${step}u;
        if (ri < ${rows}u) {
          ${finish}
        }
      }
    }`;
}

/**
 * acc[n] += Σ_k W(row, k) · v[k·(D + 1) + c] over a tile of `bound` (a uniform) k, for the thread's
 * outputs e = lid + n·TG (row e / D, column c = e % D) of a rows × D block. When D divides TG every
 * output of a thread has the same column: v's value is loaded once per k for all of them.
 */
function accumulatePlain(outs: number, rows: number, D: number, bound: string, row: string, W: (row: string) => string, v: string): string {
  if (TG % D === 0) {
    return /* wgsl */ `for (var k = 0u; k < ${bound}; k++) {
      let vk = ${v}[k * ${D + 1}u + lid % ${D}u];
      for (var n = 0u; n < ${outs}u; n++) {
        let ${row} = (lid + n * ${TG}u) / ${D}u;
        if (${row} < ${rows}u) { acc[n] += ${W(row)} * vk; }
      }
    }`;
  }
  return /* wgsl */ `for (var k = 0u; k < ${bound}; k++) {
      for (var n = 0u; n < ${outs}u; n++) {
        let e = lid + n * ${TG}u;
        let ${row} = e / ${D}u;
        if (${row} < ${rows}u) { acc[n] += ${W(row)} * ${v}[k * ${D + 1}u + e % ${D}u]; }
      }
    }`;
}

/**
 * Register tiling (default): each thread keeps a small block of outputs and its operands in
 * registers, so a workgroup-memory value is loaded once per block instead of once per
 * multiply-add. CUBIT_WEBGPU_CUBIT_TILE=0 (Node) selects the plain kernels above instead: both
 * are kept so that the two can be timed on the target GPU (not measured yet: no GPU this session)
 * and the slower dropped.
 */
const TILE = !(typeof process !== 'undefined' && process.env?.CUBIT_WEBGPU_CUBIT_TILE === '0');

/** The tileDots block: TR rows × TC columns per thread, or null where the shape does not tile. */
function dotsTile(rows: number, cols: number): { tr: number; tc: number; ct: number; rt: number } | null {
  if (!TILE) return null;
  for (const tc of [4, 2]) {
    const ct = cols / tc;
    if (!Number.isInteger(ct) || TG % ct !== 0) continue;
    const rt = TG / ct, tr = Math.ceil(rows / rt);
    if (tr >= tc) return { tr, tc, ct, rt };
  }
  return null;
}

/**
 * tileDots as above (same `finish` contract: ri, kj, mt and d<p>[mt] in scope), register-tiled
 * where the shape allows: a thread takes TR rows rr + m·RT and TC columns kc + q·CT (strided, so
 * neighbouring threads read neighbouring rows of the workgroup arrays: different banks).
 */
function tileDots(rows: number, cols: number, D: number, pairs: readonly (readonly [string, string])[], finish: string): string {
  const t = dotsTile(rows, cols);
  if (!t) return tileDotsPlain(rows, cols, D, pairs, finish);
  const { tr, tc, ct, rt } = t, per = tr * tc;
  // Zeroed explicitly: lavapipe kept the values of a declaration inside a loop from the last pass.
  const decl = pairs.map((_, q) => `var d${q}: array<f32, ${per}>;\n      for (var mt = 0u; mt < ${per}u; mt++) { d${q}[mt] = 0.0; }`).join('\n      ');
  const colDecl = pairs.map((_, q) => `var b${q}: array<f32, ${tc}>;`).join('\n        ');
  const colLoads = pairs.map(([, col], q) => `b${q}[q] = ${col}[(kc + q * ${ct}u) * ${D + 1}u + c];`).join('\n          ');
  const rowLoads = pairs.map(([row], q) => `let a${q} = ${row}[ri * ${D + 1}u + c];`).join('\n          ');
  const fmas = pairs.map((_, q) => `d${q}[m * ${tc}u + q] += a${q} * b${q}[q];`).join('\n            ');
  return /* wgsl */ `{
      let kc = lid % ${ct}u;
      let rr = lid / ${ct}u;
      ${decl}
      for (var c = 0u; c < p.dim; c++) {
        ${colDecl}
        for (var q = 0u; q < ${tc}u; q++) {
          ${colLoads}
        }
        for (var m = 0u; m < ${tr}u; m++) {
          let ri = min(rr + m * ${rt}u, ${rows - 1}u);
          ${rowLoads}
          for (var q = 0u; q < ${tc}u; q++) {
            ${fmas}
          }
        }
      }
      for (var mt = 0u; mt < ${per}u; mt++) {
        let ri = rr + (mt / ${tc}u) * ${rt}u;
        let kj = kc + (mt % ${tc}u) * ${ct}u;
        if (ri < ${rows}u) {
          ${finish}
        }
      }
    }`;
}

/**
 * A thread's outputs of a rows × D block (acc[n] += Σ_k W(row, k) · v[k·(D + 1) + col]): their
 * count, the declaration of acc (zeroed), the flat index e = row·D + col of output n (a WGSL
 * expression in n), and the accumulation over a tile of `bound` (a uniform) k. Register-tiled
 * where D allows: a thread takes 4 columns cq + q·D/4 and the rows rg + m·RG, so per k it loads
 * 4 values of v and one weight per row for 4·rows multiply-adds; else one column per thread.
 */
function outputs(rows: number, D: number) {
  // Zeroed explicitly (lavapipe; see tileDots).
  const accDecl = (n: number): string => `var acc: array<f32, ${n}>;\n  for (var n = 0u; n < ${n}u; n++) { acc[n] = 0.0; }`;
  const cq = D / 4;
  if (!TILE || !Number.isInteger(cq) || TG % cq !== 0) {
    const n = Math.ceil((rows * D) / TG);
    return {
      n, e: `lid + n * ${TG}u`,
      decl: accDecl(n),
      accumulate: (bound: string, row: string, W: (row: string) => string, v: string) => accumulatePlain(n, rows, D, bound, row, W, v),
    };
  }
  const rg = TG / cq, tr = Math.ceil(rows / rg), n = 4 * tr;
  return {
    n, e: `(lid / ${cq}u + (n / 4u) * ${rg}u) * ${D}u + lid % ${cq}u + (n % 4u) * ${cq}u`,
    decl: accDecl(n),
    accumulate: (bound: string, row: string, W: (row: string) => string, v: string) => /* wgsl */ `for (var k = 0u; k < ${bound}; k++) {
      let vb = k * ${D + 1}u + lid % ${cq}u;
      let v0 = ${v}[vb];
      let v1 = ${v}[vb + ${cq}u];
      let v2 = ${v}[vb + ${2 * cq}u];
      let v3 = ${v}[vb + ${3 * cq}u];
      for (var m = 0u; m < ${tr}u; m++) {
        let ${row} = lid / ${cq}u + m * ${rg}u;
        if (${row} < ${rows}u) {
          let w = ${W(row)};
          acc[4u * m] += w * v0;
          acc[4u * m + 1u] += w * v1;
          acc[4u * m + 2u] += w * v2;
          acc[4u * m + 3u] += w * v3;
        }
      }
    }`,
  };
}

const MAIN = '@compute @workgroup_size(' + TG + ')\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32)';

// ---- forward ----

/** Row log-sum-exp of the masked logits r_i · r̂_j over every visible key (a workgroup per (row block, b·h)). */
function lseKernel(rt: GpuRuntime, pl: Plan, docs: boolean) {
  const { D, pr: R, pt: K } = pl;
  return rt.kernel('cubitLse', /* wgsl */ `${PARAMS}
${bindings([['r', 'read'], ['rh', 'read'], ['lse', 'read_write'], ...(docs ? [DOCS] : [])])}
${maskFns(docs)}
var<workgroup> rs: array<f32, ${R * (D + 1)}>;
var<workgroup> ks: array<f32, ${K * (D + 1)}>;
var<workgroup> st: array<f32, ${R * K}>;
${MAIN} {
  let bh = wid.y;
  let b = bh / p.H;
  let base = bh * p.T;
  let i0 = wid.x * ${R}u;
  let i1 = min(p.T, i0 + ${R}u);
  ${loadRows('rs', 'r', R, D, 'i0', 'i1')}
  var m = ${NEG};
  var l = 0.0;
  for (var j0 = firstKey(i0); j0 < i1; j0 += ${K}u) {
    workgroupBarrier();
    ${loadRows('ks', 'rh', K, D, 'j0', 'i1')}
    workgroupBarrier();
    ${tileDots(R, K, D, [['rs', 'ks']], `let i = i0 + ri;
      let j = j0 + kj;
      var s = ${NEG};
      if (i < i1 && j < i1 && visible(b, i, j)) { s = d0[mt]; }
      st[ri * ${K}u + kj] = s;`)}
    workgroupBarrier();
    if (lid < ${R}u) {
      var tm = ${NEG};
      for (var k = 0u; k < p.pt; k++) { tm = max(tm, st[lid * ${K}u + k]); }
      if (tm > ${NEG}) {
        let mn = max(m, tm);
        var add = 0.0;
        for (var k = 0u; k < p.pt; k++) {
          let s = st[lid * ${K}u + k];
          if (s > ${NEG}) { add += exp(s - mn); }
        }
        l = l * exp(m - mn) + add;
        m = mn;
      }
    }
  }
  if (lid < ${R}u && i0 + lid < i1) { lse[base + i0 + lid] = m + log(l); }
}`, ['read', 'read', 'read_write', ...(docs ? ['read' as const] : [])]);
}

/** One chunk of earlier keys' Σ_j P_ij X_j (and Σ_j P_ij) for the block's rows, into its slot. */
function fwdPartialKernel(rt: GpuRuntime, pl: Plan, docs: boolean) {
  const { D, bk: R, kt: K } = pl;
  const out = outputs(R, D);
  return rt.kernel('cubitSolvePartial', /* wgsl */ `${PARAMS}
${bindings([['r', 'read'], ['rh', 'read'], ['x', 'read'], ['lse', 'read'], ['part', 'read_write'], ...(docs ? [DOCS] : [])])}
${maskFns(docs)}
var<workgroup> rs: array<f32, ${R * (D + 1)}>;
var<workgroup> ks: array<f32, ${K * (D + 1)}>;
var<workgroup> xs: array<f32, ${K * (D + 1)}>;
var<workgroup> ps: array<f32, ${R * K}>;
var<workgroup> ls: array<f32, ${R}>;
${MAIN} {
  let g = wid.x;
  let bh = wid.y;
  let b = bh / p.H;
  let base = bh * p.T;
  let i0 = p.blk * ${R}u;
  let i1 = min(p.T, i0 + ${R}u);
  let k0 = firstKey(i0);
  let ks0 = k0 + g * p.chunk;
  let ke = min(ks0 + p.chunk, i0);
  ${loadRows('rs', 'r', R, D, 'i0', 'i1')}
  if (lid < ${R}u) { ls[lid] = select(0.0, lse[base + min(i0 + lid, p.T - 1u)], i0 + lid < i1); }
  ${out.decl}
  var rowSum = 0.0;
  for (var j0 = ks0; j0 < ke; j0 += ${K}u) {
    workgroupBarrier();
    ${loadRows('ks', 'rh', K, D, 'j0', 'ke')}
    ${loadRows('xs', 'x', K, D, 'j0', 'ke')}
    workgroupBarrier();
    ${tileDots(R, K, D, [['rs', 'ks']], `let i = i0 + ri;
      let j = j0 + kj;
      var w = 0.0;
      if (i < i1 && j < ke && visible(b, i, j)) { w = exp(d0[mt] - ls[ri]); }
      ps[ri * ${K}u + kj] = w;`)}
    workgroupBarrier();
    if (lid < ${R}u) { for (var k = 0u; k < p.kt; k++) { rowSum += ps[lid * ${K}u + k]; } }
    ${out.accumulate('p.kt', 'ri', (ri) => `ps[${ri} * ${K}u + k]`, 'xs')}
  }
  let slot = (bh * p.gcap + g) * ${R * (D + 1)}u;
  for (var n = 0u; n < ${out.n}u; n++) {
    let e = ${out.e};
    if (e < ${R * D}u) { part[slot + (e / ${D}u) * ${D + 1}u + e % ${D}u] = acc[n]; }
  }
  if (lid < ${R}u) { part[slot + lid * ${D + 1}u + ${D}u] = rowSum; }
}`, ['read', 'read', 'read', 'read', 'read_write', ...(docs ? ['read' as const] : [])]);
}

/**
 * The block's close: the chunks' sums added in order, the diagonal tile, and the forward
 * substitution (P_RR + λI) X_R = Y_R − Σ_{j<i0} P X, a thread per column; writes X and
 * h_i = Σ_{j<i} P_ij X_j − (Σ_{j<i} P_ij) X_i (summed so, without the diagonal weight).
 */
function fwdCloseKernel(rt: GpuRuntime, pl: Plan, docs: boolean) {
  const { D, bk: R } = pl;
  return rt.kernel('cubitSolveClose', /* wgsl */ `${PARAMS}
${bindings([['r', 'read'], ['rh', 'read'], ['y', 'read'], ['logLambda', 'read'], ['lse', 'read'], ['part', 'read'],
    ['x', 'read_write'], ['wx', 'read_write'], ...(docs ? [DOCS] : [])])}
${maskFns(docs)}
var<workgroup> ps: array<f32, ${R * R}>;
var<workgroup> lo: array<f32, ${R}>;
${MAIN} {
  let bh = wid.x;
  let b = bh / p.H;
  let base = bh * p.T;
  let i0 = p.blk * ${R}u;
  let nb = min(${R}u, p.T - i0);
  let lam = exp(logLambda[bh % p.H]);
  // Σ over the chunks (in order) of the earlier keys' sums: into wx's rows for now, and lo.
  ${spread(`nb * ${D + 1}`, `  var s = 0.0;
  for (var g = 0u; g < p.groups; g++) { s += part[(bh * p.gcap + g) * ${R * (D + 1)}u + e]; }
  let ri = e / ${D + 1}u;
  let c = e % ${D + 1}u;
  if (c < ${D}u) { wx[(base + i0 + ri) * ${D}u + c] = s; } else { lo[ri] = s; }`)}
  ${spread(R * R, `  let ri = e / ${R}u;
  let kj = e % ${R}u;
  var w = 0.0;
  if (ri < nb && kj <= ri && visible(b, i0 + ri, i0 + kj)) {
    let oi = (base + i0 + ri) * ${D}u;
    let oj = (base + i0 + kj) * ${D}u;
    var s = 0.0;
    for (var c = 0u; c < p.dim; c++) { s += r[oi + c] * rh[oj + c]; }
    w = exp(s - lse[base + i0 + ri]);
  }
  ps[e] = w;`)}
  storageBarrier();
  workgroupBarrier();
  // (X's column is read back from x, written by this thread: a private array indexed in the
  // loop costs minutes of shader compilation on software adapters.)
  for (var c = lid; c < p.dim; c += ${TG}u) {
    let c0 = (base + i0) * ${D}u + c;
    for (var ri = 0u; ri < nb; ri++) {
      let o = c0 + ri * ${D}u;
      let u = wx[o];
      var acc = 0.0;
      var psum = 0.0;
      for (var kj = 0u; kj < ri; kj++) {
        let w = ps[ri * ${R}u + kj];
        acc += w * x[c0 + kj * ${D}u];
        psum += w;
      }
      let xi = (y[o] - u - acc) / (ps[ri * ${R}u + ri] + lam);
      x[o] = xi;
      wx[o] = (u + acc) - (lo[ri] + psum) * xi;
    }
  }
}`, ['read', 'read', 'read', 'read', 'read', 'read', 'read_write', 'read_write', ...(docs ? ['read' as const] : [])]);
}

/** Cubit's stages before the solve: r̂ = α r / max(‖r‖, eps), and Y = (lower + range σ(z)) ⊙ v with LRR. */
function prepKernel(rt: GpuRuntime, pl: Plan, lrr: boolean) {
  const { D } = pl;
  const binds: Bind[] = [['r', 'read'], ['alpha', 'read'], ...(lrr ? [['v', 'read'], ['z', 'read'], ['lower', 'read'], ['range', 'read']] as Bind[] : []),
    ['rh', 'read_write'], ...(lrr ? [['y', 'read_write']] as Bind[] : [])];
  return rt.kernel(`cubitPrep${lrr ? 'Lrr' : ''}`, /* wgsl */ `${PARAMS}${MATH}
${bindings(binds)}
${elementwiseMain(`  if (i >= p.n) { return; }
  let h = (i / p.T) % p.H;
  let o = i * ${D}u;
  var ss = 0.0;
  for (var c = 0u; c < p.dim; c++) { ss += r[o + c] * r[o + c]; }
  let clamped = !(ss >= p.eps * p.eps) && !isNan32(ss);
  let a = alpha[h] * (1.0 / select(sqrt(ss), p.eps, clamped));
  for (var c = 0u; c < p.dim; c++) { rh[o + c] = a * r[o + c]; }
  ${lrr ? `let s = lower[h] + range[h] * safeSigmoid(z[i]);
  for (var c = 0u; c < p.dim; c++) { y[o + c] = s * v[o + c]; }` : ''}`)}`, binds.map((b) => b[1]));
}

/** The forward sweep: lse, then per block the chunks' partial sums and the close. */
function forward(rt: GpuRuntime, pl: Plan, d: MixerDims, r: GpuStorage, rh: GpuStorage, y: GpuStorage, logLambda: GpuStorage,
  x: GpuStorage, lse: GpuStorage, wx: GpuStorage): void {
  const docs = d.docIds !== null, ds = docStorage(d);
  rt.run(lseKernel(rt, pl, docs), [r, rh, lse, ...ds], params(pl), [Math.ceil(pl.T / pl.pr), pl.BH]);
  const part = rt.alloc('float32', pl.BH * pl.gcap * pl.bk * (pl.D + 1));
  const partial = fwdPartialKernel(rt, pl, docs), close = fwdCloseKernel(rt, pl, docs);
  for (let blk = 0; blk * pl.bk < pl.T; blk++) {
    const i0 = blk * pl.bk, k0 = pl.window > 0 ? Math.max(0, i0 + 1 - pl.window) : 0;
    const groups = Math.ceil((i0 - k0) / pl.chunk);
    if (groups > 0) rt.run(partial, [r, rh, x, lse, part, ...ds], params(pl, { blk }), [groups, pl.BH]);
    rt.run(close, [r, rh, y, logLambda, lse, part, x, wx, ...ds], params(pl, { blk, groups }), [pl.BH]);
  }
  rt.release(part);
}

export function krrSolve(rt: GpuRuntime, r: GpuStorage, rh: GpuStorage, y: GpuStorage, logLambda: GpuStorage, x: GpuStorage,
  d: MixerDims): SavedState {
  const pl = plan(rt, d);
  const lse = rt.alloc('float32', pl.BH * pl.T), wx = rt.alloc('float32', pl.BH * pl.T * pl.D);
  forward(rt, pl, d, r, rh, y, logLambda, x, lse, wx);
  return { storages: [lse, wx] };
}

export function cubitSolve(rt: GpuRuntime, r: GpuStorage, refScale: GpuStorage, v: GpuStorage, lrr: LrrStorages | null,
  logLambda: GpuStorage, eps: number, x: GpuStorage, d: MixerDims): SavedState {
  const pl = plan(rt, d);
  const rows = pl.BH * pl.T;
  const rh = rt.alloc('float32', rows * pl.D), lse = rt.alloc('float32', rows), wx = rt.alloc('float32', rows * pl.D);
  const y = lrr ? rt.alloc('float32', rows * pl.D) : v;
  const ins = lrr ? [r, refScale, v, lrr.logits, lrr.lower, lrr.range] as GpuStorage[] : [r, refScale];
  rt.run(prepKernel(rt, pl, lrr !== null), [...ins, rh, ...(lrr ? [y] : [])], params(pl, { n: rows, eps }),
    grid1d(rows, WG, rt.limits.maxComputeWorkgroupsPerDimension));
  forward(rt, pl, d, r, rh, y, logLambda, x, lse, wx);
  if (lrr) rt.release(y);
  return { storages: [rh, lse, wx] };
}

// ---- backward ----

/** One chunk of later rows' Σ_i P_ij Z_i for the block's keys j, into its slot (the adjoint solve). */
function adjPartialKernel(rt: GpuRuntime, pl: Plan, docs: boolean) {
  const { D, bk: R, kt: K } = pl;
  const out = outputs(R, D);
  return rt.kernel('cubitAdjointPartial', /* wgsl */ `${PARAMS}
${bindings([['r', 'read'], ['rh', 'read'], ['z', 'read'], ['lse', 'read'], ['part', 'read_write'], ...(docs ? [DOCS] : [])])}
${maskFns(docs)}
var<workgroup> kh: array<f32, ${R * (D + 1)}>;
var<workgroup> rs: array<f32, ${K * (D + 1)}>;
var<workgroup> zs: array<f32, ${K * (D + 1)}>;
var<workgroup> ps: array<f32, ${K * R}>;
var<workgroup> ls: array<f32, ${K}>;
${MAIN} {
  let g = wid.x;
  let bh = wid.y;
  let b = bh / p.H;
  let base = bh * p.T;
  let j0 = p.blk * ${R}u;
  let j1 = min(p.T, j0 + ${R}u);
  let rs0 = j1 + g * p.chunk;
  let re = min(rs0 + p.chunk, rowEnd(j1 - 1u));
  ${loadRows('kh', 'rh', R, D, 'j0', 'j1')}
  ${out.decl}
  for (var i0 = rs0; i0 < re; i0 += ${K}u) {
    workgroupBarrier();
    ${loadRows('rs', 'r', K, D, 'i0', 're')}
    ${loadRows('zs', 'z', K, D, 'i0', 're')}
    if (lid < ${K}u) { ls[lid] = select(0.0, lse[base + min(i0 + lid, p.T - 1u)], i0 + lid < re); }
    workgroupBarrier();
    ${tileDots(K, R, D, [['rs', 'kh']], `let i = i0 + ri;
      let j = j0 + kj;
      var w = 0.0;
      if (i < re && j < j1 && visible(b, i, j)) { w = exp(d0[mt] - ls[ri]); }
      ps[ri * ${R}u + kj] = w;`)}
    workgroupBarrier();
    ${out.accumulate('p.kt', 'kj', (kj) => `ps[k * ${R}u + ${kj}]`, 'zs')}
  }
  let slot = (bh * p.gcap + g) * ${R * D}u;
  for (var n = 0u; n < ${out.n}u; n++) {
    let e = ${out.e};
    if (e < ${R * D}u) { part[slot + e] = acc[n]; }
  }
}`, ['read', 'read', 'read', 'read', 'read_write', ...(docs ? ['read' as const] : [])]);
}

/**
 * The adjoint block's close: residual G_R − Σ chunks, the transposed diagonal tile, backward
 * substitution (P_RR + λI)ᵀ Z_R = residual a thread per column.
 */
function adjCloseKernel(rt: GpuRuntime, pl: Plan, docs: boolean) {
  const { D, bk: R } = pl;
  return rt.kernel('cubitAdjointClose', /* wgsl */ `${PARAMS}
${bindings([['r', 'read'], ['rh', 'read'], ['gz', 'read'], ['logLambda', 'read'], ['lse', 'read'], ['part', 'read'],
    ['z', 'read_write'], ...(docs ? [DOCS] : [])])}
${maskFns(docs)}
var<workgroup> ps: array<f32, ${R * R}>;
${MAIN} {
  let bh = wid.x;
  let b = bh / p.H;
  let base = bh * p.T;
  let j0 = p.blk * ${R}u;
  let nb = min(${R}u, p.T - j0);
  let lam = exp(logLambda[bh % p.H]);
  ${spread(`nb * ${D}`, `  var s = 0.0;
  for (var g = 0u; g < p.groups; g++) { s += part[(bh * p.gcap + g) * ${R * D}u + e]; }
  let o = (base + j0) * ${D}u + e;
  z[o] = gz[o] - s;`)}
  ${spread(R * R, `  let ri = e / ${R}u;
  let kj = e % ${R}u;
  var w = 0.0;
  if (ri < nb && kj <= ri && visible(b, j0 + ri, j0 + kj)) {
    let oi = (base + j0 + ri) * ${D}u;
    let oj = (base + j0 + kj) * ${D}u;
    var s = 0.0;
    for (var c = 0u; c < p.dim; c++) { s += r[oi + c] * rh[oj + c]; }
    w = exp(s - lse[base + j0 + ri]);
  }
  ps[e] = w;`)}
  storageBarrier();
  workgroupBarrier();
  for (var c = lid; c < p.dim; c += ${TG}u) {
    let c0 = (base + j0) * ${D}u + c;
    for (var t = 0u; t < nb; t++) {
      let kj = nb - 1u - t;
      var acc = z[c0 + kj * ${D}u];
      for (var ri = kj + 1u; ri < nb; ri++) { acc -= ps[ri * ${R}u + kj] * z[c0 + ri * ${D}u]; }
      z[c0 + kj * ${D}u] = acc / (ps[kj * ${R}u + kj] + lam);
    }
  }
}`, ['read', 'read', 'read', 'read', 'read', 'read', 'read_write', ...(docs ? ['read' as const] : [])]);
}

/**
 * dS_ij = P_ij ((Z_i·X_i − Z_i·X_j) + Z_i·h_i) (SPEC §3.2) as the WGSL of one tile entry of
 * tileDots: d0[mt] = r_i · r̂_j, d1[mt] = Z_i · X_j, and the row's lse, Z_i·X_i, Z_i·h_i in rc.
 */
const DS = 'exp(d0[mt] - rc[3u * ri]) * ((rc[3u * ri + 1u] - d1[mt]) + rc[3u * ri + 2u])';

/** ∂r_i = Σ_j dS_ij r̂_j: a workgroup per (row block, b·h), over the keys each row sees. */
function drKernel(rt: GpuRuntime, pl: Plan, docs: boolean) {
  const { D, pr: R, pt: K } = pl;
  const out = outputs(R, D);
  return rt.kernel('cubitSolveDr', /* wgsl */ `${PARAMS}
${bindings([['r', 'read'], ['rh', 'read'], ['x', 'read'], ['z', 'read'], ['lse', 'read'], ['rowc', 'read'], ['dr', 'read_write'], ...(docs ? [DOCS] : [])])}
${maskFns(docs)}
var<workgroup> rs: array<f32, ${R * (D + 1)}>;
var<workgroup> zs: array<f32, ${R * (D + 1)}>;
var<workgroup> ks: array<f32, ${K * (D + 1)}>;
var<workgroup> xs: array<f32, ${K * (D + 1)}>;
var<workgroup> ds: array<f32, ${R * K}>;
var<workgroup> rc: array<f32, ${3 * R}>;
${MAIN} {
  let bh = wid.y;
  let b = bh / p.H;
  let base = bh * p.T;
  let i0 = wid.x * ${R}u;
  let i1 = min(p.T, i0 + ${R}u);
  ${loadRows('rs', 'r', R, D, 'i0', 'i1')}
  ${loadRows('zs', 'z', R, D, 'i0', 'i1')}
  if (lid < ${R}u) {
    let i = min(i0 + lid, p.T - 1u);
    rc[3u * lid] = lse[base + i];
    rc[3u * lid + 1u] = rowc[2u * (base + i)];
    rc[3u * lid + 2u] = rowc[2u * (base + i) + 1u];
  }
  ${out.decl}
  for (var j0 = firstKey(i0); j0 < i1; j0 += ${K}u) {
    workgroupBarrier();
    ${loadRows('ks', 'rh', K, D, 'j0', 'i1')}
    ${loadRows('xs', 'x', K, D, 'j0', 'i1')}
    workgroupBarrier();
    ${tileDots(R, K, D, [['rs', 'ks'], ['zs', 'xs']], `var w = 0.0;
      if (i0 + ri < i1 && j0 + kj < i1 && visible(b, i0 + ri, j0 + kj)) { w = ${DS}; }
      ds[ri * ${K}u + kj] = w;`)}
    workgroupBarrier();
    ${out.accumulate('p.pt', 'ri', (ri) => `ds[${ri} * ${K}u + k]`, 'ks')}
  }
  for (var n = 0u; n < ${out.n}u; n++) {
    let e = ${out.e};
    if (e < ${R * D}u && i0 + e / ${D}u < i1) { dr[(base + i0) * ${D}u + e] = acc[n]; }
  }
}`, ['read', 'read', 'read', 'read', 'read', 'read', 'read_write', ...(docs ? ['read' as const] : [])]);
}

/** ∂r̂_j = Σ_i dS_ij r_i: a workgroup per (key block, b·h), over the rows that see the keys. */
function drhKernel(rt: GpuRuntime, pl: Plan, docs: boolean) {
  const { D, pr: R, pt: K } = pl;
  const out = outputs(R, D);
  return rt.kernel('cubitSolveDrHat', /* wgsl */ `${PARAMS}
${bindings([['r', 'read'], ['rh', 'read'], ['x', 'read'], ['z', 'read'], ['lse', 'read'], ['rowc', 'read'], ['drh', 'read_write'], ...(docs ? [DOCS] : [])])}
${maskFns(docs)}
var<workgroup> ks: array<f32, ${R * (D + 1)}>;
var<workgroup> xs: array<f32, ${R * (D + 1)}>;
var<workgroup> rs: array<f32, ${K * (D + 1)}>;
var<workgroup> zs: array<f32, ${K * (D + 1)}>;
var<workgroup> ds: array<f32, ${K * R}>;
var<workgroup> rc: array<f32, ${3 * K}>;
${MAIN} {
  let bh = wid.y;
  let b = bh / p.H;
  let base = bh * p.T;
  let j0 = wid.x * ${R}u;
  let j1 = min(p.T, j0 + ${R}u);
  let re = rowEnd(j1 - 1u);
  ${loadRows('ks', 'rh', R, D, 'j0', 'j1')}
  ${loadRows('xs', 'x', R, D, 'j0', 'j1')}
  ${out.decl}
  for (var i0 = j0; i0 < re; i0 += ${K}u) {
    workgroupBarrier();
    ${loadRows('rs', 'r', K, D, 'i0', 're')}
    ${loadRows('zs', 'z', K, D, 'i0', 're')}
    if (lid < ${K}u) {
      let i = min(i0 + lid, p.T - 1u);
      rc[3u * lid] = lse[base + i];
      rc[3u * lid + 1u] = rowc[2u * (base + i)];
      rc[3u * lid + 2u] = rowc[2u * (base + i) + 1u];
    }
    workgroupBarrier();
    ${tileDots(K, R, D, [['rs', 'ks'], ['zs', 'xs']], `var w = 0.0;
      if (i0 + ri < re && j0 + kj < j1 && visible(b, i0 + ri, j0 + kj)) { w = ${DS}; }
      ds[ri * ${R}u + kj] = w;`)}
    workgroupBarrier();
    ${out.accumulate('p.pt', 'kj', (kj) => `ds[k * ${R}u + ${kj}]`, 'rs')}
  }
  for (var n = 0u; n < ${out.n}u; n++) {
    let e = ${out.e};
    if (e < ${R * D}u && j0 + e / ${D}u < j1) { drh[(base + j0) * ${D}u + e] = acc[n]; }
  }
}`, ['read', 'read', 'read', 'read', 'read', 'read', 'read_write', ...(docs ? ['read' as const] : [])]);
}

/** The row scalars of the gradient passes, rowc_i = (Z_i · X_i, Z_i · h_i), a thread per row. */
function rowScalarsKernel(rt: GpuRuntime) {
  return rt.kernel('cubitRowScalars', /* wgsl */ `${PARAMS}
${bindings([['z', 'read'], ['x', 'read'], ['wx', 'read'], ['rowc', 'read_write']])}
${elementwiseMain(`  if (i >= p.n) { return; }
  let o = i * p.dim;
  var zx = 0.0;
  var zh = 0.0;
  for (var c = 0u; c < p.dim; c++) { zx += z[o + c] * x[o + c]; zh += z[o + c] * wx[o + c]; }
  rowc[2u * i] = zx;
  rowc[2u * i + 1u] = zh;`)}`, ['read', 'read', 'read', 'read_write']);
}

/**
 * The rows' last stages and their per-(b, h) sums (SPEC §2.5), a workgroup per b·h with a
 * fixed-order tree, in three parts so that each binds few buffers (Chromium's SwiftShader allows
 * 10 per stage): 'lambda' ∂λ = −Σ Z·X; 'ref' the normalisation's backward (∂r += …, ∂α);
 * 'lrr' ∂v = s Z, ∂z, ∂lower, ∂range.
 */
type FinishPart = 'lambda' | 'ref' | 'lrr';
const FINISH: Record<FinishPart, { binds: Bind[]; sums: string[]; body: string }> = {
  lambda: {
    binds: [['rowc', 'read'], ['dLambda', 'read_write']],
    sums: ['dLambda'],
    body: 's0 -= rowc[2u * i];',
  },
  ref: {
    binds: [['r', 'read'], ['alpha', 'read'], ['drh', 'read'], ['dr', 'read_write'], ['dAlpha', 'read_write']],
    sums: ['dAlpha'],
    body: `var ss = 0.0;
    var gr = 0.0;
    for (var c = 0u; c < p.dim; c++) { ss += r[o + c] * r[o + c]; gr += drh[o + c] * r[o + c]; }
    let clamped = !(ss >= p.eps * p.eps) && !isNan32(ss);
    let sc = 1.0 / select(sqrt(ss), p.eps, clamped);
    s0 += sc * gr;
    let a = alpha[h];
    let k = select(a * sc * sc * sc * gr, 0.0, clamped);
    for (var c = 0u; c < p.dim; c++) { dr[o + c] += a * sc * drh[o + c] - k * r[o + c]; }`,
  },
  lrr: {
    binds: [['z', 'read'], ['v', 'read'], ['zl', 'read'], ['lower', 'read'], ['range', 'read'],
      ['dv', 'read_write'], ['dz', 'read_write'], ['dLower', 'read_write'], ['dRange', 'read_write']],
    sums: ['dLower', 'dRange'],
    body: `var zv = 0.0;
    for (var c = 0u; c < p.dim; c++) { zv += z[o + c] * v[o + c]; }
    let sg = safeSigmoid(zl[i]);
    s0 += zv;
    s1 += sg * zv;
    dz[i] = range[h] * sg * (1.0 - sg) * zv;
    let sv = lower[h] + range[h] * sg;
    for (var c = 0u; c < p.dim; c++) { dv[o + c] = sv * z[o + c]; }`,
  },
};

function finishKernel(rt: GpuRuntime, part: FinishPart) {
  const { binds, sums, body } = FINISH[part];
  const n = sums.length;
  return rt.kernel(`cubitSolveFinish_${part}`, /* wgsl */ `${PARAMS}${MATH}
${bindings(binds)}
var<workgroup> red: array<f32, ${n * TG}>;
${MAIN} {
  let bh = wid.x;
  let h = bh % p.H;
  var s0 = 0.0;
  var s1 = 0.0;
  for (var t = lid; t < p.T; t += ${TG}u) {
    let i = bh * p.T + t;
    let o = i * p.dim;
    ${body}
  }
  red[lid] = s0;
  ${n > 1 ? `red[${TG}u + lid] = s1;` : ''}
  workgroupBarrier();
  for (var w = ${TG / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) {
      for (var k = 0u; k < ${n}u; k++) { red[k * ${TG}u + lid] += red[k * ${TG}u + lid + w]; }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    ${sums.map((name, k) => `${name}[bh] = red[${k * TG}u];`).join('\n    ')}
  }
}`, binds.map((b) => b[1]));
}

/**
 * The adjoint sweep (Z into `z`), then ∂r into dr and ∂r̂ into drh; returns the row scalars
 * (Z·X, Z·h) for the caller's finish (and frees nothing it did not make).
 */
function backward(rt: GpuRuntime, pl: Plan, d: MixerDims, r: GpuStorage, rh: GpuStorage, logLambda: GpuStorage, x: GpuStorage,
  lse: GpuStorage, wx: GpuStorage, g: GpuStorage, z: GpuStorage, dr: GpuStorage, drh: GpuStorage): GpuStorage {
  const docs = d.docIds !== null, ds = docStorage(d);
  const rowc = rt.alloc('float32', 2 * pl.BH * pl.T);
  const part = rt.alloc('float32', pl.BH * pl.gcap * pl.bk * pl.D);
  const partial = adjPartialKernel(rt, pl, docs), close = adjCloseKernel(rt, pl, docs);
  for (let blk = Math.ceil(pl.T / pl.bk) - 1; blk >= 0; blk--) {
    const j1 = Math.min(pl.T, (blk + 1) * pl.bk);
    const end = pl.window > 0 ? Math.min(pl.T, j1 - 1 + pl.window) : pl.T;
    const groups = Math.max(0, Math.ceil((end - j1) / pl.chunk));
    if (groups > 0) rt.run(partial, [r, rh, z, lse, part, ...ds], params(pl, { blk }), [groups, pl.BH]);
    rt.run(close, [r, rh, g, logLambda, lse, part, z, ...ds], params(pl, { blk, groups }), [pl.BH]);
  }
  rt.release(part);
  const rows = pl.BH * pl.T;
  rt.run(rowScalarsKernel(rt), [z, x, wx, rowc], params(pl, { n: rows }), grid1d(rows, WG, rt.limits.maxComputeWorkgroupsPerDimension));
  const blocks = Math.ceil(pl.T / pl.pr);
  rt.run(drKernel(rt, pl, docs), [r, rh, x, z, lse, rowc, dr, ...ds], params(pl), [blocks, pl.BH]);
  rt.run(drhKernel(rt, pl, docs), [r, rh, x, z, lse, rowc, drh, ...ds], params(pl), [blocks, pl.BH]);
  return rowc;
}

export function krrSolveBackward(rt: GpuRuntime, r: GpuStorage, rh: GpuStorage, logLambda: GpuStorage, x: GpuStorage,
  saved: SavedState, g: GpuStorage, dr: GpuStorage, drh: GpuStorage, dy: GpuStorage, dLambda: GpuStorage, d: MixerDims): void {
  const pl = plan(rt, d);
  const [lse, wx] = saved.storages as GpuStorage[];
  const rowc = backward(rt, pl, d, r, rh, logLambda, x, lse, wx, g, dy, dr, drh);
  rt.run(finishKernel(rt, 'lambda'), [rowc, dLambda], params(pl), [pl.BH]);
  rt.release(rowc);
}

export function cubitSolveBackward(rt: GpuRuntime, r: GpuStorage, refScale: GpuStorage, v: GpuStorage, lrr: LrrStorages | null,
  logLambda: GpuStorage, eps: number, x: GpuStorage, saved: SavedState, g: GpuStorage, dr: GpuStorage, dv: GpuStorage,
  dRefScale: GpuStorage, lrrGrads: LrrGradStorages | null, dLambda: GpuStorage, d: MixerDims): void {
  if (lrr && !lrrGrads) throw new Error('cubitSolveBackward: lrr needs lrrGrads');
  const pl = plan(rt, d);
  const [rh, lse, wx] = saved.storages as GpuStorage[];
  const n = pl.BH * pl.T * pl.D;
  // Without LRR, ∂v = Z: the adjoint solve writes it there.
  const z = lrr ? rt.alloc('float32', n) : dv;
  const drh = rt.alloc('float32', n);
  const rowc = backward(rt, pl, d, r, rh, logLambda, x, lse, wx, g, z, dr, drh);
  rt.run(finishKernel(rt, 'lambda'), [rowc, dLambda], params(pl), [pl.BH]);
  rt.run(finishKernel(rt, 'ref'), [r, refScale, drh, dr, dRefScale], params(pl, { eps }), [pl.BH]);
  if (lrr && lrrGrads) {
    rt.run(finishKernel(rt, 'lrr'), [z, v, lrr.logits, lrr.lower, lrr.range, dv, lrrGrads.dLogits, lrrGrads.dLower, lrrGrads.dRange] as GpuStorage[],
      params(pl), [pl.BH]);
  }
  rt.release(rowc);
  rt.release(drh);
  if (lrr) rt.release(z);
}
