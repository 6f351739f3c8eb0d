// `cubit bench mixer` (and bench/mixer.ts): forward + backward of the full functional mixers,
// cubitAttention (r̂ normalisation, LRR, the streaming KRR solve, attention over X) against
// softmaxAttention, on the backend in use. One JSON line per case and thread count:
//   {mixer, B, H, T, D, blockSize, threads, fwd_bwd_ms, peak_bytes, input_bytes}
// and per shape the ratio of the two, timed in turn: {bench: "mixer-ratio", …, cubit_over_softmax,
// cubit_over_softmax_paired}: the ratio of the two medians, and the median of each round's ratio.
// fwd_bwd_ms is the median of repeated steps (forward, backward from a fixed output gradient,
// leaf gradients dropped). peak_bytes is what the step holds on top of its inputs: the backend's
// peakBytesInUse over one step (resetPeak before) minus the bytes in use when it starts. Not in
// it: the native kernels' scratch (C heap, grown once and reused): O(blockSize·(D + 64)) floats per
// thread (per (b, h) when B·H < P), and with B·H < P also 2·G·T·D floats per (b, h) for the
// attention backward's partial dk, dv (G = ⌈P / B·H⌉, P = the CPUs available clamped to [4, 16]).
import { getBackend, tidy } from '../core/engine.ts';
import type { Tensor } from '../core/tensor.ts';
import { randn, full } from '../ops/creation.ts';
import { softmaxAttention } from '../ops/mixers.ts';
import { cubitAttention } from '../mixers/functional.ts';
import { NativeBackend } from '../backends/native/backend.ts';
import { deviceFields, emit, emitFailure, interleavedTimes, median, medianRatio, round, settled } from './measure.ts';

export type MixerName = 'cubit' | 'softmax';

export interface MixerCase { mixer: MixerName; B: number; H: number; T: number; D: number }

/** Issue 3's shapes: B=4, H=4, D=32 at T = 128 … 4096, and B=1, H=4, D=32 at T = 16384. */
export function mixerBenchShapes(): Omit<MixerCase, 'mixer'>[] {
  const shapes: Omit<MixerCase, 'mixer'>[] = [];
  for (let T = 128; T <= 4096; T *= 2) shapes.push({ B: 4, H: 4, T, D: 32 });
  shapes.push({ B: 1, H: 4, T: 16384, D: 32 });
  return shapes;
}

export interface MixerBenchOptions {
  /** Thread counts to try (native backend; default: the backend's current count). */
  threads?: number[];
  /** Only cases whose label ("cubit B=4 H=4 T=1024 D=32") contains this. */
  filter?: string;
  /** Rows per streaming block (default 64). */
  blockSize?: number;
  /** The shapes to run (default mixerBenchShapes()). */
  shapes?: Omit<MixerCase, 'mixer'>[];
}

/** Shapes written B×H×T×D, comma-separated ("8x8x1024x64,8x8x4096x64"); a one-line error names a bad one. */
export function parseMixerShapes(text: string): Omit<MixerCase, 'mixer'>[] {
  return text.split(',').map((part) => {
    const n = part.trim().split('x').map(Number);
    if (n.length !== 4 || !n.every((v) => Number.isInteger(v) && v >= 1)) throw new Error(`mixer shape '${part}' is not BxHxTxD (four positive integers, e.g. 8x8x1024x64)`);
    return { B: n[0], H: n[1], T: n[2], D: n[3] };
  });
}

const label = (c: MixerCase): string => `${c.mixer} B=${c.B} H=${c.H} T=${c.T} D=${c.D}`;

/** Leaf inputs of one case (kept, requiring gradients) and the step to time. */
function setup(c: MixerCase): { leaves: Tensor[]; step: () => void } {
  const { B, H, T, D } = c;
  const leaf = (t: Tensor): Tensor => { t.requiresGrad = true; return t.keep(); };
  const x = (seed: number): Tensor => leaf(randn([B, H, T, D], { seed }));
  const g = randn([B, H, T, D], { seed: 99 }).keep();
  if (c.mixer === 'softmax') {
    const q = x(1), k = x(2), v = x(3);
    return { leaves: [q, k, v, g], step: () => tidy(() => { softmaxAttention(q, k, v).backward(g); }) };
  }
  const inputs = {
    q: x(1), k: x(2), v: x(3), r: x(4), lrrLogits: leaf(randn([B, H, T], { seed: 5 })),
    refScale: leaf(full([H], 1)), logLambda: leaf(full([H], Math.log(1e-6))),
    lrrLower: leaf(full([H], 0.5)), lrrRange: leaf(full([H], 1.5)),
  };
  return {
    leaves: [...Object.values(inputs), g],
    step: () => tidy(() => { cubitAttention(inputs).output.backward(g); }),
  };
}

/** Drops the gradients a step accumulated into the leaves (as an optimizer's zero_grad would). */
function dropGrads(leaves: Tensor[]): void {
  for (const t of leaves) {
    if (t.grad) { t.grad.dispose(); t.grad = null; }
  }
}

/**
 * Per shape, Cubit and softmax are timed in turn (cubit, softmax, softmax, cubit, …) so that their
 * ratio, printed as a third line {bench: "mixer-ratio", …}, compares steps that ran under the same
 * machine load: cubit_over_softmax is the ratio of the medians, cubit_over_softmax_paired the
 * median of each round's ratio (steadier when the machine's speed drifts during the run).
 */
export async function benchMixer(opts: MixerBenchOptions = {}): Promise<void> {
  const b = getBackend();
  const settle = settled(b);
  const threadList = b instanceof NativeBackend ? (opts.threads ?? [b.threads()]) : [1];
  const blockSize = opts.blockSize ?? 64;
  if (b instanceof NativeBackend) b.blockSize = blockSize;
  for (const shape of opts.shapes ?? mixerBenchShapes()) {
    const cases = (['cubit', 'softmax'] as const).map((mixer) => ({ mixer, ...shape }))
      .filter((c) => !opts.filter || label(c).includes(opts.filter));
    if (cases.length === 0) continue;
    const runs: { c: MixerCase; leaves: Tensor[]; inputBytes: number; run: () => void }[] = [];
    let failed: unknown = null;
    for (const c of cases) {
      try {
        const before = b.memory().bytesInUse;
        const { leaves, step } = setup(c);
        runs.push({ c, leaves, inputBytes: b.memory().bytesInUse - before, run: (): void => { step(); dropGrads(leaves); } });
      } catch (e) { failed = e; emitFailure({ mixer: c.mixer, B: c.B, H: c.H, T: c.T, D: c.D, blockSize, ...deviceFields(b) }, e); }
    }
    for (const t of threadList) {
      if (b instanceof NativeBackend) b.setThreads(t);
      // A case that fails (a tensor past the device's limits, out of memory) prints its error and
      // drops out; the other mixer of the shape still runs.
      const ok: typeof runs = [];
      const peaks: number[] = [];
      let slowest = 0;
      for (const r of runs) {
        try {
          r.run(); // warm the pool, the kernels' scratch and a GPU's compiled pipelines
          await settle?.();
          const start = b.memory().bytesInUse;
          b.resetPeak();
          const t0 = performance.now();
          r.run();
          await settle?.();
          slowest = Math.max(slowest, performance.now() - t0);
          peaks.push(b.memory().peakBytesInUse - start);
          ok.push(r);
        } catch (e) {
          failed = e;
          emitFailure({ mixer: r.c.mixer, B: r.c.B, H: r.c.H, T: r.c.T, D: r.c.D, blockSize, threads: t, ...deviceFields(b) }, e);
        }
      }
      if (ok.length === 0) continue;
      let times: number[][];
      try {
        // Fewer rounds for slow steps (long sequences, or a slow backend): seconds per step vary
        // little, and a benchmark under a time limit must finish.
        const rounds = slowest > 5000 ? { warmup: 0, minRuns: 1, minMs: 0 } : slowest > 500 ? { warmup: 0, minRuns: 3, minMs: 0 } : { warmup: 1, minRuns: 5, minMs: 2000 };
        times = await interleavedTimes(ok.map((r) => r.run), { ...rounds, settle });
      } catch (e) {
        for (const r of ok) emitFailure({ mixer: r.c.mixer, B: r.c.B, H: r.c.H, T: r.c.T, D: r.c.D, blockSize, threads: t, ...deviceFields(b) }, e);
        continue;
      }
      const ms = times.map(median);
      ok.forEach(({ c, inputBytes }, i) => {
        emit({ mixer: c.mixer, B: c.B, H: c.H, T: c.T, D: c.D, blockSize, threads: t, fwd_bwd_ms: round(ms[i], 2), peak_bytes: peaks[i], input_bytes: inputBytes, ...deviceFields(b) });
      });
      if (ok.length === 2 && failed === null) {
        emit({ bench: 'mixer-ratio', B: shape.B, H: shape.H, T: shape.T, D: shape.D, blockSize, threads: t, cubit_over_softmax: round(ms[0] / ms[1], 3),
          cubit_over_softmax_paired: round(medianRatio(times[0], times[1]), 3), ...deviceFields(b) });
      }
    }
    for (const r of runs) for (const t of r.leaves) t.dispose();
    // Pooled memory of this shape is returned before the next: from T = 1024 to 32768 a GPU's pool
    // would otherwise keep every size class (≈15 GB on the H100 run).
    (b as { trim?: () => void }).trim?.();
  }
}
