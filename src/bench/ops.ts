// `cubit bench ops`: the engine's core kernels, one JSON line per case.
import { getBackend, noGrad, tidy } from '../core/engine.ts';
import { randn } from '../ops/creation.ts';
import { matmul } from '../ops/matmul.ts';
import { rmsNorm, softmax } from '../ops/nn.ts';
import { NativeBackend } from '../backends/native/backend.ts';
import { emit, medianMs, round } from './measure.ts';

export interface OpsBenchOptions {
  /** Thread counts to try (native backend only). */
  threads?: number[];
  /** Only cases whose name contains this. */
  filter?: string;
}

export function benchOps(opts: OpsBenchOptions = {}): void {
  const b = getBackend();
  const threadList = b instanceof NativeBackend ? (opts.threads ?? [b.threads()]) : [1];
  const cases: { op: string; shape: string; flops: number; make: () => () => void }[] = [];
  for (const n of [512, 1024, 2048]) {
    cases.push({
      op: 'sgemm', shape: `${n}x${n}x${n}`, flops: 2 * n * n * n,
      make: () => { const a = randn([n, n], { seed: 1 }).keep(), c = randn([n, n], { seed: 2 }).keep(); return () => tidy(() => { matmul(a, c); }); },
    });
  }
  for (const [m, k, n] of [[256, 64, 256], [256, 256, 64]]) {
    cases.push({
      op: 'batched_matmul', shape: `32x(${m}x${k}*${k}x${n})`, flops: 32 * 2 * m * n * k,
      make: () => { const a = randn([32, m, k], { seed: 1 }).keep(), c = randn([32, k, n], { seed: 2 }).keep(); return () => tidy(() => { matmul(a, c); }); },
    });
  }
  cases.push({
    op: 'softmax', shape: '4096x1024', flops: 0,
    make: () => { const x = randn([4096, 1024], { seed: 3 }).keep(); return () => tidy(() => { softmax(x); }); },
  });
  cases.push({
    op: 'rmsnorm', shape: '4096x1024', flops: 0,
    make: () => { const x = randn([4096, 1024], { seed: 3 }).keep(), w = randn([1024], { seed: 4 }).keep(); return () => tidy(() => { rmsNorm(x, w); }); },
  });
  noGrad(() => {
    for (const c of cases) {
      if (opts.filter && !`${c.op} ${c.shape}`.includes(opts.filter)) continue;
      const run = c.make();
      for (const t of threadList) {
        if (b instanceof NativeBackend) b.setThreads(t);
        const ms = medianMs(run);
        const rec: Record<string, unknown> = { op: c.op, shape: c.shape, backend: b.name, threads: t, median_ms: round(ms) };
        if (c.flops) rec.gflops = round(c.flops / ms / 1e6, 1);
        else rec.gbps = round((2 * 4096 * 1024 * 4) / ms / 1e6, 1);
        emit(rec);
      }
    }
  });
}
