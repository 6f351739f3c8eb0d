// The shape of an experiment: a grid of runs from a config, their estimates, and a report from the
// outcomes.
import type { Block } from './report.ts';
import type { RunDef, RunOutcome } from './runner.ts';

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
  /** The runs of the grid, in execution order. */
  plan(config: C): RunDef<unknown>[];
  /** Sets each run's estimate in seconds (may time the models once per shape). */
  estimate(config: C, runs: RunDef<unknown>[], onCalibrate?: (what: string) => void): void;
  report(config: C, outcomes: RunOutcome<unknown>[]): Promise<ReportParts>;
}
