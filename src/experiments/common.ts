// What the trained experiments share: turning a config's training fields into run specs, grouping
// results by cell, and small helpers for tables.
import { parseModelConfig, type ModelConfigInput } from '../models/config.ts';
import { deepMerge } from './config.ts';
import type { CorruptionSpec, DataSpec, LmRunResult, LmRunSpec, OptimizerSpec } from './lm.ts';
import { estimateLmRun } from './lm.ts';
import type { RunDef, RunOutcome } from './runner.ts';
import { meanInterval, type Interval } from './stats.ts';

/** The training fields every trained experiment's config has (config.ts trainingFields). */
export interface TrainingFields {
  data: DataSpec;
  model: Record<string, unknown>;
  tokensPerRun: number;
  tokensPerStep: number;
  optimizer: OptimizerSpec;
  eval: { maxBytes: number; stride: number; batchTokens: number };
  checkpointEvery: number;
  seeds: number[];
}

/** The model config of a variant: its overrides merged over the base model, validated. */
export function variantModel(base: Record<string, unknown>, overrides: Record<string, unknown>, name: string): ModelConfigInput {
  const merged = deepMerge(base, overrides) as ModelConfigInput;
  parseModelConfig(merged, `variant '${name}': model`); // one clear error before anything runs
  return merged;
}

export interface SpecOptions {
  model: ModelConfigInput;
  seqLen: number;
  seed: number;
  evalLengths: number[];
  lr?: number;
  corruption?: CorruptionSpec;
}

/** An LM run spec under the shared budget: steps = tokensPerRun / tokensPerStep, rows = tokensPerStep / seqLen. */
export function lmSpec(c: TrainingFields, o: SpecOptions): LmRunSpec {
  if (c.tokensPerStep % o.seqLen !== 0) {
    throw new Error(`tokensPerStep ${c.tokensPerStep} is not a multiple of the sequence length ${o.seqLen} (rows per step must be a whole number)`);
  }
  const steps = Math.max(1, Math.round(c.tokensPerRun / c.tokensPerStep));
  return {
    model: o.model,
    data: c.data,
    seqLen: o.seqLen,
    batchSize: c.tokensPerStep / o.seqLen,
    steps,
    optimizer: { ...c.optimizer, ...(o.lr !== undefined ? { lr: o.lr } : {}) },
    seed: o.seed,
    checkpointEvery: c.checkpointEvery,
    eval: { lengths: [...new Set(o.evalLengths)].sort((a, b) => a - b), stride: c.eval.stride, batchTokens: c.eval.batchTokens, maxBytes: c.eval.maxBytes },
    ...(o.corruption ? { corruption: o.corruption } : {}),
  };
}

/** Fills each LM run's estimate (timing its model once per shape); `false` skips calibration. */
export function estimateRuns(defs: RunDef<unknown>[], specOf: (d: RunDef<unknown>) => LmRunSpec | null, onCalibrate?: (what: string) => void): void {
  const seen = new Set<string>();
  for (const d of defs) {
    const spec = specOf(d);
    if (!spec) continue;
    const key = JSON.stringify([spec.model, spec.seqLen, spec.batchSize]);
    if (!seen.has(key)) { seen.add(key); onCalibrate?.(d.id); }
    d.estimate = estimateLmRun(spec);
  }
}

/** Outcomes of LM runs whose training completed. */
export function completed(outcomes: RunOutcome<unknown>[]): RunOutcome<LmRunResult>[] {
  return outcomes.filter((o) => o.result && (o.result as LmRunResult).status === 'completed') as RunOutcome<LmRunResult>[];
}

/** bpb of a result at a context length (null when not evaluated there). */
export function bpbAt(r: LmRunResult, L: number): number | null {
  return r.eval.find((e) => e.contextLength === L)?.bpb ?? null;
}

/** Mean and t interval of the finite values; null when there are none. */
export function intervalOf(xs: (number | null)[], level = 0.95): Interval | null {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x));
  return v.length ? meanInterval(v, level) : null;
}

/** Values of the same seed present in both maps, in seed order. */
export function pairBySeed(a: Map<number, number>, b: Map<number, number>): { seeds: number[]; a: number[]; b: number[] } {
  const seeds = [...a.keys()].filter((s) => b.has(s)).sort((x, y) => x - y);
  return { seeds, a: seeds.map((s) => a.get(s)!), b: seeds.map((s) => b.get(s)!) };
}

export const plural = (n: number, one: string, many = one + 's'): string => `${n} ${n === 1 ? one : many}`;
