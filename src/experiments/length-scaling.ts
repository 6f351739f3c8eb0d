// Experiment `length-scaling`: does Cubit's advantage over the Transformer grow with the training
// sequence length? Each variant (by default: softmax attention and Cubit) is trained at each
// training length with the same token budget, rows per step = tokensPerStep / length, the same
// optimiser settings and the same seeds, then evaluated on held-out text at its training length
// and at multiples of it.
//
// Statistics. gain = bpb(baseline) − bpb(candidate), positive when the candidate (Cubit) is better.
// Runs are paired by seed: a seed fixes the batch order (the same text in the same order for both
// variants) and the initialisation stream, so the per-seed differences remove the data-order
// variance. The interval is the t interval of the mean per-seed gain (n − 1 degrees of freedom).
// The trend is the least-squares slope of the per-seed gains at the training length against
// log2(training length), with its t interval (n − 2 degrees of freedom).
import { fmt, fmtCount, fmtInterval, num, type Block } from './report.ts';
import { lineChartSvg } from './figures.ts';
import { bpbAt, completed, estimateRuns, intervalOf, lmRun, lossCurveFigure, pairBySeed, plural, resolveVariants, sweepRuns, type TunedRates } from './common.ts';
import type { LengthScalingConfig } from './config.ts';
import type { LmRunResult, LmRunSpec } from './lm.ts';
import type { TuningResult } from './tuning.ts';
import type { RunDef, RunOutcome } from './runner.ts';
import { linearFit, pairedInterval, signOf, welchInterval, type Interval, type LinearFit } from './stats.ts';
import type { Experiment, ReportParts } from './types.ts';

interface Labels { variant: string; trainLength: number; seed: number }

function evalLengthsOf(c: LengthScalingConfig, T: number): number[] {
  return c.evalMultipliers.map((m) => Math.max(1, Math.round(m * T)));
}

function models(c: LengthScalingConfig) {
  for (const v of [c.baseline, c.candidate, ...(c.matchedBaseline ? [c.matchedBaseline] : [])]) if (!(v in c.variants)) throw new Error(`length-scaling: '${v}' is not one of the variants (${Object.keys(c.variants).join(', ')})`);
  return resolveVariants(c.model, c.variants);
}

function plan(c: LengthScalingConfig, tuned?: TunedRates): RunDef<unknown>[] {
  const m = models(c);
  const defs: RunDef<unknown>[] = [];
  // Seeds outermost: a grid cut short (budget, --stop-after, --report-only) still covers every
  // length and variant with the seeds it finished.
  for (const seed of c.seeds) {
    for (const T of c.trainLengths) {
      for (const variant of Object.keys(c.variants)) {
        defs.push(lmRun(c, { id: `${variant}-T${T}-seed${seed}`, labels: { variant, trainLength: T, seed } satisfies Labels, model: m[variant], seqLen: T, seed, evalLengths: evalLengthsOf(c, T), lr: tuned?.[variant] }));
      }
    }
  }
  return defs;
}

/** The sweep's training length: tuning.length, or the median training length (the lower middle one). */
function tuningLength(c: LengthScalingConfig): number {
  const sorted = [...c.trainLengths].sort((a, b) => a - b);
  return c.tuning?.length ?? sorted[Math.floor((sorted.length - 1) / 2)];
}

export interface GainCell {
  trainLength: number;
  evalLength: number;
  multiplier: number;
  baseline: Interval | null;
  candidate: Interval | null;
  /** Paired by seed: mean of bpb(baseline) − bpb(candidate) with its t interval. */
  gain: Interval | null;
  /** Unpaired (Welch), for comparison. */
  gainWelch: Interval | null;
  seeds: number[];
}

export interface LengthScalingResults {
  baseline: string;
  candidate: string;
  cells: GainCell[];
  /** Slope of the per-seed gain at the training length per doubling of the training length. */
  trend: LinearFit | null;
  verdict: 'supported' | 'contradicted' | 'not resolved';
  /** Per run: variant, length, seed, status, bpb by eval length, parameters, tokens/s. */
  runs: { id: string; variant: string; trainLength: number; seed: number; status: string; bpb: Record<string, number | null>; finalTrainLoss: number | null; parameters: number | null; tokensPerSec: number | null }[];
}

/** The comparison of the candidate with `baseline` (default: the config's; also its matched baseline). */
export function analyse(c: LengthScalingConfig, outcomes: RunOutcome<unknown>[], baseline = c.baseline): LengthScalingResults {
  const ok = completed(outcomes);
  const byKey = new Map<string, Map<number, LmRunResult>>(); // `${variant}/${T}` → seed → result
  for (const o of ok) {
    const l = o.def.labels as unknown as Labels;
    const k = `${l.variant}/${l.trainLength}`;
    if (!byKey.has(k)) byKey.set(k, new Map());
    byKey.get(k)!.set(l.seed, o.result!);
  }
  const bpbBySeed = (variant: string, T: number, L: number): Map<number, number> => {
    const m = new Map<number, number>();
    for (const [seed, r] of byKey.get(`${variant}/${T}`) ?? []) { const b = bpbAt(r, L); if (b !== null && Number.isFinite(b)) m.set(seed, b); }
    return m;
  };
  const cells: GainCell[] = [];
  const trendX: number[] = [], trendY: number[] = [];
  for (const T of c.trainLengths) {
    c.evalMultipliers.forEach((mult, i) => {
      const L = evalLengthsOf(c, T)[i];
      const a = bpbBySeed(baseline, T, L), b = bpbBySeed(c.candidate, T, L);
      const p = pairBySeed(a, b);
      const gain = p.seeds.length ? pairedInterval(p.a, p.b) : null;
      const gainWelch = a.size && b.size ? welchInterval([...a.values()], [...b.values()]) : null;
      cells.push({ trainLength: T, evalLength: L, multiplier: mult, baseline: intervalOf([...a.values()]), candidate: intervalOf([...b.values()]), gain, gainWelch, seeds: p.seeds });
      if (mult === 1) p.a.forEach((x, j) => { trendX.push(Math.log2(T)); trendY.push(x - p.b[j]); });
    });
  }
  const distinctX = new Set(trendX).size;
  const trend = distinctX >= 2 ? linearFit(trendX, trendY) : null;
  const longest = cells.filter((x) => x.multiplier === 1).at(-1) ?? null;
  const slopeSign = trend ? signOf(trend.slopeLo, trend.slopeHi) : 'spans';
  const longSign = longest?.gain ? signOf(longest.gain.lo, longest.gain.hi) : 'spans';
  const verdict = slopeSign === 'above' && longSign === 'above' ? 'supported'
    : slopeSign === 'below' || longSign === 'below' ? 'contradicted' : 'not resolved';
  const runs = outcomes.map((o) => {
    const l = o.def.labels as unknown as Labels;
    const r = o.result as LmRunResult | null;
    return {
      id: o.def.id, variant: l.variant, trainLength: l.trainLength, seed: l.seed,
      status: r ? r.status : 'failed',
      bpb: Object.fromEntries((r?.eval ?? []).map((e) => [String(e.contextLength), e.bpb])),
      finalTrainLoss: r?.finalTrainLoss ?? null, parameters: r?.parameters ?? null, tokensPerSec: r?.tokensPerSec ?? null,
    };
  });
  return { baseline, candidate: c.candidate, cells, trend, verdict, runs };
}

function conclusionOf(c: LengthScalingConfig, res: LengthScalingResults, outcomes: RunOutcome<unknown>[]): string {
  const at1 = res.cells.filter((x) => x.multiplier === 1);
  const sign = (x: GainCell) => (x.gain ? signOf(x.gain.lo, x.gain.hi) : 'spans');
  const better = at1.filter((x) => sign(x) === 'above').map((x) => x.trainLength);
  const worse = at1.filter((x) => sign(x) === 'below').map((x) => x.trainLength);
  const nSeeds = at1.length ? Math.min(...at1.map((x) => x.seeds.length)) : 0;
  const parts: string[] = [];
  const failed = outcomes.filter((o) => !o.result || (o.result as LmRunResult).status !== 'completed').length;
  const cand = res.candidate, base = res.baseline;
  parts.push(`Trained on ${c.data.corpus} with ${fmtCount(c.tokensPerRun)} training tokens per run and ${plural(nSeeds, 'seed')} per cell, ${cand} ${better.length ? `had lower bits per byte than ${base} at its training length for training lengths ${better.join(', ')}` : `was not better than ${base} at any training length by the 95% interval`}${worse.length ? `, and higher at ${worse.join(', ')}` : ''}.`);
  const gains = at1.map((x) => `${x.trainLength}: ${x.gain ? fmtInterval(x.gain.mean, x.gain.lo, x.gain.hi, 3) : '—'}`).join('; ');
  parts.push(`The gain (${base} − ${cand}, bpb, paired by seed, 95% CI) by training length was ${gains}.`);
  if (res.trend) {
    const t = res.trend;
    parts.push(`Per doubling of the training length the gain changed by ${t.slopeLo === null ? fmt(t.slope, 4) : fmtInterval(t.slope, t.slopeLo, t.slopeHi, 4)} bpb.`);
  }
  const why = res.verdict === 'supported' ? 'the gain grows with the training length (slope interval above zero) and is positive at the longest length'
    : res.verdict === 'contradicted' ? (res.trend && signOf(res.trend.slopeLo, res.trend.slopeHi) === 'below' ? 'the gain shrinks as the training length grows (slope interval below zero)' : `${cand} is worse than ${base} at the longest training length`)
    : nSeeds < 2 ? 'there are too few seeds for confidence intervals' : 'the intervals of the slope, or of the gain at the longest length, include zero';
  parts.push(`The claim that ${cand}'s advantage grows with the training length is therefore ${res.verdict === 'not resolved' ? 'not resolved at this scale' : `${res.verdict} at this scale`}: ${why}.`);
  if (failed) parts.push(`${plural(failed, 'run')} did not complete (diverged or failed) and ${failed === 1 ? 'is' : 'are'} left out.`);
  return parts.join(' ');
}

async function report(c: LengthScalingConfig, outcomes: RunOutcome<unknown>[], tuning: TuningResult | null): Promise<ReportParts> {
  const res = analyse(c, outcomes);
  const matched = c.matchedBaseline ? analyse(c, outcomes, c.matchedBaseline) : null;
  const blocks: Block[] = [];
  const multLabel = (m: number): string => (m === 1 ? 'at the training length' : `at ${m}× the training length`);
  const spec0 = outcomes[0]?.def.spec as LmRunSpec | undefined;
  blocks.push({ kind: 'heading', text: 'Setup' });
  blocks.push({
    kind: 'list', items: [
      `Variants: ${Object.entries(c.variants).map(([k, v]) => `\`${k}\` ${JSON.stringify(v)}`).join(', ')} over the base model ${JSON.stringify(c.model)}.`,
      `Training lengths ${c.trainLengths.join(', ')}; ${fmtCount(c.tokensPerRun)} training tokens per run in steps of ${c.tokensPerStep} tokens (${spec0?.steps ?? '?'} steps; rows per step = ${c.tokensPerStep} / length).`,
      `Optimiser (every run): AdamW ${tuning ? `peak lr tuned per variant (${Object.entries(tuning.rates).map(([v, lr]) => `${v} ${num(lr)}`).join(', ')}; see "Learning-rate tuning"), min lr = lr/10` : `lr ${num(c.optimizer.lr)}, min lr ${num(c.optimizer.minLr ?? c.optimizer.lr / 10)}`}, ${c.optimizer.warmupSteps} warm-up steps then cosine, weight decay ${c.optimizer.weightDecay}, β = (${c.optimizer.beta1}, ${c.optimizer.beta2}), clip ${c.optimizer.clip}.`,
      `Parameters: ${[...new Set(res.runs.filter((r) => r.parameters).map((r) => `${r.variant} ${r.parameters}`))].join(', ')}.`,
      `Evaluation: the first ${fmt(c.eval.maxBytes, 0)} bytes of the ${c.data.corpus} ${c.eval.split} split, sliding windows moving by ${c.eval.stride} × the length, at ${c.evalMultipliers.map((m) => `${m}×`).join(', ')} the training length.`,
      `Gain = bpb(${c.baseline}) − bpb(${c.candidate}): positive when ${c.candidate} is better. Intervals: 95% t intervals over seeds, the gain paired by seed (a seed fixes the batch order for both variants).`,
    ],
  });
  const gainPoints = [
    ...res.cells.filter((x) => x.gain).map((x) => ({ x: x.trainLength, y: x.gain!.mean, lo: x.gain!.lo, hi: x.gain!.hi, series: multLabel(x.multiplier) })),
    ...(matched?.cells.filter((x) => x.gain && x.multiplier === 1).map((x) => ({ x: x.trainLength, y: x.gain!.mean, lo: x.gain!.lo, hi: x.gain!.hi, series: `vs ${matched.baseline}, at the training length` })) ?? []),
  ];
  blocks.push({ kind: 'heading', text: 'Gain against training length' });
  blocks.push({
    kind: 'figure', name: 'gain', caption: `Gain in bits per byte (${c.baseline} − ${c.candidate}; above zero: ${c.candidate} better) against the training length, with 95% confidence intervals paired by seed.`,
    svg: await lineChartSvg({ title: `${c.baseline} bpb − ${c.candidate} bpb`, xTitle: 'training length (bytes)', yTitle: 'gain (bits per byte)', xScale: 'log2', rule: 0, points: gainPoints }),
  });
  blocks.push({
    kind: 'table', caption: 'Bits per byte (mean [95% CI]) and the paired gain.',
    columns: ['train length', 'eval length', c.baseline, c.candidate, 'gain (paired)', 'gain (Welch)', 'seeds'],
    rows: res.cells.map((x) => [
      x.trainLength, x.evalLength,
      x.baseline ? fmtInterval(x.baseline.mean, x.baseline.lo, x.baseline.hi) : '—',
      x.candidate ? fmtInterval(x.candidate.mean, x.candidate.lo, x.candidate.hi) : '—',
      x.gain ? fmtInterval(x.gain.mean, x.gain.lo, x.gain.hi) : '—',
      x.gainWelch ? fmtInterval(x.gainWelch.mean, x.gainWelch.lo, x.gainWelch.hi) : '—',
      x.seeds.length,
    ]),
  });
  if (matched) {
    blocks.push({
      kind: 'table', caption: `Against the parameter-matched baseline \`${matched.baseline}\`: bits per byte and the gain ${matched.baseline} − ${c.candidate}, paired by seed.`,
      columns: ['train length', 'eval length', matched.baseline, c.candidate, 'gain (paired)', 'seeds'],
      rows: matched.cells.map((x) => [x.trainLength, x.evalLength, x.baseline ? fmtInterval(x.baseline.mean, x.baseline.lo, x.baseline.hi) : '—', x.candidate ? fmtInterval(x.candidate.mean, x.candidate.lo, x.candidate.hi) : '—', x.gain ? fmtInterval(x.gain.mean, x.gain.lo, x.gain.hi) : '—', x.seeds.length]),
    });
  }
  if (res.trend) {
    const t = res.trend;
    blocks.push({ kind: 'paragraph', text: `Trend: least-squares fit of the per-seed gain at the training length on log2(training length): slope ${t.slopeLo === null ? fmt(t.slope, 4) : fmtInterval(t.slope, t.slopeLo, t.slopeHi, 4)} bpb per doubling (95% t interval, ${t.n - 2} degrees of freedom), intercept ${fmt(t.intercept, 4)}.` });
  }
  // bpb per variant against training length (at the training length).
  const bpbPoints = res.cells.filter((x) => x.multiplier === 1).flatMap((x, i) => [
    ...(x.baseline ? [{ x: x.trainLength, y: x.baseline.mean, lo: x.baseline.lo, hi: x.baseline.hi, series: c.baseline }] : []),
    ...(matched?.cells.filter((m) => m.multiplier === 1)[i]?.baseline ? [((m) => ({ x: m.trainLength, y: m.baseline!.mean, lo: m.baseline!.lo, hi: m.baseline!.hi, series: matched.baseline }))(matched.cells.filter((m) => m.multiplier === 1)[i])] : []),
    ...(x.candidate ? [{ x: x.trainLength, y: x.candidate.mean, lo: x.candidate.lo, hi: x.candidate.hi, series: c.candidate }] : []),
  ]);
  blocks.push({ kind: 'heading', text: 'Bits per byte' });
  blocks.push({
    kind: 'figure', name: 'bpb', caption: 'Held-out bits per byte at the training length, mean over seeds with 95% t intervals.',
    svg: await lineChartSvg({ title: 'bits per byte at the training length', xTitle: 'training length (bytes)', yTitle: 'bits per byte', xScale: 'log2', points: bpbPoints, seriesOrder: [c.baseline, ...(matched ? [matched.baseline] : []), c.candidate] }),
  });
  const longPoints = res.cells.flatMap((x) => [
    ...(x.baseline ? [{ x: x.evalLength, y: x.baseline.mean, lo: x.baseline.lo, hi: x.baseline.hi, series: c.baseline, facet: `trained at ${x.trainLength}` }] : []),
    ...(x.candidate ? [{ x: x.evalLength, y: x.candidate.mean, lo: x.candidate.lo, hi: x.candidate.hi, series: c.candidate, facet: `trained at ${x.trainLength}` }] : []),
  ]);
  if (c.evalMultipliers.length > 1) {
    blocks.push({
      kind: 'figure', name: 'bpb-by-eval-length', caption: 'Bits per byte against the evaluation context length, one panel per training length (beyond the training length the models extrapolate).',
      svg: await lineChartSvg({ title: 'bits per byte against evaluation length', xTitle: 'evaluation context (bytes)', yTitle: 'bits per byte', xScale: 'log2', points: longPoints, seriesOrder: [c.baseline, c.candidate], width: 260, height: 200, columns: Math.min(4, c.trainLengths.length) }),
    });
  }
  blocks.push({ kind: 'heading', text: 'Training loss' });
  blocks.push(await lossCurveFigure(outcomes, (o) => { const l = o.def.labels as unknown as Labels; return { series: l.variant, facet: `trained at ${l.trainLength}` }; }, () => c.tokensPerStep, { seriesOrder: Object.keys(c.variants), columns: Math.min(4, c.trainLengths.length) }));
  blocks.push({ kind: 'heading', text: 'Per-run results' });
  const lengths = [...new Set(res.runs.flatMap((r) => Object.keys(r.bpb)))].map(Number).sort((a, b) => a - b);
  blocks.push({
    kind: 'table', caption: 'Every run: final training loss (nats, last 10% of steps) and held-out bits per byte by evaluation length.',
    columns: ['run', 'status', 'parameters', 'tokens/s', 'final train loss', ...lengths.map((L) => `bpb @${L}`)],
    rows: res.runs.map((r) => [r.id, r.status, r.parameters ?? '—', r.tokensPerSec === null ? '—' : Math.round(r.tokensPerSec), fmt(r.finalTrainLoss), ...lengths.map((L) => fmt(r.bpb[String(L)] ?? null))]),
  });
  let conclusion = conclusionOf(c, res, outcomes);
  if (matched) {
    const gains = matched.cells.filter((x) => x.multiplier === 1).map((x) => `${x.trainLength}: ${x.gain ? fmtInterval(x.gain.mean, x.gain.lo, x.gain.hi, 3) : '—'}`).join('; ');
    const t = matched.trend;
    conclusion += ` Against the parameter-matched \`${matched.baseline}\` (${matched.runs.find((r) => r.variant === matched.baseline && r.parameters)?.parameters ?? '?'} parameters; ${c.candidate} ${res.runs.find((r) => r.variant === c.candidate && r.parameters)?.parameters ?? '?'}) the gain by training length was ${gains}${t ? `, changing by ${t.slopeLo === null ? fmt(t.slope, 4) : fmtInterval(t.slope, t.slopeLo, t.slopeHi, 4)} bpb per doubling` : ''}: by the same rule the claim is ${matched.verdict === 'not resolved' ? 'not resolved' : matched.verdict} against it.`;
  }
  return { conclusion, blocks, results: { ...res, matched } };
}

export const lengthScaling: Experiment<LengthScalingConfig> = {
  name: 'length-scaling',
  title: 'Length scaling: Transformer against Cubit by training length',
  plan,
  sweep: (c) => {
    if (!c.tuning) return [];
    const m = models(c);
    return sweepRuns(c, m, tuningLength(c));
  },
  tuningNote: (c) => `Every variant is tuned, at one training length (${tuningLength(c)}) rather than at each: with the same tokens per step, width and depth at every length, the best rate is expected to move little with the length, and a sweep at each length would multiply the sweep's cost by ${c.trainLengths.length}.`,
  async estimate(c, runs, onCalibrate) { await estimateRuns(runs, (d) => d.spec as LmRunSpec, onCalibrate); },
  report,
};
