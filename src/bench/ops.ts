// `cubit bench ops`: the engine's core kernels, one JSON line per case.
import { getBackend, noGrad, tidy } from '../core/engine.ts';
import type { Tensor } from '../core/tensor.ts';
import { randn } from '../ops/creation.ts';
import { matmul } from '../ops/matmul.ts';
import { rmsNorm, softmax } from '../ops/nn.ts';
import { NativeBackend } from '../backends/native/backend.ts';
import { deviceFields, emit, emitFailure, medianMs, round, settled } from './measure.ts';

export interface OpsBenchOptions {
  /** Thread counts to try (native backend only). */
  threads?: number[];
  /** Only cases whose name contains this. */
  filter?: string;
  /** Sizes n of the square n×n×n matmuls (default 512, 1024, 2048). */
  sizes?: number[];
}

interface OpsCase { op: string; shape: string; flops: number; make: () => { inputs: Tensor[]; run: () => void } }

export async function benchOps(opts: OpsBenchOptions = {}): Promise<void> {
  const b = getBackend();
  const threadList = b instanceof NativeBackend ? (opts.threads ?? [b.threads()]) : [1];
  const cases: OpsCase[] = [];
  for (const n of opts.sizes ?? [512, 1024, 2048]) {
    cases.push({
      op: 'sgemm', shape: `${n}x${n}x${n}`, flops: 2 * n * n * n,
      make: () => { const a = randn([n, n], { seed: 1 }).keep(), c = randn([n, n], { seed: 2 }).keep(); return { inputs: [a, c], run: () => tidy(() => { matmul(a, c); }) }; },
    });
  }
  for (const [m, k, n] of [[256, 64, 256], [256, 256, 64]]) {
    cases.push({
      op: 'batched_matmul', shape: `32x(${m}x${k}*${k}x${n})`, flops: 32 * 2 * m * n * k,
      make: () => { const a = randn([32, m, k], { seed: 1 }).keep(), c = randn([32, k, n], { seed: 2 }).keep(); return { inputs: [a, c], run: () => tidy(() => { matmul(a, c); }) }; },
    });
  }
  cases.push({
    op: 'softmax', shape: '4096x1024', flops: 0,
    make: () => { const x = randn([4096, 1024], { seed: 3 }).keep(); return { inputs: [x], run: () => tidy(() => { softmax(x); }) }; },
  });
  cases.push({
    op: 'rmsnorm', shape: '4096x1024', flops: 0,
    make: () => { const x = randn([4096, 1024], { seed: 3 }).keep(), w = randn([1024], { seed: 4 }).keep(); return { inputs: [x, w], run: () => tidy(() => { rmsNorm(x, w); }) }; },
  });
  const settle = settled(b);
  for (const c of cases) {
    if (opts.filter && !`${c.op} ${c.shape}`.includes(opts.filter)) continue;
    for (const t of threadList) {
      if (b instanceof NativeBackend) b.setThreads(t);
      const rec: Record<string, unknown> = { op: c.op, shape: c.shape, ...deviceFields(b), threads: t };
      let inputs: Tensor[] = [];
      try {
        const made = c.make();
        inputs = made.inputs;
        // noGrad around each call, not the loop: it would end at the first await.
        const ms = await medianMs(() => noGrad(made.run), { settle });
        rec.median_ms = round(ms);
        if (c.flops) rec.gflops = round(c.flops / ms / 1e6, 1);
        else rec.gbps = round((2 * 4096 * 1024 * 4) / ms / 1e6, 1);
        emit(rec);
      } catch (e) {
        emitFailure(rec, e);
      } finally {
        for (const x of inputs) x.dispose();
      }
    }
  }
}
