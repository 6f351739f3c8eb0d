// Standalone SGEMM benchmark of the native addon: prints one JSON line per case
//   {op, shape, threads, isa, median_ms, gflops}
// Usage: node --import tsx bench/gemm-standalone.ts [--threads=1,2] [--isa=avx2] [--min-ms=400]
import { loadNativeAddon, nativeLoadError } from '../src/backends/native/addon.ts';

const addon = loadNativeAddon();
if (!addon) {
  console.error(`native addon not available: ${nativeLoadError()}`);
  process.exit(1);
}

function option(name: string): string | undefined {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg?.slice(name.length + 3);
}
const threadCounts = (option('threads') ?? String(addon.getThreads())).split(',').map(Number);
const isas = option('isa')?.split(',') ?? [addon.isa()];
const minMs = Number(option('min-ms') ?? 400);

interface Case {
  op: string;
  shape: string;
  batch: number; m: number; n: number; k: number;
  transA: boolean; transB: boolean;
}

function gemmCase(batch: number, m: number, n: number, k: number, transA = false, transB = false): Case {
  const t = `${transA ? 't' : 'n'}${transB ? 't' : 'n'}`;
  const shape = batch === 1 ? `${m}x${k} · ${k}x${n}` : `${batch}x(${m}x${k} · ${k}x${n})`;
  return { op: `sgemm_${t}`, shape, batch, m, n, k, transA, transB };
}

const cases: Case[] = [
  gemmCase(1, 512, 512, 512),
  gemmCase(1, 1024, 1024, 1024),
  gemmCase(1, 1024, 1024, 1024, true, false),
  gemmCase(1, 1024, 1024, 1024, false, true),
  gemmCase(1, 1024, 1024, 1024, true, true),
  gemmCase(1, 2048, 2048, 2048),
  gemmCase(32, 256, 256, 64),
  gemmCase(32, 256, 256, 64, true, false),
  gemmCase(32, 256, 256, 64, false, true),
  gemmCase(32, 256, 64, 256),
  gemmCase(32, 256, 64, 256, true, false),
  gemmCase(32, 256, 64, 256, false, true),
];

function random(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.random() - 0.5;
  return x;
}

function run(c: Case, threads: number, isa: string): void {
  const { batch, m, n, k, transA, transB } = c;
  const a = random(batch * m * k), b = random(batch * k * n), out = new Float32Array(batch * m * n);
  const lda = transA ? m : k, ldb = transB ? k : n;
  const call = () =>
    addon!.sgemm(batch, m, n, k, transA, transB, a, 0, m * k, lda, b, 0, k * n, ldb, out, 0, m * n, n, false);
  for (let i = 0; i < 3; i++) call(); // warm up: pool threads, packing buffers, caches
  const times: number[] = [];
  const start = performance.now();
  while (times.length < 5 || (performance.now() - start < minMs && times.length < 1000)) {
    const t0 = performance.now();
    call();
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  const median = times[times.length >> 1];
  const flops = 2 * batch * m * n * k;
  // min_ms / best_gflops: the fastest run, a hint of what a quiet machine gives when others share it.
  console.log(JSON.stringify({
    op: c.op, shape: c.shape, threads, isa, median_ms: +median.toFixed(4), gflops: +(flops / (median * 1e6)).toFixed(1),
    min_ms: +times[0].toFixed(4), best_gflops: +(flops / (times[0] * 1e6)).toFixed(1), runs: times.length,
  }));
}

for (const isa of isas) {
  addon.setIsa(isa as Parameters<typeof addon.setIsa>[0]);
  for (const threads of threadCounts) {
    addon.setThreads(threads);
    for (const c of cases) run(c, threads, addon.isa());
  }
}
