// Text generation from a prompt: temperature, top-k and top-p (nucleus) sampling from a seeded
// generator, or greedy decoding (temperature 0).
//
// 'cached' (default) decodes with the mixers' decode states: the prompt runs once as a prefill
// (the parallel kernels), then each new token is one step that reads the per-layer caches, so it
// costs O(context) (O(window) for a sliding-window model) instead of a whole forward pass.
// 'recompute' reruns the full forward over every token so far at each step: O(context²) per token,
// kept as the oracle the cached path is tested against.
import { noGrad, tidy, withBackend } from '../core/engine.ts';
import { Rng } from '../core/random.ts';
import type { Tensor } from '../core/tensor.ts';
import { tensor } from '../ops/creation.ts';
import { slice } from '../ops/shape.ts';
import type { MixerState } from '../mixers/modules.ts';
import type { Decoder } from './decoder.ts';

/** How {@link sampleToken} picks a token from logits. */
export interface SamplingOptions {
  /** Logits are divided by it before sampling; 0 picks the most likely token (greedy). Default 1. */
  temperature?: number;
  /** Sample among the k most likely tokens only; 0 (default) keeps all. */
  topK?: number;
  /** Sample from the smallest set of most likely tokens whose probability reaches p; 1 (default) keeps all. */
  topP?: number;
}

/** Options of {@link generate}. */
export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate at most (≥ 0). */
  maxNewTokens: number;
  /** Seed of the sampling generator (default 0); the same seed gives the same tokens. */
  seed?: number;
  /** Generation stops after emitting one of these ids (e.g. the tokenizer's end-of-text); it is included in `tokens`. */
  stopIds?: readonly number[];
  /** 'cached' (default): decode states; 'recompute': the full forward each token (testing). */
  mode?: 'cached' | 'recompute';
  /**
   * The most tokens the model reads (null: no limit): a longer prompt is an error, and generation
   * stops (reason 'context') once the next step would read more.
   */
  maxContext?: number | null;
  /** Called with each new token as it is chosen (streaming output). */
  onToken?: (id: number, index: number) => void;
  /** Return the logits each token was drawn from (tests; costs vocab floats per token). */
  keepLogits?: boolean;
}

/** Why generation stopped: a stop id ('stop'), maxNewTokens ('length') or maxContext ('context'). */
export type StopReason = 'stop' | 'length' | 'context';

/** What {@link generate} returns. */
export interface GenerateResult {
  /** The generated ids (the prompt excluded; a stop id, when hit, is the last one). */
  tokens: number[];
  stopReason: StopReason;
  promptTokens: number;
  /** Seconds spent on the prompt (prefill and the first token) and on the rest. */
  prefillSeconds: number;
  decodeSeconds: number;
  /** With keepLogits: logits[i] is what tokens[i] was drawn from (before temperature). */
  logits?: Float32Array[];
}

/** Checks sampling options; throws one line naming the bad one. */
export function checkSamplingOptions(o: SamplingOptions): Required<SamplingOptions> {
  const temperature = o.temperature ?? 1, topK = o.topK ?? 0, topP = o.topP ?? 1;
  if (!(Number.isFinite(temperature) && temperature >= 0)) throw new Error(`temperature must be a finite number ≥ 0, got ${temperature}`);
  if (!(Number.isInteger(topK) && topK >= 0)) throw new Error(`topK must be an integer ≥ 0 (0: off), got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new Error(`topP must be in (0, 1], got ${topP}`);
  return { temperature, topK, topP };
}

/**
 * Draws one token id from `logits` (vocab-sized). Greedy (temperature 0) takes the first largest.
 * Otherwise p ∝ exp(logit / temperature), restricted to the topK most likely (ties: lower id
 * first) and then to the shortest prefix of those, by decreasing probability, whose mass reaches
 * topP (renormalised); one uniform draw from `rng` picks the token.
 */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, rng: Rng): number {
  const { temperature, topK, topP } = checkSamplingOptions(options);
  const V = logits.length;
  if (V === 0) throw new Error('sampleToken: empty logits');
  let best = -1, bestLogit = -Infinity;
  for (let i = 0; i < V; i++) {
    const z = logits[i];
    if (Number.isNaN(z)) throw new Error(`sampleToken: logit ${i} is NaN (the model diverged?)`);
    if (z > bestLogit) { bestLogit = z; best = i; }
  }
  if (best < 0) throw new Error('sampleToken: every logit is −∞');
  if (temperature === 0) return best;

  const u = rng.next();
  if (topK === 0 && topP === 1) {
    // No truncation: walk the ids in order, no sort needed.
    const w = new Float64Array(V);
    let total = 0;
    for (let i = 0; i < V; i++) { w[i] = Math.exp((logits[i] - bestLogit) / temperature); total += w[i]; }
    return pick(w, null, V, u * total);
  }
  const order = Array.from({ length: V }, (_, i) => i);
  order.sort((a, b) => logits[b] - logits[a] || a - b);
  let n = topK > 0 ? Math.min(topK, V) : V;
  const w = new Float64Array(n);
  let total = 0;
  for (let r = 0; r < n; r++) { w[r] = Math.exp((logits[order[r]] - bestLogit) / temperature); total += w[r]; }
  if (topP < 1) {
    let mass = 0, keep = 0;
    while (keep < n) { mass += w[keep++]; if (mass >= topP * total) break; }
    n = keep;
    total = mass;
  }
  return pick(w, order, n, u * total);
}

/** The first index whose running sum of w exceeds target (the last one with positive weight if rounding runs out). */
function pick(w: Float64Array, order: number[] | null, n: number, target: number): number {
  let acc = 0, last = -1;
  for (let r = 0; r < n; r++) {
    if (w[r] <= 0) continue;
    acc += w[r];
    last = r;
    if (acc > target) break;
  }
  return order ? order[last] : last;
}

/** Logits of the last position of (1, n, V) logits, read back (the one read of a decoding step). */
async function readLastRow(row: Tensor, V: number): Promise<Float32Array> {
  try {
    const v = await row.data();
    if (v.length !== V) throw new Error(`generate: expected ${V} logits, got ${v.length}`);
    return v instanceof Float32Array ? v : Float32Array.from(v);
  } finally {
    row.dispose();
  }
}

/** The last position of (1, n, V) logits as a (1, 1, V) tensor. */
const lastPosition = (logits: Tensor): Tensor => slice(logits, 1, logits.shape[1] - 1, logits.shape[1]);

/** Ids as an int32 (1, n) tensor on the model's backend. */
function idTensor(model: Decoder, ids: ArrayLike<number>): Tensor {
  return tensor(Int32Array.from(ids), [1, ids.length], { dtype: 'int32', backend: model.embed.weight.backend });
}

/**
 * Continues `prompt` (token ids, at least one) with up to maxNewTokens tokens. Runs without
 * gradients; every tensor it makes is freed before it resolves (the decode states included).
 * Asynchronous: each step reads its logits back with `await` (a GPU backend has no synchronous read).
 */
export async function generate(model: Decoder, prompt: ArrayLike<number>, options: GenerateOptions): Promise<GenerateResult> {
  const sampling = checkSamplingOptions(options);
  const maxNew = options.maxNewTokens;
  if (!(Number.isInteger(maxNew) && maxNew >= 0)) throw new Error(`maxNewTokens must be an integer ≥ 0, got ${maxNew}`);
  const mode = options.mode ?? 'cached';
  if (mode !== 'cached' && mode !== 'recompute') throw new Error(`mode must be 'cached' or 'recompute', got '${String(mode)}'`);
  const V = model.config.vocabSize;
  const P = prompt.length;
  if (P === 0) throw new Error('the prompt is empty: give at least one token (the byte tokenizer has no begin-of-text token to start from)');
  for (let i = 0; i < P; i++) {
    const id = prompt[i];
    if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new Error(`prompt token ${i} is ${id}, outside the vocabulary [0, ${V})`);
  }
  const maxContext = options.maxContext ?? null;
  if (maxContext !== null) {
    if (!(Number.isInteger(maxContext) && maxContext > 0)) throw new Error(`maxContext must be a positive integer or null, got ${maxContext}`);
    if (P > maxContext) throw new Error(`the prompt has ${P} tokens, more than the ${maxContext} allowed (maxContext)`);
  }
  const stop = new Set(options.stopIds ?? []);
  const rng = new Rng(options.seed ?? 0);
  const keepLogits = options.keepLogits ?? false;
  const seq = Array.from(prompt);
  const tokens: number[] = [];
  const kept: Float32Array[] = [];
  let stopReason: StopReason = 'length';
  let prefillSeconds = 0;
  const t0 = performance.now();
  let states: MixerState[] | null = null;

  // The logits after the tokens so far: for 'cached', `fresh` holds the tokens not yet fed to the states.
  // Each step's ops run synchronously (grad mode and memory scopes are synchronous); only the read awaits.
  // The model's backend is made active for each step: an await lets the caller's scope end.
  const backend = model.embed.weight.backend;
  const next = (fresh: number[]): Promise<Float32Array> => readLastRow(withBackend(backend, () => noGrad(() => tidy(() => {
    if (mode === 'recompute') return lastPosition(model.forward(idTensor(model, seq)));
    states ??= model.initStates();
    return lastPosition(model.step(idTensor(model, fresh), states));
  }))), V);

  try {
    if (maxNew > 0) {
      let logits = await next(seq);
      for (;;) {
        const id = sampleToken(logits, sampling, rng);
        if (keepLogits) kept.push(logits);
        if (tokens.length === 0) prefillSeconds = (performance.now() - t0) / 1000;
        tokens.push(id);
        seq.push(id);
        options.onToken?.(id, tokens.length - 1);
        if (stop.has(id)) { stopReason = 'stop'; break; }
        if (tokens.length >= maxNew) { stopReason = 'length'; break; }
        if (maxContext !== null && seq.length > maxContext) { stopReason = 'context'; break; }
        logits = await next([id]);
      }
    }
  } finally {
    for (const s of (states as MixerState[] | null) ?? []) s.dispose();
  }
  const total = (performance.now() - t0) / 1000;
  const result: GenerateResult = { tokens, stopReason, promptTokens: P, prefillSeconds, decodeSeconds: Math.max(0, total - prefillSeconds) };
  if (keepLogits) result.logits = kept;
  return result;
}
