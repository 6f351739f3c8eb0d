// The native backend's non-GEMM kernels (native/src/kernels_nn*.c) against their reference twins,
// called at the kernel level on identical float32 inputs: random shapes with odd, 0 and 1 sizes,
// broadcasting, special values (±0, ±∞, NaN). Each case runs on the reference once, then on the
// native backend under every ISA the CPU supports, at 1 and 2 threads; on one ISA, the 2-thread
// result must equal the 1-thread one bit for bit (tasks are cut by shape, not by thread count).
//
// Tolerances (u = 2⁻²⁴ ≈ 6e-8; the reference computes in float64 and rounds once):
//   exact         data movement, selection, comparisons, max/min, IEEE ops whose float32 result
//                 equals the float64-then-rounded one (+ − × ÷ √, and the ops the kernels do in
//                 double), scatterAdd (same order of float adds), dropout masks (bit-identical).
//   ulps(k)       |a − b| ≤ k·u·|b| (+ the smallest normal): vectorised exp (≤ ~2 ulp) and what
//                 is built on it (sigmoid, silu, softmax), libm logf/tanhf.
//   GELU          NR's erfc is within 1.2e-7 relative: ulps(20), i.e. ~1e-6. The reference's erf is
//                 exactly ±1 beyond |z| = 6, so its GELU is only good to ~1e-16·|x| absolute there;
//                 the far tails are checked against an accurate float64 erfc instead.
//   derivatives   silu′ and GELU′ cross zero: a few ulps of |dy| absolute (atol 1e-6, |dy| ~ 1).
//   rel(t)        ‖a − b‖/‖b‖ ≤ t: row reductions taken in float blocks + double (~1e-7), so 1e-6.
//   mean          corrected two-pass: |error| ≤ 2u·|mean| (one ulp: both are rounded) + 4u·mean|x − mean|.
//   AdamW         computed in double in the reference's order: exact.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { BinaryOp, Storage, UnaryOp } from '../src/core/backend.ts';
import type { TypedArray } from '../src/core/dtype.ts';
import { hash32 } from '../src/core/random.ts';
import { Rng } from '../src/core/random.ts';
import { broadcastShapes, broadcastStrides } from '../src/core/shape.ts';
import { loadNativeAddon } from '../src/backends/native/addon.ts';
import { NativeBackend } from '../src/backends/native/backend.ts';
import { ReferenceBackend } from '../src/backends/reference/backend.ts';
import { erf } from '../src/backends/reference/math.ts';
import { nativeTestOptions, requireNative } from './helpers.ts';

const U = 2 ** -24;
const MIN_NORMAL = 2 ** -126;

type Check =
  | { kind: 'exact' }
  | { kind: 'ulps'; k: number; atol?: number }
  | { kind: 'rel'; tol: number }
  | { kind: 'bound'; bound: ArrayLike<number> };
const EXACT: Check = { kind: 'exact' };
const ulps = (k: number, atol = MIN_NORMAL): Check => ({ kind: 'ulps', k, atol });
const rel = (tol: number): Check => ({ kind: 'rel', tol });
/** |a − b| ≤ bound[i]: an error bound worked out per element. */
const bound = (b: ArrayLike<number>): Check => ({ kind: 'bound', bound: b });

type Outputs = Record<string, TypedArray>;

function sameBits(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

/** Throws with the first offending element when `got` fails `check` against `want`. */
function assertCheck(got: TypedArray, want: TypedArray, check: Check, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  if (check.kind === 'rel') {
    let d = 0, n = 0;
    for (let i = 0; i < got.length; i++) {
      if (Number.isNaN(got[i]) !== Number.isNaN(want[i])) assert.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]}`);
      if (Number.isNaN(got[i]) || got[i] === want[i]) { n += Number.isFinite(want[i]) ? want[i] * want[i] : 0; continue; }
      d += (got[i] - want[i]) ** 2;
      n += want[i] * want[i];
    }
    const e = n === 0 ? Math.sqrt(d) : Math.sqrt(d / n);
    assert.ok(e <= check.tol, `${what}: relErr ${e.toExponential(2)} > ${check.tol.toExponential(2)}`);
    return;
  }
  for (let i = 0; i < got.length; i++) {
    const a = got[i], b = want[i];
    if (sameBits(a, b)) continue;
    if (check.kind === 'exact') {
      assert.fail(`${what}[${i}]: got ${Object.is(a, -0) ? '-0' : a}, want ${Object.is(b, -0) ? '-0' : b} (exact)`);
    }
    const allowed: number = check.kind === 'bound' ? check.bound[i] : check.k * U * Math.abs(b) + (check.atol ?? 0);
    if (Number.isFinite(a) && Number.isFinite(b) && Math.abs(a - b) <= allowed) continue;
    const ulpsOff = (Math.abs(a - b) / Math.abs(b) / U).toFixed(1);
    assert.fail(`${what}[${i}]: got ${a}, want ${b} (|diff| ${Math.abs(a - b).toExponential(2)} > ${allowed.toExponential(2)}; ${ulpsOff} ulps)`);
  }
}

// ---- backends and configurations ----

const addon = loadNativeAddon();
const ref = new ReferenceBackend();
const nat = addon ? new NativeBackend(addon) : null;
const configs: { isa: string; threads: number }[] = [];
if (addon) for (const isa of addon.supportedIsas()) for (const threads of [1, 2]) configs.push({ isa, threads });

after(() => {
  if (!addon) return;
  addon.setIsa('auto');
  addon.setThreads(0);
});

/**
 * Runs body on the reference and on every native configuration, checking each output; body
 * builds its inputs from fixed arrays, so every run sees the same values.
 */
function compare(name: string, body: (b: ReferenceBackend) => Outputs, checks: Record<string, Check>): void {
  requireNative();
  const want = body(ref);
  let oneThread: Outputs | null = null;
  for (const { isa, threads } of configs) {
    addon!.setIsa(isa as 'avx512' | 'avx2' | 'generic');
    addon!.setThreads(threads);
    const got = body(nat!);
    for (const [key, check] of Object.entries(checks)) assertCheck(got[key], want[key], check, `${name} [${isa}, ${threads}t] ${key}`);
    if (threads === 1) oneThread = got;
    else if (oneThread) for (const key of Object.keys(checks)) assertCheck(got[key], oneThread[key], EXACT, `${name} [${isa}] ${key}: 2 threads vs 1`);
  }
}

// ---- inputs ----

let seed = 12345;
function normals(n: number, scale = 1, shift = 0): Float32Array {
  const rng = new Rng(seed++);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = shift + scale * rng.normal();
  return v;
}
function uniform(n: number, lo: number, hi: number): Float32Array {
  const rng = new Rng(seed++);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = lo + (hi - lo) * rng.next();
  return v;
}
/** Normals with special values sprinkled in (about one in `every`). */
function withSpecials(n: number, scale = 3, every = 7): Float32Array {
  const v = normals(n, scale);
  const rng = new Rng(seed++);
  const specials = [0, -0, Infinity, -Infinity, NaN, 1e-40, -3e38, 88, -88, 1];
  for (let i = 0; i < n; i++) if (rng.int(every) === 0) v[i] = specials[rng.int(specials.length)];
  return v;
}
function ints(n: number, lo: number, hi: number): Int32Array {
  const rng = new Rng(seed++);
  const v = new Int32Array(n);
  for (let i = 0; i < n; i++) v[i] = lo + rng.int(hi - lo);
  return v;
}
const prod = (s: readonly number[]): number => s.reduce((p, d) => p * d, 1);

/** erfc in float64 with relative accuracy in the tail (continued fraction beyond 2.5). */
function erfc(z: number): number {
  if (z < 2.5) return 1 - erf(z);
  let f = z;
  for (let n = 80; n >= 1; n--) f = z + n / 2 / f;
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
}

function put(b: ReferenceBackend, v: Float32Array | Int32Array): Storage {
  const s = b.alloc(v instanceof Int32Array ? 'int32' : 'float32', v.length);
  b.write(s, v);
  return s;
}
function zeros(b: ReferenceBackend, n: number): Storage {
  const s = b.alloc('float32', n);
  b.write(s, new Float32Array(n));
  return s;
}
const get = (b: ReferenceBackend, s: Storage): TypedArray => b.readSync(s, 0, s.length);

// Row shapes: empty, one, odd, tails of every vector width, long rows.
const ROW_SHAPES: [number, number][] = [[0, 5], [1, 1], [3, 1], [1, 7], [5, 17], [4, 33], [7, 100], [2, 1029], [3, 5000], [300, 257]];

const UNARY_OPS: UnaryOp[] = ['neg', 'abs', 'exp', 'log', 'sqrt', 'rsqrt', 'tanh', 'sigmoid', 'silu', 'gelu', 'relu', 'square', 'reciprocal', 'pow', 'sign'];
const BINARY_OPS: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'maximum', 'minimum', 'pow', 'gt', 'ge', 'lt', 'le', 'eq', 'ne'];

describe('native non-GEMM kernels vs reference, float32', nativeTestOptions(), () => {
  test('fill and copy (offsets, empty, overlapping copy)', () => {
    const src = normals(1000);
    for (const [off, len] of [[0, 0], [3, 1], [5, 333], [0, 1000]]) {
      compare(`fill ${off}+${len}`, (b) => {
        const o = put(b, src);
        b.fill(o, -2.5, off, len);
        b.fill(o, 1 / 3, off + len, Math.min(7, 1000 - off - len));
        return { o: get(b, o) };
      }, { o: EXACT });
      compare(`copy ${off}+${len}`, (b) => {
        const s = put(b, src), o = zeros(b, 1200);
        b.copy(s, off, o, 1200 - len - 1, len);
        const self = put(b, src);
        b.copy(self, 0, self, 3, Math.min(len, 997)); // overlapping, forwards
        b.copy(self, 5, self, 1, Math.min(len, 995)); // overlapping, backwards
        return { o: get(b, o), self: get(b, self) };
      }, { o: EXACT, self: EXACT });
    }
    compare('fill large', (b) => { const o = zeros(b, 300001); b.fill(o, 7, 1, 300000); return { o: get(b, o) }; }, { o: EXACT });
  });

  test('stridedCopy: permutations, slices, broadcasts, flips, ranks 0–6 and a rank-9 fallback', () => {
    const rng = new Rng(99);
    for (let t = 0; t < 60; t++) {
      const rank = t % 7;
      const shape = Array.from({ length: rank }, () => [0, 1, 1, 2, 3, 5, 6][rng.int(7)]);
      if (t % 10 === 9) shape.fill(2); // no empty dims now and then
      // a parent twice as large on each axis, read with a permutation, a slice and a broadcast
      const parent = shape.map((d) => 2 * d + 1);
      const pst: number[] = [];
      for (let d = rank - 1, s = 1; d >= 0; d--) { pst[d] = s; s *= parent[d]; }
      const perm = Array.from({ length: rank }, (_, i) => i).sort(() => rng.next() - 0.5);
      const strides = perm.map((p) => pst[p]);
      const viewShape = perm.map((p) => shape[p]);
      let offset = 0;
      for (let d = 0; d < rank; d++) {
        if (rng.int(4) === 0) strides[d] = 0; // broadcast
        else if (rng.int(5) === 0 && viewShape[d] > 0) { offset += strides[d] * (viewShape[d] - 1); strides[d] = -strides[d]; } // flip
        else offset += strides[d] * rng.int(2); // slice start
      }
      const src = normals(prod(parent) + 3);
      compare(`stridedCopy ${JSON.stringify(viewShape)} ${JSON.stringify(strides)} @${offset}`, (b) => {
        const s = put(b, src), o = zeros(b, prod(viewShape) + 2);
        b.stridedCopy(s, offset, viewShape, strides, o, 1);
        return { o: get(b, o) };
      }, { o: EXACT });
    }
    // transposes big enough for the tiled path, with edges that are not multiples of the tile
    for (const [r, c] of [[67, 129], [256, 100], [8, 4096]]) {
      const src = normals(r * c);
      compare(`transpose ${r}x${c}`, (b) => {
        const s = put(b, src), o = zeros(b, r * c);
        b.stridedCopy(s, 0, [c, r], [1, c], o, 0);
        const o3 = zeros(b, r * c);
        b.stridedCopy(s, 0, [2, c, r / 2 | 0], [(r / 2 | 0) * c, 1, c], o3, 0); // batched
        return { o: get(b, o), o3: get(b, o3) };
      }, { o: EXACT, o3: EXACT });
    }
    const big = normals(2 ** 9 + 5);
    compare('rank 9 (reference fallback)', (b) => {
      const s = put(b, big), o = zeros(b, 512);
      b.stridedCopy(s, 5, [2, 2, 2, 2, 2, 2, 2, 2, 2], [1, 2, 4, 8, 16, 32, 64, 128, 256], o, 0);
      return { o: get(b, o) };
    }, { o: EXACT });
  });

  test('unary: every op, special values, tails, and a size that splits across threads', () => {
    const tol: Record<UnaryOp, Check> = {
      neg: EXACT, abs: EXACT, relu: EXACT, sign: EXACT, square: EXACT, reciprocal: EXACT, sqrt: EXACT, rsqrt: EXACT,
      exp: ulps(4), log: ulps(2), tanh: ulps(4), sigmoid: ulps(6), silu: ulps(8), gelu: ulps(20, 1e-14), pow: ulps(1),
    };
    for (const n of [0, 1, 15, 17, 1001, 300003]) {
      const x = withSpecials(n);
      const pos = uniform(n, 0.01, 50);
      for (const op of UNARY_OPS) {
        const scalars = op === 'pow' ? [2, 1, 0.5, 3, -1.5] : [0];
        for (const scalar of scalars) {
          const input = op === 'pow' && scalar !== 2 && scalar !== 1 && scalar !== 3 ? pos : x;
          compare(`unary ${op}(${scalar}) n=${n}`, (b) => {
            const xs = put(b, input), o = zeros(b, n);
            b.unary(op, xs, o, n, scalar);
            return { o: get(b, o) };
          }, { o: tol[op] });
        }
      }
    }
    // GELU across its tails, against x·erfc(−x/√2)/2 with an accurate erfc: relative accuracy where
    // Φ(x) is tiny (down to float32's denormals)
    requireNative();
    const xs = new Float32Array(4001).map((_, i) => -14 + i * 0.007);
    const want = new Float32Array(xs.length).map((_, i) => 0.5 * xs[i] * erfc(-xs[i] / Math.SQRT2));
    for (const isa of addon!.supportedIsas()) {
      addon!.setIsa(isa);
      const o = zeros(nat!, xs.length);
      nat!.unary('gelu', put(nat!, xs), o, xs.length, 0);
      // denormal outputs come from a product with a denormal Gaussian factor: a few units of 2⁻¹⁴⁹
      assertCheck(get(nat!, o), want, ulps(20, 2 ** -145), `gelu tails [${isa}]`);
    }
  });

  test('unaryBackward: every op', () => {
    const tol: Record<UnaryOp, Check> = {
      neg: EXACT, abs: EXACT, relu: EXACT, sign: EXACT, square: EXACT, reciprocal: EXACT, sqrt: EXACT, rsqrt: EXACT,
      exp: EXACT, log: EXACT, tanh: EXACT, sigmoid: EXACT, pow: ulps(1),
      silu: ulps(12, 1e-6), gelu: ulps(24, 1e-6),
    };
    for (const n of [0, 1, 19, 1001, 300003]) {
      const x = withSpecials(n), g = normals(n), pos = uniform(n, 0.01, 50);
      for (const op of UNARY_OPS) {
        const scalar = op === 'pow' ? 2.5 : 0;
        const input = op === 'log' || op === 'sqrt' || op === 'rsqrt' || op === 'pow' ? pos : x;
        compare(`unaryBackward ${op} n=${n}`, (b) => {
          const xs = put(b, input), y = zeros(b, n), gs = put(b, g), dx = zeros(b, n);
          ref.unary(op, xs, y, n, scalar); // y from one backend for both: only the derivative is compared
          b.unaryBackward(op, xs, y, gs, dx, n, scalar);
          return { dx: get(b, dx) };
        }, { dx: tol[op] });
      }
    }
  });

  test('binary: every op, broadcasting (scalar, row, column, general), special values', () => {
    const pairs: [number[], number[]][] = [
      [[0, 3], [3]], [[1], [1]], [[37], [37]], [[37], []], [[], [37]], [[5, 33], [33]], [[5, 33], [5, 1]],
      [[1, 33], [7, 1]], [[2, 3, 1, 5], [3, 4, 1]], [[4, 1, 6, 1, 3], [5, 1, 2, 3]], [[600, 700], [700]], [[600, 700], [600, 1]],
    ];
    for (const [sa, sb] of pairs) {
      const shape = broadcastShapes(sa, sb, 'test');
      const a = withSpecials(prod(sa), 2, 5), bv = withSpecials(prod(sb), 2, 5);
      // equal entries exercise eq/ne/ge/le and max/min ties
      for (let i = 0; i < Math.min(a.length, bv.length); i += 3) bv[i] = a[i];
      for (const op of BINARY_OPS) {
        compare(`binary ${op} ${JSON.stringify(sa)}∘${JSON.stringify(sb)}`, (b) => {
          const x = put(b, a), y = put(b, bv), o = zeros(b, prod(shape));
          b.binary(op, x, broadcastStrides(sa, shape), y, broadcastStrides(sb, shape), o, shape);
          return { o: get(b, o) };
        }, { o: op === 'pow' ? ulps(1) : EXACT });
      }
    }
  });

  test('where: float32 and int32 conditions (±0, NaN), broadcasting', () => {
    const cases: [number[], number[], number[]][] = [[[7], [7], [7]], [[3, 1], [1, 5], [3, 5]], [[1], [4, 9], [9]], [[0, 2], [2], [1]], [[500, 600], [600], [500, 1]]];
    for (const [sc, sa, sb] of cases) {
      const shape = broadcastShapes(sc, broadcastShapes(sa, sb, 't'), 't');
      const cf = withSpecials(prod(sc), 1, 2);
      const ci = ints(prod(sc), -1, 2);
      const a = normals(prod(sa)), bv = normals(prod(sb));
      for (const cond of [cf, ci]) {
        compare(`where ${cond instanceof Int32Array ? 'int32' : 'float32'} ${JSON.stringify([sc, sa, sb])}`, (b) => {
          const c = put(b, cond), x = put(b, a), y = put(b, bv), o = zeros(b, prod(shape));
          b.where(c, broadcastStrides(sc, shape), x, broadcastStrides(sa, shape), y, broadcastStrides(sb, shape), o, shape);
          return { o: get(b, o) };
        }, { o: EXACT });
      }
    }
  });

  test('reduce: sum/max/min over (outer, len, inner), NaN propagation, one long run', () => {
    const dims: [number, number, number][] = [[0, 3, 2], [2, 0, 3], [1, 1, 1], [3, 7, 1], [1, 1000, 1], [4, 5, 3], [2, 33, 300], [1, 300000, 1], [1, 4200000, 1], [600, 500, 1], [1, 500, 600]];
    for (const [outer, len, inner] of dims) {
      const x = normals(outer * len * inner, 1, 0.3);
      const withNan = x.slice();
      if (withNan.length > 10) withNan[Math.floor(withNan.length / 2)] = NaN;
      for (const op of ['sum', 'max', 'min'] as const) {
        for (const input of [x, withNan]) {
          compare(`reduce ${op} (${outer}, ${len}, ${inner})${input === withNan ? ' with NaN' : ''}`, (b) => {
            const s = put(b, input), o = zeros(b, outer * inner);
            b.reduce(op, s, o, outer, len, inner);
            return { o: get(b, o) };
          }, { o: op === 'sum' ? ulps(2 * Math.sqrt(len) + 2, 1e-6) : EXACT });
        }
      }
    }
  });

  test('softmax and log-softmax, forward and backward (−∞ entries and rows)', () => {
    for (const [rows, cols] of ROW_SHAPES) {
      const x = normals(rows * cols, 3);
      // masked entries, and an all −∞ row
      for (let i = 0; i < x.length; i += 5) x[i] = -Infinity;
      if (rows > 1) x.fill(-Infinity, cols, 2 * cols);
      const g = normals(rows * cols);
      for (const log of [false, true]) {
        compare(`${log ? 'logSoftmax' : 'softmax'} ${rows}x${cols}`, (b) => {
          const xs = put(b, x), y = zeros(b, rows * cols);
          b.softmax(xs, y, rows, cols, log);
          return { y: get(b, y) };
        }, { y: log ? ulps(8, 4e-7) : ulps(8, 1e-37) });
        const yRef = zeros(ref, rows * cols);
        ref.softmax(put(ref, x), yRef, rows, cols, log);
        const y = get(ref, yRef) as Float32Array;
        compare(`${log ? 'logSoftmax' : 'softmax'}Backward ${rows}x${cols}`, (b) => {
          const ys = put(b, y), gs = put(b, g), dx = zeros(b, rows * cols);
          b.softmaxBackward(ys, gs, dx, rows, cols, log);
          return { dx: get(b, dx) };
        }, { dx: rel(1e-6) });
      }
    }
  });

  test('RMSNorm forward and backward, with and without weight', () => {
    for (const [rows, cols] of [...ROW_SHAPES, [4096, 64] as [number, number]]) {
      const x = normals(rows * cols, 2), w = normals(cols, 1, 1), g = normals(rows * cols);
      for (const withW of [true, false]) {
        compare(`rmsNorm ${rows}x${cols}${withW ? ' w' : ''}`, (b) => {
          const xs = put(b, x), ws = withW ? put(b, w) : null, y = zeros(b, rows * cols), r = zeros(b, rows);
          b.rmsNorm(xs, ws, y, r, rows, cols, 1e-6);
          return { y: get(b, y), rstd: get(b, r) };
        }, { y: ulps(8, 1e-30), rstd: ulps(3) });
        const r = zeros(ref, rows);
        ref.rmsNorm(put(ref, x), withW ? put(ref, w) : null, zeros(ref, rows * cols), r, rows, cols, 1e-6);
        const rstd = get(ref, r) as Float32Array;
        compare(`rmsNormBackward ${rows}x${cols}${withW ? ' w' : ''}`, (b) => {
          const xs = put(b, x), ws = withW ? put(b, w) : null, rs = put(b, rstd), gs = put(b, g);
          const dx = zeros(b, rows * cols), dw = withW ? put(b, normals(cols)) : null; // dw is overwritten
          b.rmsNormBackward(xs, ws, rs, gs, dx, dw, rows, cols);
          const out: Outputs = { dx: get(b, dx) };
          if (dw) out.dw = get(b, dw);
          return out;
        }, withW ? { dx: rel(1e-6), dw: rel(1e-6) } : { dx: rel(1e-6) });
      }
    }
  });

  test('LayerNorm forward and backward (weight/bias combinations, a large mean)', () => {
    for (const [rows, cols] of ROW_SHAPES) {
      for (const shift of [0, 100]) {
        const x = normals(rows * cols, 1, shift), w = normals(cols, 1, 1), bias = normals(cols), g = normals(rows * cols);
        // both means are rounded to float32 (1 ulp ≤ 2u·|mean| apart when they straddle a
        // midpoint), plus float sums of the deviations
        const meanBound = new Float64Array(rows).map((_, r) => {
          let mu = 0, dev = 0;
          for (let j = 0; j < cols; j++) mu += x[r * cols + j] / cols;
          for (let j = 0; j < cols; j++) dev += Math.abs(x[r * cols + j] - mu) / cols;
          return 2 * U * Math.abs(mu) + 4 * U * dev;
        });
        for (const [withW, withB] of [[true, true], [true, false], [false, true], [false, false]]) {
          const name = `${rows}x${cols} shift ${shift}${withW ? ' w' : ''}${withB ? ' b' : ''}`;
          compare(`layerNorm ${name}`, (b) => {
            const y = zeros(b, rows * cols), mu = zeros(b, rows), r = zeros(b, rows);
            b.layerNorm(put(b, x), withW ? put(b, w) : null, withB ? put(b, bias) : null, y, mu, r, rows, cols, 1e-5);
            return { y: get(b, y), mean: get(b, mu), rstd: get(b, r) };
          }, { y: rel(1e-6), mean: bound(meanBound), rstd: ulps(4) });
          const mu = zeros(ref, rows), r = zeros(ref, rows);
          ref.layerNorm(put(ref, x), null, null, zeros(ref, rows * cols), mu, r, rows, cols, 1e-5);
          const mean = get(ref, mu) as Float32Array, rstd = get(ref, r) as Float32Array;
          compare(`layerNormBackward ${name}`, (b) => {
            const dx = zeros(b, rows * cols), dw = withW ? zeros(b, cols) : null, db = withB ? zeros(b, cols) : null;
            b.layerNormBackward(put(b, x), withW ? put(b, w) : null, put(b, mean), put(b, rstd), put(b, g), dx, dw, db, rows, cols);
            const out: Outputs = { dx: get(b, dx) };
            if (dw) out.dw = get(b, dw);
            if (db) out.db = get(b, db);
            return out;
          }, { dx: rel(1e-6), ...(withW ? { dw: rel(1e-6) } : {}), ...(withB ? { db: rel(1e-6) } : {}) });
        }
      }
    }
  });

  test('gather and scatterAdd (repeated ids), and a clear error for a bad id', () => {
    for (const [vocab, cols, count] of [[1, 1, 0], [5, 1, 9], [17, 33, 40], [300, 257, 2000], [50, 0, 3]]) {
      const table = normals(vocab * cols), ids = ints(count, 0, vocab), dy = normals(count * cols);
      compare(`gather ${vocab}x${cols} ×${count}`, (b) => {
        const o = zeros(b, count * cols);
        b.gather(put(b, table), put(b, ids), o, count, cols);
        return { o: get(b, o) };
      }, { o: EXACT });
      compare(`scatterAdd ${vocab}x${cols} ×${count}`, (b) => {
        const d = put(b, table);
        b.scatterAdd(put(b, dy), put(b, ids), d, count, cols);
        return { d: get(b, d) };
      }, { d: EXACT });
    }
    requireNative();
    const t = put(nat!, normals(12)), bad = put(nat!, new Int32Array([0, 3, 2]));
    assert.throws(() => nat!.gather(t, bad, zeros(nat!, 12), 3, 4), /gather: id 3 at position 1 is outside \[0, 3\)/);
    assert.throws(() => nat!.scatterAdd(zeros(nat!, 12), put(nat!, new Int32Array([-1, 0, 0])), t, 3, 4), /scatterAdd: id -1 at position 0/);
  });

  test('cross-entropy forward and backward (ignored targets), and a clear error for a bad target', () => {
    for (const [rows, cols] of ROW_SHAPES) {
      const x = normals(rows * cols, 4), targets = ints(rows, 0, cols), g = normals(rows);
      for (let r = 0; r < rows; r += 3) targets[r] = -100;
      compare(`crossEntropy ${rows}x${cols}`, (b) => {
        const l = zeros(b, rows), s = zeros(b, rows);
        b.crossEntropy(put(b, x), put(b, targets), l, s, rows, cols, -100);
        return { losses: get(b, l), lse: get(b, s) };
      }, { losses: ulps(8, 1e-6), lse: ulps(4, 1e-7) });
      const s = zeros(ref, rows);
      ref.crossEntropy(put(ref, x), put(ref, targets), zeros(ref, rows), s, rows, cols, -100);
      const lse = get(ref, s) as Float32Array;
      compare(`crossEntropyBackward ${rows}x${cols}`, (b) => {
        const d = put(b, normals(rows * cols)); // overwritten, ignored rows included
        b.crossEntropyBackward(put(b, x), put(b, targets), put(b, lse), put(b, g), d, rows, cols, -100);
        return { d: get(b, d) };
      }, { d: rel(1e-6) });
    }
    requireNative();
    assert.throws(() => nat!.crossEntropy(put(nat!, normals(6)), put(nat!, new Int32Array([1, 3])), zeros(nat!, 2), zeros(nat!, 2), 2, 3, -100),
      /crossEntropy: target 3 at position 1 is outside \[0, 3\)/);
  });

  test('dropoutMask is bit-identical to the reference and to core/random.ts hash32', () => {
    for (const n of [0, 1, 31, 1000, 300001]) {
      for (const p of [0, 0.1, 0.5, 0.9, 0.999]) {
        for (const s of [0, 1, -7, 2 ** 31 + 5, 123456789.75]) {
          compare(`dropoutMask n=${n} p=${p} seed=${s}`, (b) => {
            const o = zeros(b, n);
            b.dropoutMask(o, n, p, s);
            return { o: get(b, o) };
          }, { o: EXACT });
        }
      }
    }
    // and independently of the reference kernel: keep iff hash32(seed, i) >= p·2³²
    requireNative();
    const o = zeros(nat!, 5000);
    nat!.dropoutMask(o, 5000, 0.3, 42);
    const v = get(nat!, o), scale = Math.fround(1 / 0.7);
    for (let i = 0; i < 5000; i++) assert.equal(v[i], hash32(42, i) >= 0.3 * 2 ** 32 ? scale : 0);
  });

  test('AdamW step', () => {
    for (const n of [0, 1, 17, 1001, 300001]) {
      const p = normals(n), g = normals(n, 0.1), m = normals(n, 0.01), v = uniform(n, 0, 1e-3);
      const hp = { lr: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, bc1: 1 - 0.9 ** 3, bc2: 1 - 0.95 ** 3 };
      compare(`adamw n=${n}`, (b) => {
        const ps = put(b, p), ms = put(b, m), vs = put(b, v);
        b.adamw(ps, put(b, g), ms, vs, n, hp);
        return { p: get(b, ps), m: get(b, ms), v: get(b, vs) };
      }, { p: EXACT, m: EXACT, v: EXACT });
    }
  });

  test('the addon rejects views past the end of an array and malformed arguments', () => {
    requireNative();
    const a = addon!;
    const x = new Float32Array(10), o = new Float32Array(10);
    assert.throws(() => a.unary(2, x, o, 11, 0), /unary: x is too short/);
    assert.throws(() => a.fill(o, 1, 5, 6), /fill: out is too short/);
    assert.throws(() => a.softmax(x, o, 3, 4, false), /softmax: x is too short/);
    assert.throws(() => a.stridedCopy(x, 1, [3, 4], [4, 1], o, 0), /stridedCopy: src is too short for the strided view/);
    assert.throws(() => a.stridedCopy(x, 0, [3], [-1], o, 0), /stridedCopy: src is too short/);
    assert.throws(() => a.binary(0, x, [1], x, [1], o, [11]), /binary: a is too short/);
    assert.throws(() => a.unary(99, x, o, 1, 0), /unary: argument 1 \(op\)/);
    assert.throws(() => a.softmax(new Float64Array(4) as unknown as Float32Array, o, 1, 4, false), /softmax: argument 1 \(x\) must be a Float32Array/);
    assert.throws(() => a.rmsNorm(x, new Float32Array(3), o, o, 2, 5, 1e-6), /rmsNorm: w is too short/);
    // Through the argument tables (kernels_nn_napi.c): offsets, optional arrays, products of sizes, counts.
    assert.throws(() => a.copy(x, 8, o, 0, 3), /copy: src is too short: 3 elements from offset 8 reach past its length 10/);
    assert.throws(() => a.lrrValuesBackward!(x, x, x, x, x, null, new Float32Array(4), null, null, 1, 1, 5, 2),
      /lrrValuesBackward: dz is too short: 5 elements/);
    assert.doesNotThrow(() => a.lrrValuesBackward!(x, x, x, x, x, null, null, null, null, 1, 1, 5, 2));
    assert.throws(() => a.adamw(x, x, x, new Float32Array(9), 10, 1e-3, 0.9, 0.95, 1e-8, 0, 1, 1), /adamw: v is too short/);
    assert.throws(() => a.reduce(0, x, o, 2, 3, 2), /reduce: x is too short: 12 elements/);
    assert.throws(() => a.where(new Float64Array(10) as unknown as Float32Array, [1], x, [1], x, [1], o, [10]), /where: argument 1 \(cond\) must be a Float32Array or an Int32Array/);
    assert.throws(() => (a.swiglu as (...args: unknown[]) => void)(x, x, o), /swiglu: expected 4 arguments, got 3/);
    assert.throws(() => a.rotary!(x, x, x, o, 1, 1, 1, 3, 0, false, false, false), /rotary: argument 8 \(D\) must be even/);
    // cholesky / triangularSolve (cholesky.c): products of sizes, and outputs apart from inputs.
    const m = new Float32Array(18);
    assert.throws(() => a.cholesky(m, new Float32Array(17), 2, 3), /cholesky: out is too short: 18 elements/);
    assert.throws(() => a.cholesky(m, m.subarray(0), 2, 3), /cholesky: the output overlaps an input/);
    assert.throws(() => a.triangularSolve(m, new Float32Array(11), new Float32Array(12), 2, 3, 2, false), /triangularSolve: b is too short: 12 elements/);
    assert.throws(() => a.triangularSolve(m, m.subarray(0, 12), new Float32Array(12), 2, 3, 2, 'yes' as unknown as boolean), /triangularSolve: argument 7 \(transpose\)/);
    assert.throws(() => a.triangularSolve(m, new Float32Array(12), m.subarray(6, 18), 2, 3, 2, true), /triangularSolve: the output overlaps an input/);
    // splitHeads / mergeHeads (kernels_heads.c): list arguments, then the checks the table cannot say.
    const y = new Float32Array(36), o1 = new Float32Array(24), o2 = new Float32Array(12), tab = new Float32Array(6);
    const split = (outs: unknown, heads: number[], dims: number[], rotate: number[], cs: Float32Array | null, offset = 0): void =>
      a.splitHeads!(y, outs as Float32Array[], 2, 3, heads, dims, rotate, cs, tab, offset);
    assert.doesNotThrow(() => split([o1, o2], [1, 1], [4, 2], [1, 0], tab));
    assert.doesNotThrow(() => a.mergeHeads!([o1, null], y, 2, 3, [1, 1], [4, 2], [1, 0], tab, tab, 0));
    assert.throws(() => split(5, [1, 1], [4, 2], [1, 0], tab), /splitHeads: outs must be an array/);
    assert.throws(() => split([o1, 3], [1, 1], [4, 2], [1, 0], tab), /splitHeads: outs\[1\] must be a Float32Array/);
    assert.throws(() => split(new Array(17).fill(o1), [1, 1], [4, 2], [1, 0], tab), /splitHeads: outs has 17 entries; at most 16/);
    assert.throws(() => split([o1], [1, 1], [4, 2], [1, 0], tab), /one entry per part \(1 to 16\)/);
    assert.throws(() => split([o1, o2], [0, 1], [4, 2], [1, 0], tab), /splitHeads: heads\[0\] must be an integer >= 1/);
    assert.throws(() => split([o1, o2], [1, 1], [4, 2], [1, 0], null), /splitHeads: cos must be a Float32Array/);
    assert.throws(() => split([o1, o2], [1, 1], [4, 2], [1, 0], tab, 1), /splitHeads: cos is too short: 6 elements, need 8/);
    assert.throws(() => split([o1, o2], [1, 1], [3, 3], [1, 0], tab), /part 0 rotates an odd dim 3/);
    assert.throws(() => split([o1, o2], [1, 1], [4, 2], [1, 1], tab), /the rotated parts must share one dim/);
    assert.throws(() => split([o1, o2.subarray(1)], [1, 1], [4, 2], [1, 0], tab), /splitHeads: outs\[1\] is too short: 11 elements, need 12/);
    assert.throws(() => split([o1, y], [1, 1], [4, 2], [1, 0], tab), /splitHeads: outs\[1\] overlaps the token rows/);
    assert.throws(() => a.mergeHeads!([o1, o2], y.subarray(1), 2, 3, [1, 1], [4, 2], [1, 0], tab, tab, 0), /mergeHeads: out is too short: 35 elements, need 36/);
    // Sizes whose product wraps a size_t must be refused, not checked modulo 2^64 (this wrapped to
    // the array's length and wrote past it).
    const big = Array(7).fill(1 << 20), none = Array(7).fill(0);
    assert.throws(() => a.mergeHeads!(Array(7).fill(null), y, 3, 2 ** 20, big, big, none, null, null, 0), /mergeHeads: B\*T\*C is too large/);
    assert.throws(() => split([o1, o2], [1, 1], [2 ** 20, 2], [1, 0], tab, 2 ** 50), /splitHeads: \(offset \+ T\) \* D\/2 is too large/);
  });
});
