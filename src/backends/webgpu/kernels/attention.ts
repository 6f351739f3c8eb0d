// Masked softmax attention in WGSL, FlashAttention style (the fused `attention` and
// `attentionBackward` kernels): O(T·D) memory, no T×T buffer. Reference twins: the reference
// backend's attentionRef / attentionBackwardRef (dense, float64); native/src/attention.c is the CPU
// form of the same streaming.
//
// Every kernel gives one row to each thread of a 64-thread workgroup (a query row in the forward and
// in dQ, a key row in dK/dV; the split dK/dV form gives each key row two threads) and keeps that
// row's vectors in registers; the rows of the other side
// pass through workgroup memory a tile at a time, read by all threads at once (broadcast). Tiles
// that the causal mask and the window hide from every row of the workgroup are skipped; tiles that
// every row sees entirely run without per-element mask tests.
//
//   forward   online softmax over key tiles: out, and per row the log-sum-exp (kept for backward)
//   delta     Δ_i = rowsum(dO_i ∘ O_i)
//   dK, dV    a workgroup per key tile loops over query tiles: dV_j = Σ_i P_ij dO_i,
//             dK_j = scale · Σ_i dS_ij q_i with dS_ij = P_ij (dO_i·v_j − Δ_i)
//   dQ        a workgroup per query tile loops over key tiles: dQ_i = scale · Σ_j dS_ij k_j
// Each output element is written by one thread (no atomics), so results are deterministic.
//
// The saved state is one storage of 2·B·H·T floats: the forward's log-sum-exp rows, then the
// backward's Δ rows (two row statistics in one binding keeps dK/dV within 8 storage buffers, the
// limit of WebGPU compatibility mode's defaults).
import type { MixerDims, SavedState } from '../../../core/backend.ts';
import { grid1d, ParamWriter, type GpuRuntime, type GpuStorage } from '../runtime.ts';
import { LINEAR_INDEX, WG } from '../wgsl.ts';

/** Rows (threads) per workgroup: the query rows of a forward / dQ workgroup, the key rows of dK/dV. */
const ROWS = 64;
/** Most rows of the other side staged per tile. */
const MAX_TILE = 32;
/** Bytes of workgroup memory the staged tiles may use (what WebGPU guarantees every device). */
const TILE_BYTES = 16384;
/** Largest head dimension: each thread keeps 3–4 rows of D floats in registers (beyond 128 they spill). */
export const MAX_ATTENTION_HEAD_DIM = 1024;
/**
 * Code generation choices. unrollVecs: rows of up to this many vec4 (D ≤ 128) have their per-row
 * loops unrolled (constant indices keep the rows in registers); longer rows use loops. Tests lower
 * it to run the looped code at small D (a software adapter compiles a large D for minutes).
 * splitKeys: the dK/dV kernel's form (keysWgsl); null picks by D: joined while its 4·D floats per
 * thread fit well within 255 registers (D ≤ 48), split beyond. bench/webgpu-attention.ts times both.
 */
export const attentionCodegen: { unrollVecs: number; splitKeys: boolean | null } = { unrollVecs: 32, splitKeys: null };

/** Whether dK/dV runs split (two threads per key row) at head dimension D. */
export function splitsKeys(D: number): boolean { return attentionCodegen.splitKeys ?? D > 48; }

/** The code shape for head dimension D: D/4 vec4 per row (padded with zeros), the tile length. */
interface Plan { D: number; DV: number; vec: boolean; tile: number; docs: boolean; unroll: boolean; splitKeys: boolean }

function plan(rt: GpuRuntime, d: MixerDims): Plan {
  const { D } = d;
  if (D > MAX_ATTENTION_HEAD_DIM) {
    throw new RangeError(`webgpu attention: head dimension ${D} exceeds the kernels' ${MAX_ATTENTION_HEAD_DIM}`);
  }
  const DV = Math.ceil(D / 4);
  const budget = Math.min(rt.limits.maxComputeWorkgroupStorageSize, TILE_BYTES);
  // Two tiles of vec4 rows, plus three 4-byte values per staged row (ids, row statistics).
  let tile = MAX_TILE;
  while (tile > 1 && tile * (2 * DV * 16 + 12) > budget) tile /= 2;
  return { D, DV, vec: D % 4 === 0, tile, docs: d.docIds !== null, unroll: DV <= attentionCodegen.unrollVecs, splitKeys: splitsKeys(D) };
}

// ---- WGSL generation ----

/** `body(c)` for each vec4 c of a row: unrolled with constant indices, or a loop for large D. */
function eachVec(p: Plan, body: (c: string) => string): string {
  if (p.unroll) return Array.from({ length: p.DV }, (_, c) => body(`${c}u`)).join('\n');
  return `for (var c = 0u; c < ${p.DV}u; c++) {\n${body('c')}\n}`;
}

/**
 * A (rows, D) float32 storage at `binding`, read as vec4 per row: `ld_X(row, c)` (zeros past D),
 * and `st_X(row, c, v)` when writable. Bound as array<vec4<f32>> when D is a multiple of 4.
 */
function rowBuffer(name: string, binding: number, p: Plan, write: boolean): string {
  const access = write ? 'read_write' : 'read';
  if (p.vec) {
    return `@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<vec4<f32>>;
${write ? `fn st_${name}(row: u32, c: u32, v: vec4<f32>) { ${name}[row * ${p.DV}u + c] = v; }`
    : `fn ld_${name}(row: u32, c: u32) -> vec4<f32> { return ${name}[row * ${p.DV}u + c]; }`}`;
  }
  return `@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<f32>;
${write ? `fn st_${name}(row: u32, c: u32, v: vec4<f32>) {
  for (var x = 0u; x < 4u; x++) { if (4u * c + x < ${p.D}u) { ${name}[row * ${p.D}u + 4u * c + x] = v[x]; } }
}` : `fn ld_${name}(row: u32, c: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var x = 0u; x < 4u; x++) { if (4u * c + x < ${p.D}u) { v[x] = ${name}[row * ${p.D}u + 4u * c + x]; } }
  return v;
}`}`;
}

/** The uniform block every attention kernel reads. */
const PARAMS = /* wgsl */ `
struct P { T: u32, H: u32, BH: u32, window: u32, scale: f32, tiles: u32 }`;

function params(d: MixerDims, scale: number, tiles: number): ParamWriter {
  return new ParamWriter().u32(d.T, d.H, d.B * d.H, Math.max(0, d.window)).f32(scale).u32(tiles);
}

/** visible(i, j): causal, inside the window, and (with ids) the same document; rows past T see nothing. */
function visibleFn(p: Plan): string {
  return /* wgsl */ `
fn visible(i: u32, j: u32, di: i32, dj: i32) -> bool {
  return j <= i && i < p.T && (p.window == 0u || j + p.window > i)${p.docs ? ' && di == dj' : ''};
}`;
}

/** The (b·H + h) row block of this workgroup (y, folded into z past the per-dimension limit). */
const ROW_BLOCK = /* wgsl */ `
  let bh = wid.y + wid.z * nwg.y;
  if (bh >= p.BH) { return; }
  let rowBase = bh * p.T;
  let docBase = (bh / p.H) * p.T;`;

/** The launch grid: `tiles` workgroups per row block, row blocks along y (and z past the limit). */
function grid(rt: GpuRuntime, tiles: number, BH: number): [number, number, number] {
  const max = rt.limits.maxComputeWorkgroupsPerDimension;
  const y = Math.min(BH, max);
  return [tiles, y, Math.ceil(BH / y)];
}

/**
 * Stages rows [r0, r0 + tile) of the listed row buffers into workgroup arrays (`<name>t`), zeros
 * past T, and with `extra` one statement per staged row r (index e) for scalar side data.
 */
function stageRows(p: Plan, names: readonly string[], extra = '', threads = ROWS): string {
  const loads = names.map((n) => `${n}t[e / ${p.DV}u][c] = select(vec4<f32>(0.0), ld_${n}(rowBase + r, c), inside);`).join('\n      ');
  return /* wgsl */ `
    workgroupBarrier();
    for (var e = lid; e < ${p.tile * p.DV}u; e += ${threads}u) {
      let r = min(r0 + e / ${p.DV}u, p.T - 1u);
      let c = e % ${p.DV}u;
      let inside = r0 + e / ${p.DV}u < p.T;
      ${loads}
    }${extra ? `
    for (var e = lid; e < ${p.tile}u; e += ${threads}u) {
      let r = min(r0 + e, p.T - 1u);
      ${extra}
    }` : ''}
    workgroupBarrier();`;
}

// Staged tiles are arrays of rows (tile[r][c]): with c a constant, a bounds check (which WebGPU
// adds to every dynamic index) is one per row, not one per vec4.
const dot4 = (a: string): string => `(${a}.x + ${a}.y + ${a}.z + ${a}.w)`;

/**
 * `let name = Σ_c a(c)·b(c)` over a row's vec4, in two accumulators (even and odd c, when unrolled)
 * so that the dependent fma chains are half as long.
 */
function dotRows(p: Plan, name: string, a: (c: string) => string, b: (c: string) => string): string {
  const acc = (c: string): string => `${name}${p.unroll && parseInt(c, 10) % 2 === 1 ? 1 : 0}`;
  return `        var ${name}0 = vec4<f32>(0.0);
        var ${name}1 = vec4<f32>(0.0);
${eachVec(p, (c) => `        ${acc(c)} = fma(${a(c)}, ${b(c)}, ${acc(c)});`)}
        let ${name}4 = ${name}0 + ${name}1;
        let ${name} = ${dot4(`${name}4`)};`;
}

// ---- forward ----

function forwardWgsl(p: Plan): string {
  const { DV, tile } = p;
  // Per key: the score, then (when visible) the online-softmax update. The running maximum m
  // starts at −FLT_MAX, so the first visible key rescales the (zero) sums by 0; later keys rescale
  // only when they raise the maximum, which is rare after the first few.
  const key = (masked: boolean): string => `
      for (var jj = 0u; jj < ${tile}u; jj++) {
        ${masked ? `if (!visible(i, r0 + jj, di, ${p.docs ? 'kd[jj]' : '0'})) { continue; }` : ''}
${dotRows(p, 'qk', (c) => `q[${c}]`, (c) => `Kt[jj][${c}]`)}
        let s = qk * p.scale;
        if (s > m) {
          let a = exp(m - s);
          l *= a;
${eachVec(p, (c) => `          o[${c}] *= a;`)}
          m = s;
        }
        let e = exp(s - m);
        l += e;
${eachVec(p, (c) => `        o[${c}] = fma(vec4<f32>(e), Vt[jj][${c}], o[${c}]);`)}
      }`;
  return /* wgsl */ `${PARAMS}
${rowBuffer('Q', 0, p, false)}
${rowBuffer('K', 1, p, false)}
${rowBuffer('V', 2, p, false)}
${rowBuffer('O', 3, p, true)}
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
${p.docs ? '@group(0) @binding(5) var<storage, read> docs: array<i32>;' : ''}
@group(0) @binding(${p.docs ? 6 : 5}) var<uniform> p: P;
var<workgroup> Kt: array<array<vec4<f32>, ${DV}>, ${tile}>;
var<workgroup> Vt: array<array<vec4<f32>, ${DV}>, ${tile}>;
${p.docs ? `var<workgroup> kd: array<i32, ${tile}>;` : ''}
${visibleFn(p)}
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
${ROW_BLOCK}
  // The last query tiles see the most keys: they start first.
  let q0 = (p.tiles - 1u - wid.x) * ${ROWS}u;
  let qLast = min(q0 + ${ROWS - 1}u, p.T - 1u);
  let i = q0 + lid;
  let row = rowBase + min(i, p.T - 1u);
  var q: array<vec4<f32>, ${DV}>;
  var o: array<vec4<f32>, ${DV}>;
${eachVec(p, (c) => `  q[${c}] = ld_Q(row, ${c});\n  o[${c}] = vec4<f32>(0.0);`)}
  let di = ${p.docs ? 'docs[docBase + min(i, p.T - 1u)]' : '0'};
  var m = -3.4028234e38;
  var l = 0.0;
  // Keys [jFirst, qLast]: what row q0's window starts at, to the diagonal of the last row.
  var jFirst = 0u;
  if (p.window > 0u && q0 + 1u > p.window) { jFirst = q0 + 1u - p.window; }
  for (var t = jFirst / ${tile}u; t * ${tile}u <= qLast; t++) {
    let r0 = t * ${tile}u;
${stageRows(p, ['K', 'V'], p.docs ? 'kd[e] = docs[docBase + r];' : '')}
    // Every row of the workgroup sees every key of the tile: no mask tests.
    let whole = ${p.docs ? 'false' : 'true'} && r0 + ${tile}u <= q0 + 1u && (p.window == 0u || r0 + p.window > qLast);
    if (whole) {${key(false)}
    } else {${key(true)}
    }
  }
  if (i < p.T) {
    let inv = 1.0 / l;
${eachVec(p, (c) => `    st_O(row, ${c}, o[${c}] * inv);`)}
    stats[row] = m + log(l);
  }
}`;
}

/** out = masked softmax(scale · q kᵀ) v; the saved state holds the rows' log-sum-exp (and room for Δ). */
export function attention(rt: GpuRuntime, q: GpuStorage, k: GpuStorage, v: GpuStorage, out: GpuStorage, scale: number, d: MixerDims): SavedState {
  const p = plan(rt, d);
  const rows = d.B * d.H * d.T;
  const stats = rt.alloc('float32', 2 * rows);
  if (rows * d.D === 0) return { storages: [stats] };
  const kern = rt.kernel(`attention_D${p.D}${p.docs ? '_docs' : ''}`, forwardWgsl(p),
    ['read', 'read', 'read', 'read_write', 'read_write', ...(p.docs ? ['read' as const] : [])]);
  const tiles = Math.ceil(d.T / ROWS);
  const bufs = [q, k, v, out, stats, ...(p.docs ? [d.docIds as GpuStorage] : [])];
  rt.run(kern, bufs, params(d, scale, tiles), grid(rt, tiles, d.B * d.H));
  return { storages: [stats] };
}

// ---- backward ----

/** Δ_i = dO_i · O_i into stats[BHT + i]: a thread per row. */
function deltaWgsl(p: Plan): string {
  return /* wgsl */ `
struct P { rows: u32 }
${rowBuffer('G', 0, p, false)}
${rowBuffer('O', 1, p, false)}
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
${LINEAR_INDEX}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linearIndex(gid, nwg);
  if (i >= p.rows) { return; }
  var acc = vec4<f32>(0.0);
${eachVec(p, (c) => `  acc = fma(ld_G(i, ${c}), ld_O(i, ${c}), acc);`)}
  stats[p.rows + i] = ${dot4('acc')};
}`;
}

/**
 * dK, dV: a workgroup per tile of ROWS keys walks the query tiles that see any of its keys,
 * staging q, dO, lse and Δ rows. Joined: a thread per key row keeps k, v, dk and dv in registers
 * (4·D floats). Split: two threads per key row, in separate subgroups, one for dv (k, dv), one for
 * dk (k, v, dk): q·k is computed twice, but no thread holds more than 3·D floats (registers the
 * joined form may spill at D = 64 on GPUs capped at 255 per thread).
 */
function keysWgsl(p: Plan): string {
  const { DV, tile } = p;
  const threads = p.splitKeys ? 2 * ROWS : ROWS;
  // Split: a thread accumulates dk or dv, in the one array dk.
  const dvName = p.splitKeys ? 'dk' : 'dv';
  const query = (masked: boolean, want: 'both' | 'dv' | 'dk'): string => `
      for (var ii = 0u; ii < ${tile}u; ii++) {
        ${masked ? `if (!visible(r0 + ii, j, ${p.docs ? 'qd[ii]' : '0'}, dj)) { continue; }` : ''}
${dotRows(p, 'qk', (c) => `Qt[ii][${c}]`, (c) => `k[${c}]`)}
        let pr = exp(qk * p.scale - ls[ii]);
${want !== 'dv' ? `${dotRows(p, 'gv', (c) => `Gt[ii][${c}]`, (c) => `v[${c}]`)}
        let ds = pr * (gv - dl[ii]);` : ''}
${eachVec(p, (c) => [
    want !== 'dk' ? `        ${dvName}[${c}] = fma(vec4<f32>(pr), Gt[ii][${c}], ${dvName}[${c}]);` : '',
    want !== 'dv' ? `        dk[${c}] = fma(vec4<f32>(ds), Qt[ii][${c}], dk[${c}]);` : '',
  ].filter(Boolean).join('\n'))}
      }`;
  const tileBody = (masked: boolean): string => (p.splitKeys
    ? `
      if (dkThread) {${query(masked, 'dk')}
      } else {${query(masked, 'dv')}
      }`
    : query(masked, 'both'));
  return /* wgsl */ `${PARAMS}
${rowBuffer('Q', 0, p, false)}
${rowBuffer('K', 1, p, false)}
${rowBuffer('V', 2, p, false)}
${rowBuffer('G', 3, p, false)}
@group(0) @binding(4) var<storage, read> stats: array<f32>;
${rowBuffer('DK', 5, p, true)}
${rowBuffer('DV', 6, p, true)}
${p.docs ? '@group(0) @binding(7) var<storage, read> docs: array<i32>;' : ''}
@group(0) @binding(${p.docs ? 8 : 7}) var<uniform> p: P;
var<workgroup> Qt: array<array<vec4<f32>, ${DV}>, ${tile}>;
var<workgroup> Gt: array<array<vec4<f32>, ${DV}>, ${tile}>;
var<workgroup> ls: array<f32, ${tile}>;
var<workgroup> dl: array<f32, ${tile}>;
${p.docs ? `var<workgroup> qd: array<i32, ${tile}>;` : ''}
${visibleFn(p)}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
${ROW_BLOCK}
  // The first key tiles are seen by the most queries: they start first.
  let k0 = wid.x * ${ROWS}u;
  let kLast = min(k0 + ${ROWS - 1}u, p.T - 1u);
  let j = k0 + lid % ${ROWS}u;
  ${p.splitKeys ? `let dkThread = lid >= ${ROWS}u;` : ''}
  let row = rowBase + min(j, p.T - 1u);
  let BHT = p.BH * p.T;
  var k: array<vec4<f32>, ${DV}>;
  var v: array<vec4<f32>, ${DV}>;
  var dk: array<vec4<f32>, ${DV}>;
  ${p.splitKeys ? '' : `var dv: array<vec4<f32>, ${DV}>;`}
${eachVec(p, (c) => `  k[${c}] = ld_K(row, ${c});
  v[${c}] = ld_V(row, ${c});
  dk[${c}] = vec4<f32>(0.0);${p.splitKeys ? '' : `
  dv[${c}] = vec4<f32>(0.0);`}`)}
  let dj = ${p.docs ? 'docs[docBase + min(j, p.T - 1u)]' : '0'};
  // Queries [k0, iEnd): from the first key's diagonal to the last key's window end.
  var iEnd = p.T;
  if (p.window > 0u) { iEnd = min(p.T, kLast + p.window); }
  for (var t = k0 / ${tile}u; t * ${tile}u < iEnd; t++) {
    let r0 = t * ${tile}u;
${stageRows(p, ['Q', 'G'], `ls[e] = stats[rowBase + r];
      dl[e] = stats[BHT + rowBase + r];${p.docs ? '\n      qd[e] = docs[docBase + r];' : ''}`, threads)}
    // Every query of the tile sees every key of the workgroup: no mask tests.
    let whole = ${p.docs ? 'false' : 'true'} && r0 >= kLast && r0 + ${tile}u <= p.T && (p.window == 0u || r0 + ${tile - 1}u < k0 + p.window);
    if (whole) {${tileBody(false)}
    } else {${tileBody(true)}
    }
  }
  if (j < p.T) {
${p.splitKeys
    ? `    if (dkThread) {
${eachVec(p, (c) => `      st_DK(row, ${c}, dk[${c}] * p.scale);`)}
    } else {
${eachVec(p, (c) => `      st_DV(row, ${c}, dk[${c}]);`)}
    }`
    : eachVec(p, (c) => `    st_DK(row, ${c}, dk[${c}] * p.scale);
    st_DV(row, ${c}, dv[${c}]);`)}
  }
}`;
}

/** dQ: a workgroup per tile of ROWS queries (q, dO, dq in registers) walks the key tiles it sees. */
function queriesWgsl(p: Plan): string {
  const { DV, tile } = p;
  const key = (masked: boolean): string => `
      for (var jj = 0u; jj < ${tile}u; jj++) {
        ${masked ? `if (!visible(i, r0 + jj, di, ${p.docs ? 'kd[jj]' : '0'})) { continue; }` : ''}
${dotRows(p, 'qk', (c) => `q[${c}]`, (c) => `Kt[jj][${c}]`)}
${dotRows(p, 'gv', (c) => `g[${c}]`, (c) => `Vt[jj][${c}]`)}
        let ds = exp(qk * p.scale - lse) * (gv - delta);
${eachVec(p, (c) => `        dq[${c}] = fma(vec4<f32>(ds), Kt[jj][${c}], dq[${c}]);`)}
      }`;
  return /* wgsl */ `${PARAMS}
${rowBuffer('Q', 0, p, false)}
${rowBuffer('K', 1, p, false)}
${rowBuffer('V', 2, p, false)}
${rowBuffer('G', 3, p, false)}
@group(0) @binding(4) var<storage, read> stats: array<f32>;
${rowBuffer('DQ', 5, p, true)}
${p.docs ? '@group(0) @binding(6) var<storage, read> docs: array<i32>;' : ''}
@group(0) @binding(${p.docs ? 7 : 6}) var<uniform> p: P;
var<workgroup> Kt: array<array<vec4<f32>, ${DV}>, ${tile}>;
var<workgroup> Vt: array<array<vec4<f32>, ${DV}>, ${tile}>;
${p.docs ? `var<workgroup> kd: array<i32, ${tile}>;` : ''}
${visibleFn(p)}
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
${ROW_BLOCK}
  let q0 = (p.tiles - 1u - wid.x) * ${ROWS}u;
  let qLast = min(q0 + ${ROWS - 1}u, p.T - 1u);
  let i = q0 + lid;
  let row = rowBase + min(i, p.T - 1u);
  var q: array<vec4<f32>, ${DV}>;
  var g: array<vec4<f32>, ${DV}>;
  var dq: array<vec4<f32>, ${DV}>;
${eachVec(p, (c) => `  q[${c}] = ld_Q(row, ${c});\n  g[${c}] = ld_G(row, ${c});\n  dq[${c}] = vec4<f32>(0.0);`)}
  let lse = stats[row];
  let delta = stats[p.BH * p.T + row];
  let di = ${p.docs ? 'docs[docBase + min(i, p.T - 1u)]' : '0'};
  var jFirst = 0u;
  if (p.window > 0u && q0 + 1u > p.window) { jFirst = q0 + 1u - p.window; }
  for (var t = jFirst / ${tile}u; t * ${tile}u <= qLast; t++) {
    let r0 = t * ${tile}u;
${stageRows(p, ['K', 'V'], p.docs ? 'kd[e] = docs[docBase + r];' : '')}
    let whole = ${p.docs ? 'false' : 'true'} && r0 + ${tile}u <= q0 + 1u && (p.window == 0u || r0 + p.window > qLast);
    if (whole) {${key(false)}
    } else {${key(true)}
    }
  }
  if (i < p.T) {
${eachVec(p, (c) => `    st_DQ(row, ${c}, dq[${c}] * p.scale);`)}
  }
}`;
}

/** The adjoint of attention(): dq, dk, dv from g = ∂L/∂out, the saved log-sum-exp rows and out. */
export function attentionBackward(rt: GpuRuntime, q: GpuStorage, k: GpuStorage, v: GpuStorage, out: GpuStorage, saved: SavedState,
  g: GpuStorage, scale: number, dq: GpuStorage, dk: GpuStorage, dv: GpuStorage, d: MixerDims): void {
  const rows = d.B * d.H * d.T;
  if (rows * d.D === 0) return;
  const p = plan(rt, d);
  const stats = saved.storages[0] as GpuStorage;
  const docs = p.docs ? [d.docIds as GpuStorage] : [];
  const docAccess = p.docs ? ['read' as const] : [];
  const delta = rt.kernel(`attentionDelta_D${p.D}`, deltaWgsl(p), ['read', 'read', 'read_write']);
  rt.run(delta, [g, out, stats], new ParamWriter().u32(rows), grid1d(rows, WG, rt.limits.maxComputeWorkgroupsPerDimension));
  const tiles = Math.ceil(d.T / ROWS);
  const pw = params(d, scale, tiles);
  const keys = rt.kernel(`attentionKeys_D${p.D}${p.docs ? '_docs' : ''}${p.splitKeys ? '_split' : ''}`, keysWgsl(p),
    ['read', 'read', 'read', 'read', 'read', 'read_write', 'read_write', ...docAccess]);
  rt.run(keys, [q, k, v, g, stats, dk, dv, ...docs], pw, grid(rt, tiles, d.B * d.H));
  const queries = rt.kernel(`attentionQueries_D${p.D}${p.docs ? '_docs' : ''}`, queriesWgsl(p),
    ['read', 'read', 'read', 'read', 'read', 'read_write', ...docAccess]);
  rt.run(queries, [q, k, v, g, stats, dq, ...docs], pw, grid(rt, tiles, d.B * d.H));
}
