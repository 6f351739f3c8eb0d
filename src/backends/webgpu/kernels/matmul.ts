// The fast matmul of the webgpu backend (MatmulParams: batches with strides and offsets,
// transposes, accumulate). Three kernels, each generated per tile shape and compiled once:
// - registerTiled (f32, the default): a workgroup computes a BM×BN tile of C, each thread a TM×TN
//   block held in registers; K advances BK at a time through two workgroup-memory buffers used in
//   turn: a step stores the operands loaded during the previous one, starts loading the next,
//   waits at the step's one barrier and computes (a buffer is rewritten only two steps later,
//   after every thread has passed the barrier between). Operands are read as vec4 where rows and
//   offsets allow.
// - registerTiled with f16 operands (opt-in mixed precision): the same kernel with the staged
//   operands rounded to f16 on load and products summed in f32.
// - subgroupMatrix (opt-in, Dawn's experimental 'chromium-experimental-subgroup-matrix', 16×16×16
//   f16 → f32, i.e. tensor cores): operands staged through workgroup memory as f16, each
//   subgroup accumulating a block of 16×16 result fragments.
// Loads are bounds-checked (zeros outside A and B), and so are stores, so every kernel handles
// every shape. core.ts's matmulTiled is the reference twin (test/webgpu-matmul.test.ts).
import type { MatmulParams } from '../../../core/backend.ts';
import type { AdapterSummary } from '../device.ts';
import { ParamWriter, type GpuRuntime, type GpuStorage } from '../runtime.ts';
import { matmulTiled } from './core.ts';

/** 'f32' (default): exact float32 products. 'f16': operands rounded to f16, sums in f32. */
export type MatmulPrecision = 'f32' | 'f16';

/** Which kernel ran a matmul (benchmarks and tests report it). */
export type MatmulPath = 'tiled16' | 'registerTiled' | 'registerTiled-f16' | 'subgroupMatrix-f16';

/** CUBIT_WEBGPU_MATMUL=f16 opts in to mixed precision (Node); the default is f32. */
export function matmulPrecisionFromEnv(): MatmulPrecision {
  const v = typeof process !== 'undefined' ? process.env?.CUBIT_WEBGPU_MATMUL : undefined;
  if (v === undefined || v === '' || v === 'f32') return 'f32';
  if (v === 'f16') return 'f16';
  throw new Error(`CUBIT_WEBGPU_MATMUL must be 'f32' or 'f16', got '${v}'`);
}

// ---- register-tiled kernel ----

/** A register-tiled configuration: workgroup tile BM×BN, per-thread block TM×TN, K step BK. */
export interface Tile { bm: number; bn: number; tm: number; tn: number; bk: number }

/** Products with fewer outputs than this go to the 16×16 kernel. */
export const MIN_OUTPUTS = 128 * 128;

/** The configurations the planner picks from, largest first (named for benchmarks). */
export const TILES: Record<string, Tile> = {
  '128x128': { bm: 128, bn: 128, tm: 8, tn: 8, bk: 16 },
  '128x64': { bm: 128, bn: 64, tm: 8, tn: 4, bk: 16 },
  '64x64': { bm: 64, bn: 64, tm: 4, tn: 4, bk: 16 },
  '32x32': { bm: 32, bn: 32, tm: 4, tn: 4, bk: 16 },
};

const threadsOf = (t: Tile): number => (t.bm / t.tm) * (t.bn / t.tn);
/** Workgroup memory of a tile: A and B steps, two buffers each. */
const sharedBytes = (t: Tile, operandBytes: number): number => 2 * (t.bm + t.bn) * t.bk * operandBytes;

function checkTile(t: Tile): void {
  const threads = threadsOf(t);
  const ok = t.tm % 4 === 0 && t.tn % 4 === 0 && t.bm % t.tm === 0 && t.bn % t.tn === 0 && t.bk % 4 === 0
    && (t.bm * t.bk / 4) % threads === 0 && (t.bn * t.bk / 4) % threads === 0;
  if (!ok) throw new Error(`matmul tile ${JSON.stringify(t)}: blocks must be multiples of 4 and each step's loads must spread evenly over the ${threads} threads`);
}

/**
 * vec4 reads of an operand need its contiguous axis a multiple of 4 and every batch's start
 * 4-aligned (element offsets; storage bindings start 256-byte aligned).
 */
function vec4Ok(offset: number, batchStride: number, batch: number, rowLength: number): boolean {
  return offset % 4 === 0 && (batch <= 1 || batchStride % 4 === 0) && rowLength % 4 === 0;
}

interface Layout { transA: boolean; transB: boolean; vecA: boolean; vecB: boolean; vecC: boolean }

function layoutOf(p: MatmulParams): Layout {
  return {
    transA: p.transA, transB: p.transB,
    vecA: vec4Ok(p.aOffset, p.aBatchStride, p.batch, p.transA ? p.m : p.k),
    vecB: vec4Ok(p.bOffset, p.bBatchStride, p.batch, p.transB ? p.k : p.n),
    vecC: vec4Ok(p.cOffset, p.cBatchStride, p.batch, p.n),
  };
}

const PARAMS_WGSL = /* wgsl */ `
struct P { m: u32, n: u32, k: u32, aOffset: u32, bOffset: u32, cOffset: u32,
  aBatch: u32, bBatch: u32, cBatch: u32, accumulate: u32, zBase: u32, flags: u32 }`;

/** The uniform of a dispatch; flags: 1 transA, 2 transB, 4/8/16 vec4 reads of A/B/C. */
function params(p: MatmulParams, z0: number): ParamWriter {
  const l = layoutOf(p);
  const flags = (l.transA ? 1 : 0) | (l.transB ? 2 : 0) | (l.vecA ? 4 : 0) | (l.vecB ? 8 : 0) | (l.vecC ? 16 : 0);
  return new ParamWriter().u32(p.m, p.n, p.k, p.aOffset, p.bOffset, p.cOffset,
    p.aBatchStride, p.bBatchStride, p.cBatchStride, p.accumulate ? 1 : 0, z0, flags);
}

/**
 * WGSL of `fn name(base, r, c, rows, cols, vec) -> vec4<f32>`: elements (r, c…c+3) of a row-major
 * rows×cols matrix at `base` in `buf` (an array of vec4; its contiguous axis is c), zero outside
 * it. `vec` (cols and base 4-aligned): one vec4 read; else four checked scalar reads.
 */
function quadLoader(name: string, buf: string): string {
  return /* wgsl */ `
fn ${name}(base: u32, r: u32, c: u32, rows: u32, cols: u32, vec: bool) -> vec4<f32> {
  if (r >= rows || c >= cols) { return vec4<f32>(0.0); }
  let at = base + r * cols + c;
  if (vec) { return ${buf}[at / 4u]; }
  var v = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) {
    let x = at + e;
    if (c + e < cols) { v[e] = ${buf}[x / 4u][x % 4u]; }
  }
  return v;
}`;
}

/** The workgroup-tile origin and batch of this workgroup, and each operand's batch base. */
const TILE_ORIGIN = /* wgsl */ `
  let q = wid.z + p.zBase;
  let aBase = p.aOffset + q * p.aBatch;
  let bBase = p.bOffset + q * p.bBatch;
  let cBase = p.cOffset + q * p.cBatch;`;

/**
 * WGSL of the register-tiled kernel for tile t. Transposes and vec4 alignment are uniform flags
 * read at run time (branches every thread takes alike), so one pipeline per tile serves every
 * layout (Mesa lavapipe takes 15–50 s to compile each one).
 */
function registerTiledWgsl(t: Tile, f16: boolean): string {
  checkTile(t);
  const { bm, bn, tm, tn, bk } = t;
  const tx = bn / tn, ty = bm / tm, threads = tx * ty;
  const S = f16 ? 'f16' : 'f32';
  const la = (bm * bk) / 4 / threads, lb = (bn * bk) / 4 / threads;
  const R = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
  const cvt = (x: string): string => (f16 ? `vec4<f16>(${x})` : x);
  const sc = (x: string): string => (f16 ? `f16(${x})` : x);
  // Each thread's s-th quad of a step: four values along the stored matrix's contiguous axis
  // (A is stored m×k, or k×m when transposed; B k×n, or n×k). A quad along the staged row axis
  // (k×m for A, k×n for B) is stored whole; one along k is spread over four staged rows.
  // As[kk·BM/4 + row/4] holds A(row, kk) in lane row%4; Bs[kk·BN/4 + col/4] holds B(kk, col) in
  // lane col%4; the two step buffers sit one above the other (kk in 0…BK−1 and BK…2BK−1).
  const v = (s: number): string => `(lid + ${threads * s}u)`;
  const loads = [
    ...R(la).map((s) => `if (transA) { ra${s} = loadA(aBase, l0 + ${v(s)} / ${bm / 4}u, i0 + (${v(s)} % ${bm / 4}u) * 4u, p.k, p.m, vecA); }
    else { ra${s} = loadA(aBase, i0 + ${v(s)} / ${bk / 4}u, l0 + (${v(s)} % ${bk / 4}u) * 4u, p.m, p.k, vecA); }`),
    ...R(lb).map((s) => `if (transB) { rb${s} = loadB(bBase, j0 + ${v(s)} / ${bk / 4}u, l0 + (${v(s)} % ${bk / 4}u) * 4u, p.n, p.k, vecB); }
    else { rb${s} = loadB(bBase, l0 + ${v(s)} / ${bn / 4}u, j0 + (${v(s)} % ${bn / 4}u) * 4u, p.k, p.n, vecB); }`),
  ].join('\n    ');
  const spread = (arr: string, reg: string, s: number, buf: string, width: number): string => {
    const row = `${v(s)} / ${bk / 4}u`, kq = `(${v(s)} % ${bk / 4}u) * 4u`;
    return `{ let r = ${row}; let at = (${buf} + ${kq}) * ${width / 4}u + r / 4u; ${R(4).map((e) => `${arr}[at + ${e * width / 4}u][r % 4u] = ${sc(`${reg}${s}[${e}]`)};`).join(' ')} }`;
  };
  const stores = (buf: string): string => [
    ...R(la).map((s) => `if (transA) { As[(${buf} + ${v(s)} / ${bm / 4}u) * ${bm / 4}u + ${v(s)} % ${bm / 4}u] = ${cvt(`ra${s}`)}; }
    else ${spread('As', 'ra', s, buf, bm)}`),
    ...R(lb).map((s) => `if (transB) ${spread('Bs', 'rb', s, buf, bn)}
    else { Bs[(${buf} + ${v(s)} / ${bn / 4}u) * ${bn / 4}u + ${v(s)} % ${bn / 4}u] = ${cvt(`rb${s}`)}; }`),
  ].join('\n    ');
  // Thread (tx, ty) owns rows 4·(ty + TY·r) + e and columns 4·(tx + TX·c) + 0…3: its reads of a
  // staged row are TX consecutive vec4 across a subgroup (no bank conflicts) and broadcasts.
  const wide = (x: string): string => (f16 ? `vec4<f32>(${x})` : x);
  const body = [
    ...R(tm / 4).map((r) => `let a${r} = ${wide(`As[aRow + ${ty * r}u]`)};`),
    ...R(tn / 4).map((c) => `let b${c} = ${wide(`Bs[bRow + ${tx * c}u]`)};`),
    ...R(tm / 4).flatMap((r) => R(4).flatMap((e) => R(tn / 4).map((c) => `c${4 * r + e}_${c} = fma(vec4<f32>(a${r}[${e}]), b${c}, c${4 * r + e}_${c});`))),
  ].map((x) => `      ${x}`).join('\n');
  const accs = R(tm).flatMap((i) => R(tn / 4).map((c) => `var c${i}_${c} = vec4<f32>(0.0);`)).join(' ');
  const outs = R(tm / 4).flatMap((r) => R(4).flatMap((e) => R(tn / 4).map((c) =>
    `store(cBase, i0 + 4u * (ty + ${ty * r}u) + ${e}u, j0 + 4u * (tx + ${tx * c}u), c${4 * r + e}_${c}, vecC);`))).join('\n  ');
  return /* wgsl */ `${f16 ? 'enable f16;\n' : ''}${PARAMS_WGSL}
@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> C: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: P;
var<workgroup> As: array<vec4<${S}>, ${2 * bk * bm / 4}>;
var<workgroup> Bs: array<vec4<${S}>, ${2 * bk * bn / 4}>;
${quadLoader('loadA', 'A')}
${quadLoader('loadB', 'B')}
fn store(base: u32, i: u32, j: u32, v: vec4<f32>, vec: bool) {
  if (i >= p.m || j >= p.n) { return; }
  let at = base + i * p.n + j;
  let acc = p.accumulate != 0u;
  if (vec) {
    C[at / 4u] = select(v, C[at / 4u] + v, acc);
    return;
  }
  for (var e = 0u; e < 4u; e++) {
    let x = at + e;
    if (j + e < p.n) { C[x / 4u][x % 4u] = select(v[e], C[x / 4u][x % 4u] + v[e], acc); }
  }
}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${TILE_ORIGIN}
  let transA = (p.flags & 1u) != 0u;
  let transB = (p.flags & 2u) != 0u;
  let vecA = (p.flags & 4u) != 0u;
  let vecB = (p.flags & 8u) != 0u;
  let vecC = (p.flags & 16u) != 0u;
  let i0 = wid.y * ${bm}u;
  let j0 = wid.x * ${bn}u;
  let tx = lid % ${tx}u;
  let ty = lid / ${tx}u;
  ${accs}
  ${R(la).map((s) => `var ra${s}: vec4<f32>;`).join(' ')} ${R(lb).map((s) => `var rb${s}: vec4<f32>;`).join(' ')}
  let steps = (p.k + ${bk - 1}u) / ${bk}u;
  {
    let l0 = 0u;
    ${loads}
  }
  for (var st = 0u; st < steps; st++) {
    let cur = (st % 2u) * ${bk}u;
    ${stores('cur')}
    if (st + 1u < steps) {
      let l0 = (st + 1u) * ${bk}u;
    ${loads}
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${bk}u; kk++) {
      let aRow = (cur + kk) * ${bm / 4}u + ty;
      let bRow = (cur + kk) * ${bn / 4}u + tx;
${body}
    }
  }
  ${outs}
}`;
}

/** Dispatches a kernel over C's tiles, batches along z (in chunks of the per-dimension limit). */
function dispatch(rt: GpuRuntime, name: string, wgsl: string, a: GpuStorage, b: GpuStorage, out: GpuStorage, p: MatmulParams, bm: number, bn: number): void {
  const k = rt.kernel(name, wgsl, ['read', 'read', 'read_write']);
  const max = rt.limits.maxComputeWorkgroupsPerDimension;
  const gx = Math.ceil(p.n / bn), gy = Math.ceil(p.m / bm);
  if (gx > max || gy > max) throw new Error(`webgpu matmul: ${p.m}×${p.n} needs ${gy}×${gx} tiles, more than ${max} per dimension`);
  for (let z0 = 0; z0 < p.batch; z0 += max) rt.run(k, [a, b, out], params(p, z0), [gx, gy, Math.min(max, p.batch - z0)]);
}

/** The register-tiled matmul with tile `t`; f16: operands rounded to f16 as they are staged. */
export function matmulRegisterTiled(rt: GpuRuntime, a: GpuStorage, b: GpuStorage, out: GpuStorage, p: MatmulParams, t: Tile, f16 = false): void {
  if (p.batch === 0 || p.m === 0 || p.n === 0) return;
  if (f16 && !rt.has('shader-f16')) throw new Error("webgpu matmul: f16 operands need the adapter feature 'shader-f16'");
  if (!tileFits(rt, t, f16)) throw new Error(`webgpu matmul: tile ${t.bm}x${t.bn} does not fit this device's workgroup limits`);
  const name = `matmulRT_${t.bm}x${t.bn}_${t.tm}x${t.tn}_k${t.bk}${f16 ? '_f16' : ''}`;
  dispatch(rt, name, registerTiledWgsl(t, f16), a, b, out, p, t.bm, t.bn);
}

export function tileFits(rt: GpuRuntime, t: Tile, f16 = false): boolean {
  return threadsOf(t) <= rt.limits.maxComputeInvocationsPerWorkgroup && sharedBytes(t, f16 ? 2 : 4) <= rt.limits.maxComputeWorkgroupStorageSize;
}

/**
 * The tile for a problem: the largest whose tile count (over all batches) still fills a large GPU
 * (≥ 2 workgroups for each of ~130 multiprocessors for the big tiles), so small products use
 * small tiles rather than leave most of the GPU idle. null (the 16×16 kernel) for products with m
 * or n below 32 (decoding, thin gradients: bigger tiles would compute mostly padding) and for
 * small products (fewer than 128² outputs in all, or k < 16), which launch latency dominates.
 */
export function pickTile(p: MatmulParams, fits: (t: Tile) => boolean = () => true): Tile | null {
  if (p.m < 32 || p.n < 32 || p.k < 16 || p.m * p.n * p.batch < MIN_OUTPUTS) return null;
  const count = (t: Tile): number => Math.ceil(p.m / t.bm) * Math.ceil(p.n / t.bn) * p.batch;
  for (const [name, minCount] of [['128x128', 256], ['128x64', 256], ['64x64', 128]] as const) {
    if (fits(TILES[name]) && count(TILES[name]) >= minCount) return TILES[name];
  }
  return fits(TILES['32x32']) ? TILES['32x32'] : null;
}

// ---- subgroup-matrix kernel (f16 operands, f32 accumulation) ----

/** A subgroup-matrix configuration: workgroup tile BM×BN of WR×WC subgroups, K step BK. */
export interface SubgroupTile { bm: number; bn: number; wr: number; wc: number; bk: number }

export const SUBGROUP_TILES: Record<string, SubgroupTile> = {
  '128x128': { bm: 128, bn: 128, wr: 4, wc: 2, bk: 32 },
  '64x64': { bm: 64, bn: 64, wr: 2, wc: 2, bk: 32 },
};

/** f16 elements of padding per staged row: rows 16 bytes apart mod 128 spread over the banks. */
const PAD = 8;

function subgroupStaging(t: SubgroupTile, l: Layout): { aStride: number; aSize: number; bStride: number; bSize: number } {
  // A staged as stored: m×k rows (k×m when transposed); B as stored: k×n (n×k when transposed).
  const aStride = (l.transA ? t.bm : t.bk) + PAD, bStride = (l.transB ? t.bk : t.bn) + PAD;
  return { aStride, aSize: (l.transA ? t.bk : t.bm) * aStride, bStride, bSize: (l.transB ? t.bn : t.bk) * bStride };
}

/** Workgroup memory: two f16 staging buffers per operand and a 16×16 f32 scratch per subgroup. */
function subgroupSharedBytes(t: SubgroupTile, l: Layout): number {
  const s = subgroupStaging(t, l);
  return 2 * 2 * (s.aSize + s.bSize) + 4 * 256 * t.wr * t.wc;
}

function subgroupMatrixWgsl(t: SubgroupTile, l: Layout, sgSize: number): string {
  const { bm, bn, wr, wc, bk } = t;
  const subgroups = wr * wc, threads = subgroups * sgSize;
  const fm = bm / (16 * wr), fn = bn / (16 * wc);
  if (!Number.isInteger(fm) || !Number.isInteger(fn) || bk % 16 !== 0) throw new Error(`subgroup matmul tile ${JSON.stringify(t)}: blocks must be multiples of 16`);
  const la = (bm * bk) / 4 / threads, lb = (bn * bk) / 4 / threads;
  if (!Number.isInteger(la) || !Number.isInteger(lb)) throw new Error(`subgroup matmul tile ${JSON.stringify(t)}: loads do not spread evenly over ${threads} threads`);
  const s = subgroupStaging(t, l);
  const R = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
  // Quads run along the stored matrices' contiguous axes, and land contiguously in staging.
  const aq = l.transA ? bm / 4 : bk / 4, bq = l.transB ? bk / 4 : bn / 4;
  const v = (st: number): string => `(lid + ${threads * st}u)`;
  const aLoad = (st: number): string => (l.transA
    ? `ra${st} = loadA(aBase, l0 + ${v(st)} / ${aq}u, i0 + (${v(st)} % ${aq}u) * 4u, p.k, p.m, vecA);`
    : `ra${st} = loadA(aBase, i0 + ${v(st)} / ${aq}u, l0 + (${v(st)} % ${aq}u) * 4u, p.m, p.k, vecA);`);
  const bLoad = (st: number): string => (l.transB
    ? `rb${st} = loadB(bBase, j0 + ${v(st)} / ${bq}u, l0 + (${v(st)} % ${bq}u) * 4u, p.n, p.k, vecB);`
    : `rb${st} = loadB(bBase, l0 + ${v(st)} / ${bq}u, j0 + (${v(st)} % ${bq}u) * 4u, p.k, p.n, vecB);`);
  const put = (arr: string, size: number, stride: number, q: number, reg: string, st: number, buf: string): string => {
    const at = `${buf} * ${size}u + (${v(st)} / ${q}u) * ${stride}u + (${v(st)} % ${q}u) * 4u`;
    return `{ let at = ${at}; ${R(4).map((e) => `${arr}[at + ${e}u] = f16(${reg}${st}[${e}]);`).join(' ')} }`;
  };
  const loadAll = [...R(la).map(aLoad), ...R(lb).map(bLoad)].join('\n    ');
  const storeAll = (buf: string): string => [
    ...R(la).map((st) => put('As', s.aSize, s.aStride, aq, 'ra', st, buf)),
    ...R(lb).map((st) => put('Bs', s.bSize, s.bStride, bq, 'rb', st, buf)),
  ].join('\n    ');
  const left = 'subgroup_matrix_left<f16, 16, 16>', right = 'subgroup_matrix_right<f16, 16, 16>', result = 'subgroup_matrix_result<f32, 16, 16>';
  // Fragment (x, y) of this subgroup covers tile rows 16·(sr·FM + x)… and columns 16·(sc·FN + y)….
  // Left fragment: 16 rows × 16 k; right: 16 k × 16 columns. Offsets in staged f16 elements.
  const aOff = (x: number, ks: number): string => (l.transA
    ? `cur * ${s.aSize}u + ${16 * ks * s.aStride}u + (sr * ${fm}u + ${x}u) * 16u`
    : `cur * ${s.aSize}u + (sr * ${fm}u + ${x}u) * ${16 * s.aStride}u + ${16 * ks}u`);
  const bOff = (y: number, ks: number): string => (l.transB
    ? `cur * ${s.bSize}u + (sc * ${fn}u + ${y}u) * ${16 * s.bStride}u + ${16 * ks}u`
    : `cur * ${s.bSize}u + ${16 * ks * s.bStride}u + (sc * ${fn}u + ${y}u) * 16u`);
  const step = R(bk / 16).map((ks) => [
    ...R(fm).map((x) => `let a${x} = subgroupMatrixLoad<${left}>(&As, ${aOff(x, ks)}, ${l.transA}, ${s.aStride}u);`),
    ...R(fn).map((y) => `let b${y} = subgroupMatrixLoad<${right}>(&Bs, ${bOff(y, ks)}, ${l.transB}, ${s.bStride}u);`),
    ...R(fm).flatMap((x) => R(fn).map((y) => `acc${x}_${y} = subgroupMatrixMultiplyAccumulate(a${x}, b${y}, acc${x}_${y});`)),
  ].map((x) => `      ${x}`).join('\n')).map((body) => `    {\n${body}\n    }`).join('\n');
  // Results go out through a 16×16 scratch per subgroup: its lanes then write C with bounds
  // checks and accumulate, whatever C's alignment.
  const epilogue = R(fm).flatMap((x) => R(fn).map((y) => `
  subgroupMatrixStore(&Cs, sg * 256u, acc${x}_${y}, false, 16u);
  workgroupBarrier();
  for (var e = lane; e < 256u; e += ${sgSize}u) {
    let i = i0 + (sr * ${fm}u + ${x}u) * 16u + e / 16u;
    let j = j0 + (sc * ${fn}u + ${y}u) * 16u + e % 16u;
    if (i < p.m && j < p.n) {
      let at = cBase + i * p.n + j;
      C[at] = select(Cs[sg * 256u + e], C[at] + Cs[sg * 256u + e], p.accumulate != 0u);
    }
  }
  workgroupBarrier();`)).join('');
  return /* wgsl */ `enable f16;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);
${PARAMS_WGSL}
@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
var<workgroup> As: array<f16, ${2 * s.aSize}>;
var<workgroup> Bs: array<f16, ${2 * s.bSize}>;
var<workgroup> Cs: array<f32, ${256 * subgroups}>;
${quadLoader('loadA', 'A')}
${quadLoader('loadB', 'B')}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${TILE_ORIGIN}
  let i0 = wid.y * ${bm}u;
  let j0 = wid.x * ${bn}u;
  let vecA = (p.flags & 4u) != 0u;
  let vecB = (p.flags & 8u) != 0u;
  // Subgroups are runs of ${sgSize} consecutive invocations (the adapter's fixed subgroup size).
  let sg = lid / ${sgSize}u;
  let lane = lid % ${sgSize}u;
  let sr = sg / ${wc}u;
  let sc = sg % ${wc}u;
  ${R(fm).flatMap((x) => R(fn).map((y) => `var acc${x}_${y} = ${result}();`)).join(' ')}
  ${R(la).map((st) => `var ra${st}: vec4<f32>;`).join(' ')} ${R(lb).map((st) => `var rb${st}: vec4<f32>;`).join(' ')}
  let steps = (p.k + ${bk - 1}u) / ${bk}u;
  {
    let l0 = 0u;
    ${loadAll}
  }
  for (var st = 0u; st < steps; st++) {
    let cur = st % 2u;
    ${storeAll('cur')}
    if (st + 1u < steps) {
      let l0 = (st + 1u) * ${bk}u;
    ${loadAll}
    }
    workgroupBarrier();
${step}
  }${epilogue}
}`;
}

/** The adapter's fixed subgroup size, or 0 when it varies (the subgroup kernel needs it fixed). */
function fixedSubgroupSize(adapter: AdapterSummary): number {
  const min = adapter.subgroupMinSize ?? 0, max = adapter.subgroupMaxSize ?? 0;
  return min > 0 && min === max ? min : 0;
}

/** Whether the adapter offers the trusted subgroup-matrix configuration (16×16×16, f16 → f32). */
export function hasSubgroupMatrix(rt: GpuRuntime, adapter: AdapterSummary): boolean {
  return rt.has('chromium-experimental-subgroup-matrix') && rt.has('shader-f16') && fixedSubgroupSize(adapter) > 0
    && (adapter.subgroupMatrixConfigs ?? []).some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === 16 && c.N === 16 && c.K === 16);
}

export function subgroupTileFits(rt: GpuRuntime, adapter: AdapterSummary, t: SubgroupTile, p: MatmulParams): boolean {
  const sg = fixedSubgroupSize(adapter);
  return sg > 0 && t.wr * t.wc * sg <= rt.limits.maxComputeInvocationsPerWorkgroup
    && subgroupSharedBytes(t, layoutOf(p)) <= rt.limits.maxComputeWorkgroupStorageSize;
}

/** The subgroup-matrix matmul (experimental: Dawn marks the feature unsafe). */
export function matmulSubgroupMatrix(rt: GpuRuntime, adapter: AdapterSummary, a: GpuStorage, b: GpuStorage, out: GpuStorage, p: MatmulParams, t: SubgroupTile = SUBGROUP_TILES['128x128']): void {
  if (p.batch === 0 || p.m === 0 || p.n === 0) return;
  if (!hasSubgroupMatrix(rt, adapter)) throw new Error("webgpu matmul: subgroup matrices need 'chromium-experimental-subgroup-matrix' with the 16×16×16 f16→f32 configuration, 'shader-f16' and a fixed subgroup size (Dawn: CUBIT_WEBGPU_UNSAFE=1)");
  if (!subgroupTileFits(rt, adapter, t, p)) throw new Error(`webgpu matmul: subgroup tile ${t.bm}x${t.bn} does not fit this device's workgroup limits`);
  const l = layoutOf(p);
  const sg = fixedSubgroupSize(adapter);
  const name = `matmulSG_${t.bm}x${t.bn}_${t.wr}x${t.wc}_k${t.bk}_s${sg}_${+l.transA}${+l.transB}`;
  dispatch(rt, name, subgroupMatrixWgsl(t, l, sg), a, b, out, p, t.bm, t.bn);
}

// ---- the backend's matmul ----

/**
 * The path a matmul takes: the 16×16 kernel for thin products, else the register-tiled f32
 * kernel; with precision 'f16', subgroup matrices where offered, else f16 operands in the
 * register-tiled kernel where 'shader-f16' exists, else f32.
 */
export function matmulPlan(rt: GpuRuntime, adapter: AdapterSummary, p: MatmulParams, precision: MatmulPrecision): { path: MatmulPath; tile?: Tile; subgroupTile?: SubgroupTile } {
  if (precision === 'f16' && pickTile(p) && hasSubgroupMatrix(rt, adapter)) {
    const count = (t: SubgroupTile): number => Math.ceil(p.m / t.bm) * Math.ceil(p.n / t.bn) * p.batch;
    for (const t of Object.values(SUBGROUP_TILES)) {
      if (subgroupTileFits(rt, adapter, t, p) && count(t) >= 128) return { path: 'subgroupMatrix-f16', subgroupTile: t };
    }
    const small = SUBGROUP_TILES['64x64'];
    if (subgroupTileFits(rt, adapter, small, p)) return { path: 'subgroupMatrix-f16', subgroupTile: small };
  }
  const f16 = precision === 'f16' && rt.has('shader-f16');
  const tile = pickTile(p, (t) => tileFits(rt, t, f16));
  if (!tile) return { path: 'tiled16' };
  return { path: f16 ? 'registerTiled-f16' : 'registerTiled', tile };
}

/** The webgpu backend's matmul (WebGPUBackend.matmul). */
export function matmul(rt: GpuRuntime, adapter: AdapterSummary, a: GpuStorage, b: GpuStorage, out: GpuStorage, p: MatmulParams, precision: MatmulPrecision = 'f32'): MatmulPath {
  const plan = matmulPlan(rt, adapter, p, precision);
  if (plan.subgroupTile) matmulSubgroupMatrix(rt, adapter, a, b, out, p, plan.subgroupTile);
  else if (plan.tile) matmulRegisterTiled(rt, a, b, out, p, plan.tile, plan.path === 'registerTiled-f16');
  else matmulTiled(rt, a, b, out, p);
  return plan.path;
}
