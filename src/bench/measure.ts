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
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  return times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
}

export function emit(record: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(record) + '\n');
}

export const round = (x: number, digits = 3): number => Number(x.toFixed(digits));
