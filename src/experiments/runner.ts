// The grid runner: executes an experiment's runs one after another, each in its own folder under
// the experiment's output folder, and skips those already finished on disk.
//
//   <out>/<run id>/run.json      what defines the run (spec) and its hash, written when it starts
//   <out>/<run id>/result.json   its result, written atomically when it ends: the "finished" mark
//   <out>/<run id>/error.json    why it failed (a failed run is tried again next time)
//   <out>/<run id>/…             whatever the run itself keeps (a training run's checkpoints)
//
// A run whose result.json carries the same spec hash is finished and is not run again. A run
// folder without result.json is half-finished: the run is started again with `resuming` set, and
// a training run continues from its latest checkpoint. A folder whose spec differs (the config was
// edited) is moved to <out>/.stale/ and the run starts afresh — unless the run says which part of
// its spec its on-disk work depends on (workSpec, e.g. the training settings) and only the rest
// changed (e.g. evaluation lengths): then the folder is kept and the run runs again, resuming.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { readJsonSync, writeJsonAtomicSync } from '../util/atomic.ts';
import type { RunStatus } from './report.ts';
import { WorkerPool, type WorkerSetup } from './pool.ts';

export interface RunContext {
  /** The run's own folder (exists). */
  dir: string;
  /** The folder held an unfinished attempt of this run (same spec). */
  resuming: boolean;
  signal?: AbortSignal;
  /** Progress within the run: fraction done (0…1) and a short text (e.g. 'step 120/400 loss 2.31'). */
  progress(fraction: number, detail: string): void;
  log(message: string): void;
}

export interface RunDef<R = unknown> {
  /** Folder name: letters, digits, '.', '-', '_'. */
  id: string;
  /** Grid coordinates, for tables. */
  labels: Record<string, string | number>;
  seed: number;
  /** Everything that defines the run (JSON). A change makes a finished run stale. */
  spec: unknown;
  /**
   * The part of spec that the work kept in the run folder depends on (default: all of it). When
   * only the rest of the spec changed, the folder is kept and the run executes again with
   * `resuming` set (a training run then only re-evaluates its final checkpoint).
   */
  workSpec?: unknown;
  /** Estimated seconds (for the plan and the ETA). */
  estimate?: number;
  /**
   * The same work as `execute`, as data that a worker process can run (worker.ts names the
   * kinds): with `jobs` > 1 such runs go to worker processes, the others run here one at a time.
   */
  task?: { kind: string; arg: unknown };
  execute(ctx: RunContext): Promise<R> | R;
}

export type RunnerEvent =
  | { kind: 'plan'; total: number; finished: number; toRun: number; estimateSeconds: number; jobs: number }
  | { kind: 'run-start'; index: number; total: number; id: string; resuming: boolean; estimate: number | null }
  | { kind: 'run-progress'; id: string; fraction: number; detail: string; etaSeconds: number | null }
  | { kind: 'run-end'; id: string; status: 'done' | 'failed'; seconds: number; error?: string }
  | { kind: 'log'; message: string };

export interface RunOutcome<R> {
  def: RunDef<R>;
  status: RunStatus;
  /** The result (fresh or read from disk); null when the run failed. */
  result: R | null;
}

export interface GridOptions {
  onEvent?: (e: RunnerEvent) => void;
  signal?: AbortSignal;
  /**
   * Runs at once (default 1): runs with a `task` are executed by up to this many worker
   * processes, each the only owner of its run folder; the bookkeeping (run.json, result.json,
   * stale folders) stays in this process. Every run is deterministic given its spec, so the
   * results are those of a serial run.
   */
  jobs?: number;
  /** How the worker processes set up their backend (default: the native backend's defaults). */
  worker?: WorkerSetup;
  /** Once aborted, no further run starts; the running ones finish (then InterruptedError if any are left). */
  drain?: AbortSignal;
}

/** Thrown when the signal stops a grid between or inside runs; finished runs stay on disk. */
export class InterruptedError extends Error {
  constructor(readonly finished: number, readonly total: number) {
    super(`interrupted after ${finished} of ${total} runs; run the same command again to continue`);
  }
}

/** JSON with object keys sorted (so that key order does not change a hash). */
export function stableStringify(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  return `{${Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${stableStringify((v as Record<string, unknown>)[k])}`).join(',')}}`;
}

export function specHash(spec: unknown): string {
  return createHash('sha256').update(stableStringify(spec)).digest('hex').slice(0, 16);
}

export const RUN_FILE = 'run.json';
export const RESULT_FILE = 'result.json';
export const ERROR_FILE = 'error.json';

interface ResultRecord<R> { id: string; specHash: string; seconds: number; finished: string; result: R }

/** The finished result of a run folder, or null (missing, unreadable, or for another spec). */
export function readFinished<R>(dir: string, hash: string): ResultRecord<R> | null {
  const f = path.join(dir, RESULT_FILE);
  if (!fs.existsSync(f)) return null;
  try {
    const r = readJsonSync<ResultRecord<R>>(f);
    return r && r.specHash === hash ? r : null;
  } catch {
    return null;
  }
}

function checkIds(defs: readonly RunDef[]): void {
  const seen = new Set<string>();
  for (const d of defs) {
    if (!/^[\w.-]+$/.test(d.id) || d.id.startsWith('.')) throw new Error(`run id '${d.id}' must be letters, digits, '.', '-' or '_' (not starting with '.')`);
    if (seen.has(d.id)) throw new Error(`run id '${d.id}' appears twice in the grid`);
    seen.add(d.id);
  }
}

/** Moves a run folder made for another spec out of the way (nothing is deleted). */
function moveStale(out: string, id: string): string {
  const staleDir = path.join(out, '.stale');
  fs.mkdirSync(staleDir, { recursive: true });
  const dest = path.join(staleDir, `${id}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  fs.renameSync(path.join(out, id), dest);
  return dest;
}

/** The lock file of an output folder: one experiment process at a time owns a folder. */
export const LOCK_FILE = '.lock';

/**
 * Takes <out>/.lock (pid and host) or throws if a live process holds it. A lock left by a process
 * that is gone (killed, or on another machine: the host differs) is taken over. Returns the release.
 */
export function lockOutput(out: string): () => void {
  const file = path.join(out, LOCK_FILE);
  const mine = JSON.stringify({ pid: process.pid, host: os.hostname(), started: new Date().toISOString() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, mine, { flag: 'wx' });
      return () => { try { if (fs.readFileSync(file, 'utf8') === mine) fs.rmSync(file); } catch { /* already gone */ } };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let held: { pid?: number; host?: string } = {};
      try { held = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof held; } catch { /* torn or empty: stale */ }
      if (held.host === os.hostname() && typeof held.pid === 'number' && (held.pid === process.pid || isAlive(held.pid))) {
        throw new Error(`${out} is in use by another cubit experiment (pid ${held.pid}); wait for it or stop it (its lock: ${file})`);
      }
      fs.rmSync(file, { force: true });
    }
  }
  throw new Error(`${out}: could not take the lock ${file}`);
}

function isAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** Decides whether a run folder holds finished, resumable or stale work, and prepares it. */
function prepareRun<R>(out: string, def: RunDef<R>, hash: string, emit: (e: RunnerEvent) => void): boolean {
  const dir = path.join(out, def.id);
  let resuming = false;
  const workHash = specHash(def.workSpec ?? def.spec);
  if (fs.existsSync(path.join(dir, RUN_FILE))) {
    let previous: { specHash?: string; workHash?: string } | null = null;
    try { previous = readJsonSync<{ specHash?: string; workHash?: string }>(path.join(dir, RUN_FILE)); } catch { previous = null; }
    if (previous?.specHash === hash) resuming = true;
    else if (previous?.workHash === workHash) {
      resuming = true;
      fs.rmSync(path.join(dir, RESULT_FILE), { force: true });
      emit({ kind: 'log', message: `${def.id}: its configuration changed in a way that keeps its work; running it again on that work` });
    } else emit({ kind: 'log', message: `${def.id}: its configuration changed; the old folder moved to ${moveStale(out, def.id)}` });
  } else if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
    emit({ kind: 'log', message: `${def.id}: the folder holds no run record; moved to ${moveStale(out, def.id)}` });
  }
  fs.mkdirSync(dir, { recursive: true });
  fs.rmSync(path.join(dir, ERROR_FILE), { force: true });
  writeJsonAtomicSync(path.join(dir, RUN_FILE), { id: def.id, labels: def.labels, seed: def.seed, specHash: hash, workHash, started: new Date().toISOString(), spec: def.spec }, { durable: false });
  return resuming;
}

/**
 * Executes the runs not finished on disk (up to `jobs` at once, started in grid order) and returns
 * every run's outcome in grid order. The output folder is locked while it runs.
 */
export async function runGrid<R>(out: string, defs: readonly RunDef<R>[], opts: GridOptions = {}): Promise<RunOutcome<R>[]> {
  checkIds(defs);
  fs.mkdirSync(out, { recursive: true });
  const release = lockOutput(out);
  const jobs = Math.max(1, Math.floor(opts.jobs ?? 1));
  const pool = jobs > 1 && defs.some((d) => d.task) ? new WorkerPool(jobs, opts.worker ?? {}) : null;
  try {
    return await runAll(out, defs, opts, jobs, pool);
  } finally {
    pool?.close();
    release();
  }
}

async function runAll<R>(out: string, defs: readonly RunDef<R>[], opts: GridOptions, jobs: number, pool: WorkerPool | null): Promise<RunOutcome<R>[]> {
  const emit = opts.onEvent ?? (() => {});
  const hashes = defs.map((d) => specHash(d.spec));
  const finished = defs.map((d, i) => readFinished<R>(path.join(out, d.id), hashes[i]));
  const pendingIdx = defs.map((_, i) => i).filter((i) => !finished[i]);
  const estimateOf = (d: RunDef<R>): number => d.estimate ?? 0;
  let remainingEstimate = pendingIdx.reduce((s, i) => s + estimateOf(defs[i]), 0);
  emit({ kind: 'plan', total: defs.length, finished: defs.length - pendingIdx.length, toRun: pendingIdx.length, estimateSeconds: remainingEstimate, jobs });

  const outcomes: (RunOutcome<R> | undefined)[] = defs.map((def, i) => {
    const done = finished[i];
    return done ? { def, status: { id: def.id, status: 'skipped', seconds: done.seconds }, result: done.result } : undefined;
  });
  // ETA: the remaining estimate (spread over the jobs) scaled by how the runs so far compared with their estimates.
  let spentActual = 0, spentEstimate = 0;
  const ratio = (): number => (spentEstimate > 0 ? spentActual / spentEstimate : 1);
  let interrupted = false;
  let index = 0;
  let inProcessBusy = false; // runs without a task execute here, one at a time

  const runOne = async (i: number): Promise<void> => {
    const def = defs[i], hash = hashes[i], dir = path.join(out, def.id);
    const resuming = prepareRun(out, def, hash, emit);
    const est = def.estimate ?? null;
    emit({ kind: 'run-start', index: ++index, total: pendingIdx.length, id: def.id, resuming, estimate: est });
    const t0 = performance.now();
    const ctx: RunContext = {
      dir, resuming, signal: opts.signal,
      progress: (fraction, detail) => {
        const f = Math.min(1, Math.max(0, fraction));
        const elapsed = (performance.now() - t0) / 1000;
        const thisLeft = f > 0.02 ? (elapsed / f) * (1 - f) : est !== null ? est * ratio() * (1 - f) : null;
        const othersLeft = ((remainingEstimate - estimateOf(def)) * ratio()) / jobs;
        emit({ kind: 'run-progress', id: def.id, fraction: f, detail, etaSeconds: thisLeft === null ? null : thisLeft + othersLeft });
      },
      log: (message) => emit({ kind: 'log', message: `${def.id}: ${message}` }),
    };
    try {
      const result = pool && def.task ? await pool.execute(def.task, ctx) as R : await def.execute(ctx);
      const seconds = (performance.now() - t0) / 1000;
      if (opts.signal?.aborted) throw new InterruptedError(0, defs.length);
      writeJsonAtomicSync(path.join(dir, RESULT_FILE), { id: def.id, specHash: hash, seconds, finished: new Date().toISOString(), result } satisfies ResultRecord<R>);
      outcomes[i] = { def, status: { id: def.id, status: 'done', seconds }, result };
      emit({ kind: 'run-end', id: def.id, status: 'done', seconds });
      if (est !== null && est > 0) { spentActual += seconds; spentEstimate += est; }
    } catch (e) {
      if (e instanceof InterruptedError || opts.signal?.aborted) { interrupted = true; return; }
      const seconds = (performance.now() - t0) / 1000;
      const message = e instanceof Error ? e.message : String(e);
      writeJsonAtomicSync(path.join(dir, ERROR_FILE), { id: def.id, specHash: hash, message, stack: e instanceof Error ? e.stack : undefined, time: new Date().toISOString() }, { durable: false });
      outcomes[i] = { def, status: { id: def.id, status: 'failed', seconds, error: message.split('\n')[0] }, result: null };
      emit({ kind: 'run-end', id: def.id, status: 'failed', seconds, error: message });
    } finally {
      remainingEstimate -= estimateOf(def);
    }
  };

  // A simple scheduler: keep up to `jobs` runs going, in grid order; a run without a task waits
  // until no other such run is going (it shares this process).
  const queue = [...pendingIdx];
  const running = new Set<Promise<void>>();
  while (queue.length || running.size) {
    while (!interrupted && !opts.signal?.aborted && !opts.drain?.aborted && queue.length && running.size < jobs) {
      const k = queue.findIndex((i) => (pool && defs[i].task) || !inProcessBusy);
      if (k < 0) break;
      const [i] = queue.splice(k, 1);
      const local = !(pool && defs[i].task);
      if (local) inProcessBusy = true;
      const p: Promise<void> = runOne(i).finally(() => { if (local) inProcessBusy = false; running.delete(p); });
      running.add(p);
    }
    if (!running.size) break;
    await Promise.race(running);
  }
  const completedCount = outcomes.filter((o) => o && o.status.status !== 'failed').length;
  if (interrupted || opts.signal?.aborted || queue.length) throw new InterruptedError(completedCount, defs.length);
  return outcomes as RunOutcome<R>[];
}
