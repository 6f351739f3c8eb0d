// The streaming mixer kernels alone, timed in turn in one process (native addon, no op layer):
// Cubit's solve with its stages (cubitSolve, forward and backward) against attention (forward and
// backward), the two halves of `cubit bench mixer`'s Cubit/softmax ratio. One JSON line per shape
// and thread count: {T, threads, <kernel>_ms medians, solve_over_attention}, where
//   solve_over_attention = (cubitSolve + cubitSolveBackward) / (attention + attentionBackward),
// the median of that ratio over the rounds (each round runs every kernel once),
// so Cubit/softmax ≈ 1 + solve_over_attention + the op layer's share.
// --baseline=path/to/other.node also times a second build of the addon, each kernel next to its
// twin on the same buffers, and adds <kernel>_baseline_over_current (an A/B of a change).
// Usage: node --import tsx bench/mixer-kernels.ts [--threads=1,2] [--T=1024,4096] [--B=4] [--H=4]
//          [--D=32] [--block=64] [--min-ms=3000] [--baseline=other.node]
import { createRequire } from 'node:module';
import path from 'node:path';
import { loadNativeAddon, nativeLoadError, type NativeAddon } from '../src/backends/native/addon.ts';
import { Rng } from '../src/core/random.ts';
import { emit, interleavedTimes, median, medianRatio, round, scriptOption } from '../src/bench/measure.ts';

const addon = loadNativeAddon();
if (!addon) {
  console.error(`native addon not available: ${nativeLoadError()}`);
  process.exit(1);
}
const baselinePath = scriptOption('baseline');
const baseline = baselinePath ? (createRequire(import.meta.url)(path.resolve(baselinePath)) as NativeAddon) : null;
const list = (name: string, def: string): number[] => (scriptOption(name) ?? def).split(',').map(Number);
const [B, H, D, block] = [list('B', '4')[0], list('H', '4')[0], list('D', '32')[0], list('block', '64')[0]];
const minMs = list('min-ms', '3000')[0];

/** Inputs and outputs of one shape, shared by both builds' kernels (so an A/B times the same data). */
function buffers(T: number) {
  const n = B * H * T * D, rows = B * H * T, rng = new Rng(T);
  const normal = (len: number): Float32Array => Float32Array.from({ length: len }, () => rng.normal());
  const F = (len: number): Float32Array => new Float32Array(len);
  return {
    r: normal(n), v: normal(n), q: normal(n), k: normal(n), g: normal(n), z: normal(rows),
    alpha: F(H).fill(1), lower: F(H).fill(0.5), range: F(H).fill(1.5), logLambda: F(H).fill(Math.log(1e-6)),
    x: F(n), rHat: F(n), lse: F(rows), wx: F(n), dr: F(n), dv: F(n), dz: F(rows),
    dAlpha: F(B * H), dLower: F(B * H), dRange: F(B * H), dLambda: F(B * H),
    out: F(n), attLse: F(rows), dq: F(n), dk: F(n), dvAtt: F(n), dims: [B, H, T, D, 0, null, block] as const,
  };
}

/** The four kernels on one addon build. */
function kernels(a: NativeAddon, b: ReturnType<typeof buffers>): Record<string, () => void> {
  const scale = 1 / Math.sqrt(D);
  const solve = (): void => a.cubitSolve(b.r, b.alpha, b.v, b.z, b.lower, b.range, b.logLambda, 1e-6, b.x, b.rHat, b.lse, b.wx, ...b.dims);
  const attention = (): void => a.attention(b.q, b.k, b.v, b.out, b.attLse, scale, ...b.dims);
  solve();
  attention();
  return {
    solve,
    solveBackward: () => a.cubitSolveBackward(b.r, b.alpha, b.v, b.z, b.lower, b.range, b.logLambda, 1e-6, b.x, b.rHat, b.lse,
      b.wx, b.g, b.dr, b.dv, b.dAlpha, b.dz, b.dLower, b.dRange, b.dLambda, ...b.dims),
    attention,
    attentionBackward: () => a.attentionBackward(b.q, b.k, b.v, b.out, b.attLse, b.g, scale, b.dq, b.dk, b.dvAtt, ...b.dims),
  };
}

for (const threads of list('threads', String(addon.getThreads()))) {
  addon.setThreads(threads);
  baseline?.setThreads(threads);
  for (const T of list('T', '1024')) {
    const data = buffers(T), cur = kernels(addon, data), base = baseline ? kernels(baseline, data) : null;
    const names = Object.keys(cur);
    // Each kernel next to its baseline twin, on the same buffers.
    const fns = names.flatMap((k) => (base ? [cur[k], base[k]] : [cur[k]]));
    const times = await interleavedTimes(fns, { warmup: 1, minRuns: 7, minMs });
    const step = base ? 2 : 1;
    const t = Object.fromEntries(names.map((k, i) => [k, times[i * step]]));
    const rec: Record<string, unknown> = { bench: 'mixer-kernels', B, H, T, D, blockSize: block, threads };
    for (const k of names) rec[`${k}_ms`] = round(median(t[k]), 2);
    const sum = (a: number[], b: number[]): number[] => a.map((x, i) => x + b[i]);
    rec.solve_over_attention = round(medianRatio(sum(t.solve, t.solveBackward), sum(t.attention, t.attentionBackward)));
    if (base) names.forEach((k, i) => { rec[`${k}_baseline_over_current`] = round(medianRatio(times[i * step + 1], t[k])); });
    emit(rec);
  }
}
