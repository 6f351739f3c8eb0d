// Experiments: named grids of training runs and evaluations with reports (docs/EXPERIMENTS.md).
//
//   const r = await runExperiment('length-scaling', { preset: 'smoke', out: 'runs/experiments/length-scaling-smoke' });
//   r.report.html  → the self-contained report
import * as path from 'node:path';
import { softwareVersion } from '../train/checkpoint.ts';
import { ablations } from './ablations.ts';
import { EXPERIMENT_NAMES, resolveConfig, type ExperimentConfig, type ExperimentName, type ResolveOptions, type ResolvedConfig } from './config.ts';
import { lengthScaling } from './length-scaling.ts';
import { noise } from './noise.ts';
import { describeEnvironment, writeReport, type WrittenReport } from './report.ts';
import { runGrid, type RunDef, type RunnerEvent, type RunOutcome } from './runner.ts';
import type { Experiment } from './types.ts';

export { EXPERIMENT_NAMES, presetNames, resolveConfig, type ExperimentName } from './config.ts';
export { InterruptedError, runGrid, specHash, type RunDef, type RunnerEvent, type RunOutcome } from './runner.ts';
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
}

export type ExperimentEvent =
  | RunnerEvent
  | { kind: 'config'; resolved: ResolvedConfig; out: string; runs: number }
  | { kind: 'calibrate'; what: string }
  | { kind: 'report'; files: WrittenReport };

export interface ExperimentResult {
  resolved: ResolvedConfig;
  out: string;
  runs: RunDef<unknown>[];
  /** Seconds the pending runs were estimated to take (null without estimation). */
  estimateSeconds: number | null;
  outcomes: RunOutcome<unknown>[];
  report: WrittenReport | null;
  conclusion: string | null;
}

export function defaultOut(name: string, preset: string): string {
  return path.join('runs', 'experiments', `${name}-${preset}`);
}

/** Plans, estimates, runs (skipping finished runs) and reports an experiment. */
export async function runExperiment(name: ExperimentName, opts: RunExperimentOptions = {}): Promise<ExperimentResult> {
  const exp = experiments[name];
  if (!exp) throw new Error(`unknown experiment '${name}' (experiments: ${EXPERIMENT_NAMES.join(', ')})`);
  const resolved = resolveConfig(name, opts);
  const config = resolved.config as never as ExperimentConfig;
  const out = opts.out ?? defaultOut(name, resolved.preset);
  const emit = opts.onEvent ?? (() => {});
  const runs = exp.plan(config as never);
  emit({ kind: 'config', resolved, out, runs: runs.length });
  let estimateSeconds: number | null = null;
  if (opts.estimate ?? true) {
    exp.estimate(config as never, runs, (what) => emit({ kind: 'calibrate', what }));
    estimateSeconds = runs.reduce((s, r) => s + (r.estimate ?? 0), 0);
  }
  if (opts.dryRun) return { resolved, out, runs, estimateSeconds, outcomes: [], report: null, conclusion: null };
  const started = new Date().toISOString();
  const outcomes = await runGrid(out, runs, { onEvent: emit, signal: opts.signal });
  const parts = await exp.report(config as never, outcomes);
  const files = writeReport(out, {
    experiment: name,
    preset: resolved.preset,
    title: exp.title,
    conclusion: parts.conclusion,
    blocks: [
      ...(resolved.about ? [{ kind: 'paragraph' as const, text: `Preset \`${resolved.preset}\`: ${resolved.about}` }] : []),
      ...parts.blocks,
    ],
    config: resolved.config,
    seeds: [...new Set(runs.map((r) => r.seed))].sort((a, b) => a - b),
    environment: describeEnvironment(softwareVersion()),
    runs: outcomes.map((o) => o.status),
    started,
    finished: new Date().toISOString(),
    results: { configFile: resolved.file, ...(parts.results as object) },
  });
  emit({ kind: 'report', files });
  return { resolved, out, runs, estimateSeconds, outcomes, report: files, conclusion: parts.conclusion };
}
