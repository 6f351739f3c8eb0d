// Experiment `noise`: is Cubit more robust to noise and to boundary effects?
//
// (a) In-context regression (regression.ts): the softmax, Cubit and local linear mixers used
//     directly as estimators on sequences of (x, f(x) + noise) pairs, one run per (function
//     family, noise level, seed). Errors are squared errors against the clean f at interior
//     queries and at queries near the edge of the data; every estimator answers the same test
//     tasks, so differences are paired by task (t intervals over tasks).
// (b) Language-model robustness: the variants (Transformer, Cubit) are trained on clean text and
//     evaluated with a fraction p of the context bytes replaced at random (the same positions and
//     replacements for every model), scored on the clean next bytes. Degradation = bpb(p) − bpb(0);
//     the variants' degradations are compared paired by seed (t intervals over seeds).
import { fmt, fmtInterval, type Block } from './report.ts';
import { lineChartSvg, type ChartPoint } from './figures.ts';
import { completed, estimateRuns, intervalOf, lmRun, lossCurveFigure, pairBySeed, plural, resolveVariants, sweepRuns, type TunedRates } from './common.ts';
import type { NoiseConfig } from './config.ts';
import type { LmRunResult, LmRunSpec } from './lm.ts';
import type { TuningResult } from './tuning.ts';
import { gridOf, runRegressionCell, type Estimator, type EstimatorParams, type EstimatorResult, type FunctionFamily } from './regression.ts';
import type { RunDef, RunOutcome } from './runner.ts';
import { meanInterval, pairedInterval, signOf, type Interval } from './stats.ts';
import type { Experiment, ReportParts } from './types.ts';

type Labels =
  | { part: 'regression'; family: FunctionFamily; noise: number; seed: number }
  | { part: 'lm'; variant: string; seed: number };

function lmModels(c: NoiseConfig) {
  const l = c.lm;
  if (!l) throw new Error("noise: parts include 'lm' but the config has no 'lm' section");
  for (const v of [l.baseline, l.candidate, ...(l.matchedBaseline ? [l.matchedBaseline] : [])]) if (!(v in l.variants)) throw new Error(`noise: lm baseline/candidate '${v}' is not one of the variants (${Object.keys(l.variants).join(', ')})`);
  return resolveVariants(l.model, l.variants);
}

function plan(c: NoiseConfig, tuned?: TunedRates): RunDef<unknown>[] {
  const defs: RunDef<unknown>[] = [];
  if (c.parts.includes('regression')) {
    const r = c.regression;
    if (!r.noise.includes(r.boundaryNoise)) throw new Error(`noise: regression.boundaryNoise ${r.boundaryNoise} must be one of regression.noise (${r.noise.join(', ')})`);
    if (!(r.interior[0] < r.interior[1])) throw new Error(`noise: regression.interior must be [low, high] with low < high, got [${r.interior.join(', ')}]`);
    for (const family of r.families) {
      for (const noise of r.noise) {
        for (const seed of r.seeds) {
          const spec = {
            family, noise, seed, points: r.points, tasks: r.tasks, tuneTasks: r.tuneTasks, interiorQueries: r.interiorQueries,
            interior: r.interior, edgeDistances: r.edgeDistances, grid: r.grid, estimators: r.estimators, dtype: r.dtype,
          };
          const cell = { ...spec, interior: [spec.interior[0], spec.interior[1]] as [number, number] };
          defs.push({
            id: `regression-${family}-noise${noise}-seed${seed}`, labels: { part: 'regression', family, noise, seed }, seed, spec,
            task: { kind: 'regression', arg: cell },
            execute: (ctx) => { ctx.progress(0, 'fitting'); return runRegressionCell(cell); },
          });
        }
      }
    }
  }
  if (c.parts.includes('lm')) {
    const l = c.lm!;
    const m = lmModels(c);
    for (const seed of l.seeds) {
      for (const variant of Object.keys(l.variants)) {
        defs.push(lmRun(l, {
          id: `lm-${variant}-seed${seed}`, labels: { part: 'lm', variant, seed }, model: m[variant], seqLen: l.seqLen, seed, evalLengths: [l.seqLen],
          corruption: { ...l.corruption, contextLength: l.seqLen }, lr: tuned?.[variant],
        }));
      }
    }
  }
  return defs;
}

async function estimate(c: NoiseConfig, runs: RunDef<unknown>[], onCalibrate?: (what: string) => void): Promise<void> {
  await estimateRuns(runs.filter((d) => (d.labels as Labels).part === 'lm'), (d) => d.spec as LmRunSpec, onCalibrate);
  // Regression: dense T² mixers in float64 on the reference backend; ~6e-8 s per task · grid point · T² measured here.
  const r = c.regression;
  const T = r.points + r.interiorQueries + 2 * r.edgeDistances.length;
  const gridSize = r.estimators.reduce((s, e) => s + gridOf(e, r.grid).length, 0);
  for (const d of runs) if ((d.labels as Labels).part === 'regression') d.estimate = 6e-8 * (r.tasks * r.estimators.length + r.tuneTasks * gridSize) * T * T + 0.2;
}

// ---- analysis ----

export interface RegressionCellStats {
  family: FunctionFamily;
  noise: number;
  estimator: Estimator;
  chosen: EstimatorParams[];
  interior: Interval;
  /** Per edge distance. */
  edge: Interval[];
  /** Paired by task against the softmax (NW) estimator: this − softmax. */
  interiorVsSoftmax: Interval | null;
  edgeVsSoftmax: (Interval | null)[];
}

export interface LmCorruptionStats {
  fraction: number;
  variant: string;
  bpb: Interval | null;
  /** bpb(p) − bpb(0), over seeds. */
  degradation: Interval | null;
}

export interface NoiseResults {
  regression: RegressionCellStats[];
  edgeDistances: number[];
  lm: LmCorruptionStats[];
  /** Per fraction: degradation(baseline) − degradation(candidate), paired by seed (> 0: candidate more robust). */
  robustnessGain: { fraction: number; gain: Interval | null; seeds: number[] }[];
  /** The same against the parameter-matched baseline (lm.matchedBaseline), when there is one. */
  matchedGain: { baseline: string; gains: { fraction: number; gain: Interval | null; seeds: number[] }[] } | null;
  verdicts: { noise: string; boundary: string; lm: string; lmMatched?: string };
}

function analyseRegression(c: NoiseConfig, outcomes: RunOutcome<unknown>[]): RegressionCellStats[] {
  const stats: RegressionCellStats[] = [];
  const r = c.regression;
  for (const family of r.families) {
    for (const noise of r.noise) {
      const results = outcomes.filter((o) => { const l = o.def.labels as Labels; return o.result && l.part === 'regression' && l.family === family && l.noise === noise; })
        .map((o) => o.result as EstimatorResult[]);
      if (!results.length) continue;
      // Tasks of all seeds pooled; each estimator saw the same tasks in the same order.
      const pool = (est: Estimator) => {
        const rs = results.map((res) => res.find((x) => x.estimator === est)!).filter(Boolean);
        return {
          chosen: rs.map((x) => x.chosen),
          interior: rs.flatMap((x) => x.test.interior),
          edge: r.edgeDistances.map((_, e) => rs.flatMap((x) => x.test.edge[e])),
        };
      };
      const nw = r.estimators.includes('softmax') ? pool('softmax') : null;
      for (const est of r.estimators) {
        const p = pool(est);
        stats.push({
          family, noise, estimator: est, chosen: p.chosen,
          interior: meanInterval(p.interior), edge: p.edge.map((e) => meanInterval(e)),
          interiorVsSoftmax: nw && est !== 'softmax' ? pairedInterval(p.interior, nw.interior) : null,
          edgeVsSoftmax: p.edge.map((e, i) => (nw && est !== 'softmax' ? pairedInterval(e, nw.edge[i]) : null)),
        });
      }
    }
  }
  return stats;
}

function analyseLm(c: NoiseConfig, outcomes: RunOutcome<unknown>[], baseline = c.lm?.baseline ?? '') {
  const l = c.lm;
  const lm: LmCorruptionStats[] = [];
  const robustnessGain: NoiseResults['robustnessGain'] = [];
  if (!l || !c.parts.includes('lm')) return { lm, robustnessGain };
  const ok = completed(outcomes.filter((o) => (o.def.labels as Labels).part === 'lm'));
  const bpb = (variant: string, f: number): Map<number, number> => {
    const m = new Map<number, number>();
    for (const o of ok) {
      const lab = o.def.labels as Labels & { part: 'lm' };
      if (lab.variant !== variant) continue;
      const e = o.result!.corrupted.find((x) => x.fraction === f);
      if (e) m.set(lab.seed, e.bpb);
    }
    return m;
  };
  const f0 = Math.min(...l.corruption.fractions);
  const degradation = (variant: string, f: number): Map<number, number> => {
    const a = bpb(variant, f), z = bpb(variant, f0), m = new Map<number, number>();
    for (const [s, v] of a) if (z.has(s)) m.set(s, v - z.get(s)!);
    return m;
  };
  for (const f of l.corruption.fractions) {
    for (const variant of Object.keys(l.variants)) {
      lm.push({ fraction: f, variant, bpb: intervalOf([...bpb(variant, f).values()]), degradation: intervalOf([...degradation(variant, f).values()]) });
    }
    const p = pairBySeed(degradation(baseline, f), degradation(l.candidate, f));
    robustnessGain.push({ fraction: f, gain: p.seeds.length && f !== f0 ? pairedInterval(p.a, p.b) : null, seeds: p.seeds });
  }
  return { lm, robustnessGain };
}

/** 'lower' / 'higher' / 'indistinguishable' error of an estimator than NW, from a paired interval (this − NW). */
function compare(i: Interval | null): 'lower' | 'higher' | 'indistinguishable' {
  const s = i ? signOf(i.lo, i.hi) : 'spans';
  return s === 'below' ? 'lower' : s === 'above' ? 'higher' : 'indistinguishable';
}

function tally(items: ('lower' | 'higher' | 'indistinguishable')[]): string {
  const n = (k: string) => items.filter((x) => x === k).length;
  return `lower in ${n('lower')}, higher in ${n('higher')} and indistinguishable in ${n('indistinguishable')} of ${items.length}`;
}

function verdictOf(items: ('lower' | 'higher' | 'indistinguishable')[]): string {
  const lower = items.filter((x) => x === 'lower').length, higher = items.filter((x) => x === 'higher').length;
  if (items.length === 0) return 'not tested';
  if (lower > items.length / 2 && higher === 0) return 'supported';
  if (higher > items.length / 2 && lower === 0) return 'contradicted';
  return 'not resolved';
}

function conclusionOf(c: NoiseConfig, res: NoiseResults): string {
  const parts: string[] = [];
  const r = c.regression;
  if (c.parts.includes('regression') && res.regression.length) {
    const maxNoise = Math.max(...r.noise);
    const high = res.regression.filter((x) => x.estimator === 'cubit' && x.noise === maxNoise).map((x) => compare(x.interiorVsSoftmax));
    const edge0 = r.edgeDistances.indexOf(Math.min(...r.edgeDistances));
    const atEdge = res.regression.filter((x) => x.estimator === 'cubit' && x.noise === r.boundaryNoise).map((x) => compare(x.edgeVsSoftmax[edge0]));
    const llEdge = res.regression.filter((x) => x.estimator === 'local_linear' && x.noise === r.boundaryNoise).map((x) => compare(x.edgeVsSoftmax[edge0]));
    parts.push(`In-context regression (${r.points} noisy pairs, hyperparameters tuned per cell on separate tasks): at the highest noise level (σ = ${maxNoise}) Cubit's error at interior queries was, against softmax attention (Nadaraya–Watson), ${tally(high)} function families (paired 95% intervals over ${r.tasks * r.seeds.length} tasks).`);
    parts.push(`At the edge of the data (distance ${r.edgeDistances[edge0]}, σ = ${r.boundaryNoise}) Cubit's error was ${tally(atEdge)}${llEdge.length ? `, and the local linear mixer's ${tally(llEdge)}` : ''}.`);
    res.verdicts.noise = verdictOf(high);
    res.verdicts.boundary = verdictOf(atEdge);
    parts.push(`Read as tests of "Cubit is more robust to noise" and "… to boundary effects" than attention, the estimator experiment ${res.verdicts.noise === 'not resolved' ? 'does not resolve the first' : `${res.verdicts.noise === 'supported' ? 'supports' : res.verdicts.noise === 'contradicted' ? 'contradicts' : 'does not test'} the first`} and ${res.verdicts.boundary === 'not resolved' ? 'does not resolve the second' : `${res.verdicts.boundary === 'supported' ? 'supports' : res.verdicts.boundary === 'contradicted' ? 'contradicts' : 'does not test'} the second`}.`);
  }
  if (c.parts.includes('lm') && c.lm) {
    const l = c.lm;
    const top = res.robustnessGain.filter((g) => g.gain).at(-1);
    if (top?.gain) {
      const s = signOf(top.gain.lo, top.gain.hi);
      res.verdicts.lm = s === 'above' ? 'supported' : s === 'below' ? 'contradicted' : 'not resolved';
      const deg = (v: string) => res.lm.find((x) => x.variant === v && x.fraction === top.fraction)?.degradation;
      const db = deg(l.baseline), dc = deg(l.candidate);
      parts.push(`Language models trained at length ${l.seqLen} (${plural(top.seeds.length, 'seed')}): with ${fmt(100 * top.fraction, 0)}% of the context bytes corrupted, ${l.baseline}'s bits per byte rose by ${db ? fmt(db.mean) : '—'} and ${l.candidate}'s by ${dc ? fmt(dc.mean) : '—'}; the difference (${l.baseline} − ${l.candidate}, paired by seed) was ${fmtInterval(top.gain.mean, top.gain.lo, top.gain.hi)}, so the claim that ${l.candidate} degrades less is ${res.verdicts.lm === 'not resolved' ? 'not resolved at this scale' : `${res.verdicts.lm} at this scale`}.`);
    } else {
      res.verdicts.lm = 'not resolved';
      parts.push(`Language-model robustness: ${top ? 'too few seeds for an interval' : 'no completed pair of runs'}, so not resolved.`);
    }
  }
  return parts.join(' ');
}

const LABEL: Record<Estimator, string> = { softmax: 'softmax (NW)', cubit: 'Cubit (KRR)', local_linear: 'local linear' };

function paramText(p: EstimatorParams): string {
  return [`h ${p.h}`, p.lambda !== undefined ? `λ ${p.lambda}` : '', p.ridge !== undefined ? `ρ ${p.ridge}` : ''].filter(Boolean).join(', ');
}

/** Points for a log-scale chart: a lower end at or below zero is cut to a tenth of the mean. */
function logPoint(x: number, i: Interval, series: string, facet: string): ChartPoint {
  return { x, y: i.mean, lo: i.lo === null ? null : i.lo > 0 ? i.lo : i.mean / 10, hi: i.hi, series, facet };
}

async function report(c: NoiseConfig, outcomes: RunOutcome<unknown>[], tuning: TuningResult | null): Promise<ReportParts> {
  const regression = c.parts.includes('regression') ? analyseRegression(c, outcomes) : [];
  const { lm, robustnessGain } = analyseLm(c, outcomes);
  const mb = c.parts.includes('lm') ? c.lm?.matchedBaseline : undefined;
  const matchedGain = mb ? { baseline: mb, gains: analyseLm(c, outcomes, mb).robustnessGain } : null;
  const res: NoiseResults = { regression, edgeDistances: c.regression.edgeDistances, lm, robustnessGain, matchedGain, verdicts: { noise: 'not tested', boundary: 'not tested', lm: 'not tested' } };
  let conclusion = conclusionOf(c, res);
  const topM = matchedGain?.gains.filter((g) => g.gain).at(-1);
  if (matchedGain && topM?.gain) {
    const s = signOf(topM.gain.lo, topM.gain.hi);
    res.verdicts.lmMatched = s === 'above' ? 'supported' : s === 'below' ? 'contradicted' : 'not resolved';
    conclusion += ` Against the parameter-matched \`${matchedGain.baseline}\` the difference of degradations at ${fmt(100 * topM.fraction, 0)}% was ${fmtInterval(topM.gain.mean, topM.gain.lo, topM.gain.hi)} (${res.verdicts.lmMatched}).`;
  }
  const blocks: Block[] = [];
  const r = c.regression;
  if (regression.length) {
    const order = r.estimators.map((e) => LABEL[e]);
    blocks.push({ kind: 'heading', text: '(a) In-context regression' });
    blocks.push({
      kind: 'list', items: [
        `Tasks: ${r.points} pairs (x, f(x) + σε), x ~ U[0, 1] in random order, ε ~ N(0, 1); families ${r.families.join(', ')}; σ ∈ {${r.noise.join(', ')}}. ${r.tasks} test tasks and ${r.tuneTasks} tuning tasks per cell and seed (seeds ${r.seeds.join(', ')}).`,
        `Queries: ${r.interiorQueries} interior ones uniform in [${r.interior.join(', ')}], and one at each distance d ∈ {${r.edgeDistances.join(', ')}} from either edge. Error: squared error against the clean f(x).`,
        'The mixers are used directly as estimators (no training): a von Mises kernel on x (bandwidth h) gives the attention logits and Cubit\'s reference logits; Cubit\'s values are scaled by 1 + λ so that λ → ∞ recovers NW; the local linear fit regresses on x itself with ridge ρ. See docs/EXPERIMENTS.md.',
        `Grid: h ∈ {${r.grid.bandwidths.join(', ')}}, λ ∈ {${r.grid.lambdas.join(', ')}} (Cubit), ρ ∈ {${r.grid.ridges.join(', ')}} (local linear); each chosen per cell by interior error on the tuning tasks. Arithmetic: ${r.dtype}.`,
      ],
    });
    const noisePoints = regression.map((x) => logPoint(x.noise, x.interior, LABEL[x.estimator], x.family));
    blocks.push({
      kind: 'figure', name: 'regression-noise', caption: 'Mean squared error at interior queries against the noise level, per function family (95% t intervals over tasks; log scale, lower ends at or below zero cut to a tenth of the mean).',
      svg: await lineChartSvg({ title: 'interior error against noise', xTitle: 'noise σ', yTitle: 'mean squared error', yScale: 'log10', points: noisePoints, seriesOrder: order, width: 260, height: 200, columns: 3 }),
    });
    const edgePoints = regression.filter((x) => x.noise === r.boundaryNoise).flatMap((x) => r.edgeDistances.map((d, e) => logPoint(d, x.edge[e], LABEL[x.estimator], x.family)));
    blocks.push({
      kind: 'figure', name: 'regression-boundary', caption: `Mean squared error against the query's distance to the edge of the data (σ = ${r.boundaryNoise}), per function family (95% t intervals over tasks; log scale).`,
      svg: await lineChartSvg({ title: `error near the boundary (σ = ${r.boundaryNoise})`, xTitle: 'distance of the query to the edge', yTitle: 'mean squared error', yScale: 'log10', points: edgePoints, seriesOrder: order, width: 260, height: 200, columns: 3 }),
    });
    const edge0 = r.edgeDistances.indexOf(Math.min(...r.edgeDistances));
    blocks.push({
      kind: 'table', caption: `Mean squared error (mean [95% CI]) at interior queries and at the edge (d = ${r.edgeDistances[edge0]}), and the paired difference from softmax (negative: lower error than NW).`,
      columns: ['family', 'σ', 'estimator', 'chosen', 'interior MSE', 'interior − NW', 'edge MSE', 'edge − NW'],
      rows: regression.map((x) => [
        x.family, x.noise, LABEL[x.estimator], [...new Set(x.chosen.map(paramText))].join('; '),
        fmtInterval(x.interior.mean, x.interior.lo, x.interior.hi, 4), x.interiorVsSoftmax ? fmtInterval(x.interiorVsSoftmax.mean, x.interiorVsSoftmax.lo, x.interiorVsSoftmax.hi, 4) : '—',
        fmtInterval(x.edge[edge0].mean, x.edge[edge0].lo, x.edge[edge0].hi, 4), x.edgeVsSoftmax[edge0] ? fmtInterval(x.edgeVsSoftmax[edge0]!.mean, x.edgeVsSoftmax[edge0]!.lo, x.edgeVsSoftmax[edge0]!.hi, 4) : '—',
      ]),
    });
  }
  if (c.parts.includes('lm') && c.lm) {
    const l = c.lm;
    blocks.push({ kind: 'heading', text: '(b) Language models with corrupted context' });
    blocks.push({
      kind: 'list', items: [
        `Variants ${Object.entries(l.variants).map(([k, v]) => `\`${k}\` ${JSON.stringify(v)}`).join(', ')} over ${JSON.stringify(l.model)}, trained on clean ${l.data.corpus} text at length ${l.seqLen}, ${fmt(l.tokensPerRun, 0)} tokens, seeds ${l.seeds.join(', ')}; ${tuning ? `peak lr tuned per variant: ${Object.entries(tuning.rates).map(([v, r]) => `${v} ${r}`).join(', ')}` : `lr ${l.optimizer.lr}`}.`,
        `Evaluation at length ${l.seqLen} on the first ${fmt(l.eval.maxBytes, 0)} bytes of the ${l.eval.split} split: a fraction p of the input bytes is replaced by a random ${l.corruption.replacement === 'printable' ? 'printable ASCII byte' : 'byte'} (always a different one; the same positions and replacements for every model, seed ${l.corruption.seed}); the targets stay clean.`,
      ],
    });
    blocks.push({
      kind: 'figure', name: 'lm-corruption', caption: 'Held-out bits per byte against the fraction of corrupted context bytes (mean over seeds, 95% t intervals).',
      svg: await lineChartSvg({ title: 'bits per byte with corrupted context', xTitle: 'fraction of context bytes corrupted', yTitle: 'bits per byte', points: lm.filter((x) => x.bpb).map((x) => ({ x: x.fraction, y: x.bpb!.mean, lo: x.bpb!.lo, hi: x.bpb!.hi, series: x.variant })), seriesOrder: Object.keys(l.variants) }),
    });
    blocks.push({
      kind: 'figure', name: 'lm-degradation', caption: 'Degradation bpb(p) − bpb(0) against the fraction of corrupted context bytes (mean over seeds, 95% t intervals): the seed-to-seed spread of the clean bpb is removed.',
      svg: await lineChartSvg({ title: 'bits per byte lost to corrupted context', xTitle: 'fraction of context bytes corrupted', yTitle: 'bpb(p) − bpb(0)', rule: 0, points: lm.filter((x) => x.degradation).map((x) => ({ x: x.fraction, y: x.degradation!.mean, lo: x.degradation!.lo, hi: x.degradation!.hi, series: x.variant })), seriesOrder: Object.keys(l.variants) }),
    });
    blocks.push({
      kind: 'table', caption: `Bits per byte and degradation bpb(p) − bpb(0) (mean [95% CI] over seeds); last column: ${l.baseline}'s degradation − ${l.candidate}'s, paired by seed (positive: ${l.candidate} degrades less).`,
      columns: ['p', ...Object.keys(l.variants).flatMap((v) => [`${v} bpb`, `${v} degradation`]), 'difference'],
      rows: l.corruption.fractions.map((f) => {
        const g = robustnessGain.find((x) => x.fraction === f)?.gain ?? null;
        return [
          f,
          ...Object.keys(l.variants).flatMap((v) => {
            const s = lm.find((x) => x.variant === v && x.fraction === f);
            return [s?.bpb ? fmtInterval(s.bpb.mean, s.bpb.lo, s.bpb.hi) : '—', s?.degradation ? fmtInterval(s.degradation.mean, s.degradation.lo, s.degradation.hi) : '—'];
          }),
          g ? fmtInterval(g.mean, g.lo, g.hi) : '—',
        ];
      }),
    });
    if (matchedGain) {
      blocks.push({
        kind: 'table', caption: `Against the parameter-matched baseline \`${matchedGain.baseline}\`: its degradation − ${l.candidate}'s, paired by seed (positive: ${l.candidate} degrades less).`,
        columns: ['p', 'difference', 'seeds'],
        rows: matchedGain.gains.map((g) => [g.fraction, g.gain ? fmtInterval(g.gain.mean, g.gain.lo, g.gain.hi) : '—', g.seeds.length]),
      });
    }
    blocks.push(await lossCurveFigure(outcomes, (o) => { const lab = o.def.labels as Labels; return lab.part === 'lm' ? { series: lab.variant } : null; }, () => l.tokensPerStep, { seriesOrder: Object.keys(l.variants) }));
    const lmRuns = outcomes.filter((o) => (o.def.labels as Labels).part === 'lm');
    blocks.push({
      kind: 'table', caption: 'Language-model runs.',
      columns: ['run', 'status', 'parameters', 'final train loss', ...l.corruption.fractions.map((f) => `bpb @p=${f}`)],
      rows: lmRuns.map((o) => {
        const x = o.result as LmRunResult | null;
        return [o.def.id, x ? x.status : 'failed', x?.parameters ?? '—', fmt(x?.finalTrainLoss ?? null), ...l.corruption.fractions.map((f) => fmt(x?.corrupted.find((e) => e.fraction === f)?.bpb ?? null))];
      }),
    });
  }
  return { conclusion, blocks, results: res };
}

export const noise: Experiment<NoiseConfig> = {
  name: 'noise',
  title: 'Noise and boundary robustness: softmax, Cubit and local linear mixers',
  plan,
  sweep: (c) => (c.parts.includes('lm') && c.lm?.tuning ? sweepRuns(c.lm, lmModels(c), c.lm.seqLen) : []),
  tuningNote: () => 'Every language-model variant is tuned at the training length; the regression part has no learning rate (its estimators are tuned per cell on tuning tasks).',
  estimate,
  report,
};
