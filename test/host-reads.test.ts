// Reads back to the host are pipeline drains on a GPU: a training step, an evaluation pass and a
// decoding step on the native backend may make at most one each (value checks run where the
// values live, the gradient norm and clipping on the device). Counted by backend.hostReads.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as path from 'node:path';
import { setBackend } from '../src/core/engine.ts';
import { generate } from '../src/models/generate.ts';
import { Trainer } from '../src/train/trainer.ts';
import { backend, nativeTestOptions, requireNative } from './helpers.ts';
import { tinyConfig, tmpDir, writeCorpus } from './train-fixtures.ts';

/** Host reads of the native backend while fn runs. */
async function readsOf(fn: () => Promise<unknown>): Promise<number> {
  const be = backend('native');
  const before = be.hostReads;
  await fn();
  return be.hostReads - before;
}

// Cubit and softmax layers (LRR on, packed documents, gradient accumulation: every per-step path);
// and local linear layers, full-width and projected (their batched SPD solves run on the device).
const models: [string, Record<string, unknown>][] = [
  ['cubit + softmax', { dModel: 16, nLayers: 2, nHeads: 2, ffnHidden: 32, mixer: ['cubit', 'softmax'] }],
  ['local_linear', { dModel: 16, nLayers: 2, nHeads: 2, ffnHidden: 32, mixer: 'local_linear', localLinear: { rank: 4 } }],
];

for (const [label, model] of models) {
  test(`native, ${label}: a training step, an evaluation pass and a decoding step read back at most once each`, nativeTestOptions(), async () => {
    requireNative();
    setBackend('native');
    const dir = tmpDir('host-reads');
    const corpus = writeCorpus(path.join(dir, 'corpus'), 6, 200);
    const trainer = new Trainer({ config: tinyConfig(corpus, { model, gradAccum: 2, evalBatches: 3 }), out: path.join(dir, 'run'), durable: false });
    try {
      await trainer.step(); // warm-up
      for (let i = 0; i < 3; i++) assert.equal(await readsOf(() => trainer.step()), 1, 'reads in one training step');
      assert.equal(await readsOf(() => trainer.evaluate()), 1, 'reads in one evaluation pass (3 batches)');
      trainer.model.eval();
      const prompt = [1, 2, 3, 4, 5];
      const decode = (n: number): Promise<number> => readsOf(() => generate(trainer.model, prompt, { maxNewTokens: n, temperature: 1, seed: 1 }));
      const one = await decode(1), nine = await decode(9);
      assert.ok((nine - one) / 8 <= 1, `reads per decoding step: ${(nine - one) / 8} (1 token: ${one}, 9 tokens: ${nine})`);
    } finally {
      trainer.dispose();
    }
  });
}
