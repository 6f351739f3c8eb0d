// Benchmark of the fused NN kernels, native (C addon) against the reference (plain TS), called at
// the kernel level on preallocated storages so that only the kernels are timed. Prints one JSON
// line per case: {op, shape, backend, threads, isa, median_ms, gbps, cpu_ms}. gbps counts the
// bytes a kernel must read and write once (e.g. softmax forward: x in, y out) over the wall-time
// median; cpu_ms is the median process CPU time of one call (steadier on a shared machine).
// Issue 2's cases are softmax and RMSNorm on 4096×1024, forward and forward+backward; --all adds
// log-softmax, LayerNorm, cross-entropy, GELU, AdamW, a broadcast add and a transposed copy.
// Usage: node --import tsx bench/ops-nn.ts [--threads=1,2] [--isa=avx2] [--all] [--no-reference] [--min-ms=300]
import type { Storage } from '../src/core/backend.ts';
import { loadNativeAddon, nativeLoadError } from '../src/backends/native/addon.ts';
import { NativeBackend } from '../src/backends/native/backend.ts';
import { ReferenceBackend } from '../src/backends/reference/backend.ts';
import { Rng } from '../src/core/random.ts';
import { emit, medianMs, round, scriptOption } from '../src/bench/measure.ts';

const addon = loadNativeAddon();
if (!addon) {
  console.error(`native addon not available: ${nativeLoadError()}`);
  process.exit(1);
}

const flag = (name: string): boolean => process.argv.includes(`--${name}`);
const threadCounts = (scriptOption('threads') ?? [...new Set([1, addon.getThreads()])].join(',')).split(',').map(Number);
const isas = scriptOption('isa')?.split(',') ?? [addon.isa()];
const minMs = Number(scriptOption('min-ms') ?? 300);

interface Case {
  op: string;
  shape: string;
  /** Bytes read and written once by one call. */
  bytes: number;
  /** Prepares storages on a backend and returns the call to time. */
  setup: (b: ReferenceBackend) => () => void;
}

const rng = new Rng(7);
function randomStorage(b: ReferenceBackend, n: number, scale = 1): Storage {
  const s = b.alloc('float32', n);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = scale * (rng.next() * 2 - 1);
  b.write(s, v);
  return s;
}

const R = 4096, C = 1024, N = R * C;
const shape = `${R}x${C}`;

const cases: Case[] = [
  {
    op: 'softmax', shape, bytes: 2 * 4 * N,
    setup: (b) => {
      const x = randomStorage(b, N, 4), y = b.alloc('float32', N);
      return () => b.softmax(x, y, R, C, false);
    },
  },
  {
    op: 'softmax_fwd_bwd', shape, bytes: 5 * 4 * N,
    setup: (b) => {
      const x = randomStorage(b, N, 4), g = randomStorage(b, N), y = b.alloc('float32', N), dx = b.alloc('float32', N);
      return () => { b.softmax(x, y, R, C, false); b.softmaxBackward(y, g, dx, R, C, false); };
    },
  },
  {
    op: 'rmsnorm', shape, bytes: 2 * 4 * N,
    setup: (b) => {
      const x = randomStorage(b, N), w = randomStorage(b, C), y = b.alloc('float32', N), rstd = b.alloc('float32', R);
      return () => b.rmsNorm(x, w, y, rstd, R, C, 1e-6);
    },
  },
  {
    op: 'rmsnorm_fwd_bwd', shape, bytes: 5 * 4 * N,
    setup: (b) => {
      const x = randomStorage(b, N), w = randomStorage(b, C), g = randomStorage(b, N);
      const y = b.alloc('float32', N), rstd = b.alloc('float32', R), dx = b.alloc('float32', N), dw = b.alloc('float32', C);
      return () => { b.rmsNorm(x, w, y, rstd, R, C, 1e-6); b.rmsNormBackward(x, w, rstd, g, dx, dw, R, C); };
    },
  },
];

if (flag('all')) {
  const V = 32768, T = 512;
  cases.push(
    {
      op: 'log_softmax_fwd_bwd', shape, bytes: 5 * 4 * N,
      setup: (b) => {
        const x = randomStorage(b, N, 4), g = randomStorage(b, N), y = b.alloc('float32', N), dx = b.alloc('float32', N);
        return () => { b.softmax(x, y, R, C, true); b.softmaxBackward(y, g, dx, R, C, true); };
      },
    },
    {
      op: 'layernorm_fwd_bwd', shape, bytes: 5 * 4 * N,
      setup: (b) => {
        const x = randomStorage(b, N), w = randomStorage(b, C), bb = randomStorage(b, C), g = randomStorage(b, N);
        const y = b.alloc('float32', N), mu = b.alloc('float32', R), rstd = b.alloc('float32', R);
        const dx = b.alloc('float32', N), dw = b.alloc('float32', C), db = b.alloc('float32', C);
        return () => {
          b.layerNorm(x, w, bb, y, mu, rstd, R, C, 1e-5);
          b.layerNormBackward(x, w, mu, rstd, g, dx, dw, db, R, C);
        };
      },
    },
    {
      op: 'cross_entropy_fwd_bwd', shape: `${T}x${V}`, bytes: 3 * 4 * T * V,
      setup: (b) => {
        const x = randomStorage(b, T * V, 8), t = b.alloc('int32', T), dl = b.alloc('float32', T * V);
        b.write(t, Array.from({ length: T }, (_, i) => (i * 7919) % V));
        const loss = b.alloc('float32', T), lse = b.alloc('float32', T), g = randomStorage(b, T);
        return () => {
          b.crossEntropy(x, t, loss, lse, T, V, -100);
          b.crossEntropyBackward(x, t, lse, g, dl, T, V, -100);
        };
      },
    },
    {
      op: 'gelu', shape, bytes: 2 * 4 * N,
      setup: (b) => {
        const x = randomStorage(b, N, 4), y = b.alloc('float32', N);
        return () => b.unary('gelu', x, y, N, 0);
      },
    },
    {
      op: 'adamw', shape, bytes: 7 * 4 * N,
      setup: (b) => {
        const p = randomStorage(b, N), g = randomStorage(b, N), m = randomStorage(b, N, 0.1), v = randomStorage(b, N, 0.1);
        b.unary('abs', v, v, N, 0);
        const hp = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, bc1: 0.1, bc2: 0.01 };
        return () => b.adamw(p, g, m, v, N, hp);
      },
    },
    {
      op: 'add_row_broadcast', shape: `${shape}+${C}`, bytes: 2 * 4 * N,
      setup: (b) => {
        const x = randomStorage(b, N), r = randomStorage(b, C), y = b.alloc('float32', N);
        return () => b.binary('add', x, [C, 1], r, [0, 1], y, [R, C]);
      },
    },
    {
      op: 'transpose_copy', shape, bytes: 2 * 4 * N,
      setup: (b) => {
        const x = randomStorage(b, N), y = b.alloc('float32', N);
        return () => b.stridedCopy(x, 0, [C, R], [1, C], y, 0);
      },
    },
  );
}

/** Median process CPU time (user + system) of one call: on a shared, loaded machine it moves
 * far less than wall time for one thread (with more, it adds up every thread, spinning included). */
function medianCpuMs(fn: () => void, runs: number): number {
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage();
    fn();
    const c = process.cpuUsage(c0);
    t.push((c.user + c.system) / 1000);
  }
  t.sort((a, b) => a - b);
  return t[t.length >> 1];
}

async function measure(c: Case, b: ReferenceBackend, extra: Record<string, unknown>): Promise<void> {
  const call = c.setup(b);
  const ms = await medianMs(call, { minMs, warmup: 2, minRuns: 5 });
  const cpu = medianCpuMs(call, Math.max(5, Math.min(50, Math.ceil(minMs / ms))));
  emit({ op: c.op, shape: c.shape, backend: b.name, ...extra, median_ms: round(ms, 3), gbps: round(c.bytes / (ms * 1e6), 2), cpu_ms: round(cpu, 3) });
}

const native = new NativeBackend(addon);
for (const isa of isas) {
  addon.setIsa(isa as Parameters<typeof addon.setIsa>[0]);
  for (const threads of threadCounts) {
    addon.setThreads(threads);
    for (const c of cases) await measure(c, native, { threads, isa: addon.isa() });
  }
}
addon.setIsa('auto');
addon.setThreads(0);
if (!flag('no-reference')) {
  const reference = new ReferenceBackend();
  for (const c of cases) await measure(c, reference, { threads: 1, isa: 'js' });
}
