// Held-out evaluation: a uniform model scores ln V per token; sliding-window totals equal a
// brute-force forward of each target's own context; batch size does not matter; bits per byte
// follows the stream's byte counts; lengths beyond training are flagged; bad options are errors.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { noGrad, tensor, tidy } from '../src/index.ts';
import { ByteTokenizer } from '../src/data/tokenizer.ts';
import { tokenizeDocuments, type TokenStream } from '../src/data/batches.ts';
import { Decoder } from '../src/models/decoder.ts';
import { evaluate, resolveStride } from '../src/eval/evaluate.ts';
import { perturbedModel } from './inference-fixtures.ts';

const docs = [
  { id: 'a', text: 'The quick brown fox jumps over the lazy dog.' },
  { id: 'b', text: 'x' }, // one token: nothing to score
  { id: 'c', text: 'Pack my box with five dozen liquor jugs!' },
  { id: 'd', text: 'Sphinx of black quartz, judge my vow' },
];
const stream = tokenizeDocuments(docs, new ByteTokenizer());

/** Σ −log p(target) with each target's context rebuilt independently of EvalWindows. */
function bruteForce(model: Decoder, s: TokenStream, L: number, S: number): { sum: number; count: number } {
  let sum = 0, count = 0;
  for (let d = 0; d + 1 < s.offsets.length; d++) {
    const toks = s.tokens.subarray(s.offsets[d], s.offsets[d + 1]);
    for (let j = 1; j < toks.length; j++) {
      // Windows start at 0, S, 2S, …; the first whose last target (start + L) reaches j scores it.
      const a = Math.max(0, Math.ceil((j - L) / S)) * S;
      const ctx = toks.subarray(a, j);
      const row = noGrad(() => tidy(() => {
        const logits = model.forward(tensor(Int32Array.from(ctx), [1, ctx.length], { dtype: 'int32' }));
        return Float64Array.from(logits.dataSync().subarray((ctx.length - 1) * model.config.vocabSize));
      }));
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((acc, z) => acc + Math.exp(z - m), 0));
      sum += lse - row[toks[j]];
      count++;
    }
  }
  return { sum, count };
}

describe('evaluate', () => {
  test('a model with all-zero weights is uniform: loss ln V, perplexity V, 8 bits per byte', async () => {
    const model = new Decoder({ vocabSize: 256, dModel: 16, nLayers: 1, nHeads: 2, mixer: 'cubit' }, 1);
    try {
      for (const [, p] of model.namedParameters()) p.backend.write(p.storage, new Float32Array(p.size));
      const [r] = await evaluate(model, stream, { contextLengths: [8], stride: 3 });
      assert.ok(Math.abs(r.loss - Math.log(256)) < 1e-5, `loss ${r.loss}`);
      assert.ok(Math.abs(r.perplexity - 256) < 1e-2);
      assert.ok(Math.abs(r.bitsPerByte - 8) < 1e-5);
      assert.equal(r.tokens, stream.tokens.length - 4); // each document's first token is not a target
      assert.equal(r.documents, 3); // 'x' has no target
    } finally {
      model.dispose();
    }
  });

  for (const mixer of ['softmax', 'cubit', 'local_linear'] as const) {
    test(`${mixer}: totals equal a brute-force forward of each target's context (sliding and disjoint windows)`, async () => {
      const model = perturbedModel({ vocabSize: 256, dModel: 16, nLayers: 2, nHeads: 2, ffnHidden: 24, mixer }, 4, 0.3);
      try {
        for (const [L, S] of [[8, 3], [8, 8], [12, 1], [64, 32]]) {
          const [r] = await evaluate(model, stream, { contextLengths: [L], stride: S, batchSize: 5 });
          const want = bruteForce(model, stream, L, S);
          assert.equal(r.tokens, want.count);
          assert.equal(r.stride, S);
          const got = r.loss * r.tokens;
          assert.ok(Math.abs(got - want.sum) / want.sum < 1e-5, `L ${L} S ${S}: summed loss ${got} vs ${want.sum}`);
        }
      } finally {
        model.dispose();
      }
    });
  }

  test('batch size does not change the result; more context does not hurt a model that uses it', async () => {
    const model = perturbedModel({ vocabSize: 256, dModel: 16, nLayers: 1, nHeads: 2, ffnHidden: 24, mixer: 'softmax' }, 6, 0.3);
    try {
      const [a] = await evaluate(model, stream, { contextLengths: [10], stride: 4, batchSize: 1 });
      const [b] = await evaluate(model, stream, { contextLengths: [10], stride: 4, batchSize: 7 });
      const [c] = await evaluate(model, stream, { contextLengths: [10], stride: 4, batchTokens: 30 });
      assert.equal(c.batchSize, 3);
      assert.ok(Math.abs(a.loss - b.loss) < 1e-6 * a.loss && Math.abs(a.loss - c.loss) < 1e-6 * a.loss);
      assert.equal(a.windows, b.windows);
      assert.ok(a.positions > b.tokens, 'overlapping windows run more positions than they score');
    } finally {
      model.dispose();
    }
  });

  test('bits per byte divides the summed loss in bits by the bytes the targets stand for', async () => {
    const model = perturbedModel({ vocabSize: 256, dModel: 16, nLayers: 1, nHeads: 2, ffnHidden: 24 }, 7, 0.3);
    try {
      const twoBytes: TokenStream = { ...stream, scoredBytes: stream.scoredBytes.map((b) => 2 * b) };
      const [r1] = await evaluate(model, stream, { contextLengths: [16] });
      const [r2] = await evaluate(model, twoBytes, { contextLengths: [16] });
      assert.ok(Math.abs(r1.bitsPerByte - r1.bitsPerToken) < 1e-9, 'byte tokens: bits per byte = bits per token');
      assert.ok(Math.abs(r2.bitsPerByte - r1.bitsPerToken / 2) < 1e-9);
      assert.equal(r2.bytes, 2 * r1.bytes);
      assert.ok(Math.abs(r1.bitsPerToken - r1.loss / Math.LN2) < 1e-12);
      assert.ok(Math.abs(r1.perplexity - Math.exp(r1.loss)) < 1e-9 * r1.perplexity);
    } finally {
      model.dispose();
    }
  });

  test('several lengths in one call, flagged against the training length; stride as a fraction', async () => {
    const model = perturbedModel({ vocabSize: 256, dModel: 16, nLayers: 1, nHeads: 2, ffnHidden: 24, mixer: 'softmax', window: 6 }, 8, 0.3);
    try {
      const rs = await evaluate(model, stream, { contextLengths: [8, 16, 32], trainSeqLen: 16, stride: { fraction: 0.25 } });
      assert.deepEqual(rs.map((r) => r.contextLength), [8, 16, 32]);
      assert.deepEqual(rs.map((r) => r.beyondTraining), [false, false, true]);
      assert.deepEqual(rs.map((r) => r.stride), [2, 4, 8]);
      // One layer of window-6 attention sees 6 tokens whatever the length: with stride ≤ L − 6 every
      // scored target has its full window (not so for Cubit: the solve carries X from earlier tokens).
      assert.ok(Math.abs(rs[1].loss - rs[2].loss) < 1e-5 * rs[1].loss, `${rs[1].loss} vs ${rs[2].loss}`);
      assert.deepEqual((await evaluate(model, stream, { contextLengths: [8] })).map((r) => r.beyondTraining), [null]);
    } finally {
      model.dispose();
    }
  });

  test('bad options are one clear error', async () => {
    const model = new Decoder({ vocabSize: 256, dModel: 16, nLayers: 1, nHeads: 2 }, 1);
    try {
      await assert.rejects(evaluate(model, stream, { contextLengths: [] }), /contextLengths must list at least one length/);
      await assert.rejects(evaluate(model, stream, { contextLengths: [0] }), /context length must be a positive integer, got 0/);
      await assert.rejects(evaluate(model, stream, { contextLengths: [8], stride: 0 }), /stride must be a positive integer number of tokens, got 0/);
      await assert.rejects(evaluate(model, stream, { contextLengths: [8], stride: { fraction: 1.5 } }), /stride fraction must be in \(0, 1\], got 1.5/);
      await assert.rejects(evaluate(model, stream, { contextLengths: [8], batchSize: 0 }), /batchSize must be a positive integer/);
      await assert.rejects(evaluate(model, { ...stream, vocabSize: 300 }, { contextLengths: [8] }), /the data's tokenizer has 300 tokens but the model's vocabulary is 256/);
      const empty = tokenizeDocuments([{ id: 'x', text: 'x' }], new ByteTokenizer());
      await assert.rejects(evaluate(model, empty, { contextLengths: [8] }), /no targets to score/);
      assert.equal(resolveStride(100, 8), 8);
      assert.equal(resolveStride({ fraction: 0.01 }, 8), 1);
    } finally {
      model.dispose();
    }
  });
});
