// Standalone SGEMM benchmark of the native addon: prints one JSON line per case
//   {op, shape, threads, isa, median_ms, gflops, ...}
// Usage: node --import tsx bench/gemm-standalone.ts [--threads=1,2] [--isa=avx2] [--min-ms=400]
//          [--suite=square,batched,train] [--filter=text] [--baseline=path/to/other.node]
// Suites: square (512², 1024² in every transposition, 2048²), batched (the shapes of
// `cubit bench ops`), train (the products of one training step of the benchmark model of
// `cubit bench train`: 4096 rows, d_model 128, 4 layers, SwiGLU hidden 512, byte vocab 256).
// --baseline loads a second build of the addon (e.g. a copy of build/Release/cubit_native.node
// made before a change) and times the two alternately in this one process, round after round,
// so that the load others put on the machine hits both alike; each line then carries the
// variant ('current' or 'baseline') and, on the current's lines, speedup = baseline / current.
import { createRequire } from 'node:module';
import path from 'node:path';
import { loadNativeAddon, nativeLoadError, type NativeAddon } from '../src/backends/native/addon.ts';
import { scriptOption } from '../src/bench/measure.ts';

const addon = loadNativeAddon();
if (!addon) {
  console.error(`native addon not available: ${nativeLoadError()}`);
  process.exit(1);
}

const threadCounts = (scriptOption('threads') ?? String(addon.getThreads())).split(',').map(Number);
const isas = scriptOption('isa')?.split(',') ?? [addon.isa()];
const minMs = Number(scriptOption('min-ms') ?? 400);
const suites = (scriptOption('suite') ?? 'square,batched,train').split(',');
const filter = scriptOption('filter');
const baselinePath = scriptOption('baseline');
const baseline = baselinePath
  ? (createRequire(import.meta.url)(path.resolve(baselinePath)) as NativeAddon)
  : null;

interface Case {
  suite: string;
  op: string;
  shape: string;
  batch: number; m: number; n: number; k: number;
  transA: boolean; transB: boolean;
  note?: string;
}

function gemmCase(suite: string, batch: number, m: number, n: number, k: number, transA = false, transB = false, note?: string): Case {
  const t = `${transA ? 't' : 'n'}${transB ? 't' : 'n'}`;
  const shape = batch === 1 ? `${m}x${k} · ${k}x${n}` : `${batch}x(${m}x${k} · ${k}x${n})`;
  return { suite, op: `sgemm_${t}`, shape, batch, m, n, k, transA, transB, note };
}

const allCases: Case[] = [
  gemmCase('square', 1, 512, 512, 512),
  gemmCase('square', 1, 1024, 1024, 1024),
  gemmCase('square', 1, 1024, 1024, 1024, true, false),
  gemmCase('square', 1, 1024, 1024, 1024, false, true),
  gemmCase('square', 1, 1024, 1024, 1024, true, true),
  gemmCase('square', 1, 2048, 2048, 2048),
  gemmCase('batched', 32, 256, 256, 64),
  gemmCase('batched', 32, 256, 256, 64, true, false),
  gemmCase('batched', 32, 256, 256, 64, false, true),
  gemmCase('batched', 32, 256, 64, 256),
  gemmCase('batched', 32, 256, 64, 256, true, false),
  gemmCase('batched', 32, 256, 64, 256, false, true),
  // One training step (B·T = 4096 rows, 4 layers): forward y = x·Wᵀ, backward dX = G·W,
  // dW = Gᵀ·X; q, k, v are one product through the concatenated weights. Counts per step.
  gemmCase('train', 1, 4096, 384, 128, false, true, 'fwd qkv x4'),
  gemmCase('train', 1, 4096, 128, 128, false, true, 'fwd o x4'),
  gemmCase('train', 1, 4096, 512, 128, false, true, 'fwd w1,w3 x8'),
  gemmCase('train', 1, 4096, 128, 512, false, true, 'fwd w2 x4'),
  gemmCase('train', 1, 4096, 256, 128, false, true, 'fwd head x1'),
  gemmCase('train', 1, 4096, 128, 384, false, false, 'dX qkv x4'),
  gemmCase('train', 1, 4096, 128, 128, false, false, 'dX o x4'),
  gemmCase('train', 1, 4096, 128, 512, false, false, 'dX w1,w3 x8'),
  gemmCase('train', 1, 4096, 512, 128, false, false, 'dX w2 x4'),
  gemmCase('train', 1, 4096, 128, 256, false, false, 'dX head x1'),
  gemmCase('train', 1, 384, 128, 4096, true, false, 'dW qkv x4'),
  gemmCase('train', 1, 128, 128, 4096, true, false, 'dW o x4'),
  gemmCase('train', 1, 512, 128, 4096, true, false, 'dW w1,w3 x8'),
  gemmCase('train', 1, 128, 512, 4096, true, false, 'dW w2 x4'),
  gemmCase('train', 1, 256, 128, 4096, true, false, 'dW head x1'),
];
const cases = allCases.filter((c) => suites.includes(c.suite) && (!filter || `${c.op} ${c.shape} ${c.note ?? ''}`.includes(filter)));

function random(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.random() - 0.5;
  return x;
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[s.length >> 1];
}

function run(c: Case, threads: number, isa: string): void {
  const { batch, m, n, k, transA, transB } = c;
  const a = random(batch * m * k), b = random(batch * k * n), out = new Float32Array(batch * m * n);
  const lda = transA ? m : k, ldb = transB ? k : n;
  const variants: [string, NativeAddon][] = [['current', addon!]];
  if (baseline) variants.push(['baseline', baseline]);
  const calls = variants.map(([, A]) => () =>
    A.sgemm(batch, m, n, k, transA, transB, a, 0, m * k, lda, b, 0, k * n, ldb, out, 0, m * n, n, false));
  for (const call of calls) for (let i = 0; i < 3; i++) call(); // warm up: pool threads, packing buffers, caches
  // Rounds of a few calls per variant, alternating, until minMs per variant has passed.
  const once = performance.now();
  calls[0]();
  const perRound = Math.max(1, Math.min(50, Math.round(10 / Math.max(1e-3, performance.now() - once))));
  const times: number[][] = variants.map(() => []);
  const start = performance.now();
  while (times[0].length < 7 || (performance.now() - start < minMs * variants.length && times[0].length < 2000)) {
    for (let v = 0; v < calls.length; v++) {
      const t0 = performance.now();
      for (let r = 0; r < perRound; r++) calls[v]();
      times[v].push((performance.now() - t0) / perRound);
    }
  }
  const flops = 2 * batch * m * n * k;
  const medians = times.map(median);
  for (let v = 0; v < variants.length; v++) {
    const med = medians[v], best = Math.min(...times[v]);
    // min_ms / best_gflops: the fastest round, a hint of what a quiet machine gives when others share it.
    console.log(JSON.stringify({
      op: c.op, shape: c.shape, ...(c.note ? { note: c.note } : {}), threads, isa,
      ...(baseline ? { variant: variants[v][0] } : {}),
      median_ms: +med.toFixed(4), gflops: +(flops / (med * 1e6)).toFixed(1),
      min_ms: +best.toFixed(4), best_gflops: +(flops / (best * 1e6)).toFixed(1), runs: times[v].length * perRound,
      ...(baseline && v === 0 ? { speedup: +(medians[1] / medians[0]).toFixed(3) } : {}),
    }));
  }
}

for (const isa of isas) {
  addon.setIsa(isa as Parameters<typeof addon.setIsa>[0]);
  baseline?.setIsa(isa as Parameters<typeof addon.setIsa>[0]);
  for (const threads of threadCounts) {
    addon.setThreads(threads);
    baseline?.setThreads(threads);
    for (const c of cases) run(c, threads, addon.isa());
  }
}
