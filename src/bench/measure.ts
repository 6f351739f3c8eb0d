// Timing helpers for the benchmarks: medians of repeated runs, printed as JSON lines.

/** Median wall time in ms of `fn` after `warmup` runs, over at least `minRuns` runs / `minMs`. */
export function medianMs(fn: () => void, opts: { warmup?: number; minRuns?: number; minMs?: number; maxRuns?: number } = {}): number {
  const warmup = opts.warmup ?? 2, minRuns = opts.minRuns ?? 5, minMs = opts.minMs ?? 300, maxRuns = opts.maxRuns ?? 200;
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < maxRuns && (times.length < minRuns || performance.now() - start < minMs)) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}

/**
 * Run times (ms) of several functions run in turn after `warmup` rounds: one array per function,
 * one entry per round. Rounds alternate in direction (a, b, c, then c, b, a), so that no function
 * always runs right after the same one: a function runs faster after one that warmed its data,
 * which biased same-code comparisons by ~4% when the order was fixed.
 */
export function interleavedTimes(fns: (() => void)[], opts: { warmup?: number; minRuns?: number; minMs?: number; maxRuns?: number } = {}): number[][] {
  const warmup = opts.warmup ?? 1, minRuns = opts.minRuns ?? 5, minMs = opts.minMs ?? 300, maxRuns = opts.maxRuns ?? 200;
  for (let i = 0; i < warmup; i++) for (const fn of fns) fn();
  const times: number[][] = fns.map(() => []);
  const start = performance.now();
  for (let round = 0; times[0].length < maxRuns && (times[0].length < minRuns || performance.now() - start < minMs); round++) {
    for (let n = 0; n < fns.length; n++) {
      const i = round % 2 ? fns.length - 1 - n : n;
      const t0 = performance.now();
      fns[i]();
      times[i].push(performance.now() - t0);
    }
  }
  return times;
}

/** Medians (ms) of interleavedTimes: on a shared machine their ratio is far steadier than that of
 * medians taken one after the other. */
export function medianMsInterleaved(fns: (() => void)[], opts: { warmup?: number; minRuns?: number; minMs?: number; maxRuns?: number } = {}): number[] {
  return interleavedTimes(fns, opts).map(median);
}

/** The median over rounds of a[k] / b[k] (times from one interleavedTimes run): each round's two
 * times ran under the same load, so this follows a machine whose speed drifts during the run
 * better than the ratio of the two medians does. */
export function medianRatio(a: number[], b: number[]): number {
  return median(a.map((x, k) => x / b[k]));
}

export function median(times: number[]): number {
  const s = [...times].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** The value of a bench script's `--name=value` argument, if given. */
export function scriptOption(name: string): string | undefined {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg?.slice(name.length + 3);
}

export function emit(record: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(record) + '\n');
}

export const round = (x: number, digits = 3): number => Number(x.toFixed(digits));
