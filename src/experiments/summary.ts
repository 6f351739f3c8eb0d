// The README's "Results" section, generated from committed reports' results.json: one paragraph
// per claim of the paper (the three experiments), each with its status at the scale it ran at,
// the numbers behind it and a link to its report. `cubit experiment summary` prints it or writes
// it between the markers <!-- results:start --> and <!-- results:end --> of a Markdown file.
import * as path from 'node:path';
import { writeFileAtomicSync } from '../util/atomic.ts';
import { readJsonFileSync, readTextFileSync } from '../util/files.ts';
import { fmtCount, fmtInterval, num } from './report.ts';
import type { Interval, LinearFit } from './stats.ts';

export const RESULTS_START = '<!-- results:start -->';
export const RESULTS_END = '<!-- results:end -->';

interface ReportJson {
  experiment: string;
  preset: string;
  config: Record<string, unknown>;
  seeds: number[];
  finished: string;
  environment: { cpuModel: string; cpus: number; commit: string | null };
  results: Record<string, unknown>;
}

const iv = (i: Interval | null | undefined, digits = 3): string => (i ? fmtInterval(i.mean, i.lo, i.hi, digits) : '—');
const slope = (t: LinearFit | null | undefined): string => (t ? (t.slopeLo === null ? num(t.slope) : fmtInterval(t.slope, t.slopeLo, t.slopeHi, 3)) : '—');
const status = (v: string | undefined): string => (v === 'supported' ? '*supported*' : v === 'contradicted' ? '*contradicted*' : v === 'not tested' || !v ? 'not tested' : '*not resolved*');

function scaleOf(c: Record<string, unknown>): string {
  const m = c.model as { dModel?: number; nLayers?: number };
  const data = c.data as { corpus?: string; tokenizer?: string };
  return `${m.nLayers}-layer, ${m.dModel}-wide ${data.tokenizer === 'byte' ? 'byte-level ' : ''}models on ${data.corpus}, ${fmtCount(c.tokensPerRun as number)} training tokens per run`;
}

function tunedText(r: Record<string, unknown>): string {
  const t = r.tuning as { rates: Record<string, number>; variants: { variant: string; atEdge: boolean }[] } | null;
  if (!t) return 'one learning rate for every variant (not tuned)';
  const edge = t.variants.filter((v) => v.atEdge).map((v) => v.variant);
  return `learning rates tuned per variant on validation data (${Object.entries(t.rates).map(([v, lr]) => `${v} ${num(lr)}`).join(', ')}${edge.length ? `; at the edge of the sweep for ${edge.join(', ')}` : ''})`;
}

function lengthScaling(j: ReportJson, link: string): string {
  const r = j.results as { baseline: string; candidate: string; verdict: string; trend: LinearFit | null; cells: { trainLength: number; multiplier: number; gain: Interval | null; seeds: number[] }[]; matched?: { baseline: string; verdict: string; trend: LinearFit | null; cells: { trainLength: number; multiplier: number; gain: Interval | null }[] } | null; runs: { variant: string; parameters: number | null }[] };
  const at1 = r.cells.filter((x) => x.multiplier === 1);
  const params = (v: string) => r.runs.find((x) => x.variant === v && x.parameters)?.parameters ?? '?';
  const seeds = Math.min(...at1.map((x) => x.seeds.length));
  let s = `**Claim: Cubit's advantage over the Transformer grows with the training length. Status: ${status(r.verdict)} at this scale.** ${scaleOf(j.config)}, ${seeds} seeds per cell, ${tunedText(j.results)}. Gain = bpb(${r.baseline}) − bpb(${r.candidate}) at the training length, paired by seed (95% CI): ${at1.map((x) => `${x.trainLength}: ${iv(x.gain)}`).join('; ')}; change per doubling of the length ${slope(r.trend)} bpb.`;
  if (r.matched) {
    const m1 = r.matched.cells.filter((x) => x.multiplier === 1);
    s += ` Against a Transformer with Cubit's parameter count (${r.matched.baseline}, ${params(r.matched.baseline)} vs ${params(r.candidate)} parameters): ${m1.map((x) => `${x.trainLength}: ${iv(x.gain)}`).join('; ')}; per doubling ${slope(r.matched.trend)} (${status(r.matched.verdict)}).`;
  }
  return `${s} [Report](${link}).`;
}

function noise(j: ReportJson, link: string): string {
  const r = j.results as { verdicts: { noise: string; boundary: string; lm: string; lmMatched?: string }; robustnessGain: { fraction: number; gain: Interval | null; seeds: number[] }[]; matchedGain?: { baseline: string; gains: { fraction: number; gain: Interval | null }[] } | null };
  const reg = (j.config as { regression: { points: number; tasks: number; seeds: number[] } }).regression;
  const lm = (j.config as { lm?: Record<string, unknown> }).lm;
  const top = r.robustnessGain.filter((g) => g.gain).at(-1);
  const topM = r.matchedGain?.gains.filter((g) => g.gain).at(-1);
  let s = `**Claim: Cubit is more robust to noise and to boundary effects. Status: noise ${status(r.verdicts.noise)}, boundary ${status(r.verdicts.boundary)} (the mixers as in-context regression estimators); corrupted context ${status(r.verdicts.lm)} (trained language models), at this scale.** Regression: ${reg.points} noisy points per task, ${reg.tasks} test tasks × ${reg.seeds.length} seeds per cell, Cubit against softmax attention (Nadaraya–Watson) with hyperparameters tuned per cell.`;
  if (lm && top) s += ` Language models: ${scaleOf(lm)} at length ${lm.seqLen}, ${top.seeds.length} seeds, ${tunedText(j.results)}; the extra bpb lost with ${Math.round(100 * top.fraction)}% of the context bytes corrupted, Transformer − Cubit (positive: Cubit degrades less): ${iv(top.gain)}${topM && r.matchedGain ? `; against the parameter-matched ${r.matchedGain.baseline}: ${iv(topM.gain)} (${status(r.verdicts.lmMatched)})` : ''}.`;
  return `${s} [Report](${link}).`;
}

function ablations(j: ReportJson, link: string): string {
  const r = j.results as { reference: string; verdict: { lrr: string }; cells: { variant: string; lr: string; lrValue: number; runs: number; diverged: number; spiky: number; vsReference: Interval | null }[] };
  const high = r.cells.reduce((a, b) => (b.lrValue > a.lrValue ? b : a), r.cells[0]);
  const atHigh = r.cells.filter((x) => x.lr === high.lr);
  const normal = r.cells.filter((x) => x.lr !== high.lr && x.vsReference);
  return `**Claim: LRR makes training stable. Status: ${status(r.verdict.lrr)} at this scale.** ${scaleOf(j.config)}, ${j.seeds.length} seeds, ${tunedText(j.results)}. At the high rate (${num(high.lrValue)}): ${atHigh.map((x) => `${x.variant} ${x.diverged}/${x.runs} diverged, ${x.spiky}/${x.runs} with loss spikes`).join('; ')}. The other ablations (bpb − \`${r.reference}\` at the normal rate, paired by seed): ${normal.map((x) => `${x.variant} ${iv(x.vsReference)}`).join('; ')}. [Report](${link}).`;
}

const WRITERS: Record<string, (j: ReportJson, link: string) => string> = { 'length-scaling': lengthScaling, noise, ablations };

/** The Results section (Markdown) from results.json files; links are relative to `linkBase`. */
export function resultsSection(files: string[], linkBase: string): string {
  const paras: string[] = [];
  for (const f of files) {
    let j: ReportJson;
    try { j = readJsonFileSync<ReportJson>(f); } catch (e) { throw new Error(`summary: ${(e as Error).message}`); }
    const w = WRITERS[j?.experiment];
    if (!w || !j.results || !j.config) throw new Error(`summary: ${f}: not the results.json of a cubit experiment`);
    const link = path.relative(linkBase, path.join(path.dirname(f), 'report.md')).split(path.sep).join('/');
    paras.push(`${w(j, link)} (Preset \`${j.preset}\`, ${j.finished.slice(0, 10)}, commit ${j.environment.commit ?? 'unknown'}.)`);
  }
  return [
    'Each paragraph is generated from a committed report (`cubit experiment summary`); "at this scale" means',
    'what it says: small byte-level models trained for minutes on a CPU, near 2.5–3 bits per byte, not',
    'the paper\'s scale. A claim is *supported* or *contradicted* only when the 95% intervals decide it.',
    '',
    ...paras.flatMap((p) => [p, '']),
  ].join('\n').trimEnd();
}

/** Replaces the text between the results markers of a Markdown file (atomically). */
export function writeResultsSection(markdownFile: string, section: string): void {
  const text = readTextFileSync(markdownFile);
  const a = text.indexOf(RESULTS_START), b = text.indexOf(RESULTS_END);
  if (a < 0 || b < a) throw new Error(`summary: ${markdownFile} has no ${RESULTS_START} … ${RESULTS_END} markers`);
  writeFileAtomicSync(markdownFile, `${text.slice(0, a + RESULTS_START.length)}\n${section}\n${text.slice(b)}`);
}
