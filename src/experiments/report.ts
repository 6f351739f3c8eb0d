// Experiment reports: one structured document rendered three ways: report.md (figures linked as
// figures/<name>.svg), report.html (self-contained: CSS and SVGs inline, viewable offline) and
// results.json (every number, the resolved configuration, seeds, software and machine).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getBackend } from '../core/engine.ts';
import { writeFileAtomicSync, writeJsonAtomicSync } from '../util/atomic.ts';

/** A piece of a report. Text may use `code` spans; everything else is escaped. */
export type Block =
  | { kind: 'heading'; text: string; level?: 2 | 3 }
  | { kind: 'paragraph'; text: string }
  | { kind: 'list'; items: string[] }
  | { kind: 'table'; columns: string[]; rows: (string | number | null)[][]; caption?: string }
  | { kind: 'figure'; name: string; svg: string; caption: string }
  | { kind: 'code'; text: string };

/** Where and with what an experiment ran. */
export interface Environment {
  cubit: string;
  /** Git commit of the source tree, when it is a git checkout (with '-dirty' for local changes). */
  commit: string | null;
  node: string;
  platform: string;
  cpuModel: string;
  /** Logical CPUs the OS reports, and those this process may use. */
  cpus: number;
  availableParallelism: number;
  memoryGiB: number;
  backend: string;
  /** Native backend: kernel threads and instruction set. */
  threads: number | null;
  isa: string | null;
}

export interface RunStatus {
  id: string;
  status: 'done' | 'skipped' | 'failed';
  /** Seconds the run took (this invocation), or that it took when it was done before. */
  seconds: number | null;
  error?: string;
}

export interface ReportInput {
  experiment: string;
  preset: string;
  title: string;
  /** The one-paragraph conclusion computed from the numbers. */
  conclusion: string;
  blocks: Block[];
  /** The resolved configuration (preset applied). */
  config: unknown;
  seeds: number[];
  environment: Environment;
  runs: RunStatus[];
  /** Wall-clock span of this invocation. */
  started: string;
  finished: string;
  /** Every number behind the report (experiment-specific). */
  results: unknown;
}

let commitCache: string | null | undefined;

/** The source tree's git commit (short), '-dirty' when it has uncommitted changes; null outside git. */
export function sourceCommit(): string | null {
  if (commitCache !== undefined) return commitCache;
  const root = path.dirname(path.dirname(path.dirname(fileURLToPath(import.meta.url))));
  const git = (args: string[]) => spawnSync('git', args, { cwd: root, encoding: 'utf8', timeout: 5000 });
  const head = git(['rev-parse', '--short=12', 'HEAD']);
  if (head.status !== 0 || !head.stdout.trim()) return (commitCache = null);
  const dirty = git(['status', '--porcelain', '--untracked-files=no']);
  commitCache = head.stdout.trim() + (dirty.status === 0 && dirty.stdout.trim() ? '-dirty' : '');
  return commitCache;
}

export function describeEnvironment(cubitVersion: string): Environment {
  const b = getBackend() as unknown as { name: string; threads?: () => number; addon?: { isa?: () => string } };
  const cpus = os.cpus();
  let threads: number | null = null, isa: string | null = null;
  try { if (typeof b.threads === 'function') threads = b.threads(); } catch { /* not a native backend */ }
  try { if (b.addon && typeof b.addon.isa === 'function') isa = String(b.addon.isa()); } catch { /* idem */ }
  return {
    cubit: cubitVersion,
    commit: sourceCommit(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpuModel: cpuModelName(cpus[0]?.model ?? 'unknown'),
    cpus: cpus.length,
    availableParallelism: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    backend: b.name,
    threads,
    isa,
  };
}

/** os.cpus() may give a short name ('AMD EPYC'); /proc/cpuinfo sometimes has more. */
function cpuModelName(fallback: string): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m && m[1].trim().length > fallback.length) return m[1].trim();
  } catch { /* not Linux */ }
  return fallback;
}

// ---- formatting helpers ----

/** A number with `digits` decimals; '—' for null / non-finite. */
export function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return x === Infinity ? '∞' : x === -Infinity ? '−∞' : '—';
  const s = x.toFixed(digits);
  return s.startsWith('-') ? '−' + s.slice(1) : s;
}

/** 'm [lo, hi]', or 'm' alone when there is no interval. */
export function fmtInterval(m: number, lo: number | null, hi: number | null, digits = 3): string {
  return lo === null || hi === null ? fmt(m, digits) : `${fmt(m, digits)} [${fmt(lo, digits)}, ${fmt(hi, digits)}]`;
}

/** A config value as written: no float noise (0.00030000000000000003 → 0.0003). */
export function num(x: number): string {
  return String(Number(x.toPrecision(6)));
}

/** 1048576 → '1.05M', 65536 → '65.5k'. */
export function fmtCount(x: number): string {
  const a = Math.abs(x);
  if (a >= 1e9) return `${Number((x / 1e9).toPrecision(3))}G`;
  if (a >= 1e6) return `${Number((x / 1e6).toPrecision(3))}M`;
  if (a >= 1e3) return `${Number((x / 1e3).toPrecision(3))}k`;
  return num(x);
}

export function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return '—';
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// ---- rendering ----

const escapeHtml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Escapes, then turns `code` spans into <code>. */
function inlineHtml(s: string): string {
  return escapeHtml(s).replace(/`([^`]+)`/g, '<code>$1</code>');
}

const mdCell = (v: string | number | null): string => String(v ?? '—').replace(/\|/g, '\\|').replace(/\n/g, ' ');

function environmentRows(e: Environment): [string, string][] {
  return [
    ['cubit', `${e.cubit}${e.commit ? ` (${e.commit})` : ''}`],
    ['Node', e.node],
    ['backend', `${e.backend}${e.threads !== null ? `, ${e.threads} threads` : ''}${e.isa ? `, ${e.isa}` : ''}`],
    ['machine', `${e.cpuModel}, ${e.cpus} logical CPUs (${e.availableParallelism} usable), ${e.memoryGiB} GiB, ${e.platform}`],
  ];
}

function runRows(runs: RunStatus[]): string[][] {
  return runs.map((r) => [r.id, r.status, r.seconds === null ? '—' : fmtSeconds(r.seconds), r.error ?? '']);
}

function summaryOfRuns(runs: RunStatus[]): string {
  const done = runs.filter((r) => r.status === 'done').length, skipped = runs.filter((r) => r.status === 'skipped').length;
  const failed = runs.filter((r) => r.status === 'failed').length;
  return `${runs.length} runs: ${done} run now, ${skipped} found finished on disk, ${failed} failed.`;
}

export function renderMarkdown(r: ReportInput): string {
  const out: string[] = [`# ${r.title}`, '', `Experiment \`${r.experiment}\`, preset \`${r.preset}\`; ${r.started} → ${r.finished}.`, '', '## Conclusion', '', r.conclusion, ''];
  for (const b of r.blocks) {
    switch (b.kind) {
      case 'heading': out.push(`${'#'.repeat(b.level ?? 2)} ${b.text}`, ''); break;
      case 'paragraph': out.push(b.text, ''); break;
      case 'list': out.push(...b.items.map((i) => `- ${i}`), ''); break;
      case 'table':
        if (b.caption) out.push(`*${b.caption}*`, '');
        out.push(`| ${b.columns.map(mdCell).join(' | ')} |`, `| ${b.columns.map(() => '---').join(' | ')} |`);
        for (const row of b.rows) out.push(`| ${row.map(mdCell).join(' | ')} |`);
        out.push('');
        break;
      case 'figure': out.push(`![${b.caption}](figures/${b.name}.svg)`, '', `*${b.caption}*`, ''); break;
      case 'code': out.push('```', b.text, '```', ''); break;
    }
  }
  out.push('## Software and machine', '', '| | |', '| --- | --- |', ...environmentRows(r.environment).map(([k, v]) => `| ${k} | ${mdCell(v)} |`), '');
  out.push(`Seeds: ${r.seeds.join(', ')}.`, '');
  out.push('## Run log', '', summaryOfRuns(r.runs), '', '| run | status | time | note |', '| --- | --- | --- | --- |', ...runRows(r.runs).map((row) => `| ${row.map(mdCell).join(' | ')} |`), '');
  out.push('## Configuration', '', 'The resolved configuration (preset applied); `results.json` holds it with every number.', '', '```json', JSON.stringify(r.config, null, 2), '```', '');
  return out.join('\n');
}

const CSS = `
body{font:15px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;max-width:980px;margin:2em auto;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}h3{font-size:1.05em}
.meta{color:#666}.conclusion{background:#f5f8ff;border-left:4px solid #4c78a8;padding:.6em 1em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}caption{caption-side:top;text-align:left;color:#555;font-style:italic}
figure{margin:1.2em 0}figcaption{color:#555;font-size:.92em}figure svg{max-width:100%;height:auto}
code{background:#f3f3f3;padding:0 .2em;border-radius:3px}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
`;

const looksNumeric = (v: string | number | null): boolean => typeof v === 'number' || (typeof v === 'string' && /^[−\-+]?[\d.]+( \[.*\])?%?$/.test(v));

function htmlTable(columns: string[], rows: (string | number | null)[][], caption?: string): string {
  const head = `<tr>${columns.map((c) => `<th>${inlineHtml(c)}</th>`).join('')}</tr>`;
  const body = rows.map((row) => `<tr>${row.map((v) => `<td${looksNumeric(v) ? ' class="num"' : ''}>${inlineHtml(String(v ?? '—'))}</td>`).join('')}</tr>`).join('\n');
  return `<table>${caption ? `<caption>${inlineHtml(caption)}</caption>` : ''}\n${head}\n${body}\n</table>`;
}

/** The SVG without an XML prolog, so it can sit inside HTML. */
function inlineSvg(svg: string): string {
  return svg.replace(/^<\?xml[^>]*>\s*/, '');
}

export function renderHtml(r: ReportInput): string {
  const parts: string[] = [
    '<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
    `<title>${escapeHtml(r.title)}</title>`, `<style>${CSS}</style>`, '</head><body>',
    `<h1>${escapeHtml(r.title)}</h1>`,
    `<p class="meta">Experiment <code>${escapeHtml(r.experiment)}</code>, preset <code>${escapeHtml(r.preset)}</code>; ${escapeHtml(r.started)} → ${escapeHtml(r.finished)}.</p>`,
    '<h2>Conclusion</h2>', `<p class="conclusion">${inlineHtml(r.conclusion)}</p>`,
  ];
  for (const b of r.blocks) {
    switch (b.kind) {
      case 'heading': { const l = b.level ?? 2; parts.push(`<h${l}>${inlineHtml(b.text)}</h${l}>`); break; }
      case 'paragraph': parts.push(`<p>${inlineHtml(b.text)}</p>`); break;
      case 'list': parts.push(`<ul>${b.items.map((i) => `<li>${inlineHtml(i)}</li>`).join('')}</ul>`); break;
      case 'table': parts.push(htmlTable(b.columns, b.rows, b.caption)); break;
      case 'figure': parts.push(`<figure>${inlineSvg(b.svg)}<figcaption>${inlineHtml(b.caption)}</figcaption></figure>`); break;
      case 'code': parts.push(`<pre>${escapeHtml(b.text)}</pre>`); break;
    }
  }
  parts.push('<h2>Software and machine</h2>', htmlTable(['', ''], environmentRows(r.environment)), `<p>Seeds: ${r.seeds.join(', ')}.</p>`);
  parts.push('<h2>Run log</h2>', `<p>${escapeHtml(summaryOfRuns(r.runs))}</p>`, htmlTable(['run', 'status', 'time', 'note'], runRows(r.runs)));
  parts.push('<h2>Configuration</h2>', '<p>The resolved configuration (preset applied); <code>results.json</code> holds it with every number.</p>', `<pre>${escapeHtml(JSON.stringify(r.config, null, 2))}</pre>`);
  parts.push('</body></html>', '');
  return parts.join('\n');
}

export interface WrittenReport {
  dir: string;
  markdown: string;
  html: string;
  results: string;
  figures: string[];
}

/** Writes report.md, report.html, results.json and figures/*.svg into `dir` (each atomically). */
export function writeReport(dir: string, r: ReportInput): WrittenReport {
  const figDir = path.join(dir, 'figures');
  fs.mkdirSync(figDir, { recursive: true });
  const figures: string[] = [];
  for (const b of r.blocks) {
    if (b.kind !== 'figure') continue;
    if (!/^[\w.-]+$/.test(b.name)) throw new Error(`report: figure name '${b.name}' must be letters, digits, '.', '-' or '_'`);
    const f = path.join(figDir, `${b.name}.svg`);
    writeFileAtomicSync(f, b.svg, { durable: false });
    figures.push(f);
  }
  const md = path.join(dir, 'report.md'), html = path.join(dir, 'report.html'), json = path.join(dir, 'results.json');
  writeFileAtomicSync(md, renderMarkdown(r), { durable: false });
  writeFileAtomicSync(html, renderHtml(r), { durable: false });
  const { blocks: _blocks, ...rest } = r;
  writeJsonAtomicSync(json, { ...rest, figures: r.blocks.filter((b) => b.kind === 'figure').map((b) => ({ name: (b as { name: string }).name, caption: (b as { caption: string }).caption, file: `figures/${(b as { name: string }).name}.svg` })) }, { durable: false });
  return { dir, markdown: md, html, results: json, figures };
}
