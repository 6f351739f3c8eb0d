// The streaming mixer kernels alone, timed in turn in one process (native addon, no op layer):
// Cubit's solve with its stages (cubitSolve, forward and backward) against attention (forward and
// backward), the two halves of `cubit bench mixer`'s Cubit/softmax ratio. One JSON line per shape
// and thread count: {T, threads, <kernel>_ms medians, solve_over_attention}, where
//   solve_over_attention = (cubitSolve + cubitSolveBackward) / (attention + attentionBackward),
// so Cubit/softmax ≈ 1 + solve_over_attention + the op layer's share.
// --baseline=path/to/other.node also times a second build of the addon in the same rounds and adds
// its solve medians and baseline_over_current for each kernel (an A/B of a change).
// Usage: node --import tsx bench/mixer-kernels.ts [--threads=1,2] [--T=1024,4096] [--B=4] [--H=4]
//          [--D=32] [--block=64] [--min-ms=3000] [--baseline=other.node]
import { createRequire } from 'node:module';
import path from 'node:path';
import { loadNativeAddon, nativeLoadError, type NativeAddon } from '../src/backends/native/addon.ts';
import { Rng } from '../src/core/random.ts';
import { emit, medianMsInterleaved, round, scriptOption } from '../src/bench/measure.ts';

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

/** The kernels of one shape on one addon build, over shared inputs. */
function kernels(a: NativeAddon, T: number): Record<string, () => void> {
  const n = B * H * T * D, rows = B * H * T, rng = new Rng(T);
  const normal = (len: number): Float32Array => Float32Array.from({ length: len }, () => rng.normal());
  const F = (len: number): Float32Array => new Float32Array(len);
  const r = normal(n), v = normal(n), q = normal(n), k = normal(n), g = normal(n), z = normal(rows);
  const alpha = F(H).fill(1), lower = F(H).fill(0.5), range = F(H).fill(1.5), logLambda = F(H).fill(Math.log(1e-6));
  const x = F(n), rHat = F(n), lse = F(rows), wx = F(n), dr = F(n), dv = F(n), dz = F(rows);
  const [dAlpha, dLower, dRange, dLambda] = [F(B * H), F(B * H), F(B * H), F(B * H)];
  const out = F(n), attLse = F(rows), dq = F(n), dk = F(n), dvAtt = F(n), scale = 1 / Math.sqrt(D);
  const dims = [B, H, T, D, 0, null, block] as const;
  const solve = (): void => a.cubitSolve(r, alpha, v, z, lower, range, logLambda, 1e-6, x, rHat, lse, wx, ...dims);
  const attention = (): void => a.attention(q, k, v, out, attLse, scale, ...dims);
  solve();
  attention();
  return {
    solve,
    solveBackward: () => a.cubitSolveBackward(r, alpha, v, z, lower, range, logLambda, 1e-6, x, rHat, lse, wx, g, dr, dv, dAlpha,
      dz, dLower, dRange, dLambda, ...dims),
    attention,
    attentionBackward: () => a.attentionBackward(q, k, v, out, attLse, g, scale, dq, dk, dvAtt, ...dims),
  };
}

for (const threads of list('threads', String(addon.getThreads()))) {
  addon.setThreads(threads);
  baseline?.setThreads(threads);
  for (const T of list('T', '1024')) {
    const cur = kernels(addon, T), base = baseline ? kernels(baseline, T) : null;
    const names = Object.keys(cur);
    const fns = [...names.map((k) => cur[k]), ...(base ? ['solve', 'solveBackward'].map((k) => base[k]) : [])];
    const ms = medianMsInterleaved(fns, { warmup: 1, minRuns: 7, minMs });
    const m = Object.fromEntries(names.map((k, i) => [k, ms[i]]));
    const rec: Record<string, unknown> = { bench: 'mixer-kernels', B, H, T, D, blockSize: block, threads };
    for (const k of names) rec[`${k}_ms`] = round(m[k], 2);
    rec.solve_over_attention = round((m.solve + m.solveBackward) / (m.attention + m.attentionBackward));
    if (base) {
      const [bs, bb] = ms.slice(names.length);
      Object.assign(rec, { baseline_solve_ms: round(bs, 2), baseline_solveBackward_ms: round(bb, 2),
        solve_baseline_over_current: round(bs / m.solve), solveBackward_baseline_over_current: round(bb / m.solveBackward) });
    }
    emit(rec);
  }
}
