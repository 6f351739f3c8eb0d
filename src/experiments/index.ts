// Experiments: named grids of training runs and evaluations with reports (docs/EXPERIMENTS.md).
//
//   const r = await runExperiment('length-scaling', { preset: 'smoke', out: 'runs/experiments/length-scaling-smoke' });
//   r.report.html  → the self-contained report
import * as fs from 'node:fs';
import * as path from 'node:path';
import { softwareVersion } from '../train/checkpoint.ts';
import { ablations } from './ablations.ts';
import { EXPERIMENT_NAMES, resolveConfig, type ExperimentConfig, type ExperimentName, type ResolveOptions, type ResolvedConfig } from './config.ts';
import { lengthScaling } from './length-scaling.ts';
import { noise } from './noise.ts';
import { describeEnvironment, writeReport, type Environment, type WrittenReport } from './report.ts';
import { estimateRuns } from './common.ts';
import type { LmRunSpec } from './lm.ts';
import type { WorkerSetup } from './pool.ts';
import { readFinished, runGrid, specHash, type RunDef, type RunnerEvent, type RunOutcome } from './runner.ts';
import { chooseRates, tuningBlocks, type TuningResult } from './tuning.ts';
import type { Experiment } from './types.ts';

export { EXPERIMENT_NAMES, presetNames, resolveConfig, type ExperimentName } from './config.ts';
export { InterruptedError, lockOutput, runGrid, specHash, type RunDef, type RunnerEvent, type RunOutcome } from './runner.ts';
export * from './stats.ts';

export const experiments: Record<ExperimentName, Experiment<never>> = {
  'length-scaling': lengthScaling as Experiment<never>,
  noise: noise as Experiment<never>,
  ablations: ablations as Experiment<never>,
};

export interface RunExperimentOptions extends ResolveOptions {
  /** Output folder (default runs/experiments/<name>-<preset>). */
  out?: string;
  onEvent?: (e: ExperimentEvent) => void;
  signal?: AbortSignal;
  /** Time the models to estimate the run time (default true). */
  estimate?: boolean;
  /** Only plan and estimate; run nothing. */
  dryRun?: boolean;
  /** Runs at once in worker processes (default 1: every run in this process, one after another). */
  jobs?: number;
  /** The workers' backend and threads. */
  worker?: WorkerSetup;
  /** Once aborted, no further run starts and the running ones finish (a gentler stop than `signal`). */
  drain?: AbortSignal;
  /** Run nothing: write the report from the runs finished on disk (the others are listed as not run). */
  reportOnly?: boolean;
}

export type ExperimentEvent =
  | RunnerEvent
  | { kind: 'config'; resolved: ResolvedConfig; out: string; runs: number }
  | { kind: 'phase'; phase: 'tuning' | 'grid'; runs: number; rates?: Record<string, number> }
  | { kind: 'calibrate'; what: string }
  | { kind: 'report'; files: WrittenReport };

export interface ExperimentResult {
  resolved: ResolvedConfig;
  out: string;
  /** The main grid's runs (with the tuned rates once the sweep has run; else the config's rate stands in). */
  runs: RunDef<unknown>[];
  /** The learning-rate sweep's runs (empty without tuning). */
  sweep: RunDef<unknown>[];
  /** The sweep's outcome: the chosen rate per variant (null without tuning, or in a dry run before the sweep finished). */
  tuning: TuningResult | null;
  /** Seconds all runs (sweep and grid) were estimated to take (null without estimation). */
  estimateSeconds: number | null;
  outcomes: RunOutcome<unknown>[];
  report: WrittenReport | null;
  conclusion: string | null;
}

export function defaultOut(name: string, preset: string): string {
  return path.join('runs', 'experiments', `${name}-${preset}`);
}

/** The outcomes of runs as they are on disk: finished ones with their results, the others as not run. */
function finishedOnDisk(out: string, defs: RunDef<unknown>[]): RunOutcome<unknown>[] {
  return defs.map((def) => {
    const f = readFinished<unknown>(path.join(out, def.id), specHash(def.spec));
    return f ? { def, status: { id: def.id, status: 'skipped' as const, seconds: f.seconds }, result: f.result }
      : { def, status: { id: def.id, status: 'failed' as const, seconds: null, error: 'not run (report written with --report-only)' }, result: null };
  });
}

/**
 * The machine and software of the report already in `out`, if any: a report rewritten with
 * --report-only (e.g. here, from results packed on another machine) describes where the runs ran.
 */
function previousEnvironment(out: string): Environment | null {
  try { return (JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) as { environment?: Environment }).environment ?? null; } catch { return null; }
}

/** Plans, estimates, runs (skipping finished runs) and reports an experiment. */
export async function runExperiment(name: ExperimentName, opts: RunExperimentOptions = {}): Promise<ExperimentResult> {
  const exp = experiments[name];
  if (!exp) throw new Error(`unknown experiment '${name}' (experiments: ${EXPERIMENT_NAMES.join(', ')})`);
  const resolved = resolveConfig(name, opts);
  const config = resolved.config as never as ExperimentConfig;
  const out = opts.out ?? defaultOut(name, resolved.preset);
  const emit = opts.onEvent ?? (() => {});
  const sweep = exp.sweep(config as never);
  // In a dry run the sweep's finished results on disk (if all are there) give the rates.
  const finishedSweep = sweep.map((d) => readFinished<unknown>(path.join(out, d.id), specHash(d.spec)));
  let tuning: TuningResult | null = sweep.length && finishedSweep.every(Boolean)
    ? chooseRates(finishedSweep.map((f, i) => ({ def: sweep[i], status: { id: sweep[i].id, status: 'skipped' as const, seconds: f!.seconds }, result: f!.result })), sweep)
    : null;
  let runs = exp.plan(config as never, tuning?.rates);
  emit({ kind: 'config', resolved, out, runs: sweep.length + runs.length });
  let estimateSeconds: number | null = null;
  if ((opts.estimate ?? true) && !opts.reportOnly) {
    await estimateRuns(sweep, (d) => d.spec as LmRunSpec, (what) => emit({ kind: 'calibrate', what }));
    await exp.estimate(config as never, runs, (what) => emit({ kind: 'calibrate', what }));
    estimateSeconds = [...sweep, ...runs].reduce((s, r) => s + (r.estimate ?? 0), 0);
  }
  if (opts.dryRun) return { resolved, out, runs, sweep, tuning, estimateSeconds, outcomes: [], report: null, conclusion: null };
  const started = new Date().toISOString();
  const gridOpts = { onEvent: emit, signal: opts.signal, drain: opts.drain, jobs: opts.jobs, worker: opts.worker };
  const grid = opts.reportOnly ? (_: string, defs: RunDef<unknown>[]) => Promise.resolve(finishedOnDisk(out, defs)) : (o: string, defs: RunDef<unknown>[]) => runGrid(o, defs, gridOpts);
  let sweepOutcomes: RunOutcome<unknown>[] = [];
  if (sweep.length) {
    emit({ kind: 'phase', phase: 'tuning', runs: sweep.length });
    sweepOutcomes = await grid(out, sweep);
    tuning = chooseRates(sweepOutcomes, sweep);
    const untuned = tuning.variants.filter((v) => v.chosen === null).map((v) => v.variant);
    if (untuned.length && !opts.reportOnly) throw new Error(`learning-rate sweep: no run of ${untuned.join(', ')} completed (all diverged or failed; see the tune-* folders in ${out}), so no rate can be chosen`);
    runs = exp.plan(config as never, tuning.rates);
    if ((opts.estimate ?? true) && !opts.reportOnly) await exp.estimate(config as never, runs);
  }
  emit({ kind: 'phase', phase: 'grid', runs: runs.length, ...(tuning ? { rates: tuning.rates } : {}) });
  const outcomes = await grid(out, runs);
  const parts = await exp.report(config as never, outcomes, tuning);
  const files = writeReport(out, {
    experiment: name,
    preset: resolved.preset,
    title: exp.title,
    conclusion: parts.conclusion,
    blocks: [
      ...(resolved.about ? [{ kind: 'paragraph' as const, text: `Preset \`${resolved.preset}\`: ${resolved.about}` }] : []),
      ...(tuning ? await tuningBlocks(tuning, exp.tuningNote(config as never)) : []),
      ...parts.blocks,
    ],
    config: resolved.config,
    seeds: [...new Set(runs.map((r) => r.seed))].sort((a, b) => a - b),
    environment: (opts.reportOnly ? previousEnvironment(out) : null) ?? describeEnvironment(softwareVersion()),
    runs: [...sweepOutcomes, ...outcomes].map((o) => o.status),
    started,
    finished: new Date().toISOString(),
    results: { configFile: resolved.file, ...(parts.results as object), tuning },
  });
  emit({ kind: 'report', files });
  return { resolved, out, runs, sweep, tuning, estimateSeconds, outcomes, report: files, conclusion: parts.conclusion };
}
