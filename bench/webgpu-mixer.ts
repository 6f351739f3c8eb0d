// The Cubit solve on the webgpu backend (the streaming kernels of src/backends/webgpu/kernels/
// cubit.ts): ms medians of the forward and of forward + backward at B=8, H=8, D=64 (issue 13's
// mixer shape), one JSON line per T. By default the solve alone (cubitSolve with LRR);
// PART=mixer times the whole Cubit mixer (cubitAttention: the solve, then attention over X), the
// counterpart of ../shared/anchors/torch_cubit.py's dense formula.
//   node --import tsx bench/webgpu-mixer.ts            (T = 1024, 4096, 8192, 32768)
//   PART=mixer T=1024,4096 REPS=5 node --import tsx bench/webgpu-mixer.ts
// Each timing waits for the GPU (backend.sync()); the first run of each T (pipeline compilation)
// is not timed.
import { backendByName, cubitAttention, cubitSolve, prepareBackend, tensor, tidy, withBackend, type Tensor } from '../src/index.ts';
import type { WebGPUBackend } from '../src/backends/webgpu/index.ts';

await prepareBackend('webgpu');
const be = backendByName('webgpu') as WebGPUBackend;
const [B, H, D] = [8, 8, 64];
const Ts = (process.env.T ?? '1024,4096,8192,32768').split(',').map(Number);
const reps = Number(process.env.REPS ?? 5);
const part = process.env.PART ?? 'solve';
if (part !== 'solve' && part !== 'mixer') throw new Error(`PART must be 'solve' or 'mixer', got '${part}'`);

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

for (const T of Ts) {
  const n = B * H * T * D;
  const rnd = (k: number, lo: number, hi: number): Float32Array => {
    const a = new Float32Array(k);
    for (let i = 0; i < k; i++) a[i] = lo + (hi - lo) * Math.random();
    return a;
  };
  const inputs = withBackend(be, () => ({
    r: tensor(rnd(n, -1, 1), [B, H, T, D], { requiresGrad: true }),
    v: tensor(rnd(n, -1, 1), [B, H, T, D], { requiresGrad: true }),
    z: tensor(rnd(B * H * T, -2, 2), [B, H, T], { requiresGrad: true }),
    a: tensor(new Float32Array(H).fill(Math.sqrt(D)), [H], { requiresGrad: true }),
    lo: tensor(new Float32Array(H).fill(0.5), [H], { requiresGrad: true }),
    ra: tensor(new Float32Array(H).fill(1.5), [H], { requiresGrad: true }),
    ll: tensor(new Float32Array(H).fill(Math.log(1e-3)), [H], { requiresGrad: true }),
    q: tensor(rnd(n, -1, 1), [B, H, T, D], { requiresGrad: true }),
    k: tensor(rnd(n, -1, 1), [B, H, T, D], { requiresGrad: true }),
    g: tensor(rnd(n, -1, 1), [B, H, T, D]),
  }));
  const { r, v, z, a, lo, ra, ll, q, k, g } = inputs;
  const solve = (): Tensor => (part === 'solve'
    ? cubitSolve(r, a, v, { logits: z, lower: lo, range: ra }, ll)
    : cubitAttention({ q, k, v, r, lrrLogits: z, refScale: a, logLambda: ll, lrrLower: lo, lrrRange: ra }).output);
  const fwd = (): void => withBackend(be, () => tidy(() => { solve(); }));
  const fwdBwd = (): void => withBackend(be, () => tidy(() => {
    solve().backward(g);
    for (const p of [r, v, z, a, lo, ra, ll, q, k]) { p.grad?.dispose(); p.grad = null; }
  }));
  const time = async (fn: () => void): Promise<number> => {
    fn();
    await be.sync();
    const ms: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      fn();
      await be.sync();
      ms.push(performance.now() - t0);
    }
    return median(ms);
  };
  const fwdMs = await time(fwd);
  const fwdBwdMs = await time(fwdBwd);
  console.log(JSON.stringify({
    bench: part === 'solve' ? 'webgpu cubitSolve' : 'webgpu cubit mixer', device: be.adapter.description || be.adapter.device, B, H, T, D,
    fwd_ms: +fwdMs.toFixed(3), fwd_bwd_ms: +fwdBwdMs.toFixed(3), reps, peak_bytes: be.memory().peakBytesInUse,
  }));
  for (const t of Object.values(inputs)) t.dispose();
  be.trim();
}
