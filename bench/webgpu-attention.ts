// The webgpu softmax-attention kernels alone (no op layer): forward, and forward + backward, at
// causal B=8 H=8 D=64 by default, timed as GPU work (each run ends with `await backend.sync()`).
// One JSON line per T and dK/dV form:
//   {bench: "webgpu-attention", B, H, T, D, window, key_threads, fwd_ms, bwd_ms, fwd_bwd_ms,
//    fwd_tflops, fwd_bwd_tflops, check_rel_err, device}
// ms are medians over the runs (bwd_ms: the backward alone, from one forward's saved state);
// tflops count the FlashAttention convention (forward 4·D, backward 10·D flops per visible
// (query, key) pair: 2 and 5 matrix products), over the causal pairs only.
// check_rel_err: the first (b, h) block's out, dq, dk, dv against the float64 reference (largest
// relErr), at the T values up to --check-max-t (default 1024).
// The PyTorch anchor to run beside it, on the same GPU: ../shared/anchors/torch_cubit.py (nw_fb_ms
// is SDPA fp32 forward + backward at B=8 H=8 D=64).
// Usage: node --import tsx bench/webgpu-attention.ts [--T=1024,4096] [--B=8] [--H=8] [--D=64]
//          [--window=0] [--runs=10] [--check-max-t=1024] [--keys=joined,split]
// --keys: the dK/dV kernel's forms to time, each on its own line (key_threads: "joined", one thread
// per key row; "split", two; see kernels/attention.ts). Default: the kernels' own choice ("auto").
import { prepareBackend } from '../src/index.ts';
import type { MixerDims, Storage } from '../src/core/backend.ts';
import { Rng } from '../src/core/random.ts';
import { attentionBackwardRef, attentionRef } from '../src/backends/reference/mixers.ts';
import type { WebGPUBackend } from '../src/backends/webgpu/backend.ts';
import { attentionCodegen, splitsKeys } from '../src/backends/webgpu/kernels/attention.ts';
import { emit, median, round, scriptOption } from '../src/bench/measure.ts';

const list = (name: string, def: string): number[] => (scriptOption(name) ?? def).split(',').map(Number);
const [B, H, D, window, runs, checkMaxT] = ['B', 'H', 'D', 'window', 'runs', 'check-max-t'].map((n, i) => list(n, ['8', '8', '64', '0', '10', '1024'][i])[0]);

const be = await prepareBackend('webgpu') as WebGPUBackend;
const device = `${be.adapter.vendor} ${be.adapter.architecture} ${be.adapter.device} ${be.adapter.description}`.trim();

/** Visible (query, key) pairs of one (b, h) block under the causal mask and the window. */
function pairs(T: number): number {
  let n = 0;
  for (let i = 0; i < T; i++) n += window > 0 ? Math.min(i + 1, window) : i + 1;
  return n;
}

/** The largest relErr of block (0, 0)'s out, dq, dk, dv against the float64 reference. */
function check(T: number, q: Float32Array, k: Float32Array, v: Float32Array, g: Float32Array, got: Float32Array[]): number {
  const n = T * D, d: MixerDims = { B: 1, H: 1, T, D, window, docIds: null };
  const [q0, k0, v0, g0] = [q, k, v, g].map((x) => x.subarray(0, n));
  const want = [0, 1, 2, 3].map(() => new Float64Array(n));
  attentionRef(q0, k0, v0, want[0], new Float64Array(T), 1 / Math.sqrt(D), d, null);
  attentionBackwardRef(q0, k0, v0, got[0].subarray(0, n), new Float64Array(T), g0, 1 / Math.sqrt(D), want[1], want[2], want[3], d, null);
  return Math.max(...want.map((w, i) => {
    let e = 0, s = 0;
    for (let x = 0; x < n; x++) { e += (got[i][x] - w[x]) ** 2; s += w[x] ** 2; }
    return Math.sqrt(e / s);
  }));
}

const forms = (scriptOption('keys') ?? 'auto').split(',');
for (const form of forms) if (!['joined', 'split', 'auto'].includes(form)) throw new Error(`--keys: '${form}' is not 'joined', 'split' or 'auto'`);

for (const T of list('T', '1024,4096')) for (const form of forms) {
  attentionCodegen.splitKeys = form === 'auto' ? null : form === 'split';
  const n = B * H * T * D, rng = new Rng(T);
  const normal = (): Float32Array => Float32Array.from({ length: n }, () => rng.normal());
  const host = [normal(), normal(), normal(), normal()];
  const [q, k, v, g] = host.map((x) => { const s = be.alloc('float32', n); be.write(s, x); return s; });
  const [out, dq, dk, dv] = [0, 1, 2, 3].map(() => be.alloc('float32', n));
  const dims: MixerDims = { B, H, T, D, window, docIds: null };
  const scale = 1 / Math.sqrt(D);
  const forward = (): Storage[] => be.attention(q, k, v, out, scale, dims).storages as Storage[];
  const both = (): Storage[] => {
    const saved = be.attention(q, k, v, out, scale, dims);
    be.attentionBackward(q, k, v, out, saved, g, scale, dq, dk, dv, dims);
    return saved.storages as Storage[];
  };
  const time = async (fn: () => Storage[]): Promise<number> => {
    const times: number[] = [];
    for (let r = 0; r < runs + 2; r++) {
      await be.sync();
      const t0 = performance.now();
      const saved = fn();
      await be.sync();
      if (r >= 2) times.push(performance.now() - t0);
      for (const s of saved) be.free(s);
    }
    return median(times);
  };
  const fwd = await time(forward);
  const kept = be.attention(q, k, v, out, scale, dims);
  const bwd = await time(() => { be.attentionBackward(q, k, v, out, kept, g, scale, dq, dk, dv, dims); return []; });
  for (const s of kept.storages) be.free(s);
  const fwdBwd = await time(both);
  let checkErr: number | null = null;
  if (T <= checkMaxT) {
    const got = await Promise.all([out, dq, dk, dv].map((s) => be.read(s, 0, T * D) as Promise<Float32Array>));
    checkErr = check(T, host[0], host[1], host[2], host[3], got);
  }
  const flops = B * H * pairs(T) * D;
  emit({
    bench: 'webgpu-attention', B, H, T, D, window, key_threads: splitsKeys(D) ? 'split' : 'joined', fwd_ms: round(fwd, 3), fwd_bwd_ms: round(fwdBwd, 3), bwd_ms: round(bwd, 3),
    fwd_tflops: round(4 * flops / fwd / 1e9, 2), fwd_bwd_tflops: round(14 * flops / fwdBwd / 1e9, 2),
    check_rel_err: checkErr === null ? null : Number(checkErr.toExponential(2)), device,
  });
  for (const s of [q, k, v, g, out, dq, dk, dv]) be.free(s);
}
