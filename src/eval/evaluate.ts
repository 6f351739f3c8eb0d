// Held-out evaluation: loss (nats per token), perplexity, bits per token and bits per byte of a
// model on a token stream, at several context lengths — including lengths beyond the one it was
// trained at, which is where the mixers differ most.
//
// Each length walks the documents with EvalWindows (src/data/batches.ts): windows of
// `contextLength` inputs moved by `stride` tokens, each document on its own, every target scored
// exactly once, in the first window that holds it. With stride < contextLength every target after
// a document's first window sees at least contextLength − stride tokens of context (sliding-window
// evaluation); stride = contextLength gives disjoint windows (cheaper, less context on average).
import { noGrad, tidy, withBackend } from '../core/engine.ts';
import { crossEntropy } from '../ops/nn.ts';
import { batchTensors, EvalWindows, IGNORE_INDEX, type TokenStream } from '../data/batches.ts';
import type { Decoder } from '../models/decoder.ts';
import { MAX_CONTEXT } from '../models/limits.ts';

/** Stride in tokens, or as a fraction of each context length (rounded, at least 1). */
export type StrideSpec = number | { fraction: number };

/** Options of {@link evaluate}. */
export interface EvaluateOptions {
  /** Context lengths (input tokens per window) to evaluate, each a positive integer. */
  contextLengths: readonly number[];
  /** Default { fraction: 0.5 }: each window moves by half its length. A stride longer than a length is cut to it. */
  stride?: StrideSpec;
  /** Windows per forward pass; default: as many as fit batchTokens (at least 1). */
  batchSize?: number;
  /** Input tokens per forward pass when batchSize is not given (default 8192). */
  batchTokens?: number;
  /** The length the model was trained at, to flag the lengths beyond it (null: unknown). */
  trainSeqLen?: number | null;
  /** Called after each batch. */
  onProgress?: (p: { contextLength: number; batch: number; batches: number }) => void;
}

/** What {@link evaluate} measured at one context length. */
export interface LengthResult {
  contextLength: number;
  stride: number;
  /** contextLength > the training length (null when that is unknown). */
  beyondTraining: boolean | null;
  /** Mean cross-entropy per scored token, in nats. */
  loss: number;
  perplexity: number;
  bitsPerToken: number;
  /** Summed loss in bits over the UTF-8 bytes the scored tokens stand for. */
  bitsPerByte: number;
  /** Targets scored (each document's tokens after its first). */
  tokens: number;
  bytes: number;
  documents: number;
  windows: number;
  batchSize: number;
  /** Input positions run through the model (padding included): the cost of this stride. */
  positions: number;
  seconds: number;
  /** Scored tokens per second. */
  tokensPerSecond: number;
}

/** The stride in tokens that `spec` gives at `contextLength` (at least 1, at most contextLength). */
export function resolveStride(spec: StrideSpec, contextLength: number): number {
  if (typeof spec === 'number') {
    if (!(Number.isInteger(spec) && spec > 0)) throw new Error(`stride must be a positive integer number of tokens, got ${spec}`);
    return Math.min(spec, contextLength);
  }
  const f = spec.fraction;
  if (!(f > 0 && f <= 1)) throw new Error(`stride fraction must be in (0, 1], got ${f}`);
  return Math.max(1, Math.min(contextLength, Math.round(f * contextLength)));
}

function checkOptions(opts: EvaluateOptions): void {
  if (!Array.isArray(opts.contextLengths) || opts.contextLengths.length === 0) throw new Error('contextLengths must list at least one length');
  for (const L of opts.contextLengths) {
    if (!(Number.isInteger(L) && L > 0)) throw new Error(`context length must be a positive integer, got ${L}`);
    if (L > MAX_CONTEXT) throw new Error(`context length ${L} is over the limit ${MAX_CONTEXT}`);
  }
  if (opts.batchSize !== undefined && !(Number.isInteger(opts.batchSize) && opts.batchSize > 0)) throw new Error(`batchSize must be a positive integer, got ${opts.batchSize}`);
  if (opts.batchTokens !== undefined && !(Number.isInteger(opts.batchTokens) && opts.batchTokens > 0)) throw new Error(`batchTokens must be a positive integer, got ${opts.batchTokens}`);
}

/**
 * Evaluates `model` on `stream` at each context length. Runs without gradients, one batch of
 * windows at a time (each in its own memory scope, with one awaited read of its per-position
 * losses); losses are summed on the host in float64.
 */
export async function evaluate(model: Decoder, stream: TokenStream, opts: EvaluateOptions): Promise<LengthResult[]> {
  checkOptions(opts);
  if (stream.vocabSize > model.config.vocabSize) {
    throw new Error(`the data's tokenizer has ${stream.vocabSize} tokens but the model's vocabulary is ${model.config.vocabSize}`);
  }
  const backend = model.embed.weight.backend;
  const trainLen = opts.trainSeqLen ?? null;
  const results: LengthResult[] = [];
  for (const L of opts.contextLengths) {
    const stride = resolveStride(opts.stride ?? { fraction: 0.5 }, L);
    const B = opts.batchSize ?? Math.max(1, Math.floor((opts.batchTokens ?? 8192) / L));
    const windows = new EvalWindows(stream, { contextLength: L, stride, batchSize: B, ignoreIndex: IGNORE_INDEX });
    const t0 = performance.now();
    let lossSum = 0, counted = 0, positions = 0;
    for (let k = 0; k < windows.batchCount; k++) {
      const arrays = windows.batchArrays(k);
      positions += arrays.B * arrays.T;
      const perPosition = withBackend(backend, () => noGrad(() => tidy(() => {
        const batch = batchTensors(arrays, backend);
        const logits = model.forward(batch.inputs, { docIds: batch.docIds });
        return crossEntropy(logits, batch.targets, { ignoreIndex: IGNORE_INDEX, reduction: 'none' });
      })));
      let losses: ArrayLike<number>;
      try { losses = await perPosition.data(); } finally { perPosition.dispose(); }
      // Ignored targets give 0 in the per-position losses; sum the rest in float64.
      for (let i = 0; i < losses.length; i++) {
        if (arrays.targets[i] === IGNORE_INDEX) continue;
        lossSum += losses[i];
        counted++;
      }
      opts.onProgress?.({ contextLength: L, batch: k + 1, batches: windows.batchCount });
    }
    const { scoredTokens, scoredBytes, documents } = windows.totals;
    if (counted !== scoredTokens) throw new Error(`evaluate: scored ${counted} targets but the windows hold ${scoredTokens} (a bug)`);
    if (counted === 0) throw new Error('evaluate: no targets to score (every document is shorter than two tokens)');
    const seconds = (performance.now() - t0) / 1000;
    const loss = lossSum / counted;
    results.push({
      contextLength: L,
      stride,
      beyondTraining: trainLen === null ? null : L > trainLen,
      loss,
      perplexity: Math.exp(loss),
      bitsPerToken: loss / Math.LN2,
      bitsPerByte: scoredBytes > 0 ? lossSum / Math.LN2 / scoredBytes : NaN,
      tokens: counted,
      bytes: scoredBytes,
      documents,
      windows: windows.totals.windows,
      batchSize: B,
      positions,
      seconds,
      tokensPerSecond: counted / Math.max(seconds, 1e-9),
    });
  }
  return results;
}
