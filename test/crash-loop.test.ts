// The crash loop of issue 15: `cubit train` is SIGKILLed at many points — at every stage of every
// checkpoint save (CUBIT_TEST_CRASH hooks in checkpoint.ts), right after randomly chosen optimizer
// steps, and at seeded random times while it runs — some trials twice in a row, and each run is
// then finished by resuming (or, killed before its first checkpoint, by starting again in the
// same folder, as a user would). Every trial must end byte-identical to one uninterrupted run:
// the same weights and optimizer moments bit for bit, the same state.json (wall time aside), the
// same metrics.jsonl records (times aside), only the final checkpoint left and no temporaries.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { getBackend, Rng } from '../src/index.ts';
import { CHECKPOINT_FILES, checkpointName, readRunPointer, RUN_FILES, train, type TrainSummary } from '../src/train/index.ts';
import { assertSameCheckpoint, metricsWithoutTimes, tinyConfig, tmpDir, writeCorpus } from './train-fixtures.ts';

const SEED = Number(process.env.CUBIT_CRASH_SEED ?? 15);
const root = tmpDir('crash-loop');
const corpus = writeCorpus(path.join(root, 'corpus'), 12, 150);
const STEPS = 12;
/** Twelve steps, a checkpoint every three (saves at 3, 6, 9 and 12), evaluation every four. */
const config = tinyConfig(corpus, { steps: STEPS, checkpointEvery: 3, evalEvery: 4, logEvery: 1 });
const configFile = path.join(root, 'run.json');
fs.writeFileSync(configFile, JSON.stringify(config));
const BIN = path.join(import.meta.dirname, '..', 'bin', 'cubit.mjs');

type Kill = { hook: string } | { afterMs: number };

/**
 * One `cubit train` sitting in a child (new, or resumed when the folder has a pointer), killed as
 * `kill` says: by a hook, or by SIGKILL `afterMs` after it reports its start. Resolves with how it ended.
 */
function sitting(out: string, kill: Kill): Promise<{ signal: string | null; code: number | null; stderr: string }> {
  const args = readRunPointer(out) ? ['train', '--resume', '--out', out] : ['train', '--config', configFile, '--out', out];
  const env = { ...process.env, ...('hook' in kill ? { CUBIT_TEST_CRASH: kill.hook } : {}) };
  const child = spawn(process.execPath, [BIN, ...args, '--backend', getBackend().name], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '', stdout = '';
  let timer: NodeJS.Timeout | null = null;
  // The first progress line ("new run in …" / "resuming …", on either stream) comes once the run
  // is built and about to step: the timer starts there.
  const watch = (): void => {
    if ('afterMs' in kill && timer === null && /(^|\n)(new run in |resuming )/.test(stdout + '\n' + stderr)) {
      timer = setTimeout(() => child.kill('SIGKILL'), kill.afterMs);
    }
  };
  child.stderr.on('data', (d) => { stderr += d; watch(); });
  child.stdout.on('data', (d) => { stdout += d; watch(); });
  return new Promise((resolve) => child.on('close', (code, signal) => { if (timer) clearTimeout(timer); resolve({ signal, code, stderr }); }));
}

function stateWithoutTime(ck: string): Record<string, unknown> {
  const s = JSON.parse(fs.readFileSync(path.join(ck, CHECKPOINT_FILES.state), 'utf8'));
  delete s.elapsedSeconds;
  return s;
}

test(`crash loop (seed ${SEED}): SIGKILL at every checkpoint stage, after random steps and at random times; every resume ends byte-identical`, async () => {
  const rng = new Rng(SEED);
  const trials: Kill[][] = [];
  // Every stage of every save (the fourth is the final one, at step 12).
  for (const point of ['checkpoint-files', 'checkpoint-pointer', 'checkpoint-cleanup']) {
    for (let n = 1; n <= 4; n++) trials.push([{ hook: `${point}@${n}` }]);
  }
  // Right after a random optimizer step (between the update and its metrics record).
  for (let k = 0; k < 8; k++) trials.push([{ hook: `train-step@${1 + rng.int(STEPS)}` }]);
  // At random moments of the sitting (training, evaluation, saving, or before the first step).
  for (let k = 0; k < 10; k++) trials.push([{ afterMs: Math.floor(rng.next() * 700) }]);
  // Killed, then killed again while resuming.
  for (let k = 0; k < 6; k++) trials.push([{ hook: `train-step@${1 + rng.int(6)}` }, rng.next() < 0.5 ? { afterMs: Math.floor(rng.next() * 500) } : { hook: `checkpoint-pointer@1` }]);
  assert.ok(trials.length >= 30);

  const straight: TrainSummary = await train({ config, out: path.join(root, 'straight'), durable: false });
  const failures: string[] = [];
  let killed = 0, next = 0;
  const runTrial = async (i: number): Promise<void> => {
    let out = path.join(root, `trial-${i}`);
    for (let kill of trials[i]) {
      for (let attempt = 0; ; attempt++) {
        const r = await sitting(out, kill);
        if (r.signal === 'SIGKILL') { killed++; break; }
        if (r.code !== 0) { failures.push(`trial ${i} ${JSON.stringify(kill)}: exit ${r.code}: ${r.stderr.trim()}`); return; }
        // A timer that came after the sitting ended: try again sooner, in a fresh folder (a hook always fires).
        if (!('afterMs' in kill) || attempt === 4) { failures.push(`trial ${i} ${JSON.stringify(kill)}: the sitting was never killed`); return; }
        kill = { afterMs: Math.floor(kill.afterMs / 3) };
        out = path.join(root, `trial-${i}-${attempt + 1}`);
      }
    }
    // Finish the run here: resume it, or start it again when no checkpoint was reached.
    const s = readRunPointer(out) ? await train({ out, resume: true, durable: false }) : await train({ config, configSource: configFile, out, durable: false });
    try {
      assert.equal(s.step, STEPS);
      assertSameCheckpoint(straight.checkpoint!, s.checkpoint!);
      assert.deepEqual(stateWithoutTime(s.checkpoint!), stateWithoutTime(straight.checkpoint!));
      assert.deepEqual(metricsWithoutTimes(out), metricsWithoutTimes(straight.out));
      assert.deepEqual(fs.readdirSync(path.join(out, RUN_FILES.checkpoints)), [checkpointName(STEPS)], 'only the final checkpoint is left');
      assert.deepEqual(fs.readdirSync(out).sort(), [RUN_FILES.checkpoints, RUN_FILES.pointer, RUN_FILES.metrics].sort(), 'no temporaries are left');
    } catch (e) {
      failures.push(`trial ${i} ${JSON.stringify(trials[i])}: ${(e as Error).message.split('\n')[0]}`);
    }
  };
  // Two trials at a time (most of a child's time is starting up).
  await Promise.all([0, 1].map(async () => { while (next < trials.length) await runTrial(next++); }));
  assert.deepEqual(failures, []);
  assert.ok(killed >= 30, `${killed} sittings were SIGKILLed`);
});
