// Timing helpers for the benchmarks: medians of repeated runs, printed as JSON lines.
import type { Backend } from '../core/backend.ts';
import { WebGPUBackend } from '../backends/webgpu/backend.ts';

/** A step to time: it may return a promise (it is awaited). */
export type Timed = () => void | Promise<void>;

export interface TimingOptions {
  warmup?: number;
  minRuns?: number;
  minMs?: number;
  maxRuns?: number;
  /**
   * Awaited after each call, inside its time: a GPU backend records kernels and runs them later,
   * so a call's time ends when the device has finished (`settled(backend)`).
   */
  settle?: () => Promise<void>;
}

/**
 * What a timed call must wait for on `b`: the end of the device's work on a backend that records
 * kernels (webgpu: `sync()`); nothing on a CPU backend, whose kernels have run when they return.
 */
export function settled(b: Backend): (() => Promise<void>) | undefined {
  return b.sync ? () => b.sync!() : undefined;
}

async function timeOne(fn: Timed, settle: (() => Promise<void>) | undefined): Promise<number> {
  const t0 = performance.now();
  const r = fn();
  if (r) await r;
  if (settle) await settle();
  return performance.now() - t0;
}

/** Median wall time in ms of `fn` after `warmup` runs, over at least `minRuns` runs / `minMs`. */
export async function medianMs(fn: Timed, opts: TimingOptions = {}): Promise<number> {
  const warmup = opts.warmup ?? 2, minRuns = opts.minRuns ?? 5, minMs = opts.minMs ?? 300, maxRuns = opts.maxRuns ?? 200;
  for (let i = 0; i < warmup; i++) await timeOne(fn, opts.settle);
  const times: number[] = [];
  const start = performance.now();
  while (times.length < maxRuns && (times.length < minRuns || performance.now() - start < minMs)) {
    times.push(await timeOne(fn, opts.settle));
  }
  return median(times);
}

/**
 * Run times (ms) of several functions run in turn after `warmup` rounds: one array per function,
 * one entry per round. Rounds alternate in direction (a, b, c, then c, b, a), so that no function
 * always runs right after the same one: a function runs faster after one that warmed its data,
 * which biased same-code comparisons by ~4% when the order was fixed.
 */
export async function interleavedTimes(fns: Timed[], opts: TimingOptions = {}): Promise<number[][]> {
  const warmup = opts.warmup ?? 1, minRuns = opts.minRuns ?? 5, minMs = opts.minMs ?? 300, maxRuns = opts.maxRuns ?? 200;
  for (let i = 0; i < warmup; i++) for (const fn of fns) await timeOne(fn, opts.settle);
  const times: number[][] = fns.map(() => []);
  const start = performance.now();
  for (let round = 0; times[0].length < maxRuns && (times[0].length < minRuns || performance.now() - start < minMs); round++) {
    for (let n = 0; n < fns.length; n++) {
      const i = round % 2 ? fns.length - 1 - n : n;
      times[i].push(await timeOne(fns[i], opts.settle));
    }
  }
  return times;
}

/** Medians (ms) of interleavedTimes: on a shared machine their ratio is far steadier than that of
 * medians taken one after the other. */
export async function medianMsInterleaved(fns: Timed[], opts: TimingOptions = {}): Promise<number[]> {
  return (await interleavedTimes(fns, opts)).map(median);
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

/**
 * The fields every benchmark line carries about where it ran: the backend's name, and on the
 * webgpu backend its adapter (vendor, architecture and description, as `cubit info` shows them).
 */
export function deviceFields(b: Backend): Record<string, unknown> {
  if (!(b instanceof WebGPUBackend)) return { backend: b.name };
  const a = b.adapter;
  return { backend: b.name, adapter: [a.vendor, a.architecture, a.description].filter((s) => s).join(' / ') };
}

/** A case that failed (out of memory, past a device limit): one JSON line saying why, and the run goes on. */
export function emitFailure(record: Record<string, unknown>, e: unknown): void {
  emit({ ...record, error: (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 300) });
}
