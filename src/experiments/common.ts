// What the trained experiments share: turning a config's training fields into run specs, grouping
// results by cell, and small helpers for tables.
import { parseModelConfig, type ModelConfigInput } from '../models/config.ts';
import { parameterCount as countParameters } from '../models/limits.ts';
import { deepMerge } from './config.ts';
import { lineChartSvg, type ChartPoint } from './figures.ts';
import type { CorruptionSpec, DataSpec, LmRunResult, LmRunSpec, OptimizerSpec } from './lm.ts';
import { estimateLmRun, runLm, trainPart } from './lm.ts';
import type { Block } from './report.ts';
import type { RunDef, RunOutcome } from './runner.ts';
import { meanInterval, type Interval } from './stats.ts';

/** The training fields every trained experiment's config has (config.ts trainingFields). */
export interface TrainingFields {
  data: DataSpec;
  model: Record<string, unknown>;
  tokensPerRun: number;
  tokensPerStep: number;
  optimizer: OptimizerSpec;
  eval: { maxBytes: number; stride: number; batchTokens: number; split: 'validation' | 'test' };
  checkpointEvery: number;
  seeds: number[];
  tuning?: { learningRates: number[]; seed: number; length?: number };
}

/** Learning rates chosen by the sweep, per variant (tuning.ts). */
export type TunedRates = Record<string, number>;

/** The parameters of a model config, counted from its parameter shapes (no model is built). */
export function parameterCount(model: ModelConfigInput): number {
  return countParameters(parseModelConfig(model));
}

/**
 * The variants' model configs. A variant may name `matchParameters: "<other variant>"`: its
 * ffnHidden (the SwiGLU width) is then set to the width whose parameter count is closest to the
 * other variant's, so that a Transformer can be compared with Cubit at equal capacity.
 */
export function resolveVariants(base: Record<string, unknown>, variants: Record<string, Record<string, unknown>>): Record<string, ModelConfigInput> {
  const out: Record<string, ModelConfigInput> = {};
  const matching: [string, string, Record<string, unknown>][] = [];
  for (const [name, o] of Object.entries(variants)) {
    const { matchParameters, ...rest } = o;
    if (matchParameters === undefined) out[name] = variantModel(base, rest, name);
    else if (typeof matchParameters !== 'string' || !(matchParameters in variants) || 'matchParameters' in variants[matchParameters]) {
      throw new Error(`variant '${name}': matchParameters must name another variant without matchParameters (variants: ${Object.keys(variants).join(', ')}), got ${JSON.stringify(matchParameters)}`);
    } else matching.push([name, matchParameters, rest]);
  }
  for (const [name, target, rest] of matching) {
    const goal = parameterCount(out[target]);
    const at = (h: number): ModelConfigInput => variantModel(base, { ...rest, ffnHidden: h }, name);
    // The count is linear in the width: two evaluations give the slope, then the nearest widths are checked.
    const h0 = 16, p0 = parameterCount(at(h0)), slope = parameterCount(at(h0 + 1)) - p0;
    const guess = Math.max(1, Math.round(h0 + (goal - p0) / slope));
    let best = guess, bestGap = Infinity;
    for (const h of [guess - 1, guess, guess + 1]) {
      if (h < 1) continue;
      const gap = Math.abs(parameterCount(at(h)) - goal);
      if (gap < bestGap) { best = h; bestGap = gap; }
    }
    out[name] = at(best);
  }
  return out;
}

export interface LmRunOptions extends SpecOptions {
  id: string;
  labels: Record<string, string | number>;
}

/** The run definition of an LM run: trains and evaluates in its folder; a worker can run it (task 'lm'). */
export function lmRun(c: TrainingFields, o: LmRunOptions): RunDef<unknown> {
  const spec = lmSpec(c, o);
  return { id: o.id, labels: o.labels, seed: o.seed, spec, workSpec: trainPart(spec), task: { kind: 'lm', arg: spec }, execute: (ctx) => runLm(spec, ctx) };
}

/**
 * The learning-rate sweep's runs: each variant at each rate of `tuning`, on the tuning seed,
 * evaluated on the validation split at the training length. Ids: tune-<variant>-lr<rate>.
 */
export function sweepRuns(c: TrainingFields, models: Record<string, ModelConfigInput>, seqLen: number): RunDef<unknown>[] {
  const t = c.tuning;
  if (!t) return [];
  if (c.seeds.includes(t.seed)) throw new Error(`tuning.seed ${t.seed} is one of the main seeds (${c.seeds.join(', ')}); the sweep must use a seed of its own`);
  const defs: RunDef<unknown>[] = [];
  for (const lr of t.learningRates) {
    for (const [variant, model] of Object.entries(models)) {
      defs.push(lmRun(c, { id: `tune-${variant}-lr${lr}`, labels: { phase: 'tuning', variant, lr, seed: t.seed }, model, seqLen, seed: t.seed, evalLengths: [seqLen], lr, split: 'validation' }));
    }
  }
  return defs;
}

/**
 * Training loss against training tokens, per series (and facet): the mean over seeds of each
 * run's loss averaged in at most `bins` bins, with a 95% t band over seeds where there are two or
 * more. Diverged runs count up to where they stopped.
 */
export async function lossCurveFigure(outcomes: RunOutcome<unknown>[], group: (o: RunOutcome<unknown>) => { series: string; facet?: string } | null, tokensPerStep: (o: RunOutcome<unknown>) => number, opts: { name?: string; seriesOrder?: string[]; columns?: number; bins?: number } = {}): Promise<Block> {
  const bins = opts.bins ?? 60;
  const groups = new Map<string, { series: string; facet?: string; runs: { r: LmRunResult; tps: number }[] }>();
  for (const o of outcomes) {
    const g = o.result ? group(o) : null;
    if (!g) continue;
    const key = `${g.facet ?? ''}\0${g.series}`;
    if (!groups.has(key)) groups.set(key, { ...g, runs: [] });
    groups.get(key)!.runs.push({ r: o.result as LmRunResult, tps: tokensPerStep(o) });
  }
  const points: ChartPoint[] = [];
  for (const g of groups.values()) {
    const maxTokens = Math.max(1, ...g.runs.flatMap(({ r, tps }) => r.curve.map((x) => x[0] * tps)));
    const width = maxTokens / bins;
    const perBin = new Map<number, number[]>(); // bin → per-run mean loss in the bin
    for (const { r, tps } of g.runs) {
      const sums = new Map<number, { s: number; n: number }>();
      for (const [step, loss] of r.curve) {
        if (loss === null) continue;
        const b = Math.min(bins - 1, Math.floor(((step - 0.5) * tps) / width));
        const e = sums.get(b) ?? { s: 0, n: 0 };
        e.s += loss; e.n++;
        sums.set(b, e);
      }
      for (const [b, e] of sums) { if (!perBin.has(b)) perBin.set(b, []); perBin.get(b)!.push(e.s / e.n); }
    }
    for (const [b, ys] of [...perBin].sort((x, y) => x[0] - y[0])) {
      const i = meanInterval(ys);
      points.push({ x: (b + 0.5) * width, y: i.mean, lo: i.lo, hi: i.hi, series: g.series, ...(g.facet !== undefined ? { facet: g.facet } : {}) });
    }
  }
  const faceted = points.some((p) => p.facet !== undefined);
  return {
    kind: 'figure', name: opts.name ?? 'loss-curves',
    caption: 'Training loss (nats per byte) against training tokens: the mean over seeds of each run\'s loss in bins of tokens, with a 95% t band over seeds (no band with one seed).',
    svg: await lineChartSvg({ title: 'training loss', xTitle: 'training tokens', yTitle: 'loss (nats)', points, seriesOrder: opts.seriesOrder, band: true, showPoints: false, ...(faceted ? { width: 300, height: 200, columns: opts.columns ?? 2 } : {}) }),
  };
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
  /** The held-out split of the evaluation (default: the config's eval.split). */
  split?: 'validation' | 'test';
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
    eval: { lengths: [...new Set(o.evalLengths)].sort((a, b) => a - b), stride: c.eval.stride, batchTokens: c.eval.batchTokens, maxBytes: c.eval.maxBytes, split: o.split ?? c.eval.split },
    ...(o.corruption ? { corruption: o.corruption } : {}),
  };
}

/** Fills each LM run's estimate (timing its model once per shape); `false` skips calibration. */
export async function estimateRuns(defs: RunDef<unknown>[], specOf: (d: RunDef<unknown>) => LmRunSpec | null, onCalibrate?: (what: string) => void): Promise<void> {
  const seen = new Set<string>();
  for (const d of defs) {
    const spec = specOf(d);
    if (!spec) continue;
    const key = JSON.stringify([spec.model, spec.seqLen, spec.batchSize]);
    if (!seen.has(key)) { seen.add(key); onCalibrate?.(d.id); }
    d.estimate = await estimateLmRun(spec);
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
