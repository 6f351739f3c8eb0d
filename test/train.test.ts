// Training: the schedule, the config schema, AdamW and its decay rule, clipping, the loop (loss
// falls, metrics, evaluation, gradient accumulation, non-finite steps), bit-identical resume on
// both backends, and `cubit train`'s user errors.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { getBackend, NativeBackend, noGrad, setBackend, tensor, zeros } from '../src/index.ts';
import { main } from '../src/cli/main.ts';
import { Progress, formatDuration } from '../src/cli/progress.ts';
import { Decoder } from '../src/models/decoder.ts';
import {
  AdamW, clipGradNorm, gradNorm, learningRate, NonFiniteError, parseTrainConfig, readRunPointer, resolveCheckpoint,
  scheduleOf, train, Trainer, type TrainEvent,
} from '../src/train/index.ts';
import { nativeTestOptions, relErr } from './helpers.ts';
import { assertSameCheckpoint, metricsWithoutTimes, tinyConfig, tmpDir, writeCorpus } from './train-fixtures.ts';

const root = tmpDir('train');
after(() => fs.rmSync(root, { recursive: true, force: true }));
const corpus = writeCorpus(path.join(root, 'corpus'));
let runs = 0;
const runDir = (tag: string): string => path.join(root, `${tag}-${runs++}`);

test('schedule: linear warm-up to the peak, cosine decay to the floor, then the floor', () => {
  const s = { lr: 1, minLr: 0.1, warmupSteps: 4, decaySteps: 14 };
  assert.deepEqual([0, 1, 2, 3].map((i) => learningRate(i, s)), [0.25, 0.5, 0.75, 1]);
  assert.equal(learningRate(4, s), 1);
  assert.ok(Math.abs(learningRate(9, s) - 0.55) < 1e-12, 'half-way down the cosine');
  assert.ok(Math.abs(learningRate(13, s) - (0.1 + 0.45 * (1 + Math.cos(Math.PI * 0.9)))) < 1e-12);
  assert.equal(learningRate(14, s), 0.1);
  assert.equal(learningRate(1000, s), 0.1);
  for (let i = 5; i < 14; i++) assert.ok(learningRate(i, s) < learningRate(i - 1, s), `decreasing at ${i}`);
  assert.deepEqual(scheduleOf({ lr: 2, warmupSteps: 0, steps: 50 }), { lr: 2, minLr: 0.2, warmupSteps: 0, decaySteps: 50 });
  assert.equal(learningRate(0, scheduleOf({ lr: 2, warmupSteps: 0, steps: 50 })), 2);
  assert.deepEqual(scheduleOf({ lr: 2, minLr: 0, warmupSteps: 3, lrDecaySteps: 9, steps: 50 }), { lr: 2, minLr: 0, warmupSteps: 3, decaySteps: 9 });
});

describe('config', () => {
  const model = { dModel: 16, nHeads: 2, nLayers: 1 };
  test('defaults fill in; vocabSize comes from the tokenizer when omitted', () => {
    const c = parseTrainConfig({ model }, 'run.json', 300);
    assert.equal(c.model.vocabSize, 300);
    assert.equal(c.data.corpus, 'brown');
    assert.equal(c.data.tokenizer, 'byte');
    assert.equal(c.data.mode, 'packed');
    assert.equal(c.gradAccum, 1);
    assert.equal(c.minLr, undefined, 'minLr stays absent: it follows lr');
    assert.equal(parseTrainConfig({ model }).model.vocabSize, 256);
  });
  test('unknown fields, bad values and impossible shapes are one line naming the field', () => {
    const cases: [unknown, RegExp][] = [
      [{ model, stepz: 3 }, /run\.json: unknown field 'stepz'/],
      [{ model, data: { corpus: 'brown', mode: 'packed', tokeniser: 'byte' } }, /unknown field 'data\.tokeniser'/],
      [{ model, data: { split: { valid: 0.1 } } }, /unknown field 'data\.split\.valid'/],
      [{ model: { ...model, dModell: 3 } }, /model: unknown field 'dModell'/],
      [{ model: { dModel: 18, nHeads: 4 } }, /dModel 18 is not divisible by nHeads 4/],
      [{ model, steps: 0 }, /steps:/],
      [{ model, batchSize: 2.5 }, /batchSize:/],
      [{ model, lr: 1e-3, minLr: 1e-2 }, /minLr 0\.01 exceeds lr 0\.001/],
      [{ model, beta2: 1 }, /beta2:/],
      [{ model, data: { mode: 'ragged' } }, /data\.mode:/],
      [{ model, data: { split: { validation: 0.6, test: 0.5 } } }, /validation \+ test/],
      [{ model, evalBatches: 4, data: { split: { validation: 0 } } }, /no held-out data/],
      [{ steps: 3 }, /missing field 'model'/],
      [[1], /expected a JSON object/],
    ];
    for (const [input, re] of cases) {
      assert.throws(() => parseTrainConfig(input, 'run.json', 256), (e: Error) => re.test(e.message) && !e.message.includes('\n'), JSON.stringify(input));
    }
    assert.throws(() => parseTrainConfig({ model: { ...model, vocabSize: 100 } }, 'run.json', 256), /vocabSize 100 is smaller than the tokenizer's vocabulary \(256\)/);
  });
  test('the example configs parse', () => {
    const dir = path.join(import.meta.dirname, '..', 'configs');
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
    assert.ok(files.includes('tiny-softmax.json') && files.includes('tiny-cubit.json'), files.join(', '));
    for (const f of files) parseTrainConfig(JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')), f, 256);
  });
});

describe('AdamW', () => {
  test('one fused update per parameter matches the float64 formula over several steps', () => {
    const opts = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
    const w = tensor([0.5, -1, 2, 0.25, -0.75, 1.5], [2, 3], { requiresGrad: true });
    const b = tensor([1, -2, 0.5], [3], { requiresGrad: true });
    const opt = new AdamW([['w', w], ['b', b]], opts);
    assert.deepEqual(opt.decayed, ['w']);
    const ref = [w, b].map((p) => ({ p: Array.from(p.dataSync()), m: new Array(p.size).fill(0), v: new Array(p.size).fill(0), decay: p.rank >= 2 }));
    const lrs = [1e-2, 5e-3, 2e-3];
    lrs.forEach((lr, k) => {
      const t = k + 1;
      [w, b].forEach((p, j) => {
        const g = Array.from({ length: p.size }, (_, i) => Math.sin(1 + i + 3 * j + 7 * k));
        p.grad?.dispose();
        p.grad = tensor(g, [...p.shape]).keep();
        const r = ref[j];
        for (let i = 0; i < p.size; i++) {
          r.m[i] = 0.9 * r.m[i] + 0.1 * g[i];
          r.v[i] = 0.95 * r.v[i] + 0.05 * g[i] * g[i];
          const mh = r.m[i] / (1 - 0.9 ** t), vh = r.v[i] / (1 - 0.95 ** t);
          r.p[i] = r.p[i] * (1 - lr * (r.decay ? 0.1 : 0)) - (lr * mh) / (Math.sqrt(vh) + 1e-8);
        }
      });
      opt.update(lr);
    });
    assert.equal(opt.step, 3);
    assert.ok(relErr(w.dataSync(), ref[0].p) < 1e-6, `w: ${relErr(w.dataSync(), ref[0].p)}`);
    assert.ok(relErr(b.dataSync(), ref[1].p) < 1e-6, `b: ${relErr(b.dataSync(), ref[1].p)}`);
    assert.ok(relErr(opt.stateTensors().get('m.w')!.dataSync(), ref[0].m) < 1e-6);
    assert.ok(relErr(opt.stateTensors().get('v.b')!.dataSync(), ref[1].v) < 1e-6);
    opt.dispose();
    for (const p of [w, b]) { p.grad?.dispose(); p.dispose(); }
  });

  test('decay applies to every matrix (embedding included), never to norms or Cubit\'s per-head scalars', () => {
    const model = new Decoder({ dModel: 16, nHeads: 2, nLayers: 2, mixer: ['cubit', 'local_linear'], localLinear: { rank: 4 } });
    const opt = new AdamW(model.namedParameters(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const decayed = new Set(opt.decayed);
    for (const [name, p] of model.namedParameters()) {
      const leaf = name.split('.').pop()!;
      const scalar = ['refScale', 'logLambda', 'lrrLower', 'lrrRange'].includes(leaf) || name.endsWith('Norm.weight');
      assert.equal(decayed.has(name), !scalar, `${name} [${p.shape.join(', ')}]`);
    }
    for (const n of ['embed.weight', 'blocks.0.mixer.wr.weight', 'blocks.1.mixer.projection', 'blocks.1.ffn.down.weight']) assert.ok(decayed.has(n), n);
    for (const n of ['blocks.0.mixer.logLambda', 'blocks.0.mixer.refScale', 'finalNorm.weight']) assert.ok(!decayed.has(n), n);
    // With a zero gradient a decayed parameter shrinks by exactly lr·wd; an undecayed one stays.
    const w = tensor([2, -4, 8, 1], [2, 2], { requiresGrad: true }), s = tensor([3, -3], [2], { requiresGrad: true });
    const o2 = new AdamW([['w', w], ['s', s]], { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.5 });
    for (const p of [w, s]) p.grad = zeros(p.shape).keep();
    o2.update(0.1);
    assert.deepEqual(Array.from(w.dataSync()), [2, -4, 8, 1].map((x) => Math.fround(x * Math.fround(0.95))));
    assert.deepEqual(Array.from(s.dataSync()), [3, -3]);
    o2.dispose(); opt.dispose(); model.dispose();
    for (const p of [w, s]) { p.grad?.dispose(); p.dispose(); }
  });

  test('loadState checks every moment before writing any', () => {
    const w = tensor([1, 2, 3, 4], [2, 2], { requiresGrad: true });
    const opt = new AdamW([['w', w]], { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 });
    const m = { shape: [2, 2], data: new Float32Array([1, 1, 1, 1]) };
    assert.throws(() => opt.loadState(3, new Map([['m.w', m]])), /no tensor 'v\.w'/);
    assert.throws(() => opt.loadState(3, new Map([['m.w', m], ['v.w', { shape: [4], data: new Float32Array(4) }]])), /'v\.w' has shape \[4\], the parameter \[2, 2\]/);
    assert.throws(() => opt.loadState(3, new Map([['m.w', m], ['v.w', m], ['m.x', m]])), /unexpected tensor 'm\.x'/);
    assert.deepEqual(Array.from(opt.stateTensors().get('m.w')!.dataSync()), [0, 0, 0, 0]);
    assert.equal(opt.step, 0);
    opt.loadState(3, new Map([['m.w', m], ['v.w', m]]));
    assert.equal(opt.step, 3);
    assert.deepEqual(Array.from(opt.stateTensors().get('m.w')!.dataSync()), [1, 1, 1, 1]);
    opt.dispose(); w.dispose();
  });
});

test('clipping: the global norm over all gradients, scaled in place above maxNorm, untouched when not finite', () => {
  const a = tensor([3, 0], [2], { requiresGrad: true }), b = tensor([0, 0, 4, 0], [2, 2], { requiresGrad: true });
  a.grad = tensor([3, 0], [2]).keep();
  b.grad = tensor([0, 0, 4, 0], [2, 2]).keep();
  assert.equal(gradNorm([a, b]), 5);
  assert.deepEqual(clipGradNorm([a, b], 10), { norm: 5, scale: 1 });
  assert.deepEqual(Array.from(a.grad.dataSync()), [3, 0]);
  const r = clipGradNorm([a, b], 1);
  assert.equal(r.norm, 5);
  assert.ok(Math.abs(gradNorm([a, b]) - 1) < 1e-6);
  assert.ok(Math.abs(a.grad.dataSync()[0] - 0.6) < 1e-6 && Math.abs(b.grad.dataSync()[2] - 0.8) < 1e-6);
  noGrad(() => a.backend.write(a.grad!.storage, [NaN, 1]));
  const before = Array.from(b.grad.dataSync());
  assert.ok(Number.isNaN(clipGradNorm([a, b], 1).norm));
  assert.deepEqual(Array.from(b.grad.dataSync()), before, 'nothing scaled when the norm is not finite');
  a.backend.write(a.grad.storage, [Infinity, 1]);
  assert.equal(gradNorm([a, b]), Infinity);
  for (const p of [a, b]) { p.grad?.dispose(); p.dispose(); }
});

describe('the training loop', () => {
  test('the loss falls; metrics.jsonl holds train and eval records; bits per byte is the byte loss in bits', async () => {
    const out = runDir('loop');
    const events: TrainEvent[] = [];
    const s = await train({ config: tinyConfig(corpus, { steps: 24, lr: 1e-2, evalEvery: 8, checkpointEvery: 12, logEvery: 4 }), out, durable: false, onEvent: (e) => events.push(e) });
    assert.equal(s.step, 24);
    assert.equal(s.stopped, 'completed');
    assert.equal(s.skippedSteps, 0);
    const m = metricsWithoutTimes(out);
    const trainRecs = m.filter((r) => r.kind === 'train'), evals = m.filter((r) => r.kind === 'eval');
    assert.deepEqual(trainRecs.map((r) => r.step), [4, 8, 12, 16, 20, 24]);
    assert.deepEqual(evals.map((r) => r.step), [8, 16, 24]);
    for (const r of trainRecs) for (const k of ['loss', 'lr', 'gradNorm', 'skippedSteps', 'tokens']) assert.equal(typeof r[k], 'number', `${k} in ${JSON.stringify(r)}`);
    assert.equal(trainRecs[5].tokens, 24 * 4 * 16);
    assert.ok((trainRecs[5].loss as number) < (trainRecs[0].loss as number) - 0.5, `loss ${trainRecs[0].loss} → ${trainRecs[5].loss}`);
    assert.ok((evals[2].evalLoss as number) < (evals[0].evalLoss as number), 'eval loss falls');
    for (const e of evals) assert.ok(Math.abs((e.evalBpb as number) * Math.LN2 - (e.evalLoss as number)) < 1e-4, 'byte tokenizer: bpb = loss / ln 2');
    assert.equal(s.evalLoss !== null && Math.abs(s.evalLoss - (evals[2].evalLoss as number)) < 1e-5, true);
    // Events: start, a step event per step, evals and checkpoints.
    assert.equal(events[0].kind, 'start');
    assert.equal(events.filter((e) => e.kind === 'step').length, 24);
    assert.deepEqual(events.filter((e) => e.kind === 'checkpoint').map((e) => e.step), [12, 24]);
    // Only the latest checkpoint is kept, and the pointer names it.
    assert.deepEqual(fs.readdirSync(path.join(out, 'checkpoints')), ['step-00000024']);
    assert.equal(readRunPointer(out)!.step, 24);
    assert.equal(resolveCheckpoint(out), s.checkpoint);
  });

  test('gradient accumulation: two micro-batches of B rows give the gradient of one batch of 2B rows', async () => {
    // One long document (no document boundaries inside rows), so every micro-batch counts the same targets.
    const single = writeCorpus(path.join(root, 'single'), 1, 3000, 11);
    const grads = async (over: Record<string, unknown>): Promise<Float32Array[]> => {
      const t = new Trainer({ config: tinyConfig(single, { evalBatches: 0, ...over }), out: runDir('accum') });
      let g: Float32Array[] = [];
      await t.step({ afterBackward: (_, model) => { g = model.parameters().map((p) => p.grad!.dataSync() as Float32Array); } });
      t.dispose();
      return g;
    };
    const one = await grads({ batchSize: 4, gradAccum: 1 }), two = await grads({ batchSize: 2, gradAccum: 2 });
    const other = await grads({ batchSize: 2, gradAccum: 1 });
    one.forEach((g, i) => assert.ok(relErr(two[i], g) < 1e-5, `parameter ${i}: relErr ${relErr(two[i], g)}`));
    assert.ok(one.some((g, i) => relErr(other[i], g) > 1e-2), 'and half the batch alone differs (the test can fail)');
  });

  test('a non-finite step is skipped without touching weights or moments; maxNonFinite in a row stop the run', async () => {
    const out = runDir('nan');
    const poison = new Set([2, 3, 6, 7, 8]); // 0-based steps: a streak of 2, then one of 3
    const hooks = {
      afterBackward(step: number, model: Decoder): void {
        if (poison.has(step)) { const g = model.parameters()[3].grad!; g.backend.write(g.storage, [NaN], 0); }
      },
    };
    const events: TrainEvent[] = [];
    await assert.rejects(
      train({ config: tinyConfig(corpus, { steps: 12, maxNonFinite: 3, checkpointEvery: 2, evalEvery: 0 }), out, durable: false, hooks, onEvent: (e) => events.push(e) }),
      (e: unknown) => {
        assert.ok(e instanceof NonFiniteError, String(e));
        assert.match(e.message, /3 steps in a row had a non-finite gradient \(last at step 9,/);
        assert.match(e.message, /the last good checkpoint is .*step-00000006/);
        assert.equal(e.step, 9);
        return true;
      });
    // Checkpoints due at steps 4 and 8 fell inside a streak and were not written; step 6's is the latest.
    assert.match(resolveCheckpoint(out), /step-00000006$/);
    assert.deepEqual(events.filter((e) => e.kind === 'skip').map((e) => e.step), [3, 4, 7, 8, 9]);
    const m = metricsWithoutTimes(out).filter((r) => r.kind === 'skip');
    assert.deepEqual(m.map((r) => [r.step, r.inARow, r.skippedSteps, r.reason]),
      [[3, 1, 1, 'non-finite gradient'], [4, 2, 2, 'non-finite gradient'], [7, 1, 3, 'non-finite gradient'], [8, 2, 4, 'non-finite gradient'], [9, 3, 5, 'non-finite gradient']]);
    const t = new Trainer({ out, resume: true });
    assert.equal(t.state.step, 6);
    assert.equal(t.optimizer.step, 4, 'two of six steps were skipped: the optimizer took four');
    assert.equal(t.state.skippedSteps, 2);
    t.dispose();

    // A skipped step changes nothing: weights and moments stay, gradients are zeroed, the step counts.
    const t2 = new Trainer({ config: tinyConfig(corpus, { evalBatches: 0 }), out: runDir('nan2') });
    await t2.step(); await t2.step();
    const before = t2.model.parameters().map((p) => Array.from(p.dataSync()));
    const moments = [...t2.optimizer.stateTensors().values()].map((x) => Array.from(x.dataSync()));
    const r = await t2.step({ afterBackward: (_, model) => { const g = model.parameters()[0].grad!; g.backend.write(g.storage, [Infinity], 0); } });
    assert.equal(r.skipped, 'non-finite gradient');
    assert.deepEqual(t2.model.parameters().map((p) => Array.from(p.dataSync())), before);
    assert.deepEqual([...t2.optimizer.stateTensors().values()].map((x) => Array.from(x.dataSync())), moments);
    assert.equal(t2.optimizer.step, 2);
    assert.equal(t2.state.step, 3);
    assert.ok(t2.model.parameters().every((p) => p.grad!.dataSync().every((v) => v === 0)), 'gradients zeroed after a skip');
    const ok = await t2.step();
    assert.equal(ok.skipped, null);
    assert.equal(t2.optimizer.step, 3);
    t2.dispose();
  });

  test('steady state: after warm-up a step takes nothing new from the system and hands back all it took', async () => {
    const t = new Trainer({ config: tinyConfig(corpus, { evalBatches: 0, gradAccum: 2, model: { dModel: 16, nLayers: 1, nHeads: 2, ffnHidden: 32, mixer: 'cubit' } }), out: runDir('mem') });
    const b = t.model.parameters()[0].backend;
    for (let i = 0; i < 3; i++) await t.step();
    const inUse = b.memory().bytesInUse, allocated = b.memory().bytesAllocated;
    for (let i = 0; i < 5; i++) {
      await t.step();
      assert.equal(b.memory().bytesInUse, inUse, `step ${i + 4}: bytes in use return to the baseline`);
    }
    assert.equal(b.memory().bytesAllocated, allocated, 'the pool served every allocation');
    t.dispose();
  });

  test('aborting ends the sitting after the current step, with a checkpoint', async () => {
    const out = runDir('abort');
    const ac = new AbortController();
    const s = await train({ config: tinyConfig(corpus, { steps: 50, evalBatches: 0 }), out, durable: false, signal: ac.signal, onEvent: (e) => { if (e.kind === 'step' && e.step === 3) ac.abort(); } });
    assert.equal(s.stopped, 'aborted');
    assert.equal(s.step, 3);
    assert.equal(readRunPointer(out)!.step, 3);
  });
});

// The resume test of the brief: 2N steps straight against N + resume + N, every weight and moment
// compared bitwise. Eval and checkpoint steps fall inside both halves (they must not disturb anything).
async function resumeIsBitIdentical(mixer: string, extra: Record<string, unknown> = {}): Promise<void> {
  const config = tinyConfig(corpus, { steps: 10, gradAccum: 2, evalEvery: 3, checkpointEvery: 4, logEvery: 1, model: { dModel: 16, nLayers: 2, nHeads: 2, ffnHidden: 32, mixer }, ...extra });
  const straight = runDir(`straight-${mixer}`), split = runDir(`split-${mixer}`);
  const a = await train({ config, out: straight, durable: false });
  const first = await train({ config, out: split, stopAt: 5, durable: false });
  assert.equal(first.stopped, 'stop-at');
  assert.equal(first.step, 5);
  const b = await train({ out: split, resume: true, durable: false });
  assert.equal(b.startStep, 5);
  assert.equal(b.step, 10);
  assertSameCheckpoint(a.checkpoint!, b.checkpoint!);
  const stateA = JSON.parse(fs.readFileSync(path.join(a.checkpoint!, 'state.json'), 'utf8')), stateB = JSON.parse(fs.readFileSync(path.join(b.checkpoint!, 'state.json'), 'utf8'));
  for (const s of [stateA, stateB]) delete s.elapsedSeconds;
  assert.deepEqual(stateB, stateA);
  // Per-step losses agree too (the stop's extra eval at step 5 aside).
  const la = metricsWithoutTimes(straight).filter((r) => r.kind === 'train');
  const lb = metricsWithoutTimes(split).filter((r) => r.kind === 'train');
  assert.deepEqual(lb, la);
}

describe('resume is bit-identical (2N straight = N + resume + N)', () => {
  test('native backend, softmax mixer', nativeTestOptions(), () => withBackendAsync('native', () => resumeIsBitIdentical('softmax')));
  test('native backend, cubit mixer, padded rows', nativeTestOptions(), () => withBackendAsync('native', () => resumeIsBitIdentical('cubit', { data: { corpus, mode: 'padded', split: { validation: 0.1, test: 0.1 } } })));
  test('reference backend, softmax mixer', () => withBackendAsync('reference', () => resumeIsBitIdentical('softmax')));
});

/** withBackend for async bodies: the backend stays active across awaits (tests run one at a time). */
async function withBackendAsync(name: string, fn: () => Promise<void>): Promise<void> {
  const prev = getBackend().name;
  setBackend(name);
  try { await fn(); } finally { setBackend(prev); }
}

// Shapes big enough that the native kernels split their work across threads (the tiny models
// above run single-threaded): the weights after a few steps must not depend on the thread count.
async function threadCountInvariant(mixer: string): Promise<void> {
  const b = getBackend() as NativeBackend;
  const config = tinyConfig(corpus, { steps: 3, batchSize: 8, seqLen: 128, evalBatches: 0, checkpointEvery: 0, model: { dModel: 64, nLayers: 1, nHeads: 4, mixer } });
  const outs: string[] = [];
  try {
    for (const threads of [1, 2]) {
      b.setThreads(threads);
      outs.push((await train({ config, out: runDir(`threads${threads}-${mixer}`), durable: false })).checkpoint!);
    }
  } finally {
    b.setThreads(0);
  }
  assertSameCheckpoint(outs[0], outs[1]);
}

describe('training does not depend on the thread count (native)', () => {
  test('softmax mixer', nativeTestOptions(), () => withBackendAsync('native', () => threadCountInvariant('softmax')));
  test('cubit mixer', nativeTestOptions(), () => withBackendAsync('native', () => threadCountInvariant('cubit')));
});

describe('cubit train (CLI)', () => {
  async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
    // console only: process.stdout carries the test runner's own reports (progress lines are checked in a child process).
    const out: string[] = [], err: string[] = [];
    const log = console.log, error = console.error;
    console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
    console.error = (...a: unknown[]) => { err.push(a.join(' ')); };
    try {
      const code = await main([...argv, ...(argv.includes('--help') ? [] : ['--quiet'])]);
      return { code, out: out.join('\n'), err: err.join('\n') };
    } finally {
      console.log = log; console.error = error;
    }
  }
  const writeConfig = (name: string, value: unknown): string => {
    const f = path.join(root, name);
    fs.writeFileSync(f, typeof value === 'string' ? value : JSON.stringify(value));
    return f;
  };

  test('--help lists the options', async () => {
    const r = await cli('train', '--help');
    assert.equal(r.code, 0);
    for (const o of ['--config', '--out', '--resume', '--steps', '--stop-at']) assert.ok(r.out.includes(o), o);
  });

  test('trains (a child process: plain progress lines when stdout is not a TTY), then resumes to more steps', async () => {
    const cfg = writeConfig('cli.json', tinyConfig(corpus, { steps: 20, evalEvery: 10 }));
    const out = runDir('cli');
    const bin = path.join(import.meta.dirname, '..', 'bin', 'cubit.mjs');
    const r = spawnSync(process.execPath, [bin, 'train', '--config', cfg, '--out', out, '--backend', getBackend().name], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    // Progress and messages on stderr; stdout has the summary line alone.
    assert.match(r.stderr, /^new run in .*: .* parameters, 64 tokens\/step, steps 0 → 20, backend/);
    assert.match(r.stderr, /\nstep 10\/20 \(50%\) loss \d\.\d+ · lr .* · tok\/s .*\n/);
    assert.match(r.stderr, /\nstep 10: eval loss \d\.\d+ · \d\.\d+ bits\/byte\n/);
    assert.match(r.stdout, /^done: step 20\/20, loss .*, eval loss .*checkpoint .*step-00000020\n$/);
    assert.ok(!r.stderr.includes('\r'), 'no bar redraws off a TTY');
    const again = await cli('train', '--out', out, '--resume');
    assert.equal(again.code, 0);
    assert.match(again.out, /already at step 20 of 20; nothing to do/);
    const more = await cli('train', '--out', out, '--resume', '--steps', '24');
    assert.equal(more.code, 0, more.err);
    assert.match(more.out, /^done: step 24\/24/);
  });

  test('Ctrl-C (SIGINT) finishes the step, writes a checkpoint and exits 130', async () => {
    const cfg = writeConfig('sigint.json', tinyConfig(corpus, { steps: 100000, logEvery: 1, evalBatches: 0 }));
    const out = runDir('sigint');
    const bin = path.join(import.meta.dirname, '..', 'bin', 'cubit.mjs');
    const child = spawn(process.execPath, [bin, 'train', '--config', cfg, '--out', out, '--backend', getBackend().name], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '', sent = false;
    child.stdout.on('data', (d) => { stdout += String(d); });
    child.stderr.on('data', (d) => {
      stderr += String(d);
      if (!sent && /\nstep 3\/100000/.test(stderr)) { sent = true; child.kill('SIGINT'); }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal(code, 130, stderr);
    assert.match(stderr, /interrupted: finishing the step and writing a checkpoint/);
    assert.match(stdout, /interrupted \(resume with --resume\): step (\d+)\/100000/);
    const step = Number(/interrupted \(resume with --resume\): step (\d+)/.exec(stdout)![1]);
    assert.ok(step >= 3, `stopped at step ${step}`);
    assert.equal(readRunPointer(out)!.step, step);
  });

  test('user errors are one line and a non-zero exit, never a stack trace', async () => {
    const ok = tinyConfig(corpus);
    const cases: [string[], RegExp][] = [
      [['train'], /--config is required/],
      [['train', '--config', path.join(root, 'missing.json')], /missing\.json: no such config file/],
      [['train', '--config', writeConfig('bad.json', '{"model": ')], /bad\.json: not valid JSON/],
      [['train', '--config', writeConfig('unknown.json', { ...ok, learningRate: 1 }), '--out', runDir('e')], /unknown\.json: unknown field 'learningRate'/],
      [['train', '--config', writeConfig('shape.json', { ...ok, model: { dModel: 20, nHeads: 3 } }), '--out', runDir('e')], /dModel 20 is not divisible by nHeads 3/],
      [['train', '--config', writeConfig('long.json', { ...ok, seqLen: 100000 }), '--out', runDir('e')], /training data .*fewer than seqLen \+ 1/],
      [['train', '--config', writeConfig('nocorpus.json', { ...ok, data: { corpus: path.join(root, 'nope') } }), '--out', runDir('e')], /corpus '.*nope': no such file or folder/],
      [['train', '--resume', '--out', runDir('none')], /no such run|no checkpoint to resume/],
      [['train', '--resume'], /--resume needs --out/],
      [['train', '--config', writeConfig('ok.json', ok), '--steps', 'x'], /--steps must be an integer/],
      [['train', '--config', writeConfig('ok2.json', ok), '--backend', 'gpu'], /--backend must be one of 'reference', 'native', 'webgpu', got 'gpu'/],
    ];
    for (const [argv, re] of cases) {
      const r = await cli(...argv);
      assert.notEqual(r.code, 0, argv.join(' '));
      assert.match(r.err, re, argv.join(' '));
      assert.equal(r.err.split('\n').length, 1, `one line: ${r.err}`);
      assert.ok(!/\n\s+at /.test(r.err), 'no stack trace');
    }
  });
});

test('progress: plain lines every N items with an ETA; a redrawn bar on a TTY', () => {
  const chunks: string[] = [];
  const stream = { write: (s: string) => { chunks.push(s); return true; } } as unknown as NodeJS.WritableStream;
  const p = new Progress({ total: 30, stream, tty: false, every: 10 });
  for (let i = 1; i <= 30; i++) p.update(i, [['loss', (3 - i / 10).toFixed(2)]]);
  p.log('a message');
  assert.deepEqual(chunks.map((c) => c.replace(/ · ETA \S+/, '')), ['step 10/30 (33%) loss 2.00\n', 'step 20/30 (67%) loss 1.00\n', 'step 30/30 (100%) loss 0.00\n', 'a message\n']);
  assert.match(chunks[1], /ETA \d+s/);
  chunks.length = 0;
  const bar = new Progress({ total: 4, stream: Object.assign(stream, { columns: 80 }), tty: true, redrawMs: 0 });
  bar.update(2, [['loss', '1.5']]);
  bar.log('eval');
  bar.update(4, [['loss', '1.0']]);
  bar.done();
  const text = chunks.join('');
  assert.match(text, /\r\x1b\[2K\[█+░+\] 2\/4 loss 1\.5/);
  assert.match(text, /\r\x1b\[2Keval\n/);
  assert.match(text, /\[█+\] 4\/4 loss 1\.0\n$/);
  assert.equal(formatDuration(65), '1m05s');
  assert.equal(formatDuration(7325), '2h02m');
});
