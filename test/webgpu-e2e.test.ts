// The whole loop on the webgpu backend, against a CPU backend with the same seeds: tiny Cubit and
// softmax models train (the loss falls, each step's loss matches the CPU's within float32
// tolerance, one host read per step), evaluate (one read), save a checkpoint and resume from it
// (the resumed steps repeat the original ones), and the checkpoint generates text through the
// decoding states of all three mixers. Skips without a WebGPU adapter (test/webgpu-helpers.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as path from 'node:path';
import { backendByName, Decoder, generate, generateText, getBackend, loadModel, setBackend, withBackend } from '../src/index.ts';
import { loadNativeAddon } from '../src/backends/native/addon.ts';
import { Trainer } from '../src/train/trainer.ts';
import { webgpuUnavailable } from './webgpu-helpers.ts';
import { tinyConfig, tmpDir, writeCorpus } from './train-fixtures.ts';

const why = await webgpuUnavailable();
// The CPU side: native where its addon loads, else the reference backend (same float32 tensors).
const cpu = loadNativeAddon() ? 'native' : 'reference';
const gpu = (): ReturnType<typeof backendByName> => backendByName('webgpu');

/** Host reads of the webgpu backend while fn runs, and fn's result. */
async function counted<T>(fn: () => Promise<T>): Promise<{ value: T; reads: number }> {
  const before = gpu().hostReads;
  const value = await fn();
  return { value, reads: gpu().hostReads - before };
}

const close = (a: number, b: number, tol: number): boolean => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

const STEPS = 4;
const dir = tmpDir('webgpu-e2e');
const corpus = writeCorpus(path.join(dir, 'corpus'), 6, 200);
const models = {
  cubit: { dModel: 16, nLayers: 2, nHeads: 2, ffnHidden: 32, mixer: 'cubit' },
  softmax: { dModel: 16, nLayers: 2, nHeads: 2, ffnHidden: 32, mixer: 'softmax' },
};

for (const [kind, model] of Object.entries(models)) {
  test(`webgpu: a tiny ${kind} model trains, evaluates, resumes and generates as on ${cpu}`, { skip: why ?? undefined }, async () => {
    // gradAccum 2 and packed documents: the step's every path; no automatic checkpoints (saved below).
    const config = tinyConfig(corpus, { model, steps: 8, gradAccum: 2, lr: 1e-2, warmupSteps: 1, evalBatches: 2, checkpointEvery: 0 });

    const before = getBackend().name;
    // A Trainer runs on the active backend (train() sets it from its `backend` option).
    setBackend(cpu);
    const ref = new Trainer({ config, out: path.join(dir, `${kind}-cpu`), durable: false });
    const refLosses: number[] = [];
    let refEval;
    try {
      for (let i = 0; i < STEPS; i++) refLosses.push((await ref.step()).loss);
      refEval = (await ref.evaluate())!;
    } finally { ref.dispose(); }

    const out = path.join(dir, `${kind}-gpu`);
    setBackend('webgpu');
    const run = new Trainer({ config, out, durable: false });
    const losses: number[] = [];
    let afterSave: number[] = [];
    try {
      assert.equal(run.model.embed.weight.backend.name, 'webgpu');
      for (let i = 0; i < STEPS; i++) {
        const { value, reads } = await counted(() => run.step());
        assert.equal(value.skipped, null, `step ${i + 1} skipped`);
        assert.ok(reads <= 1, `host reads in training step ${i + 1}: ${reads}`);
        losses.push(value.loss);
        if (i === 1) await run.save(); // the checkpoint the resume below starts from (after step 2)
      }
      afterSave = losses.slice(2);
      // Same seeds, same batches: the CPU's losses within float32 tolerance (the updates compound
      // the kernels' rounding differences a little from step to step).
      losses.forEach((l, i) => assert.ok(close(l, refLosses[i], 1e-5 * (i + 1)), `step ${i + 1}: webgpu loss ${l}, ${cpu} ${refLosses[i]}`));
      assert.ok(losses[STEPS - 1] < losses[0] - 0.05, `the loss falls: ${losses.map((l) => l.toFixed(4)).join(' → ')}`);
      const { value: ev, reads } = await counted(() => run.evaluate());
      assert.ok(reads <= 1, `host reads in an evaluation pass: ${reads}`);
      assert.ok(close(ev!.loss, refEval.loss, 1e-4), `eval loss: webgpu ${ev!.loss}, ${cpu} ${refEval.loss}`);
    } finally { run.dispose(); }

    // Resume from the checkpoint after step 2: steps 3 and 4 again, on the same backend.
    const resumed = new Trainer({ out, resume: true, durable: false });
    try {
      assert.equal(resumed.state.step, 2);
      for (let i = 0; i < afterSave.length; i++) {
        const l = (await resumed.step()).loss;
        assert.ok(close(l, afterSave[i], 1e-5), `resumed step ${i + 3}: ${l}, first time ${afterSave[i]}`);
      }
      await resumed.save();
    } finally { resumed.dispose(); setBackend(before); }

    // The saved model generates on webgpu what it generates on the CPU (same seed, sampled).
    const text = async (backend: string): Promise<string> => {
      const loaded = loadModel(out, { backend });
      try {
        assert.equal(loaded.model.embed.weight.backend.name, backend);
        return (await generateText(loaded, 'the river', { maxNewTokens: 12, temperature: 1, seed: 3 })).text;
      } finally { loaded.model.dispose(); }
    };
    const mine = await text('webgpu');
    assert.ok(mine.length > 0, 'generated some text');
    assert.equal(mine, await text(cpu));
  });
}

test('webgpu: decoding states of the three mixers give the logits of a full forward pass, and the CPU\'s', { skip: why ?? undefined }, async () => {
  // Softmax's KV cache, Cubit's solve state and local-linear's window, one layer of each.
  const config = { vocabSize: 256, dModel: 16, nLayers: 3, nHeads: 2, ffnHidden: 32, mixer: ['cubit', 'softmax', 'local_linear'] as const };
  const build = (backend: string): Decoder => withBackend(backend, () => new Decoder({ ...config, mixer: [...config.mixer] }, 5).eval());
  const onGpu = build('webgpu'), onCpu = build(cpu);
  try {
    const prompt = [10, 20, 30, 40, 50];
    const opts = { maxNewTokens: 6, temperature: 1, seed: 2, keepLogits: true };
    const cached = await counted(() => generate(onGpu, prompt, opts));
    // One read per decoding step (its logits), the prompt's prefill included.
    assert.ok(cached.reads <= cached.value.tokens.length, `host reads: ${cached.reads} for ${cached.value.tokens.length} tokens`);
    const full = await generate(onGpu, prompt, { ...opts, mode: 'recompute' });
    const host = await generate(onCpu, prompt, opts);
    assert.deepEqual(cached.value.tokens, full.tokens);
    assert.deepEqual(cached.value.tokens, host.tokens);
    cached.value.logits!.forEach((l, i) => {
      for (const [other, what] of [[full.logits![i], 'recomputed'], [host.logits![i], cpu]] as const) {
        let worst = 0;
        for (let j = 0; j < l.length; j++) worst = Math.max(worst, Math.abs(l[j] - other[j]));
        assert.ok(worst < 1e-4, `token ${i}: logits differ from the ${what} ones by ${worst}`);
      }
    });
  } finally { onGpu.dispose(); onCpu.dispose(); }
});
