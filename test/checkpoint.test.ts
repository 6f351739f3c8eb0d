// Checkpoints: the run-folder layout, exact round trips, crash safety (a child process SIGKILLed at
// each point of a save, then resumed to the same final weights as an uninterrupted run), and one
// clear error for each corrupt, truncated or mismatched checkpoint.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { getBackend } from '../src/index.ts';
import { HfTokenizer } from '../src/data/tokenizer.ts';
import { readSafetensorsSync } from '../src/io/safetensors.ts';
import { loadModel } from '../src/eval/checkpoint.ts';
import {
  CHECKPOINT_FILE_LIST, CHECKPOINT_FILES, CHECKPOINT_OPTIONAL_FILES, checkpointName, readCheckpointInfo,
  readRunPointer, resolveCheckpoint, RUN_FILES, train, type TrainSummary,
} from '../src/train/index.ts';
import { assertSameCheckpoint, metricsWithoutTimes, tinyBpeJson, tinyConfig, tmpDir, writeCorpus } from './train-fixtures.ts';

const root = tmpDir('checkpoint');
after(() => fs.rmSync(root, { recursive: true, force: true }));
const corpus = writeCorpus(path.join(root, 'corpus'));
let runs = 0;
const runDir = (tag: string): string => path.join(root, `${tag}-${runs++}`);
const BIN = path.join(import.meta.dirname, '..', 'bin', 'cubit.mjs');

/** Six steps, a checkpoint every two: saves at steps 2, 4 and 6. */
const config = tinyConfig(corpus, { steps: 6, checkpointEvery: 2, evalEvery: 3, logEvery: 1, model: { dModel: 16, nLayers: 1, nHeads: 2, ffnHidden: 32, mixer: 'cubit' } });
let straight: TrainSummary | null = null;
async function straightRun(): Promise<TrainSummary> {
  straight ??= await train({ config, out: runDir('straight'), durable: false });
  return straight;
}

test('layout: the pointer, the metrics log and only the latest checkpoint with its four files', async () => {
  const s = await straightRun();
  const out = s.out;
  assert.deepEqual(fs.readdirSync(out).sort(), [RUN_FILES.checkpoints, RUN_FILES.pointer, RUN_FILES.metrics].sort());
  assert.deepEqual(fs.readdirSync(path.join(out, RUN_FILES.checkpoints)), [checkpointName(6)]);
  assert.equal(checkpointName(6), 'step-00000006');
  assert.deepEqual(readRunPointer(out), { format: 'cubit-run', checkpoint: 'checkpoints/step-00000006', step: 6 });
  const dir = resolveCheckpoint(out);
  assert.deepEqual(fs.readdirSync(dir).sort(), [...CHECKPOINT_FILE_LIST].sort());
  assert.equal(resolveCheckpoint(dir), dir, 'a checkpoint folder resolves to itself');
  const info = readCheckpointInfo(dir);
  assert.equal(info.config.format, 'cubit-checkpoint');
  assert.equal(info.config.step, 6);
  assert.deepEqual(info.config.software, { name: 'cubit', version: JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '..', 'package.json'), 'utf8')).version });
  assert.deepEqual(info.config.tokenizer, { kind: 'byte', vocabSize: 256 });
  assert.equal(info.config.model.mixer, 'cubit');
  assert.equal(info.config.training.steps, 6);
  assert.equal((info.config.training as Record<string, unknown>).model, undefined, 'the model config is stored once, under model');
  assert.equal(info.state.step, 6);
  assert.equal(info.state.sampler.cursor, 24);

  // Weights: the model's dotted names, F32, equal to the loaded model's; moments m./v. per parameter.
  const { model } = loadModel(out);
  const weights = readSafetensorsSync(path.join(dir, CHECKPOINT_FILES.model));
  const names = model.namedParameters().map(([n]) => n);
  assert.deepEqual([...weights.tensors.keys()].sort(), [...names].sort());
  for (const [name, p] of model.namedParameters()) {
    const t = weights.tensors.get(name)!;
    assert.equal(t.dtype, 'float32');
    assert.deepEqual(t.shape, [...p.shape]);
    assert.deepEqual(Array.from(t.data), Array.from(p.dataSync()), name);
  }
  model.dispose();
  const opt = readSafetensorsSync(path.join(dir, CHECKPOINT_FILES.optimizer));
  assert.deepEqual(opt.metadata, { format: 'cubit-adamw', step: '6' });
  assert.deepEqual([...opt.tensors.keys()].sort(), names.flatMap((n) => [`m.${n}`, `v.${n}`]).sort());
});

describe('a save killed at any moment leaves the previous checkpoint loadable, and resuming reaches the uninterrupted result', () => {
  // The child is the CLI itself, told by CUBIT_TEST_CRASH to SIGKILL itself during its second save (step 4).
  const cases: [string, number, (out: string) => void][] = [
    ['checkpoint-files', 2, (out) => {
      const debris = fs.readdirSync(path.join(out, RUN_FILES.checkpoints)).filter((n) => n.startsWith('.step-00000004.tmp-'));
      assert.equal(debris.length, 1, 'the half-written temporary folder is there');
      assert.ok(fs.existsSync(path.join(out, RUN_FILES.checkpoints, debris[0], CHECKPOINT_FILES.model)));
      assert.ok(!fs.existsSync(path.join(out, RUN_FILES.checkpoints, debris[0], CHECKPOINT_FILES.optimizer)), 'killed between the two files');
    }],
    ['checkpoint-pointer', 2, (out) => {
      assert.ok(fs.existsSync(path.join(out, RUN_FILES.checkpoints, 'step-00000004', CHECKPOINT_FILES.state)), 'the new folder is complete');
    }],
    ['checkpoint-cleanup', 4, (out) => {
      assert.ok(fs.existsSync(path.join(out, RUN_FILES.checkpoints, 'step-00000002')), 'the old checkpoint is still there');
    }],
  ];
  // The three children run at once (most of their time is starting up).
  let children: Map<string, Promise<{ out: string; status: number | null; signal: string | null; stderr: string }>> | null = null;
  const child = (point: string) => {
    children ??= new Map(cases.map(([p]) => {
      const out = runDir(`crash-${p}`);
      const cfg = path.join(root, `crash-${p}.json`);
      fs.writeFileSync(cfg, JSON.stringify(config));
      const proc = spawn(process.execPath, [BIN, 'train', '--config', cfg, '--out', out, '--backend', getBackend().name, '--quiet'], {
        env: { ...process.env, CUBIT_TEST_CRASH: `${p}@2` }, stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      proc.stderr.on('data', (d) => { stderr += String(d); });
      return [p, new Promise((resolve) => proc.on('close', (status, signal) => resolve({ out, status, signal, stderr })))];
    }));
    return children.get(point)!;
  };
  for (const [point, pointerStep, debris] of cases) {
    test(point, async () => {
      const pending = child(point);
      const want = await straightRun();
      const r = await pending;
      const out = r.out;
      assert.equal(r.signal, 'SIGKILL', `the child was killed (status ${r.status}, stderr ${r.stderr})`);
      assert.equal(readRunPointer(out)!.step, pointerStep);
      debris(out);
      const ck = readCheckpointInfo(resolveCheckpoint(out));
      assert.equal(ck.state.step, pointerStep);
      const { model } = loadModel(out);
      model.dispose();

      const s = await train({ out, resume: true, durable: false });
      assert.equal(s.startStep, pointerStep);
      assert.equal(s.step, 6);
      assertSameCheckpoint(want.checkpoint!, s.checkpoint!);
      assert.deepEqual(fs.readdirSync(path.join(out, RUN_FILES.checkpoints)), ['step-00000006'], 'debris cleared by the next save');
      // The killed sitting's records after the resumed step were dropped: the log reads as one run.
      assert.deepEqual(metricsWithoutTimes(out), metricsWithoutTimes(want.out));
    });
  }
});

describe('corrupt, truncated or mismatched checkpoints: one clear line each', () => {
  /** A fresh copy of the straight run's folder, damaged by `damage`. */
  async function damaged(tag: string, damage: (run: string, ck: string) => void): Promise<string> {
    const want = await straightRun();
    const out = runDir(tag);
    fs.cpSync(want.out, out, { recursive: true });
    damage(out, resolveCheckpoint(out));
    return out;
  }
  const oneLine = (re: RegExp) => (e: unknown): boolean => {
    assert.ok(e instanceof Error);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    return true;
  };
  const resume = (out: string, extra: Record<string, unknown> = {}) => train({ out, resume: true, steps: 8, durable: false, ...extra });

  test('truncated weights', async () => {
    const out = await damaged('trunc', (_, ck) => {
      const f = path.join(ck, CHECKPOINT_FILES.model);
      fs.truncateSync(f, fs.statSync(f).size - 10);
    });
    await assert.rejects(resume(out), oneLine(/model\.safetensors.*(truncated|past the end)/));
    assert.throws(() => loadModel(out), oneLine(/model\.safetensors/));
  });
  test('truncated optimizer state', async () => {
    const out = await damaged('trunc-opt', (_, ck) => fs.truncateSync(path.join(ck, CHECKPOINT_FILES.optimizer), 100));
    await assert.rejects(resume(out), oneLine(/cannot resume .*optimizer\.safetensors/));
  });
  test('a missing file', async () => {
    const out = await damaged('missing', (_, ck) => fs.rmSync(path.join(ck, CHECKPOINT_FILES.state)));
    await assert.rejects(resume(out), oneLine(/state\.json: missing \(incomplete checkpoint\)/));
  });
  test('state.json that is not JSON, or does not match config.json', async () => {
    const out = await damaged('badstate', (_, ck) => fs.writeFileSync(path.join(ck, CHECKPOINT_FILES.state), '{"step": 6, "rng"'));
    await assert.rejects(resume(out), oneLine(/state\.json: not valid JSON/));
    const out2 = await damaged('badstep', (_, ck) => {
      const f = path.join(ck, CHECKPOINT_FILES.state);
      fs.writeFileSync(f, JSON.stringify({ ...JSON.parse(fs.readFileSync(f, 'utf8')), step: 5 }));
    });
    await assert.rejects(resume(out2), oneLine(/state\.json: step 5 differs from config\.json's 6/));
  });
  test('a config.json of another format, or a newer format version', async () => {
    const edit = (change: Record<string, unknown>) => (_: string, ck: string): void => {
      const f = path.join(ck, CHECKPOINT_FILES.config);
      fs.writeFileSync(f, JSON.stringify({ ...JSON.parse(fs.readFileSync(f, 'utf8')), ...change }));
    };
    await assert.rejects(resume(await damaged('fmt', edit({ format: 'something-else' }))), oneLine(/not a cubit checkpoint config/));
    await assert.rejects(resume(await damaged('ver', edit({ formatVersion: 99 }))), oneLine(/format version 99 is newer/));
  });
  test('a corrupt pointer, or one naming a missing folder', async () => {
    const out = await damaged('ptr', (run) => fs.writeFileSync(path.join(run, RUN_FILES.pointer), '[1, 2]'));
    await assert.rejects(resume(out), oneLine(/latest\.json: not a cubit run pointer/));
    const out2 = await damaged('ptr2', (_, ck) => fs.rmSync(ck, { recursive: true }));
    assert.throws(() => resolveCheckpoint(out2), oneLine(/latest\.json: names checkpoints\/step-00000006, which is missing/));
    await assert.rejects(resume(out2), oneLine(/state\.json: missing|missing/));
  });
  test('weights of another model', async () => {
    const out = await damaged('shape', (_, ck) => {
      const f = path.join(ck, CHECKPOINT_FILES.config);
      const c = JSON.parse(fs.readFileSync(f, 'utf8'));
      c.model.ffnHidden = 48;
      fs.writeFileSync(f, JSON.stringify(c));
    });
    await assert.rejects(resume(out), oneLine(/'blocks\.0\.ffn\.\w+\.weight' has shape \[(32, 16|16, 32)\], the parameter/));
  });
  test('resuming with a different tokenizer, model or data', async () => {
    const want = await straightRun();
    const tok = path.join(root, 'tokenizer.json');
    fs.writeFileSync(tok, tinyBpeJson());
    const withTok = { ...config, data: { ...(config.data as object), tokenizer: tok } };
    await assert.rejects(resume(await damaged('tok', () => {}), { config: withTok }), oneLine(/tokenizer mismatch: .* was made with the byte tokenizer \(vocab 256\), but .*tokenizer\.json \(vocab 260/));
    const model = { ...(config.model as object), nLayers: 2 };
    await assert.rejects(resume(await damaged('model', () => {}), { config: { ...config, model } }), oneLine(/describes a different model than the checkpoint's/));
    await assert.rejects(resume(await damaged('seqlen', () => {}), { config: { ...config, seqLen: 8 } }), oneLine(/cannot resume .*seqLen differs \(saved 16, now 8\)/));
    const other = writeCorpus(path.join(root, 'other-corpus'), 24, 300, 99);
    await assert.rejects(resume(await damaged('data', () => {}), { config: { ...config, data: { ...(config.data as object), corpus: other } } }), oneLine(/cannot resume .*the data differ/));
    // A changed hyperparameter is fine (that is what resuming with --config is for).
    const s = await resume(await damaged('lr', () => {}), { config: { ...config, lr: 1e-3 } });
    assert.equal(s.step, 8);
    assert.ok(want.step === 6);
  });
  test('a new run refuses a folder holding a run, or holding anything else', async () => {
    const want = await straightRun();
    await assert.rejects(train({ config, out: want.out, durable: false }), oneLine(/already holds a run \(at step 6\); pass --resume/));
    const foreign = runDir('foreign');
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, 'notes.txt'), 'mine');
    await assert.rejects(train({ config, out: foreign, durable: false }), oneLine(/not empty and holds no run \('notes\.txt'\)/));
    await assert.rejects(train({ out: runDir('nothing'), resume: true, durable: false }), oneLine(/no checkpoint to resume/));
    // A config error leaves no run folder behind.
    const bad = runDir('bad');
    await assert.rejects(train({ config: { ...config, steps: -1 }, out: bad }), oneLine(/steps/));
    assert.ok(!fs.existsSync(bad));
  });
});

test('a Hugging Face tokenizer is recorded by identity and copied, with its tokenizer_config.json, into the checkpoint', async () => {
  const tok = path.join(root, 'hf', 'tokenizer.json');
  fs.mkdirSync(path.dirname(tok), { recursive: true });
  fs.writeFileSync(tok, tinyBpeJson());
  const tokConfig = JSON.stringify({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' });
  fs.writeFileSync(path.join(root, 'hf', 'tokenizer_config.json'), tokConfig);
  const s = await train({ config: tinyConfig(corpus, { steps: 3, evalEvery: 0, data: { corpus, tokenizer: tok, split: { validation: 0.1, test: 0.1 } } }), out: runDir('hf'), durable: false });
  const info = readCheckpointInfo(s.checkpoint!);
  assert.equal(info.config.tokenizer.kind, 'hf');
  assert.equal(info.config.tokenizer.vocabSize, 260);
  assert.equal(info.config.model.vocabSize, 260, 'vocabSize filled in from the tokenizer');
  assert.equal(fs.readFileSync(path.join(s.checkpoint!, CHECKPOINT_OPTIONAL_FILES.tokenizer), 'utf8'), tinyBpeJson());
  assert.equal(fs.readFileSync(path.join(s.checkpoint!, CHECKPOINT_OPTIONAL_FILES.tokenizerConfig), 'utf8'), tokConfig);
  // The copies alone give the same tokenizer, BOS included (documents were trained with it).
  const copy = HfTokenizer.fromFile(s.checkpoint!);
  assert.equal(copy.bosId, 259);
  assert.equal(copy.sha256, (info.config.tokenizer as { sha256: string }).sha256);
  // Resuming finds the copy when the original has moved.
  fs.renameSync(path.join(root, 'hf'), path.join(root, 'hf-moved'));
  try {
    const more = await train({ out: s.out, resume: true, steps: 4, durable: false });
    assert.equal(more.step, 4);
  } finally {
    fs.renameSync(path.join(root, 'hf-moved'), path.join(root, 'hf'));
  }
  assert.ok(s.evalBpb !== null && s.evalBpb > 0 && s.evalBpb < s.evalLoss! / Math.LN2, 'merged tokens cover more than a byte each');
});
