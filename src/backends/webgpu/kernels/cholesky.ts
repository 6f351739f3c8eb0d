// The batched Cholesky factorisation (the fused kernel `cholesky`) in WGSL: a thread per matrix,
// column by column in `out` (the local-linear mixer's systems are small: rank × rank). Its twin is
// the reference backend's float64 loop; the ops' composite (blocked, over core kernels) is what a
// backend without it runs.
import { grid1d, ParamWriter, type GpuRuntime, type GpuStorage } from '../runtime.ts';
import { elementwiseMain, WG } from '../wgsl.ts';

export function cholesky(rt: GpuRuntime, a: GpuStorage, out: GpuStorage, batch: number, n: number): void {
  if (batch * n === 0) return;
  const k = rt.kernel('cholesky', /* wgsl */ `
struct P { batch: u32, n: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read_write> L: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
${elementwiseMain(`  if (i >= p.batch) { return; }
  let n = p.n;
  let o = i * n * n;
  for (var j = 0u; j < n; j++) {
    for (var c = j + 1u; c < n; c++) { L[o + j * n + c] = 0.0; }
    var s = A[o + j * n + j];
    for (var l = 0u; l < j; l++) { s -= L[o + j * n + l] * L[o + j * n + l]; }
    // A pivot that is not positive leaves NaN (sqrt of a negative) or 0 on the diagonal, which the
    // op's check on the diagonal reports.
    let ljj = sqrt(s);
    L[o + j * n + j] = ljj;
    for (var r = j + 1u; r < n; r++) {
      var t = A[o + r * n + j];
      for (var l = 0u; l < j; l++) { t -= L[o + r * n + l] * L[o + j * n + l]; }
      L[o + r * n + j] = t / ljj;
    }
  }`)}`, ['read', 'read_write']);
  rt.run(k, [a, out], new ParamWriter().u32(batch, n), grid1d(batch, WG, rt.limits.maxComputeWorkgroupsPerDimension));
}
