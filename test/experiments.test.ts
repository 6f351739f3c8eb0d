// Experiments: statistics against known values (and the coverage of their intervals), the grid
// runner's skip / resume / stale / failure behaviour, configs and presets, the in-context
// regression estimators, corruption and spike detection, and each experiment end to end at its
// `test` preset, and every experiment's `smoke` preset end to end (about a minute each on 2 cores;
// CUBIT_TEST_SKIP_SMOKE=1 skips them for a quick local run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpDir } from './helpers.ts';
import { Rng } from '../src/index.ts';
import os from 'node:os';
import { gzipSync } from 'node:zlib';
import { packExperiment, unpackExperiment } from '../src/experiments/pack.ts';
import {
  InterruptedError, linearFit, lockOutput, meanInterval, pairedInterval, runExperiment, runGrid, tCdf, tQuantile, welchInterval,
  type ExperimentEvent, type RunDef,
} from '../src/experiments/index.ts';
import { deepMerge, EXPERIMENT_NAMES, presetNames, resolveConfig } from '../src/experiments/config.ts';
import { corruptTokens, lossSpikes, trainConfigOf, type LmRunSpec } from '../src/experiments/lm.ts';
import { train } from '../src/train/trainer.ts';
import { predict, sampleTasks, taskErrors } from '../src/experiments/regression.ts';
import type { TokenStream } from '../src/data/batches.ts';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const tmp = (): string => tmpDir('exp');
const close = (a: number, b: number, tol: number, what: string): void => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b} (tolerance ${tol})`);

// ---- statistics ----

test('tQuantile matches the t table (two-sided 95% and 90%) and inverts tCdf', () => {
  // Student's t table: t_{0.975, df} and t_{0.95, df}.
  const t975: [number, number][] = [[1, 12.7062047], [2, 4.3026527], [3, 3.1824463], [4, 2.7764451], [5, 2.5705818], [10, 2.2281389], [30, 2.0422725], [100, 1.9839715]];
  for (const [df, t] of t975) close(tQuantile(0.975, df), t, 5e-7, `t_{0.975,${df}}`);
  const t95: [number, number][] = [[1, 6.3137515], [2, 2.9199856], [5, 2.0150484], [20, 1.7247182]];
  for (const [df, t] of t95) close(tQuantile(0.95, df), t, 5e-7, `t_{0.95,${df}}`);
  close(tQuantile(0.025, 4), -2.7764451, 5e-7, 'lower tail');
  for (const df of [1, 3.5, 17]) for (const p of [0.6, 0.9, 0.999]) close(tCdf(tQuantile(p, df), df), p, 1e-10, `tCdf(tQuantile(${p}, ${df}))`);
  // Large df tends to the normal quantile.
  close(tQuantile(0.975, 1e6), 1.959966, 1e-5, 'normal limit');
  assert.throws(() => tQuantile(1, 3), /p must lie in \(0, 1\)/);
});

test('meanInterval, pairedInterval, welchInterval and linearFit against hand-computed values', () => {
  const m = meanInterval([1, 2, 3]);
  assert.equal(m.mean, 2); assert.equal(m.sd, 1); assert.equal(m.df, 2);
  close(m.lo!, 2 - 4.3026527 / Math.sqrt(3), 1e-6, 'lo'); close(m.hi!, 2 + 4.3026527 / Math.sqrt(3), 1e-6, 'hi');
  const one = meanInterval([5]);
  assert.equal(one.lo, null); assert.equal(one.halfWidth, null);
  assert.throws(() => meanInterval([1, NaN]), /finite/);
  // Paired: the interval of the differences (here 1, 1, 2, 0 → mean 1, sd √(2/3)).
  const p = pairedInterval([3, 4, 6, 2], [2, 3, 4, 2]);
  close(p.mean, 1, 1e-12, 'paired mean');
  close(p.halfWidth!, 3.1824463 * Math.sqrt(2 / 3) / 2, 1e-6, 'paired half width');
  assert.throws(() => pairedInterval([1, 2], [1]), /cannot be paired/);
  // Welch (R: t.test(c(1,2,3,4), c(2,4,6)) gives df 3.2347, CI −5.5423 … 2.5423).
  const w = welchInterval([1, 2, 3, 4], [2, 4, 6]);
  close(w.mean, -1.5, 1e-12, 'welch mean'); close(w.df!, 3.2347, 1e-4, 'welch df');
  close(w.lo!, -5.5423, 1e-4, 'welch lo'); close(w.hi!, 2.5423, 1e-4, 'welch hi');
  // OLS: an exact line has a zero-width slope interval; a noisy one matches the textbook formula.
  const exact = linearFit([1, 2, 3, 4], [3, 5, 7, 9]);
  close(exact.slope, 2, 1e-12, 'slope'); close(exact.intercept, 1, 1e-12, 'intercept'); close(exact.slopeHi! - exact.slopeLo!, 0, 1e-9, 'width');
  const x = [1, 2, 3, 4, 5], y = [2.1, 3.9, 6.2, 7.8, 10.1];
  const f = linearFit(x, y);
  close(f.slope, 1.99, 1e-12, 'slope');
  const res = y.map((v, i) => v - f.intercept - f.slope * x[i]);
  const se = Math.sqrt(res.reduce((s, r) => s + r * r, 0) / 3 / 10); // Sxx = 10
  close(f.slopeHi! - f.slope, 3.1824463 * se, 1e-6, 'slope half width');
});

test('95% t intervals cover the true mean about 95% of the time at n = 3 (a z interval would not)', () => {
  const rng = new Rng(12345);
  const trials = 4000;
  let covered = 0, zCovered = 0;
  for (let t = 0; t < trials; t++) {
    const xs = [0, 1, 2].map(() => 10 + 2 * rng.normal());
    const i = meanInterval(xs);
    if (i.lo! <= 10 && 10 <= i.hi!) covered++;
    const zHalf = (1.959964 * i.sd!) / Math.sqrt(3);
    if (Math.abs(i.mean - 10) <= zHalf) zCovered++;
  }
  const rate = covered / trials;
  assert.ok(Math.abs(rate - 0.95) < 0.015, `t coverage ${rate}`);
  assert.ok(zCovered / trials < 0.85, `a z interval covers only ~80% at n = 3, got ${zCovered / trials}`);
});

// ---- runner ----

function fakeRuns(log: string[], specVersion = 1, failing = new Set<string>()): RunDef<{ value: number }>[] {
  return ['a', 'b', 'c'].map((id, k) => ({
    id, labels: { k }, seed: k, spec: { id, specVersion },
    execute: (ctx) => {
      log.push(`${id}${ctx.resuming ? ' (resuming)' : ''}`);
      fs.writeFileSync(path.join(ctx.dir, 'work.txt'), 'x');
      if (failing.has(id)) throw new Error(`run ${id} broke`);
      ctx.progress(1, 'done');
      return { value: k * 10 };
    },
  }));
}

test('runGrid runs each run in its own folder and skips finished runs on the next invocation', async () => {
  const out = tmp();
  const log: string[] = [];
  const first = await runGrid(out, fakeRuns(log));
  assert.deepEqual(log, ['a', 'b', 'c']);
  assert.deepEqual(first.map((o) => o.status.status), ['done', 'done', 'done']);
  for (const id of ['a', 'b', 'c']) {
    const r = JSON.parse(fs.readFileSync(path.join(out, id, 'result.json'), 'utf8'));
    assert.equal(r.id, id);
    assert.ok(fs.existsSync(path.join(out, id, 'run.json')));
  }
  const events: string[] = [];
  const second = await runGrid(out, fakeRuns(log), { onEvent: (e) => { if (e.kind === 'plan') events.push(`${e.finished}/${e.total}`); } });
  assert.deepEqual(log, ['a', 'b', 'c'], 'nothing runs again');
  assert.deepEqual(events, ['3/3']);
  assert.deepEqual(second.map((o) => [o.status.status, o.result?.value]), [['skipped', 0], ['skipped', 10], ['skipped', 20]]);
});

test('runGrid resumes a half-finished run, retries a failed one, and sets aside a run whose spec changed', async () => {
  const out = tmp();
  const log: string[] = [];
  // An interrupted earlier attempt of b: run.json written (same spec), no result.
  const r1 = await runGrid(out, fakeRuns(log, 1, new Set(['b'])));
  assert.deepEqual(r1.map((o) => o.status.status), ['done', 'failed', 'done']);
  assert.match(r1[1].status.error!, /run b broke/);
  assert.ok(fs.existsSync(path.join(out, 'b', 'error.json')));
  log.length = 0;
  const r2 = await runGrid(out, fakeRuns(log));
  assert.deepEqual(log, ['b (resuming)'], 'only the failed run runs again, told that its folder holds an attempt');
  assert.deepEqual(r2.map((o) => o.status.status), ['skipped', 'done', 'skipped']);
  assert.ok(!fs.existsSync(path.join(out, 'b', 'error.json')));
  // Editing the config (spec version 2) makes every run stale: old folders move to .stale/.
  log.length = 0;
  const r3 = await runGrid(out, fakeRuns(log, 2));
  assert.deepEqual(log, ['a', 'b', 'c']);
  assert.deepEqual(r3.map((o) => o.status.status), ['done', 'done', 'done']);
  assert.equal(fs.readdirSync(path.join(out, '.stale')).length, 3);
});

test('runGrid keeps a run folder when only the part of the spec its work does not depend on changed', async () => {
  const out = tmp();
  const log: string[] = [];
  const defs = (evalLengths: number[], lr: number): RunDef<number>[] => [{
    id: 'r', labels: {}, seed: 0, spec: { lr, evalLengths }, workSpec: { lr },
    execute: (ctx) => {
      const f = path.join(ctx.dir, 'trained.txt');
      log.push(`${ctx.resuming ? 'resume' : 'fresh'}:${fs.existsSync(f) ? 'kept' : 'none'}`);
      fs.writeFileSync(f, 'weights');
      return evalLengths.length;
    },
  }];
  await runGrid(out, defs([64], 1));
  const again = await runGrid(out, defs([64, 128], 1));
  assert.equal(again[0].result, 2);
  await runGrid(out, defs([64, 128], 2));
  assert.deepEqual(log, ['fresh:none', 'resume:kept', 'fresh:none']);
  assert.equal(fs.readdirSync(path.join(out, '.stale')).length, 1);
});

test('runGrid stops between runs when aborted, keeping finished runs', async () => {
  const out = tmp();
  const ctl = new AbortController();
  const log: string[] = [];
  const runs = fakeRuns(log);
  const orig = runs[0].execute;
  runs[0].execute = (ctx) => { const r = orig(ctx); ctl.abort(); return r; };
  await assert.rejects(runGrid(out, runs, { signal: ctl.signal }), InterruptedError);
  assert.deepEqual(log, ['a']);
  assert.ok(!fs.existsSync(path.join(out, 'a', 'result.json')), 'a run interrupted at its end is not marked finished');
  await assert.rejects(runGrid(out, fakeRuns([]), { signal: AbortSignal.abort() }), InterruptedError);
  assert.throws(() => { throw new InterruptedError(1, 3); }, /run the same command again/);
  await assert.rejects(runGrid(out, [...fakeRuns([]), ...fakeRuns([])]), /appears twice/);
});

// ---- configs ----

test('every shipped preset of every experiment resolves; presets, overrides and null removal apply', () => {
  for (const name of EXPERIMENT_NAMES) {
    const presets = presetNames(name);
    for (const p of ['smoke', 'cpu', 'gpu', 'paper', 'test']) assert.ok(presets.includes(p), `${name} has preset ${p}`);
    for (const p of presets) resolveConfig(name, { preset: p });
  }
  const c = resolveConfig('length-scaling', { preset: 'smoke', overrides: ['optimizer.lr=0.01', 'seeds=[4]', 'data.corpus=my.txt'] }).config as { optimizer: { lr: number; warmupSteps: number }; seeds: number[]; data: { corpus: string } };
  assert.equal(c.optimizer.lr, 0.01);
  assert.equal(c.optimizer.warmupSteps, 4, 'the preset value survives an override of a sibling');
  assert.deepEqual(c.seeds, [4]);
  assert.equal(c.data.corpus, 'my.txt');
  assert.throws(() => resolveConfig('length-scaling', { preset: 'smoke', overrides: ['optimiser.lr=1'] }), /unknown field 'optimiser'/);
  assert.throws(() => resolveConfig('length-scaling', { preset: 'nope' }), /no preset 'nope'/);
  assert.throws(() => resolveConfig('noise', { preset: 'smoke', overrides: ['regression.families=["cubic"]'] }), /regression\.families\.0/);
  assert.deepEqual(deepMerge({ v: { a: {}, b: { x: 1 } }, n: 1 }, { v: { a: null, b: { y: 2 } } }), { v: { b: { x: 1, y: 2 } }, n: 1 });
  const abl = resolveConfig('ablations', { preset: 'test' }).config as { variants: Record<string, unknown> };
  assert.deepEqual(Object.keys(abl.variants), ['lrr-on', 'lrr-off']);
});

// ---- in-context regression ----

const taskOpts = { points: 48, interiorQueries: 6, interior: [0.2, 0.8] as [number, number], edgeDistances: [0, 0.1], tasks: 16, seed: 3 };

test('regression: local linear is exact on noise-free lines, NW is biased at the edge, Cubit → NW as λ grows', () => {
  const lines = sampleTasks({ ...taskOpts, family: 'linear', noise: 0 });
  const ll = taskErrors(lines, predict(lines, 'local_linear', { h: 0.1, ridge: 1e-9 }));
  assert.ok(ll.interiorMse < 1e-12 && Math.max(...ll.edgeMse) < 1e-12, `local linear on lines: ${ll.interiorMse}, ${ll.edgeMse}`);
  const nw = taskErrors(lines, predict(lines, 'softmax', { h: 0.1 }));
  assert.ok(nw.edgeMse[0] > 10 * nw.interiorMse, `NW's boundary bias: edge ${nw.edgeMse[0]} vs interior ${nw.interiorMse}`);
  const sine = sampleTasks({ ...taskOpts, family: 'sine', noise: 0.3 });
  const a = predict(sine, 'softmax', { h: 0.08 }), b = predict(sine, 'cubit', { h: 0.08, lambda: 1e7 });
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  assert.ok(maxDiff < 1e-5, `Cubit with λ = 1e7 vs NW: ${maxDiff}`);
  // A small λ differs from NW (the solve does something).
  const c = predict(sine, 'cubit', { h: 0.08, lambda: 1e-2 });
  assert.ok(a.some((v, i) => Math.abs(v - c[i]) > 1e-3));
});

// ---- corruption, spikes ----

test('corruptTokens: the requested fraction, always a different byte, deterministic, printable when asked', () => {
  const n = 20000;
  const tokens = new Int32Array(n).map((_, i) => 97 + (i % 26));
  const stream: TokenStream = { tokens, offsets: Int32Array.from([0, n]), ids: ['d'], scoredBytes: Float64Array.from([n - 1]), vocabSize: 256 };
  const c = corruptTokens(stream, 0.2, 'printable', 7);
  let changed = 0;
  for (let i = 0; i < n; i++) {
    if (c[i] !== tokens[i]) { changed++; assert.ok(c[i] >= 32 && c[i] <= 126, `printable: ${c[i]}`); }
  }
  close(changed / n, 0.2, 0.015, 'fraction corrupted');
  assert.deepEqual(corruptTokens(stream, 0.2, 'printable', 7), c);
  assert.notDeepEqual(corruptTokens(stream, 0.2, 'printable', 8), c);
  assert.deepEqual(corruptTokens(stream, 0, 'uniform', 7), tokens);
  const u = corruptTokens(stream, 0.5, 'uniform', 1);
  for (let i = 0; i < n; i++) if (u[i] !== tokens[i]) assert.ok(u[i] >= 0 && u[i] < 256);
  assert.ok(tokens.every((t, i) => t === stream.tokens[i]), 'the stream itself is untouched');
});

test('lossSpikes counts excursions above the running median once each', () => {
  const curve: [number, number | null, number | null][] = [];
  for (let s = 1; s <= 100; s++) {
    let loss = 3 - s / 100;
    if (s === 40 || s === 41) loss += 1; // one event over two steps
    if (s === 70) loss += 0.5;
    if (s === 80) loss += 0.1; // below the threshold
    curve.push([s, s === 90 ? null : loss, 1]);
  }
  const r = lossSpikes(curve, 20, 0.3);
  assert.equal(r.count, 2);
  assert.deepEqual(r.steps, [40, 70]);
  close(r.maxExcess, 3.6 - 2.705, 1e-9, 'max excess: step 40 over the median of steps 20…39');
});

// ---- end to end ----

function checkReport(out: string, name: string, preset: string): Record<string, unknown> {
  for (const f of ['report.html', 'report.md', 'results.json']) assert.ok(fs.statSync(path.join(out, f)).size > 0, `${name}: ${f}`);
  const results = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
  assert.equal(results.experiment, name);
  assert.equal(results.preset, preset);
  assert.ok(typeof results.conclusion === 'string' && results.conclusion.length > 40);
  for (const k of ['cubit', 'node', 'backend', 'cpuModel', 'cpus']) assert.ok(results.environment[k] !== undefined, `environment.${k}`);
  assert.ok(Array.isArray(results.seeds) && results.seeds.length > 0);
  assert.ok(results.config && typeof results.config === 'object');
  assert.ok(results.runs.every((r: { status: string }) => r.status !== 'failed'), `${name}: failed runs ${JSON.stringify(results.runs.filter((r: { status: string }) => r.status === 'failed'))}`);
  const figures = fs.readdirSync(path.join(out, 'figures'));
  assert.ok(figures.length >= 2, `${name}: figures ${figures}`);
  assert.deepEqual(results.figures.map((f: { file: string }) => path.basename(f.file)).sort(), figures.sort());
  for (const f of figures) {
    const svg = fs.readFileSync(path.join(out, 'figures', f), 'utf8');
    assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(svg.trimEnd(), /<\/svg>$/);
    assert.match(svg, /<path|<line/, `${f} draws something`);
  }
  const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
  assert.match(html, /^<!DOCTYPE html>/);
  assert.equal((html.match(/<svg/g) ?? []).length, figures.length, 'every figure inline');
  // Self-contained: no scripts, stylesheets, images or links to fetch.
  assert.doesNotMatch(html, /<script|<link |<img |src="http|href="http|@import/);
  const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
  for (const f of figures) assert.ok(md.includes(`figures/${f}`), `report.md links ${f}`);
  assert.match(md, /## Conclusion/);
  assert.match(md, /## Software and machine/);
  return results;
}

test('cubit experiment length-scaling --preset test from the CLI: report, figures, and a second run skips every run', () => {
  const out = path.join(tmp(), 'ls');
  const cli = (): ReturnType<typeof spawnSync> => spawnSync(process.execPath, [path.join(root, 'bin/cubit.mjs'), 'experiment', 'length-scaling', '--preset', 'test', '--out', out], { encoding: 'utf8', cwd: root, timeout: 240_000 });
  const r = cli();
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  // Progress on stderr, one line per quarter of a run off a terminal; the conclusion on stdout.
  const err = String(r.stderr);
  assert.match(err, /^experiment length-scaling, preset test .*; learning-rate sweep: 6 runs\nplan: 6 runs, 0 finished on disk, 6 to run; estimated/);
  assert.match(err, /\ngrid: 12 runs; learning rates from the sweep: transformer [\d.]+, (transformer-matched|cubit) [\d.]+/);
  assert.match(err, /\nplan: 12 runs, 0 finished on disk, 12 to run/);
  assert.match(err, /\nreport: .*report\.html \(and .*report\.md, .*results\.json\)\n/);
  assert.match(err, /\n\[1\/6\] tune-transformer-lr[\d.]+: step \d\/4 · loss \d\.\d+ · \d+ tok\/s · ETA \d+s\n/);
  const lines = err.trimEnd().split('\n');
  assert.equal(new Set(lines).size, lines.length, 'no line twice');
  assert.ok(lines.every((l) => (l.match(/ETA/g) ?? []).length <= 1), 'one ETA per line');
  assert.ok(!err.includes('\r'), 'no bar redraws off a TTY');
  assert.match(String(r.stdout), /cubit .* transformer/);
  const results = checkReport(out, 'length-scaling', 'test').results as Record<string, unknown>;
  const cells = (results as { cells: { trainLength: number; multiplier: number; gain: { n: number } | null }[] }).cells;
  assert.deepEqual(cells.map((c) => [c.trainLength, c.multiplier]), [[16, 1], [16, 2], [32, 1], [32, 2]]);
  assert.ok(cells.every((c) => c.gain && c.gain.n === 2), 'paired gains over the 2 seeds');
  // The sweep: every variant at both rates on the tuning seed, at the lower middle length (16), evaluated on validation.
  const tuning = (results as { tuning: { seed: number; seqLen: number; rates: Record<string, number>; variants: { variant: string; points: { lr: number; bpb: number | null }[]; chosen: number }[] } }).tuning;
  assert.equal(tuning.seed, 100);
  assert.equal(tuning.seqLen, 16);
  assert.deepEqual(Object.keys(tuning.rates).sort(), ['cubit', 'transformer', 'transformer-matched']);
  for (const v of tuning.variants) {
    const best = v.points.reduce((a, b) => (b.bpb! < a.bpb! ? b : a));
    assert.equal(v.chosen, best.lr, `${v.variant}: the rate with the lowest validation bpb`);
    const spec = JSON.parse(fs.readFileSync(path.join(out, `${v.variant}-T32-seed1`, 'run.json'), 'utf8')).spec as LmRunSpec;
    assert.equal(spec.optimizer.lr, v.chosen, 'the grid trains at the chosen rate');
    assert.equal(spec.eval.split, 'test');
    const sweepSpec = JSON.parse(fs.readFileSync(path.join(out, `tune-${v.variant}-lr0.005`, 'run.json'), 'utf8')).spec as LmRunSpec;
    assert.equal(sweepSpec.eval.split, 'validation');
    assert.equal(sweepSpec.seed, 100);
  }
  // The matched baseline has Cubit's parameter count (to within one SwiGLU unit: 3 · dModel · layers).
  const runsP = (results as { runs: { variant: string; parameters: number }[] }).runs;
  const params = (v: string) => runsP.find((x) => x.variant === v)!.parameters;
  assert.ok(Math.abs(params('transformer-matched') - params('cubit')) <= 3 * 16, `${params('transformer-matched')} vs ${params('cubit')}`);
  assert.ok(params('transformer') < params('cubit') - 3 * 16);
  assert.ok(fs.existsSync(path.join(out, 'figures', 'lr-sweep.svg')) && fs.existsSync(path.join(out, 'figures', 'loss-curves.svg')));
  assert.ok(['supported', 'contradicted', 'not resolved'].includes((results as { verdict: string }).verdict));
  const again = cli();
  assert.equal(again.status, 0, String(again.stderr));
  assert.match(String(again.stderr), /plan: 12 runs, 12 finished on disk, 0 to run/);
  // The README section generated from it names the verdict and links the report.
  const summary = spawnSync(process.execPath, [path.join(root, 'bin/cubit.mjs'), 'experiment', 'summary', path.join(out, 'results.json')], { encoding: 'utf8', cwd: root, timeout: 60_000 });
  assert.equal(summary.status, 0, summary.stderr);
  assert.match(summary.stdout, /grows with the training length\. Status: \*(supported|contradicted|not resolved)\* at this scale/);
  assert.match(summary.stdout, /parameter count \(transformer-matched/);
  assert.ok(summary.stdout.includes(`](${path.relative(root, path.join(out, 'report.md'))})`), summary.stdout);
});

test('--jobs 2 gives the results of a serial run; a run stopped part-way, packed and unpacked elsewhere resumes to the same result', async () => {
  const serial = path.join(tmp(), 'serial'), parallel = path.join(tmp(), 'parallel'), moved = path.join(tmp(), 'moved');
  await runExperiment('ablations', { preset: 'test', out: serial, estimate: false });
  // Stop the parallel run as soon as a main-grid run has trained a step (the sweep is done by then).
  const ctl = new AbortController();
  await assert.rejects(runExperiment('ablations', {
    preset: 'test', out: parallel, estimate: false, jobs: 2, worker: { threads: 1 }, signal: ctl.signal,
    onEvent: (e) => { if (e.kind === 'run-progress' && !e.id.startsWith('tune-') && e.fraction > 0.3) ctl.abort(); },
  }), InterruptedError);
  const unfinished = fs.readdirSync(parallel).filter((d) => fs.existsSync(path.join(parallel, d, 'run.json')) && !fs.existsSync(path.join(parallel, d, 'result.json')));
  assert.ok(unfinished.length > 0, 'some run was stopped part-way');
  const parts = packExperiment(parallel, path.join(tmp(), 'packs'), 'abl', { maxPartBytes: 4096 });
  assert.ok(parts.length > 1 && parts.every((p) => fs.statSync(p).size <= 4096), 'parts of at most the size asked for');
  assert.throws(() => unpackExperiment(parts.slice(1), moved), /expected part/);
  assert.throws(() => unpackExperiment(parts.slice(0, -1), moved), /not a complete pack|ends early/);
  unpackExperiment(parts, moved);
  const done = await runExperiment('ablations', { preset: 'test', out: moved, estimate: false, jobs: 2, worker: { threads: 1 } });
  const strip = (dir: string) => Object.fromEntries(fs.readdirSync(dir).filter((d) => fs.existsSync(path.join(dir, d, 'result.json'))).map((d) => {
    const r = JSON.parse(fs.readFileSync(path.join(dir, d, 'result.json'), 'utf8')).result;
    delete r.tokensPerSec;
    return [d, r];
  }));
  assert.equal(done.outcomes.length, 8);
  assert.deepEqual(strip(moved), strip(serial));
});

test('the output lock: a live holder refuses a second experiment; a dead one is taken over', () => {
  const out = tmp();
  const release = lockOutput(out);
  assert.throws(() => lockOutput(out), /in use by another cubit experiment|could not take/);
  release();
  fs.writeFileSync(path.join(out, '.lock'), JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname() }));
  lockOutput(out)();
  assert.ok(!fs.existsSync(path.join(out, '.lock')));
});

test('unpack refuses paths that leave the folder', () => {
  const dir = tmp();
  const evil = Buffer.concat([Buffer.from('cubit-experiment-pack 1\n{"path":"../x","size":1}\nx{"end":true,"files":1}\n')]);
  fs.writeFileSync(path.join(dir, 'p.000'), gzipSync(evil));
  assert.throws(() => unpackExperiment([path.join(dir, 'p.000')], path.join(dir, 'out')), /bad file path "\.\.\/x"/);
  // A link already inside the output folder is not written through.
  const good = Buffer.from('cubit-experiment-pack 1\n{"path":"run/result.json","size":2}\n{}{"end":true,"files":1}\n');
  fs.writeFileSync(path.join(dir, 'q.000'), gzipSync(good));
  const elsewhere = path.join(dir, 'elsewhere');
  fs.mkdirSync(elsewhere);
  fs.mkdirSync(path.join(dir, 'linked'));
  fs.symlinkSync(elsewhere, path.join(dir, 'linked', 'run'));
  assert.throws(() => unpackExperiment([path.join(dir, 'q.000')], path.join(dir, 'linked')), /is a symbolic link/);
  assert.deepEqual(fs.readdirSync(elsewhere), []);
  assert.equal(unpackExperiment([path.join(dir, 'q.000')], path.join(dir, 'plain')), 1);
  // A tiny part that inflates far beyond any real pack is refused, not unpacked into memory.
  const bomb = gzipSync(Buffer.concat([Buffer.from('cubit-experiment-pack 1\n'), Buffer.alloc(64 << 20)]));
  fs.writeFileSync(path.join(dir, 'b.000'), bomb);
  assert.ok(bomb.length < 1 << 20);
  assert.throws(() => unpackExperiment([path.join(dir, 'b.000')], path.join(dir, 'out2')), /not a complete pack/);
});

test('noise and ablations --preset test through the API; a half-finished training run resumes from its checkpoint', async () => {
  for (const name of ['noise', 'ablations'] as const) {
    const out = path.join(tmp(), name);
    const events: ExperimentEvent[] = [];
    const r = await runExperiment(name, { preset: 'test', out, onEvent: (e) => events.push(e) });
    assert.ok(r.report, `${name}: report written`);
    assert.ok(events.some((e) => e.kind === 'run-progress'), `${name}: progress events`);
    const results = checkReport(out, name, 'test').results as Record<string, unknown>;
    if (name === 'noise') {
      const res = results as unknown as { regression: unknown[]; lm: { bpb: unknown }[]; robustnessGain: unknown[]; matchedGain: { baseline: string; gains: { gain: unknown }[] }; tuning: { rates: Record<string, number> } };
      assert.equal(res.regression.length, 2 * 2 * 3, 'families × noise levels × estimators');
      assert.equal(res.lm.length, 2 * 3, 'fractions × variants (with the parameter-matched Transformer)');
      assert.ok(res.lm.every((x) => x.bpb));
      assert.equal(res.matchedGain.baseline, 'transformer-matched');
      assert.ok(res.matchedGain.gains.at(-1)!.gain, 'the degradation is compared with the matched baseline too');
      assert.deepEqual(Object.keys(res.tuning.rates).sort(), ['cubit', 'transformer', 'transformer-matched']);
    } else {
      const res = results as unknown as { cells: { variant: string; lr: string; runs: number }[] };
      assert.deepEqual(res.cells.map((c) => `${c.variant}/${c.lr}/${c.runs}`), ['lrr-on/normal/2', 'lrr-off/normal/2', 'lrr-on/high/2', 'lrr-off/high/2']);
      // Only the reference is tuned; 'high' keeps its ratio (10×) to the tuned 'normal' rate.
      const t = (results as unknown as { tuning: { rates: Record<string, number> } }).tuning;
      assert.deepEqual(Object.keys(t.rates), ['lrr-on']);
      const lrs = Object.fromEntries((res.cells as unknown as { lr: string; lrValue: number }[]).map((c) => [c.lr, c.lrValue]));
      assert.equal(lrs.normal, t.rates['lrr-on']);
      close(lrs.high, 10 * t.rates['lrr-on'], 1e-12, 'high = 10 × normal');
      // Simulate a run killed mid-training: no result, and a training folder stopped at step 2 of 4.
      const dir = path.join(out, 'lrr-off-lr_high-seed1');
      const before = JSON.parse(fs.readFileSync(path.join(dir, 'result.json'), 'utf8')).result;
      const spec = JSON.parse(fs.readFileSync(path.join(dir, 'run.json'), 'utf8')).spec as LmRunSpec;
      fs.rmSync(path.join(dir, 'result.json'));
      fs.rmSync(path.join(dir, 'train'), { recursive: true });
      const partial = await train({ config: trainConfigOf(spec), out: path.join(dir, 'train'), stopAt: 2, durable: false });
      assert.equal(partial.step, 2);
      const log: string[] = [];
      const again = await runExperiment(name, { preset: 'test', out, overrides: [], estimate: false, onEvent: (e) => { if (e.kind === 'run-start') log.push(`${e.id}${e.resuming ? ' resuming' : ''}`); } });
      assert.deepEqual(log, ['lrr-off-lr_high-seed1 resuming']);
      const after = again.outcomes.find((o) => o.def.id === 'lrr-off-lr_high-seed1')!.result as { eval: { bpb: number }[] };
      assert.equal(after.eval[0].bpb, before.eval[0].bpb, 'resuming at step 2 ends with the same model as the uninterrupted run');
    }
  }
});

test('smoke presets run end to end (about a minute each)', { skip: process.env.CUBIT_TEST_SKIP_SMOKE ? 'CUBIT_TEST_SKIP_SMOKE is set' : false }, async () => {
  for (const name of EXPERIMENT_NAMES) {
    const out = path.join(tmp(), `${name}-smoke`);
    const t0 = performance.now();
    await runExperiment(name, { preset: 'smoke', out });
    const seconds = (performance.now() - t0) / 1000;
    checkReport(out, name, 'smoke');
    console.log(`# ${name} smoke: ${seconds.toFixed(0)} s`);
  }
});
