// Generation: decoding with the mixers' caches gives what rerunning the whole forward gives (the
// same tokens, greedy and sampled, and the same logits at every step), for every mixer kind and a
// sliding window that the generation runs past; seeds reproduce; top-k and top-p keep exactly the
// tokens they should, with the right frequencies; limits, stops and bad options; no leaks.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { getBackend, Rng, withBackend } from '../src/index.ts';
import type { ModelConfigInput } from '../src/models/config.ts';
import { Decoder } from '../src/models/decoder.ts';
import { generate, sampleToken, type GenerateOptions } from '../src/models/generate.ts';
import { nativeTestOptions, relErr, requireNative } from './helpers.ts';
import { perturbedModel } from './inference-fixtures.ts';

const base: ModelConfigInput = { vocabSize: 97, dModel: 32, nLayers: 2, nHeads: 2, ffnHidden: 48 };

const models: { name: string; config: ModelConfigInput }[] = [
  { name: 'softmax', config: { mixer: 'softmax' } },
  { name: 'cubit', config: { mixer: 'cubit' } },
  { name: 'local_linear (rank 4)', config: { mixer: 'local_linear', localLinear: { rank: 4 } } },
  { name: 'cubit, window 6', config: { mixer: 'cubit', window: 6 } },
  { name: 'softmax, window 6', config: { mixer: 'softmax', window: 6 } },
  { name: 'local_linear, window 6', config: { mixer: 'local_linear', window: 6 } },
  { name: 'cubit on layer 1 only, shared key', config: { mixer: 'cubit', cubitLayers: [1, 2], cubit: { sharedKey: true } } },
];

const prompt = [5, 17, 3, 88, 42, 42, 7, 60, 1];

const backends = [
  { name: 'reference', opts: {} as { skip?: string } },
  { name: 'native', opts: nativeTestOptions() },
];

function on<T>(backend: string, fn: () => T): T {
  if (backend === 'native') requireNative();
  return withBackend(backend, fn);
}

/** Cached vs recomputed runs of the same options: same tokens, logits within 1e-4 at each step. */
async function assertSameGeneration(model: Decoder, opts: GenerateOptions, what: string): Promise<number[]> {
  const cached = await generate(model, prompt, { ...opts, keepLogits: true });
  const full = await generate(model, prompt, { ...opts, keepLogits: true, mode: 'recompute' });
  assert.deepEqual(cached.tokens, full.tokens, `${what}: tokens differ`);
  assert.equal(cached.logits!.length, cached.tokens.length);
  cached.logits!.forEach((l, i) => {
    const e = relErr(l, full.logits![i]);
    assert.ok(e < 1e-4, `${what}: step ${i} logits relErr ${e.toExponential(2)}`);
  });
  return cached.tokens;
}

describe('cached generation equals full recomputation', () => {
  for (const be of backends) {
    for (const m of models) {
      test(`${m.name}, ${be.name}`, be.opts, () => on(be.name, async () => {
        // Unit-gain mixers (a random init is near uniform), embeddings at 0.3 so that sampling still has choices.
        const model = perturbedModel({ ...base, ...m.config }, 11, 0.3);
        try {
          const greedy = await assertSameGeneration(model, { maxNewTokens: 14, temperature: 0 }, 'greedy');
          assert.equal(greedy.length, 14);
          const sampled = await assertSameGeneration(model, { maxNewTokens: 14, temperature: 1, seed: 5 }, 'sampled');
          await assertSameGeneration(model, { maxNewTokens: 14, temperature: 0.7, topK: 10, topP: 0.9, seed: 9 }, 'top-k/top-p');
          assert.notDeepEqual(greedy, sampled, 'sampling at temperature 1 should not follow the greedy path');
        } finally {
          model.dispose();
        }
      }));
    }
  }

  test('the first step equals the full forward of the prompt (prefill only)', async () => {
    const model = perturbedModel({ ...base, mixer: 'cubit' }, 2);
    try {
      const a = await generate(model, prompt, { maxNewTokens: 1, temperature: 0, keepLogits: true });
      const b = await generate(model, prompt, { maxNewTokens: 1, temperature: 0, keepLogits: true, mode: 'recompute' });
      assert.ok(relErr(a.logits![0], b.logits![0]) < 1e-5);
    } finally {
      model.dispose();
    }
  });
});

describe('seeds', () => {
  test('the same seed reproduces the tokens; other seeds give other tokens', async () => {
    const model = new Decoder({ ...base, mixer: 'softmax' }, 3); // the training init: near-uniform logits
    try {
      const run = async (seed: number): Promise<number[]> => (await generate(model, prompt, { maxNewTokens: 24, seed })).tokens;
      const a = await run(1);
      assert.deepEqual(await run(1), a);
      assert.notDeepEqual(await run(2), a);
      assert.notDeepEqual(await run(3), a);
      // Greedy ignores the seed.
      const g = async (seed: number): Promise<number[]> => (await generate(model, prompt, { maxNewTokens: 8, temperature: 0, seed })).tokens;
      assert.deepEqual(await g(1), await g(2));
    } finally {
      model.dispose();
    }
  });
});

describe('sampleToken', () => {
  const logits = [0.5, 3, -1, 2, 2, -Infinity, 1];
  const softmaxOf = (z: number[], t = 1): number[] => {
    const m = Math.max(...z);
    const e = z.map((v) => Math.exp((v - m) / t));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };
  const frequencies = (opts: Parameters<typeof sampleToken>[1], n = 20000, seed = 1): number[] => {
    const rng = new Rng(seed);
    const counts = new Array(logits.length).fill(0);
    for (let i = 0; i < n; i++) counts[sampleToken(logits, opts, rng)]++;
    return counts.map((c) => c / n);
  };
  const assertFreq = (got: number[], want: number[], what: string): void => {
    // 20000 draws: a standard error of at most 0.0036 per probability; 0.015 is over 4 of them.
    got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 0.015, `${what}: token ${i} drawn with frequency ${g.toFixed(4)}, expected ${want[i].toFixed(4)}`));
  };

  test('greedy takes the first largest logit and never draws', () => {
    const rng = new Rng(1);
    const before = rng.state;
    assert.equal(sampleToken(logits, { temperature: 0 }, rng), 1);
    assert.equal(sampleToken([1, 4, 4, 2], { temperature: 0 }, rng), 1);
    assert.equal(rng.state, before);
  });

  test('temperature 1 draws from softmax(logits); temperature 2 from softmax(logits / 2); −∞ never', () => {
    assertFreq(frequencies({}), softmaxOf(logits), 'T = 1');
    assertFreq(frequencies({ temperature: 2 }), softmaxOf(logits, 2), 'T = 2');
    assert.equal(frequencies({ temperature: 5 })[5], 0);
  });

  test('top-k keeps the k most likely (ties by lower id), renormalised', () => {
    const f = frequencies({ topK: 3 });
    const p = softmaxOf(logits);
    const kept = [1, 3, 4]; // 3, then the tie 2 = 2
    const mass = kept.reduce((s, i) => s + p[i], 0);
    assertFreq(f, p.map((v, i) => (kept.includes(i) ? v / mass : 0)), 'top-3');
    assert.deepEqual(f.map((v, i) => (v > 0 ? i : -1)).filter((i) => i >= 0), kept);
    const f1 = frequencies({ topK: 1, temperature: 3 }, 500);
    assert.equal(f1[1], 1, 'top-1 is greedy at any temperature');
  });

  test('top-p keeps the shortest most-likely prefix reaching p, renormalised', () => {
    const p = softmaxOf(logits); // sorted: 1 (0.47), 3 (0.17), 4 (0.17), 6 (0.06), 0 (0.04), 2 (0.01)
    const order = [1, 3, 4, 6, 0, 2];
    for (const topP of [0.3, 0.6, 0.85, 0.95]) {
      let acc = 0, n = 0;
      while (acc < topP) acc += p[order[n++]];
      const kept = order.slice(0, n);
      const want = p.map((v, i) => (kept.includes(i) ? v / acc : 0));
      const f = frequencies({ topP });
      assertFreq(f, want, `top-p ${topP}`);
      for (let i = 0; i < f.length; i++) if (!kept.includes(i)) assert.equal(f[i], 0, `top-p ${topP} drew token ${i}`);
    }
    // top-k then top-p: p over the top 2 only.
    const f = frequencies({ topK: 2, topP: 0.7 });
    assert.equal(f[1], 1, 'within the top 2, token 1 alone holds 0.73 ≥ 0.7');
  });

  test('bad options and logits are one clear error', () => {
    const rng = new Rng(1);
    assert.throws(() => sampleToken(logits, { temperature: -1 }, rng), /temperature must be a finite number ≥ 0, got -1/);
    assert.throws(() => sampleToken(logits, { topK: 1.5 }, rng), /topK must be an integer ≥ 0/);
    assert.throws(() => sampleToken(logits, { topP: 0 }, rng), /topP must be in \(0, 1\], got 0/);
    assert.throws(() => sampleToken(logits, { topP: 1.2 }, rng), /topP must be in \(0, 1\]/);
    assert.throws(() => sampleToken([0, NaN], {}, rng), /logit 1 is NaN/);
    assert.throws(() => sampleToken([-Infinity, -Infinity], {}, rng), /every logit is −∞/);
  });
});

describe('generate: limits, stops, errors, memory', () => {
  const model = new Decoder({ ...base, mixer: 'cubit', window: 4 }, 5);

  test('stops after a stop id (included), at maxNewTokens, or when the context is full', async () => {
    const greedy = await generate(model, prompt, { maxNewTokens: 6, temperature: 0 });
    assert.equal(greedy.stopReason, 'length');
    assert.equal(greedy.promptTokens, prompt.length);
    const third = greedy.tokens[2];
    const stopped = await generate(model, prompt, { maxNewTokens: 6, temperature: 0, stopIds: [third] });
    assert.equal(stopped.stopReason, 'stop');
    assert.deepEqual(stopped.tokens, greedy.tokens.slice(0, greedy.tokens.indexOf(third) + 1));
    // The model may read 12 tokens: 9 of prompt, then 3 generated are fed back, and a 4th is drawn from them.
    const ctx = await generate(model, prompt, { maxNewTokens: 50, temperature: 0, maxContext: 12 });
    assert.equal(ctx.stopReason, 'context');
    assert.equal(ctx.tokens.length, 12 - prompt.length + 1);
    assert.deepEqual(ctx.tokens, (await generate(model, prompt, { maxNewTokens: 4, temperature: 0 })).tokens);
    assert.deepEqual((await generate(model, prompt, { maxNewTokens: 0 })).tokens, []);
  });

  test('bad prompts and options are one clear error', async () => {
    await assert.rejects(generate(model, [], { maxNewTokens: 3 }), /the prompt is empty/);
    await assert.rejects(generate(model, prompt, { maxNewTokens: 3, maxContext: 8 }), /the prompt has 9 tokens, more than the 8 allowed/);
    await assert.rejects(generate(model, [1, 97], { maxNewTokens: 3 }), /prompt token 1 is 97, outside the vocabulary \[0, 97\)/);
    await assert.rejects(generate(model, prompt, { maxNewTokens: -1 }), /maxNewTokens must be an integer ≥ 0/);
    await assert.rejects(generate(model, prompt, { maxNewTokens: 2, topP: 2 }), /topP must be in \(0, 1\]/);
    await assert.rejects(generate(model, prompt, { maxNewTokens: 2, mode: 'fast' as never }), /mode must be 'cached' or 'recompute'/);
  });

  test('frees everything it makes, decode states included, also when a callback throws', async () => {
    const b = getBackend();
    await generate(model, prompt, { maxNewTokens: 3 }); // warm the rotary tables
    const before = b.memory().bytesInUse;
    await generate(model, prompt, { maxNewTokens: 10, topK: 5 });
    await generate(model, prompt, { maxNewTokens: 10, mode: 'recompute' });
    await assert.rejects(generate(model, prompt, { maxNewTokens: 10, onToken: (_, i) => { if (i === 4) throw new Error('stop here'); } }), /stop here/);
    assert.equal(b.memory().bytesInUse, before);
  });
});
