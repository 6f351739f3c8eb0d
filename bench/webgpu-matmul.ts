// Standalone benchmark of the webgpu backend's matmul kernels (src/backends/webgpu/kernels/matmul.ts):
// one JSON line per (shape, kernel) with the median time per product, TFLOP/s, and the largest
// error against core.ts's matmulTiled (exact f32 products) on the same inputs, relative to the
// largest entry of that reference.
//   {op, shape, kernel, precision, median_ms, tflops, max_rel_err, device}
// Timing waits for the GPU: each round records `reps` products, then awaits backend.sync().
// Usage: node --import tsx bench/webgpu-matmul.ts [--sizes=4096,2048,1024] [--reps=20] [--rounds=7]
//          [--kernels=comma-separated names from the list below]
// On an NVIDIA GPU, CUBIT_WEBGPU_UNSAFE=1 exposes shader-f16 and subgroup matrices (the f16 lines);
// the subgroup-matrix kernels run last, since Dawn marks that feature unsafe.
import { backendByName, prepareBackend } from '../src/index.ts';
import type { MatmulParams } from '../src/core/backend.ts';
import type { WebGPUBackend } from '../src/backends/webgpu/backend.ts';
import { matmulTiled } from '../src/backends/webgpu/kernels/core.ts';
import * as mm from '../src/backends/webgpu/kernels/matmul.ts';
import type { GpuStorage } from '../src/backends/webgpu/runtime.ts';
import { emit, median, round, scriptOption } from '../src/bench/measure.ts';

await prepareBackend('webgpu');
const be = backendByName('webgpu') as WebGPUBackend;
const rt = be.rt;
const sizes = (scriptOption('sizes') ?? '4096,2048,1024').split(',').map(Number);
const reps = Number(scriptOption('reps') ?? 20);
const rounds = Number(scriptOption('rounds') ?? 7);
const only = scriptOption('kernels')?.split(',');
const device = [be.adapter.vendor, be.adapter.architecture, be.adapter.device, be.adapter.description].filter(Boolean).join(' ');
emit({ adapter: device, features: be.adapter.features, subgroupMinSize: be.adapter.subgroupMinSize, subgroupMaxSize: be.adapter.subgroupMaxSize, subgroupMatrixConfigs: be.adapter.subgroupMatrixConfigs });

type Run = (a: GpuStorage, b: GpuStorage, out: GpuStorage, p: MatmulParams) => void;
interface Variant { name: string; precision: string; run: Run }
const variant = (name: string, precision: string, run: Run): Variant => ({ name, precision, run });
const kernels: Variant[] = [
  variant('tiled16', 'f32', (a, b, o, p) => matmulTiled(rt, a, b, o, p)),
  ...Object.entries(mm.TILES).filter(([, t]) => mm.tileFits(rt, t)).map(([n, t]) => variant(`registerTiled-${n}`, 'f32', (a, b, o, p) => mm.matmulRegisterTiled(rt, a, b, o, p, t))),
  variant('backend-f32', 'f32', (a, b, o, p) => { mm.matmul(rt, be.adapter, a, b, o, p, 'f32'); }),
  ...(rt.has('shader-f16') ? Object.entries(mm.TILES).filter(([, t]) => mm.tileFits(rt, t, true)).map(([n, t]) => variant(`registerTiled-${n}-f16`, 'f16', (a, b, o, p) => mm.matmulRegisterTiled(rt, a, b, o, p, t, true))) : []),
  ...(mm.hasSubgroupMatrix(rt, be.adapter) ? Object.entries(mm.SUBGROUP_TILES).map(([n, t]) => variant(`subgroupMatrix-${n}`, 'f16-subgroup-matrix', (a, b, o, p) => mm.matmulSubgroupMatrix(rt, be.adapter, a, b, o, p, t))) : []),
  variant('backend-f16', 'f16 (backend choice)', (a, b, o, p) => { mm.matmul(rt, be.adapter, a, b, o, p, 'f16'); }),
].filter((k) => !only || only.includes(k.name));

/** Uniform values in [-1, 1) from a fixed-seed generator (the same inputs for every kernel). */
function values(length: number, seed: number): Float32Array {
  const out = new Float32Array(length);
  let s = seed >>> 0;
  for (let i = 0; i < length; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; out[i] = s / 2147483648 - 1; }
  return out;
}

for (const n of sizes) {
  const p: MatmulParams = { batch: 1, m: n, n, k: n, transA: false, transB: false, aOffset: 0, bOffset: 0, cOffset: 0, aBatchStride: 0, bBatchStride: 0, cBatchStride: 0, accumulate: false };
  const a = rt.alloc('float32', n * n), b = rt.alloc('float32', n * n), out = rt.alloc('float32', n * n);
  rt.write(a, values(n * n, 1)); rt.write(b, values(n * n, 2));
  matmulTiled(rt, a, b, out, p);
  const ref = (await be.read(out, 0, n * n)) as Float32Array;
  let refMax = 0;
  for (let i = 0; i < ref.length; i++) refMax = Math.max(refMax, Math.abs(ref[i]));
  for (const k of kernels) {
    const shape = `${n}x${n}x${n}`;
    try {
      k.run(a, b, out, p);
      const got = (await be.read(out, 0, n * n)) as Float32Array;
      let err = 0;
      for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i] - ref[i]));
      if (!Number.isFinite(err)) err = Infinity;
      const times: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const t0 = performance.now();
        for (let i = 0; i < reps; i++) k.run(a, b, out, p);
        await be.sync();
        times.push((performance.now() - t0) / reps);
      }
      const ms = median(times);
      emit({ op: 'matmul', shape, kernel: k.name, precision: k.precision, median_ms: round(ms, 4), tflops: round((2 * n * n * n) / ms / 1e9, 3), max_rel_err: Number((err / refMax).toExponential(3)), device });
    } catch (e) {
      emit({ op: 'matmul', shape, kernel: k.name, precision: k.precision, error: (e as Error).message.split('\n')[0], device });
    }
  }
  for (const s of [a, b, out]) rt.release(s);
}
process.exit(0);
