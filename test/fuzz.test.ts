// The seeded fuzz suite of issue 15: over 10,000 cases over safetensors files, model and training
// configs, run pointers, checkpoint config/state/weight/optimizer files, model folders (export,
// import), planted links, tokenizer files, corpora and command lines. Most run in-process in two child processes
// (test/fuzz-runner.ts, one per core), watched from here; a minority are whole CLI runs in their
// own processes. What every case must satisfy:
//   - the outcome is success or one non-empty line of error (a CLI exits 0, 1 or 2, and with a
//     non-zero code prints exactly one line `cubit: error: …`); never a crash, a signal, a V8
//     abort or a raw TypeError/RangeError;
//   - no hang: a case that runs over CASE_SECONDS (10 s) fails it;
//   - no allocation beyond the cap: each process's peak resident memory stays under RSS_CAP_MIB;
//   - no write outside the run folder and no change to any input file (see fuzz-runner.ts).
// The seed is fixed (CUBIT_FUZZ_SEED overrides it, to explore): a failure reproduces exactly.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { Rng } from '../src/index.ts';
import { readSafetensorsSync, writeSafetensorsSync } from '../src/io/safetensors.ts';
import { resolveCheckpoint } from '../src/train/checkpoint.ts';
import { perturbedModel, saveRun } from './inference-fixtures.ts';
import { tmpDir } from './train-fixtures.ts';

const SEED = Number(process.env.CUBIT_FUZZ_SEED ?? 15);
const CASE_SECONDS = 10;
/** Peak resident memory allowed to any fuzzed process (node itself takes ~100 MiB). */
const RSS_CAP_MIB = 1024;
const root = tmpDir('fuzz');
const here = import.meta.dirname;

interface GroupResult { cases: number; succeeded: number; maxRssMiB: number; fails: unknown[]; stalled: string | null }

/** Runs one fuzz-runner group in a child, killing it when it stays silent for CASE_SECONDS. */
function runGroup(group: string, seed: number): Promise<GroupResult> {
  const sandbox = path.join(root, group);
  fs.mkdirSync(sandbox, { recursive: true });
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'fuzz-runner.ts'), group, String(seed), sandbox], { stdio: ['ignore', 'pipe', 'pipe'] });
  const r: GroupResult = { cases: 0, succeeded: 0, maxRssMiB: NaN, fails: [], stalled: null };
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  let last = 'start';
  // Start-up and the runs group's tiny training take a few seconds before the first case.
  let timer = setTimeout(() => { r.stalled = `no progress for ${3 * CASE_SECONDS} s at start-up`; child.kill('SIGKILL'); }, 3 * CASE_SECONDS * 1000);
  const rl = createInterface({ input: child.stdout });
  rl.on('line', (line) => {
    clearTimeout(timer);
    timer = setTimeout(() => { r.stalled = `no progress for ${CASE_SECONDS} s after case ${last}: a hang`; child.kill('SIGKILL'); }, CASE_SECONDS * 1000);
    const o = JSON.parse(line) as { beat?: number; fail?: unknown; done?: string; cases?: number; succeeded?: number; maxRssMiB?: number };
    if (o.beat !== undefined) last = String(o.beat);
    if (o.fail) r.fails.push(o.fail);
    if (o.done) Object.assign(r, { cases: o.cases, succeeded: o.succeeded, maxRssMiB: o.maxRssMiB });
  });
  return new Promise((resolve) => child.on('close', (code, signal) => {
    clearTimeout(timer);
    if (code !== 0 && !r.stalled) r.fails.push({ group, problem: `the runner exited with ${code ?? signal}: ${stderr.slice(-2000)}` });
    resolve(r);
  }));
}

interface CliRun { code: number | null; signal: string | null; stderr: string; stdout: string; seconds: number; maxRssMiB: number | null }

/** `cubit <args>` in its own process, with its peak memory (a preloaded module writes it at exit). */
function cliProcess(args: string[], rssFile: string, preload: string): Promise<CliRun> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--import', preload, path.join(here, '..', 'bin', 'cubit.mjs'), ...args], {
      env: { ...process.env, NODE_NO_WARNINGS: '1', CUBIT_FUZZ_RSS_FILE: rssFile }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), (CASE_SECONDS + 5) * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const rss = fs.existsSync(rssFile) ? Number(fs.readFileSync(rssFile, 'utf8')) : null;
      resolve({ code, signal, stdout, stderr, seconds: (performance.now() - t0) / 1000, maxRssMiB: rss });
    });
  });
}

/** The CLI minority: the issue's own command-line failures, then seeded random command lines, on damaged run folders. */
async function cliSubprocessCases(): Promise<{ cases: number; fails: string[] }> {
  const dir = path.join(root, 'cli');
  fs.mkdirSync(dir, { recursive: true });
  const preload = path.join(dir, 'rss.mjs');
  fs.writeFileSync(preload, "import fs from 'node:fs';\nprocess.on('exit', () => { fs.writeFileSync(process.env.CUBIT_FUZZ_RSS_FILE, String(process.resourceUsage().maxRSS / 1024)); });\n");
  const model = perturbedModel({ vocabSize: 256, dModel: 16, nLayers: 1, nHeads: 2, ffnHidden: 32, mixer: 'cubit' });
  const good = await saveRun(path.join(dir, 'good'), model, { seqLen: 16 });
  model.dispose();
  const variant = (name: string, damage: (ck: string) => void): string => {
    const out = path.join(dir, name);
    fs.cpSync(good, out, { recursive: true });
    damage(resolveCheckpoint(out));
    return out;
  };
  const sized = (field: string, value: number) => variant(`${field}-${value}`, (ck) => {
    const f = path.join(ck, 'config.json');
    const c = JSON.parse(fs.readFileSync(f, 'utf8'));
    c.model[field] = value;
    fs.writeFileSync(f, JSON.stringify(c));
  });
  const nan = variant('nan', (ck) => {
    const f = path.join(ck, 'model.safetensors');
    const c = readSafetensorsSync(f);
    (c.tensors.get('embed.weight')!.data as Float32Array)[0] = NaN;
    writeSafetensorsSync(f, c.tensors, c.metadata, { durable: false });
  });
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const cases: string[][] = [
    ['info', sized('dModel', 8192)], ['info', sized('dModel', 32768)], ['eval', sized('dModel', 32768), '--context', '8'],
    ['generate', sized('nLayers', 1e9), '--prompt', 'a'], ['info', sized('vocabSize', 1e9)], ['info', nan], ['eval', nan, '--context', '8'],
    ['generate', good, '--prompt-file', fifo], ['eval', good, '--corpus', fifo], ['eval', good, '--context', '100000', '--corpus', path.join(dir, 'good', 'latest.json')],
    ['generate', good, '--prompt', 'x', '--max-new-tokens', '1e300'], ['train', '--config', fifo, '--out', path.join(dir, 'never')],
  ];
  const rng = new Rng(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)];
  const values = ['0', '1', '-1', '1.5', '', 'abc', '1e300', '100000', fifo, '/nonexistent', good];
  for (let k = 0; k < 12; k++) {
    const cmd = pick(['info', 'eval', 'generate', 'train', 'bench', 'experiment', 'nope']);
    const args = [cmd, pick([good, nan, fifo, '/nonexistent', '--bogus'])];
    for (const o of ['--context', '--stride', '--prompt', '--max-new-tokens', '--temperature', '--top-p', '--config', '--steps', '--backend', '--threads']) {
      if (rng.next() < 0.25) args.push(o, pick(values));
    }
    if (cmd === 'train') args.push('--out', path.join(dir, `train-${k}`), '--stop-at', '1');
    if (cmd === 'generate') args.push('--max-new-tokens', '4');
    cases.push(args);
  }
  const fails: string[] = [];
  let next = 0;
  const worker = async (w: number): Promise<void> => {
    while (next < cases.length) {
      const args = cases[next++];
      const r = await cliProcess(args, path.join(dir, `rss-${w}`), preload);
      fs.rmSync(path.join(dir, `rss-${w}`), { force: true });
      const label = `cubit ${args.join(' ')}`;
      if (r.signal) fails.push(`${label}: killed by ${r.signal}${r.seconds > CASE_SECONDS ? ' (a hang)' : ''}`);
      else if (r.code !== 0 && r.code !== 1 && r.code !== 2) fails.push(`${label}: exit ${r.code}: ${r.stderr.slice(0, 300)}`);
      else if (r.code !== 0 && !/^cubit: error: [^\n]+\n$/.test(r.stderr)) fails.push(`${label}: exit ${r.code} without a one-line message: ${JSON.stringify(r.stderr.slice(0, 300))}`);
      else if (r.seconds > CASE_SECONDS) fails.push(`${label}: took ${r.seconds.toFixed(1)} s`);
      else if (r.maxRssMiB === null || r.maxRssMiB > RSS_CAP_MIB) fails.push(`${label}: peak memory ${r.maxRssMiB} MiB (cap ${RSS_CAP_MIB})`);
    }
  };
  await Promise.all([worker(0), worker(1)]);
  return { cases: cases.length, fails };
}

test(`fuzz (seed ${SEED}): ≥ 10,000 cases, each a success or one line of error, no hang, no memory beyond ${RSS_CAP_MIB} MiB, no write outside the run, no input changed`, async () => {
  const [formats, runs] = await Promise.all([runGroup('formats', SEED), runGroup('runs', SEED + 1)]);
  const cli = await cliSubprocessCases();
  for (const [name, g] of [['formats', formats], ['runs', runs]] as const) {
    assert.equal(g.stalled, null, `${name}: ${g.stalled}`);
    assert.deepEqual(g.fails, [], `${name}: failing cases`);
    assert.ok(g.maxRssMiB < RSS_CAP_MIB, `${name}: peak memory ${g.maxRssMiB} MiB`);
    // Both outcomes occur (the mutations are neither all harmless nor all fatal).
    assert.ok(g.succeeded > g.cases / 20 && g.succeeded < g.cases, `${name}: ${g.succeeded} of ${g.cases} succeeded`);
  }
  assert.deepEqual(cli.fails, [], 'CLI processes');
  const total = formats.cases + runs.cases + cli.cases;
  assert.ok(total >= 10_000, `${total} cases`);
  assert.ok(cli.cases >= 20 && cli.cases < total / 10, 'a minority of the cases are whole CLI processes');
});
