// The shape of an experiment: a grid of runs from a config, their estimates, and a report from the
// outcomes.
import type { Block } from './report.ts';
import type { TunedRates } from './common.ts';
import type { RunDef, RunOutcome } from './runner.ts';
import type { TuningResult } from './tuning.ts';

export interface ReportParts {
  /** The one-paragraph conclusion, computed from the numbers. */
  conclusion: string;
  blocks: Block[];
  /** Every number behind the report (results.json). */
  results: unknown;
}

export interface Experiment<C> {
  name: string;
  title: string;
  /**
   * The runs of the grid, in execution order. `tuned`: the learning rates the sweep chose per
   * variant (absent: no sweep, or not yet run; the config's rate stands in).
   */
  plan(config: C, tuned?: TunedRates): RunDef<unknown>[];
  /** The learning-rate sweep's runs (config `tuning`; none without it). They run before the grid. */
  sweep(config: C): RunDef<unknown>[];
  /** One sentence for the report: which variants are tuned, and how the rates are applied. */
  tuningNote(config: C): string;
  /** Sets each run's estimate in seconds (may time the models once per shape). */
  estimate(config: C, runs: RunDef<unknown>[], onCalibrate?: (what: string) => void): Promise<void>;
  report(config: C, outcomes: RunOutcome<unknown>[], tuning: TuningResult | null): Promise<ReportParts>;
}
