// Experiment `ablations`: Cubit's design choices — LRR on / off / a wider range, the independent
// reference projection against the shared key, the initial λ — each trained at a normal and at a
// deliberately high learning rate. Reported per (variant, learning rate): held-out bits per byte,
// divergences (training stopped after maxNonFinite non-finite steps in a row), loss spikes (steps
// whose loss exceeds the median of the previous `window` steps by more than `threshold` nats) and
// the largest gradient norm; and each variant against the reference variant, paired by seed.
import { fmt, fmtInterval, num, type Block } from './report.ts';
import { lineChartSvg } from './figures.ts';
import { completed, estimateRuns, intervalOf, lmRun, lossCurveFigure, pairBySeed, plural, resolveVariants, sweepRuns, type TunedRates } from './common.ts';
import { deepMerge, type AblationsConfig } from './config.ts';
import { lossSpikes, type LmRunResult, type LmRunSpec, type SpikeSummary } from './lm.ts';
import type { TuningResult } from './tuning.ts';
import type { RunDef, RunOutcome } from './runner.ts';
import { pairedInterval, signOf, type Interval } from './stats.ts';
import type { Experiment, ReportParts } from './types.ts';

interface Labels { variant: string; lr: string; seed: number }

function models(c: AblationsConfig) {
  if (!(c.reference in c.variants)) throw new Error(`ablations: reference '${c.reference}' is not one of the variants (${Object.keys(c.variants).join(', ')})`);
  if (c.tuning && !('normal' in c.learningRates)) throw new Error(`ablations: with tuning, learningRates must name a 'normal' rate (the others are multiples of it), got ${Object.keys(c.learningRates).join(', ')}`);
  return resolveVariants(c.model, c.variants);
}

/**
 * The named learning rates. With a sweep, 'normal' is the rate tuned for the reference variant and
 * every other named rate keeps its ratio to 'normal' in the config (high = 10 × normal by default).
 */
export function ratesOf(c: AblationsConfig, tuned?: TunedRates): Record<string, number> {
  const t = tuned?.[c.reference];
  if (t === undefined || !c.tuning) return c.learningRates;
  return Object.fromEntries(Object.entries(c.learningRates).map(([k, v]) => [k, Number((t * (v / c.learningRates.normal)).toPrecision(6))]));
}

function plan(c: AblationsConfig, tuned?: TunedRates): RunDef<unknown>[] {
  const m = models(c);
  const defs: RunDef<unknown>[] = [];
  // Seeds outermost: a grid cut short still covers every variant and rate with the seeds it finished.
  for (const seed of c.seeds) {
    for (const [lrName, lr] of Object.entries(ratesOf(c, tuned))) {
      for (const variant of Object.keys(c.variants)) {
        defs.push(lmRun(c, { id: `${variant}-lr_${lrName}-seed${seed}`, labels: { variant, lr: lrName, seed } satisfies Labels, model: m[variant], seqLen: c.seqLen, seed, evalLengths: [c.seqLen], lr }));
      }
    }
  }
  return defs;
}

export interface AblationCell {
  variant: string;
  lr: string;
  lrValue: number;
  runs: number;
  diverged: number;
  /** Runs with at least one loss spike (diverged runs included, up to where they stopped). */
  spiky: number;
  spikes: { seed: number; summary: SpikeSummary; maxGradNorm: number | null }[];
  /** Runs that diverged or had a loss spike. */
  unstable: number;
  bpb: Interval | null;
  /** Paired by seed against the reference variant at the same learning rate: this − reference. */
  vsReference: Interval | null;
  pairedSeeds: number[];
}

export interface AblationResults {
  reference: string;
  cells: AblationCell[];
  verdict: { lrr: string };
}

function analyse(c: AblationsConfig, outcomes: RunOutcome<unknown>[], rates: Record<string, number>): AblationResults {
  const cells: AblationCell[] = [];
  const bpbOf = (variant: string, lr: string): Map<number, number> => {
    const m = new Map<number, number>();
    for (const o of completed(outcomes)) {
      const l = o.def.labels as unknown as Labels;
      if (l.variant === variant && l.lr === lr && o.result!.eval[0]) m.set(l.seed, o.result!.eval[0].bpb);
    }
    return m;
  };
  for (const [lr, lrValue] of Object.entries(rates)) {
    for (const variant of Object.keys(c.variants)) {
      const mine = outcomes.filter((o) => { const l = o.def.labels as unknown as Labels; return l.variant === variant && l.lr === lr; });
      const results = mine.filter((o) => o.result).map((o) => ({ seed: (o.def.labels as unknown as Labels).seed, r: o.result as LmRunResult }));
      const spikes = results.map(({ seed, r }) => {
        const norms = r.curve.map((x) => x[2]).filter((x): x is number => x !== null);
        return { seed, summary: lossSpikes(r.curve, c.spikes.window, c.spikes.threshold), maxGradNorm: norms.length ? Math.max(...norms) : null };
      });
      const b = bpbOf(variant, lr);
      const p = pairBySeed(b, bpbOf(c.reference, lr));
      cells.push({
        variant, lr, lrValue, runs: mine.length,
        diverged: results.filter((x) => x.r.status === 'diverged').length,
        spiky: spikes.filter((s) => s.summary.count > 0).length,
        spikes,
        unstable: results.filter((x, i) => x.r.status === 'diverged' || spikes[i].summary.count > 0).length, bpb: intervalOf([...b.values()]),
        vsReference: variant !== c.reference && p.seeds.length ? pairedInterval(p.a, p.b) : null,
        pairedSeeds: p.seeds,
      });
    }
  }
  return { reference: c.reference, cells, verdict: { lrr: 'not tested' } };
}

function conclusionOf(c: AblationsConfig, res: AblationResults, rates: Record<string, number>): string {
  const parts: string[] = [];
  const lrs = Object.entries(rates).sort((a, b) => a[1] - b[1]);
  const [highName, highLr] = lrs[lrs.length - 1];
  const isLrrOff = (v: string) => (deepMerge(c.model, c.variants[v]) as { cubit?: { lrr?: boolean } }).cubit?.lrr === false;
  const offs = Object.keys(c.variants).filter(isLrrOff);
  const ref = c.reference;
  const cell = (v: string, lr: string) => res.cells.find((x) => x.variant === v && x.lr === lr)!;
  const describe = (x: AblationCell): string => `${x.diverged}/${x.runs} diverged, ${x.spiky}/${x.runs} with loss spikes${x.bpb ? `, ${fmt(x.bpb.mean)} bpb` : ''}`;
  if (offs.length && !isLrrOff(ref)) {
    const off = offs[0];
    const on = cell(ref, highName), o = cell(off, highName);
    const diff = o.vsReference; // off − on
    const instabilityOn = on.unstable, instabilityOff = o.unstable;
    res.verdict.lrr = instabilityOff > instabilityOn ? 'supported' : instabilityOff < instabilityOn ? 'contradicted'
      : diff && signOf(diff.lo, diff.hi) === 'above' ? 'supported' : diff && signOf(diff.lo, diff.hi) === 'below' ? 'contradicted' : 'not resolved';
    parts.push(`At the high learning rate (${highLr}), \`${ref}\` (LRR on): ${describe(on)}; \`${off}\` (LRR off): ${describe(o)}${diff ? `; bpb difference off − on, paired by seed: ${fmtInterval(diff.mean, diff.lo, diff.hi)}` : ''}.`);
    parts.push(`The claim that LRR makes training stable is ${res.verdict.lrr === 'not resolved' ? 'not resolved at this scale' : `${res.verdict.lrr} at this scale`} (${plural(c.seeds.length, 'seed')}; instability counts runs that diverged or spiked by more than ${c.spikes.threshold} nats, then the bpb difference decides a tie).`);
  } else {
    parts.push('No variant turns LRR off (cubit.lrr: false) against an LRR-on reference, so the LRR claim is not tested.');
  }
  for (const [lrName, lrValue] of lrs) {
    const others = res.cells.filter((x) => x.lr === lrName && x.variant !== ref && x.vsReference);
    const better = others.filter((x) => signOf(x.vsReference!.lo, x.vsReference!.hi) === 'below').map((x) => x.variant);
    const worse = others.filter((x) => signOf(x.vsReference!.lo, x.vsReference!.hi) === 'above').map((x) => x.variant);
    const div = res.cells.filter((x) => x.lr === lrName && x.diverged > 0).map((x) => `${x.variant} (${x.diverged}/${x.runs})`);
    parts.push(`At lr ${lrValue}: lower bpb than \`${ref}\` (95% paired interval): ${better.length ? better.join(', ') : 'none'}; higher: ${worse.length ? worse.join(', ') : 'none'}; diverged: ${div.length ? div.join(', ') : 'none'}.`);
  }
  return parts.join(' ');
}

async function report(c: AblationsConfig, outcomes: RunOutcome<unknown>[], tuning: TuningResult | null): Promise<ReportParts> {
  const rates = ratesOf(c, tuning?.rates);
  const res = analyse(c, outcomes, rates);
  const conclusion = conclusionOf(c, res, rates);
  const blocks: Block[] = [];
  const variants = Object.keys(c.variants);
  const spec0 = outcomes[0]?.def.spec as LmRunSpec | undefined;
  blocks.push({ kind: 'heading', text: 'Setup' });
  blocks.push({
    kind: 'list', items: [
      `Base model ${JSON.stringify(c.model)}; variants: ${Object.entries(c.variants).map(([k, v]) => `\`${k}\` ${JSON.stringify(v)}`).join(', ')}; reference \`${c.reference}\`.`,
      `Learning rates: ${Object.entries(rates).map(([k, v]) => `${k} = ${v}`).join(', ')}${tuning ? ` (normal: tuned for \`${c.reference}\` and used for every variant; the others keep their ratio to it in the config)` : ''} (peak; ${c.optimizer.warmupSteps} warm-up steps, cosine to lr/10${c.optimizer.minLr !== undefined ? ` or ${c.optimizer.minLr}` : ''}, clip ${c.optimizer.clip}, weight decay ${c.optimizer.weightDecay}).`,
      `Training at length ${c.seqLen} on ${c.data.corpus}, ${fmt(c.tokensPerRun, 0)} tokens in ${spec0?.steps ?? '?'} steps of ${c.tokensPerStep}; seeds ${c.seeds.join(', ')}. A run diverges when the training loop meets several non-finite steps in a row and stops.`,
      `Loss spike: a step whose training loss exceeds the median of the previous ${c.spikes.window} steps by more than ${c.spikes.threshold} nats (consecutive such steps count once).`,
    ],
  });
  blocks.push(await lossCurveFigure(outcomes, (o) => { const l = o.def.labels as unknown as Labels; return { series: l.variant, facet: `lr ${l.lr} = ${rates[l.lr]}` }; }, () => c.tokensPerStep, { seriesOrder: variants, columns: 2 }));
  blocks.push({
    kind: 'figure', name: 'bpb-by-lr', caption: 'Held-out bits per byte against the peak learning rate (completed runs; mean over seeds, 95% t intervals).',
    svg: await lineChartSvg({
      title: 'bits per byte by learning rate', xTitle: 'peak learning rate', yTitle: 'bits per byte', xScale: 'log10', seriesOrder: variants,
      points: res.cells.filter((x) => x.bpb).map((x) => ({ x: x.lrValue, y: x.bpb!.mean, lo: x.bpb!.lo, hi: x.bpb!.hi, series: x.variant })),
    }),
  });
  blocks.push({
    kind: 'table', caption: `Per variant and learning rate: divergences, runs with loss spikes, spike events and the largest excess (over seeds), the largest gradient norm, bits per byte (mean [95% CI]) and the difference from \`${c.reference}\` paired by seed (negative: better).`,
    columns: ['variant', 'lr', 'diverged', 'runs with spikes', 'spike events', 'max excess (nats)', 'max grad norm', 'bpb', `− ${c.reference}`],
    rows: res.cells.map((x) => [
      x.variant, `${x.lr} (${x.lrValue})`, `${x.diverged}/${x.runs}`, `${x.spiky}/${x.runs}`,
      x.spikes.reduce((s, y) => s + y.summary.count, 0), fmt(Math.max(0, ...x.spikes.map((y) => y.summary.maxExcess))),
      fmt(Math.max(...x.spikes.map((y) => y.maxGradNorm ?? 0), 0), 2),
      x.bpb ? fmtInterval(x.bpb.mean, x.bpb.lo, x.bpb.hi) : '—',
      x.vsReference ? fmtInterval(x.vsReference.mean, x.vsReference.lo, x.vsReference.hi) : '—',
    ]),
  });
  blocks.push({
    kind: 'table', caption: 'Every run.',
    columns: ['run', 'status', 'steps', 'skipped steps', 'final train loss', 'bpb', 'note'],
    rows: outcomes.map((o) => {
      const r = o.result as LmRunResult | null;
      return [o.def.id, r ? r.status : 'failed', r ? `${r.step}/${r.steps}` : '—', r?.skippedSteps ?? '—', fmt(r?.finalTrainLoss ?? null), fmt(r?.eval[0]?.bpb ?? null), r?.message ?? o.status.error ?? ''];
    }),
  });
  return { conclusion, blocks, results: res };
}

export const ablations: Experiment<AblationsConfig> = {
  name: 'ablations',
  title: 'Ablations: LRR, reference projection and λ initialisation, at normal and high learning rates',
  plan,
  sweep: (c) => (c.tuning ? sweepRuns(c, { [c.reference]: models(c)[c.reference] }, c.seqLen) : []),
  tuningNote: (c) => `Only the reference \`${c.reference}\` is tuned, and its rate is the 'normal' rate of every variant: the ablations compare variants at the same rate (a rate of their own would change two things at once), and the 'high' rate stays a fixed multiple (${Object.entries(c.learningRates).filter(([k]) => k !== 'normal').map(([k, v]) => `${k} = ${num(v / (c.learningRates.normal ?? v))} × normal`).join(', ')}) because it exists to provoke instability, not to be good.`,
  async estimate(c, runs, onCalibrate) { await estimateRuns(runs, (d) => d.spec as LmRunSpec, onCalibrate); },
  report,
};
