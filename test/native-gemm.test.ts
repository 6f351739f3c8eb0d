// Checks the native addon's sgemm against a float64 reference, on every SIMD path this CPU
// supports and with 1 and 2 threads. If the addon did not build or load, this fails (it only
// skips when CUBIT_BACKEND=reference says the native backend is not wanted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadNativeAddon, nativeLoadError, type NativeAddon, type NativeIsa } from '../src/backends/native/addon.ts';
import { Rng } from '../src/core/random.ts';

const addon = loadNativeAddon();
const skip = addon === null && process.env.CUBIT_BACKEND === 'reference' ? 'CUBIT_BACKEND=reference' : false;

test('native addon loads', { skip }, () => {
  assert.ok(addon, `native addon failed to load: ${nativeLoadError()}`);
});

// A seeded generator (core/random.ts's mulberry32), so failures reproduce.
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

interface Gemm {
  batch: number; m: number; n: number; k: number; transA: boolean; transB: boolean;
  aOff: number; sA: number; lda: number;
  bOff: number; sB: number; ldb: number;
  cOff: number; sC: number; ldc: number;
  accumulate: boolean;
}

/** Builds a problem with the given sizes; strides default to packed, offsets/padding are added. */
function makeGemm(rand: () => number, batch: number, m: number, n: number, k: number, transA: boolean,
  transB: boolean, accumulate: boolean, opts: Partial<Gemm> = {}): Gemm {
  const pad = () => (rand() < 0.5 ? 0 : 1 + Math.floor(rand() * 5));
  const lda = (transA ? m : k) + pad();
  const ldb = (transB ? k : n) + pad();
  const ldc = n + pad();
  const aRows = transA ? k : m, bRows = transB ? n : k;
  return {
    batch, m, n, k, transA, transB, accumulate,
    aOff: pad(), lda, sA: aRows * lda + pad(),
    bOff: pad(), ldb, sB: bRows * ldb + pad(),
    cOff: pad(), ldc, sC: m * ldc + pad(),
    ...opts,
  };
}

/** Exact length an operand needs (the last element touched + 1), or the offset if none is. */
function extent(off: number, batch: number, stride: number, rows: number, cols: number, ld: number): number {
  if (batch === 0 || rows === 0 || cols === 0) return off;
  return off + (batch - 1) * stride + (rows - 1) * ld + cols;
}

function randomArray(rand: () => number, n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rand() * 2 - 1;
  return x;
}

/** Reference in float64, batches in order (so overlapping outputs accumulate sequentially).
 *  Returns the expected C and, per element, the scale sum_k |a||b| + |c0| for the error bound. */
function reference(g: Gemm, a: Float32Array, b: Float32Array, c0: Float32Array): { want: Float64Array; scale: Float64Array } {
  const want = Float64Array.from(c0);
  const scale = new Float64Array(c0.length);
  for (let i = 0; i < c0.length; i++) scale[i] = Math.abs(c0[i]);
  for (let p = 0; p < g.batch; p++) {
    const a0 = g.aOff + p * g.sA, b0 = g.bOff + p * g.sB, cBase = g.cOff + p * g.sC;
    for (let i = 0; i < g.m; i++) {
      for (let j = 0; j < g.n; j++) {
        let sum = 0, abs = 0;
        for (let q = 0; q < g.k; q++) {
          const x = g.transA ? a[a0 + q * g.lda + i] : a[a0 + i * g.lda + q];
          const y = g.transB ? b[b0 + j * g.ldb + q] : b[b0 + q * g.ldb + j];
          sum += x * y;
          abs += Math.abs(x * y);
        }
        const idx = cBase + i * g.ldc + j;
        want[idx] = g.accumulate ? want[idx] + sum : sum;
        scale[idx] += abs;
      }
    }
  }
  return { want, scale };
}

function call(A: NativeAddon, g: Gemm, a: Float32Array, b: Float32Array, c: Float32Array): void {
  A.sgemm(g.batch, g.m, g.n, g.k, g.transA, g.transB, a, g.aOff, g.sA, g.lda, b, g.bOff, g.sB, g.ldb,
    c, g.cOff, g.sC, g.ldc, g.accumulate);
}

function check(A: NativeAddon, g: Gemm, rand: () => number, label: string): void {
  const a = randomArray(rand, extent(g.aOff, g.batch, g.sA, g.transA ? g.k : g.m, g.transA ? g.m : g.k, g.lda));
  const b = randomArray(rand, extent(g.bOff, g.batch, g.sB, g.transB ? g.n : g.k, g.transB ? g.k : g.n, g.ldb));
  // C gets some slack after its extent, to check nothing outside the view is written.
  const c0 = randomArray(rand, extent(g.cOff, g.batch, g.sC, g.m, g.n, g.ldc) + 3);
  const c = Float32Array.from(c0);
  call(A, g, a, b, c);
  const { want, scale } = reference(g, a, b, c0);

  // Elements outside every C_p view must be untouched.
  const inView = new Uint8Array(c.length);
  for (let p = 0; p < g.batch; p++)
    for (let i = 0; i < g.m; i++)
      for (let j = 0; j < g.n; j++) inView[g.cOff + p * g.sC + i * g.ldc + j] = 1;

  let errSq = 0, normSq = 0;
  for (let i = 0; i < c.length; i++) {
    if (!inView[i]) {
      assert.equal(c[i], c0[i], `${label}: c[${i}] outside the output view was changed`);
      continue;
    }
    const d = c[i] - want[i];
    errSq += d * d;
    normSq += want[i] * want[i];
    const tol = 1e-4 * scale[i] + 1e-6;
    if (!(Math.abs(d) <= tol)) assert.fail(`${label}: c[${i}] = ${c[i]}, want ${want[i]} (tolerance ${tol})`);
  }
  if (normSq > 0) assert.ok(Math.sqrt(errSq / normSq) <= 1e-5, `${label}: relative error ${Math.sqrt(errSq / normSq)}`);
}

function describe(g: Gemm): string {
  return `batch=${g.batch} m=${g.m} n=${g.n} k=${g.k} trans=${g.transA ? 'T' : 'N'}${g.transB ? 'T' : 'N'} ` +
    `acc=${g.accumulate} lda=${g.lda} ldb=${g.ldb} ldc=${g.ldc} sA=${g.sA} sB=${g.sB} sC=${g.sC} ` +
    `offs=${g.aOff},${g.bOff},${g.cOff}`;
}

/** The problems checked on every path and thread count. */
function problems(): Gemm[] {
  const rand = rng(12345);
  const list: Gemm[] = [];
  const trans: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true]];
  // Odd sizes around the register and cache blocks, including 0 and 1.
  const shapes: [number, number, number][] = [
    [1, 1, 1], [0, 5, 3], [4, 0, 3], [3, 5, 0], [3, 17, 5], [17, 33, 9], [33, 65, 17], [65, 31, 127],
    [6, 16, 8], [14, 32, 7], [13, 47, 300], [127, 255, 33], [255, 65, 130], [200, 129, 257],
  ];
  for (const [m, n, k] of shapes)
    for (const [tA, tB] of trans)
      for (const acc of [false, true]) list.push(makeGemm(rand, 1, m, n, k, tA, tB, acc));
  for (const [tA, tB] of trans) {
    // Batches: packed, with padding between matrices, broadcast A or B (stride 0).
    list.push(makeGemm(rand, 5, 33, 40, 21, tA, tB, false));
    list.push(makeGemm(rand, 3, 70, 19, 64, tA, tB, true, { sA: 0 }));
    list.push(makeGemm(rand, 4, 65, 66, 67, tA, tB, false, { sB: 0 }));
    list.push(makeGemm(rand, 2, 255, 17, 100, tA, tB, true));
  }
  // Large enough to be split across threads, batch not a multiple of the thread count.
  list.push(makeGemm(rand, 3, 127, 129, 64, false, false, false));
  list.push(makeGemm(rand, 1, 300, 310, 280, false, true, true));
  list.push(makeGemm(rand, 9, 64, 48, 96, true, false, false, { sB: 0 }));
  // C_p side by side in the rows (C is m x batch x n): ldc = batch*n, cBatchStride = n.
  list.push(makeGemm(rand, 4, 40, 24, 30, false, false, false, { ldc: 4 * 24, sC: 24, cOff: 2 }));
  // Overlapping outputs (cBatchStride = 0): batches apply in order.
  list.push(makeGemm(rand, 3, 50, 60, 70, false, false, true, { sC: 0 }));
  list.push(makeGemm(rand, 3, 50, 60, 70, true, true, false, { sC: 0 }));
  // k = 0 with batches: C = 0, or unchanged when accumulating.
  list.push(makeGemm(rand, 3, 5, 6, 0, false, false, false));
  list.push(makeGemm(rand, 3, 5, 6, 0, false, false, true));
  return list;
}

const isas: NativeIsa[] = addon ? addon.supportedIsas() : [];

for (const isa of isas) {
  for (const threads of [1, 2]) {
    test(`sgemm matches the float64 reference (${isa}, ${threads} thread${threads > 1 ? 's' : ''})`, { skip }, () => {
      const A = addon!;
      A.setIsa(isa);
      A.setThreads(threads);
      try {
        assert.equal(A.isa(), isa);
        assert.equal(A.getThreads(), threads);
        const rand = rng(99 + threads);
        for (const g of problems()) check(A, g, rand, `${isa}/${threads}t ${describe(g)}`);
      } finally {
        A.setIsa('auto');
        A.setThreads(0);
      }
    });
  }
}

/** Reference for larger problems: op(A) and op(B)ᵀ copied to row-major float64 first, so the
 *  inner loop is a contiguous dot product. Batch 1 only. */
function referenceFast(g: Gemm, a: Float32Array, b: Float32Array, c0: Float32Array): { want: Float64Array; scale: Float64Array } {
  assert.equal(g.batch, 1);
  const { m, n, k } = g;
  const opA = new Float64Array(m * k), opBt = new Float64Array(n * k);
  for (let i = 0; i < m; i++)
    for (let q = 0; q < k; q++) opA[i * k + q] = g.transA ? a[g.aOff + q * g.lda + i] : a[g.aOff + i * g.lda + q];
  for (let j = 0; j < n; j++)
    for (let q = 0; q < k; q++) opBt[j * k + q] = g.transB ? b[g.bOff + j * g.ldb + q] : b[g.bOff + q * g.ldb + j];
  const want = Float64Array.from(c0);
  const scale = new Float64Array(c0.length);
  for (let i = 0; i < c0.length; i++) scale[i] = Math.abs(c0[i]);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0, abs = 0;
      for (let q = 0, x = i * k, y = j * k; q < k; q++, x++, y++) {
        const t = opA[x] * opBt[y];
        sum += t;
        abs += Math.abs(t);
      }
      const idx = g.cOff + i * g.ldc + j;
      want[idx] = g.accumulate ? want[idx] + sum : sum;
      scale[idx] += abs;
    }
  }
  return { want, scale };
}

/** Checks c against the reference: the error bound of check(), and nothing outside the view changed. */
function compare(g: Gemm, c: Float32Array, c0: Float32Array, ref: { want: Float64Array; scale: Float64Array }, label: string): void {
  const inView = new Uint8Array(c.length);
  for (let i = 0; i < g.m; i++) inView.fill(1, g.cOff + i * g.ldc, g.cOff + i * g.ldc + g.n);
  let errSq = 0, normSq = 0;
  for (let i = 0; i < c.length; i++) {
    if (!inView[i]) {
      if (c[i] !== c0[i]) assert.fail(`${label}: c[${i}] outside the output view was changed`);
      continue;
    }
    const d = c[i] - ref.want[i];
    errSq += d * d;
    normSq += ref.want[i] * ref.want[i];
    const tol = 1e-4 * ref.scale[i] + 1e-6;
    if (!(Math.abs(d) <= tol)) assert.fail(`${label}: c[${i}] = ${c[i]}, want ${ref.want[i]} (tolerance ${tol})`);
  }
  if (normSq > 0) assert.ok(Math.sqrt(errSq / normSq) <= 1e-5, `${label}: relative error ${Math.sqrt(errSq / normSq)}`);
}

function firstDifference(x: Float32Array, y: Float32Array): number {
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return i;
  return -1;
}

// Shapes of a training step get their own paths in gemm.c (plan_call): long reductions into a
// small C are cut into depth chunks (k >= 2048, m*n <= 256*256, chunks of ~1024, at most 8);
// a tall C (m >= 1024) with a small op(B) (n <= nc, padded n*k <= 2^18) has op(B) packed once
// per call, shared by the row tasks on several threads, and with several depth steps and
// padded n*k <= 2^16 the row blocks become the outer loop (on any thread count). Sizes sit on
// both sides of each threshold and of the depth block (256) and register tiles. Each result is checked against float64 on
// 1 thread and must be bit-identical on 2 and 3 threads (chunks depend on the shape only).
function trainingShapeProblems(): { g: Gemm; ref: boolean }[] {
  const rand = rng(2024);
  const list: { g: Gemm; ref: boolean }[] = [];
  const trans: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true]];
  const pick = () => trans[Math.floor(rand() * 4)];
  // Checked against float64, every transposition: depth chunks around k = 2048 (first split)
  // and 3072 (third chunk), with odd m, n and m or n = 1; B packed once around m = 1024 rows,
  // with depth below, at and above one block.
  const allTrans: [number, number, number][] = [
    [5, 7, 2047], [5, 7, 2048], [13, 37, 2049], [70, 33, 3071], [1, 300, 2100], [300, 1, 2100],
    [1023, 40, 300], [1024, 17, 256], [1030, 64, 257],
  ];
  for (const [m, n, k] of allTrans)
    for (const [tA, tB] of trans) list.push({ g: makeGemm(rand, 1, m, n, k, tA, tB, rand() < 0.5), ref: true });
  // Checked against float64, one transposition each: around m*n = 256*256, chunk count 4 and
  // 5, the last chunk's depth blocks uneven.
  // Row blocks outer: padded n*k = 2^16 exactly, and just above.
  for (const [m, n, k] of [[256, 256, 2048], [257, 256, 2048], [17, 250, 4101], [64, 48, 5200], [40, 40, 9000],
    [1024, 128, 512], [1024, 130, 500]]) {
    const [tA, tB] = pick();
    list.push({ g: makeGemm(rand, 1, m, n, k, tA, tB, rand() < 0.5), ref: true });
  }
  // Larger (the step's own shapes, op(B) at and over 2^18 floats, 8 chunks): 1, 2 and 3 threads must
  // agree bit for bit; the reference would be slow here.
  const identical: [number, number, number, boolean, boolean][] = [
    [4096, 128, 128, false, true], [4096, 128, 512, false, false], [128, 512, 4096, true, false],
    [512, 128, 4096, true, false], [1030, 1040, 1009, false, true], [1024, 256, 1024, false, true],
    [200, 300, 8300, true, false],
  ];
  for (const [m, n, k, tA, tB] of identical) list.push({ g: makeGemm(rand, 1, m, n, k, tA, tB, rand() < 0.5), ref: false });
  return list;
}

test('sgemm on training-step shapes: depth chunks and B packed once match float64, bit-identical across thread counts', { skip }, () => {
  const A = addon!;
  const rand = rng(77);
  try {
    for (const { g, ref } of trainingShapeProblems()) {
      const a = randomArray(rand, extent(g.aOff, g.batch, g.sA, g.transA ? g.k : g.m, g.transA ? g.m : g.k, g.lda));
      const b = randomArray(rand, extent(g.bOff, g.batch, g.sB, g.transB ? g.n : g.k, g.transB ? g.k : g.n, g.ldb));
      const c0 = randomArray(rand, extent(g.cOff, g.batch, g.sC, g.m, g.n, g.ldc) + 3);
      const want = ref ? referenceFast(g, a, b, c0) : null;
      for (const isa of isas) {
        // The portable kernel is slow: it takes the driver's paths on the smaller problems only.
        if (isa === 'generic' && 2 * g.m * g.n * g.k > 2e8) continue;
        A.setIsa(isa);
        let first: Float32Array | null = null;
        for (const threads of [1, 2, 3]) {
          A.setThreads(threads);
          const c = Float32Array.from(c0);
          call(A, g, a, b, c);
          const label = `${isa}/${threads}t ${describe(g)}`;
          if (!first) {
            first = c;
            if (want) compare(g, c, c0, want, label);
          } else {
            const at = firstDifference(c, first);
            assert.equal(at, -1, `${label}: c[${at}] = ${c[at]} differs from 1 thread's ${first[at]}`);
          }
        }
      }
    }
  } finally {
    A.setIsa('auto');
    A.setThreads(0);
  }
});

test('isa, setIsa, threads', { skip }, () => {
  const A = addon!;
  assert.ok(isas.length >= 1 && isas.includes('generic'));
  assert.equal(A.isa(), isas[0], 'the best supported path is the default');
  for (const name of ['avx512', 'avx2'] as const) {
    if (!isas.includes(name)) assert.throws(() => A.setIsa(name), /does not support/);
  }
  assert.throws(() => A.setIsa('sse9' as NativeIsa), RangeError);
  assert.ok(A.getThreads() >= 1);
  A.setThreads(3);
  assert.equal(A.getThreads(), 3);
  A.setThreads(0);
  assert.ok(A.getThreads() >= 1);
  assert.throws(() => A.setThreads(-1), TypeError);
});

test('sgemm rejects out-of-bounds views and bad arguments', { skip }, () => {
  const A = addon!;
  const m = 4, n = 5, k = 6;
  const a = new Float32Array(m * k), b = new Float32Array(k * n), c = new Float32Array(m * n);
  const ok = () => A.sgemm(1, m, n, k, false, false, a, 0, 0, k, b, 0, 0, n, c, 0, 0, n, false);
  ok();
  // One element too far in each operand.
  assert.throws(() => A.sgemm(1, m, n, k, false, false, a, 1, 0, k, b, 0, 0, n, c, 0, 0, n, false), (e: Error) => e instanceof RangeError && /\ba\b/.test(e.message));
  assert.throws(() => A.sgemm(1, m, n, k, false, false, a, 0, 0, k, b, 1, 0, n, c, 0, 0, n, false), (e: Error) => e instanceof RangeError && /\bb\b/.test(e.message));
  assert.throws(() => A.sgemm(1, m, n, k, false, false, a, 0, 0, k, b, 0, 0, n, c, 1, 0, n, false), (e: Error) => e instanceof RangeError && /\bc\b/.test(e.message));
  // Batch strides that leave the arrays.
  assert.throws(() => A.sgemm(2, m, n, k, false, false, a, 0, 0, k, b, 0, 0, n, c, 0, m * n, n, false), RangeError);
  assert.throws(() => A.sgemm(2, m, n, k, false, false, a, 0, 1, k, b, 0, 0, n, c, 0, 0, n, false), RangeError);
  // Transposed storage needs lda >= m, ldb >= k.
  assert.throws(() => A.sgemm(1, m, n, k, true, false, a, 0, 0, k, b, 0, 0, n, c, 0, 0, n, false), RangeError);
  assert.throws(() => A.sgemm(1, m, n, k, false, true, a, 0, 0, k, b, 0, 0, n, c, 0, 0, n, false), RangeError);
  // Leading dimensions below the row length.
  assert.throws(() => A.sgemm(1, m, n, k, false, false, a, 0, 0, k - 1, b, 0, 0, n, c, 0, 0, n, false), /lda/);
  assert.throws(() => A.sgemm(1, m, n, k, false, false, a, 0, 0, k, b, 0, 0, n, c, 0, 0, n - 1, false), /ldc/);
  // Huge values must not overflow into a pass.
  assert.throws(() => A.sgemm(2 ** 40, m, n, k, false, false, a, 0, 2 ** 40, k, b, 0, 0, n, c, 0, 0, n, false), RangeError);
  // Types.
  assert.throws(() => A.sgemm(1, -1, n, k, false, false, a, 0, 0, k, b, 0, 0, n, c, 0, 0, n, false), /argument 2 \(m\) must be a non-negative integer/);
  assert.throws(() => A.sgemm(1, 1.5, n, k, false, false, a, 0, 0, k, b, 0, 0, n, c, 0, 0, n, false), TypeError);
  assert.throws(() => A.sgemm(1, m, n, k, false, false, new Float64Array(m * k) as unknown as Float32Array, 0, 0, k, b, 0, 0, n, c, 0, 0, n, false), /argument 7 \(a\) must be a Float32Array/);
  assert.throws(() => (A.sgemm as unknown as (...x: unknown[]) => void)(1, m, n), /expected 19 arguments/);
  // Empty problems touch nothing, so any offsets are fine.
  A.sgemm(0, m, n, k, false, false, a, 99, 99, k, b, 99, 99, n, c, 99, 99, n, false);
  A.sgemm(1, 0, n, k, false, false, a, 0, 0, k, b, 0, 0, n, c, 0, 0, n, false);
});

test('sgemm gives bit-identical results on repeated runs', { skip }, () => {
  // The same problem run repeatedly must give bit-identical results: tasks do not depend on
  // timing (each C element is computed by exactly one thread, in a fixed order).
  const A = addon!;
  const rand = rng(7);
  const g = makeGemm(rand, 6, 96, 80, 200, false, false, false);
  const a = randomArray(rand, extent(g.aOff, g.batch, g.sA, g.m, g.k, g.lda));
  const b = randomArray(rand, extent(g.bOff, g.batch, g.sB, g.k, g.n, g.ldb));
  const first = new Float32Array(extent(g.cOff, g.batch, g.sC, g.m, g.n, g.ldc));
  call(A, g, a, b, first);
  for (let r = 0; r < 20; r++) {
    const c = new Float32Array(first.length);
    call(A, g, a, b, c);
    assert.deepEqual(c, first);
  }
});
