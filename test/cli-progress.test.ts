// Progress off a terminal: one plain line each time the count passes a multiple of `every` (never
// the same one twice, however often the count repeats), one counter and one ETA per line; and the
// experiment printer that `cubit demo` and `cubit experiment` use, fed the events of a demo-sized run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import '../src/index.ts';
import { ExperimentPrinter } from '../src/cli/experiment-printer.ts';
import { Progress } from '../src/cli/progress.ts';
import type { ExperimentEvent } from '../src/experiments/index.ts';

function sink(): { stream: NodeJS.WritableStream; lines: () => string[]; text: () => string } {
  const chunks: string[] = [];
  const stream = { write: (s: string) => { chunks.push(s); return true; } } as unknown as NodeJS.WritableStream;
  return { stream, text: () => chunks.join(''), lines: () => chunks.join('').split('\n').filter(Boolean) };
}

test('plain progress: a repeated or skipped count prints once per multiple of every, and the total once', () => {
  const out = sink();
  const p = new Progress({ total: 30, stream: out.stream, tty: false, every: 10 });
  for (const i of [0, 0, 5, 10, 10, 10, 12, 25, 25, 30, 30]) p.update(i);
  assert.deepEqual(out.lines().map((l) => l.replace(/ (· )?ETA \S+/, '')), ['step 10/30 (33%)', 'step 25/30 (83%)', 'step 30/30 (100%)']);
});

test('plain progress of a resumed run starts at the next multiple of every', () => {
  const out = sink();
  const p = new Progress({ total: 300, stream: out.stream, tty: false, every: 10 });
  for (let i = 201; i <= 215; i++) p.update(i);
  assert.deepEqual(out.lines().map((l) => l.split(' ')[1]), ['210/300']);
});

test("plain progress without its own counter, with the caller's ETA and no closing line", () => {
  const out = sink();
  const p = new Progress({ total: 100, stream: out.stream, tty: false, every: 50, unit: '[1/2] run:', count: false, finalLine: false });
  p.update(10, [['step 10/100', '']], 65);
  p.update(50, [['step 50/100', '']], 65);
  p.update(80, [['step 80/100', '']], null);
  p.update(100, [['eval', '']], 0);
  assert.deepEqual(out.lines(), ['[1/2] run: step 50/100 · ETA 1m05s']);
});

/** The events of `cubit demo`: 2 runs of 250 training steps, then 2 evaluations each (as src/experiments/lm.ts reports them). */
function demoEvents(): ExperimentEvent[] {
  const ev: ExperimentEvent[] = [
    { kind: 'config', resolved: { preset: 'demo', file: 'experiments/length-scaling.json' }, runs: 2, out: 'runs/demo' } as unknown as ExperimentEvent,
    { kind: 'plan', total: 2, finished: 0, toRun: 2, estimateSeconds: 0, jobs: 1 },
  ];
  for (const [i, id] of [[1, 'transformer-T128-seed0'], [2, 'cubit-T128-seed0']] as const) {
    ev.push({ kind: 'run-start', index: i, total: 2, id, resuming: false, estimate: null });
    for (let s = 1; s <= 250; s++) {
      ev.push({ kind: 'run-progress', id, fraction: 0.85 * (s / 250), detail: `step ${s}/250 · loss 2.500 · 30000 tok/s`, etaSeconds: 60 - s / 10 });
    }
    for (const [f, L] of [[0.925, 128], [1, 512]]) ev.push({ kind: 'run-progress', id, fraction: f, detail: `eval at ${L}: 3.300 bpb`, etaSeconds: 1 });
    ev.push({ kind: 'run-end', id, status: 'done', seconds: 25 });
  }
  ev.push({ kind: 'report', files: { html: 'runs/demo/report.html', markdown: 'runs/demo/report.md', results: 'runs/demo/results.json' } } as unknown as ExperimentEvent);
  return ev;
}

test('the demo off a terminal: 9 progress lines in all, none twice, one counter and one ETA each', () => {
  const out = sink();
  const printer = new ExperimentPrinter('length-scaling', { stream: out.stream, tty: false, report: false });
  for (const e of demoEvents()) printer.onEvent(e);
  const lines = out.lines();
  assert.equal(lines.length, 9, lines.join('\n'));
  assert.match(lines[0], /^experiment length-scaling, preset demo .* into runs\/demo, backend \w+; plan: 2 runs, 0 finished on disk, 2 to run$/);
  assert.deepEqual(lines.slice(1, 5).map((l) => l.replace(/ · loss.*· ETA \S+$/, '')), [
    '[1/2] transformer-T128-seed0: step 74/250', '[1/2] transformer-T128-seed0: step 148/250', '[1/2] transformer-T128-seed0: step 221/250',
    '[1/2] transformer-T128-seed0: done in 25s',
  ]);
  assert.equal(new Set(lines).size, lines.length);
  for (const l of lines.filter((x) => x.includes('step'))) {
    assert.equal(l.match(/ETA/g)?.length, 1, l);
    assert.equal(l.replace(/^\[\d\/2\] /, '').match(/\d+\/\d+|%/g)?.length, 1, `one counter besides the run's index: ${l}`);
  }
  assert.ok(!out.text().includes('\r'));
});

test('on a terminal the experiment printer redraws one bar per run', () => {
  const out = sink();
  const printer = new ExperimentPrinter('length-scaling', { stream: Object.assign(out.stream, { columns: 120 }), tty: true });
  for (const e of demoEvents()) printer.onEvent(e);
  const text = out.text();
  assert.match(text, /\[1\/2\] transformer-T128-seed0\n\r\x1b\[2K\[░+\] step 1\/250 · loss 2\.500 · 30000 tok\/s · ETA 1m00s\r/);
  assert.match(text, /\r\x1b\[2K\[█+\] eval at 512: 3\.300 bpb\n/);
  assert.match(text, /\[1\/2\] transformer-T128-seed0: done in 25s\n/);
  assert.match(text, /report: runs\/demo\/report\.html \(and runs\/demo\/report\.md, runs\/demo\/results\.json\)\n$/);
});
