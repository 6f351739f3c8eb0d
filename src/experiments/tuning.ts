// The learning-rate sweep of an experiment (config `tuning`): its runs (common.ts sweepRuns) train
// each tuned variant at every rate on a seed of their own and evaluate on the validation split;
// here the rate with the lowest validation bits per byte is chosen per variant, and the sweep is
// reported (a figure of validation bpb against the rate, and the chosen rates). The main grid then
// trains every seed at its variant's chosen rate and reports on the test split.
import { fmt, num, type Block } from './report.ts';
import { lineChartSvg } from './figures.ts';
import type { LmRunResult } from './lm.ts';
import type { RunOutcome } from './runner.ts';
import type { TunedRates } from './common.ts';

export interface SweepPoint { lr: number; status: 'completed' | 'diverged' | 'failed' | 'pending'; bpb: number | null }

export interface TuningResult {
  seed: number;
  seqLen: number | null;
  /** Per variant: every rate tried, the chosen rate, and whether it lies at an end of the grid. */
  variants: { variant: string; points: SweepPoint[]; chosen: number | null; atEdge: boolean }[];
  rates: TunedRates;
}

interface SweepLabels { variant: string; lr: number; seed: number }

/**
 * The chosen rate per variant: the lowest validation bpb among its completed sweep runs. A variant
 * with no completed sweep run gets no rate (the caller decides: an error, or the config's rate).
 */
export function chooseRates(outcomes: readonly (RunOutcome<unknown> | null)[], defs: readonly { labels: Record<string, string | number>; spec: unknown }[]): TuningResult {
  const byVariant = new Map<string, SweepPoint[]>();
  let seed = 0, seqLen: number | null = null;
  defs.forEach((d, i) => {
    const l = d.labels as unknown as SweepLabels;
    seed = l.seed;
    seqLen = (d.spec as { seqLen?: number }).seqLen ?? null;
    const o = outcomes[i];
    const r = (o?.result ?? null) as LmRunResult | null;
    const bpb = r?.status === 'completed' ? r.eval[0]?.bpb ?? null : null;
    const status: SweepPoint['status'] = !o ? 'pending' : !r ? 'failed' : r.status;
    if (!byVariant.has(l.variant)) byVariant.set(l.variant, []);
    byVariant.get(l.variant)!.push({ lr: l.lr, status, bpb: bpb !== null && Number.isFinite(bpb) ? bpb : null });
  });
  const variants: TuningResult['variants'] = [];
  const rates: TunedRates = {};
  for (const [variant, pts] of byVariant) {
    pts.sort((a, b) => a.lr - b.lr);
    const ok = pts.filter((p) => p.bpb !== null);
    const best = ok.length ? ok.reduce((a, b) => (b.bpb! < a.bpb! ? b : a)) : null;
    if (best) rates[variant] = best.lr;
    variants.push({ variant, points: pts, chosen: best?.lr ?? null, atEdge: best !== null && pts.length > 1 && (best.lr === pts[0].lr || best.lr === pts[pts.length - 1].lr) });
  }
  return { seed, seqLen, variants, rates };
}

/** The report's section on the sweep: what was tried, the figure, and the chosen rate per variant. */
export async function tuningBlocks(t: TuningResult, note: string): Promise<Block[]> {
  const edge = t.variants.filter((v) => v.atEdge).map((v) => `\`${v.variant}\``);
  const blocks: Block[] = [
    { kind: 'heading', text: 'Learning-rate tuning' },
    {
      kind: 'paragraph',
      text: `Each tuned variant was trained at every peak learning rate of the sweep on seed ${t.seed} (not one of the main seeds)${t.seqLen ? ` at length ${t.seqLen}` : ''}, with the main runs' token budget and schedule, and evaluated on the validation split; the rate with the lowest validation bits per byte was then used for every seed of the main grid, whose numbers come from the test split. ${note}${edge.length ? ` The chosen rate lies at an end of the sweep for ${edge.join(', ')}: a better rate may lie outside the grid.` : ''}`,
    },
    {
      kind: 'figure', name: 'lr-sweep', caption: 'Validation bits per byte against the peak learning rate (tuning seed, one run per point; diverged runs are missing).',
      svg: await lineChartSvg({ title: 'learning-rate sweep', xTitle: 'peak learning rate', yTitle: 'validation bits per byte', xScale: 'log10', points: t.variants.flatMap((v) => v.points.filter((p) => p.bpb !== null).map((p) => ({ x: p.lr, y: p.bpb!, series: v.variant }))) }),
    },
    {
      kind: 'table', caption: 'Validation bits per byte of each sweep run, and the rate each variant got.',
      columns: ['variant', ...(t.variants[0]?.points.map((p) => `lr ${num(p.lr)}`) ?? []), 'chosen'],
      rows: t.variants.map((v) => [`\`${v.variant}\``, ...v.points.map((p) => (p.bpb !== null ? fmt(p.bpb) : p.status)), v.chosen === null ? 'none (no completed run)' : num(v.chosen)]),
    },
  ];
  return blocks;
}
