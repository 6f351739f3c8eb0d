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
 * Medians (ms) of several functions run in turn (a, b, a, b, …) after `warmup` rounds: on a shared
 * machine their ratio is far steadier than that of medians taken one after the other.
 */
export function medianMsInterleaved(fns: (() => void)[], opts: { warmup?: number; minRuns?: number; minMs?: number; maxRuns?: number } = {}): number[] {
  const warmup = opts.warmup ?? 1, minRuns = opts.minRuns ?? 5, minMs = opts.minMs ?? 300, maxRuns = opts.maxRuns ?? 200;
  for (let i = 0; i < warmup; i++) for (const fn of fns) fn();
  const times: number[][] = fns.map(() => []);
  const start = performance.now();
  while (times[0].length < maxRuns && (times[0].length < minRuns || performance.now() - start < minMs)) {
    fns.forEach((fn, i) => {
      const t0 = performance.now();
      fn();
      times[i].push(performance.now() - t0);
    });
  }
  return times.map(median);
}

function median(times: number[]): number {
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
