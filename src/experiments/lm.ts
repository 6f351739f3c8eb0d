// One language-model run of an experiment: train (src/train) into <run>/train, then evaluate the
// final model on held-out text at several context lengths (src/eval), optionally with a fraction of
// the context bytes corrupted. Also: the held-out stream, loss-curve analysis (spikes,
// divergence) and a cost model for estimates (timed training steps and forward passes).
import * as path from 'node:path';
import { getBackend, noGrad, tidy } from '../core/engine.ts';
import { hash32 } from '../core/random.ts';
import { batchTensors, EvalWindows, IGNORE_INDEX, tokenizeDocuments, type TokenStream } from '../data/batches.ts';
import { loadCorpus, splitCorpus, type Document } from '../data/corpus.ts';
import { loadTokenizer } from '../data/tokenizer.ts';
import { evaluate } from '../eval/evaluate.ts';
import { Decoder } from '../models/decoder.ts';
import { parseModelConfig, type ModelConfigInput } from '../models/config.ts';
import { tensor } from '../ops/creation.ts';
import { crossEntropy } from '../ops/nn.ts';
import { loadModel } from '../eval/checkpoint.ts';
import { readRunPointer } from '../train/checkpoint.ts';
import { NonFiniteError, train, type TrainEvent } from '../train/trainer.ts';
import { medianMs, settled } from '../bench/measure.ts';
import { readMetrics } from './metrics.ts';
import type { RunContext } from './runner.ts';

export interface DataSpec {
  corpus: string;
  tokenizer: string;
  split: { seed: number; validation: number; test: number };
}

export interface OptimizerSpec {
  lr: number;
  minLr?: number;
  warmupSteps: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  clip: number;
}

export interface EvalSpec {
  /** Context lengths to evaluate at. */
  lengths: number[];
  /** Window stride as a fraction of the length. */
  stride: number;
  batchTokens: number;
  /** Held-out bytes used (the first of the split). */
  maxBytes: number;
  /** The held-out split (absent: 'validation', as specs written before the field had). */
  split?: 'validation' | 'test';
}

export interface CorruptionSpec {
  fractions: number[];
  replacement: 'printable' | 'uniform';
  seed: number;
  /** The context length of the corrupted evaluation. */
  contextLength: number;
}

/** Everything that defines an LM run (its JSON is the run's spec). */
export interface LmRunSpec {
  model: ModelConfigInput;
  data: DataSpec;
  seqLen: number;
  batchSize: number;
  steps: number;
  optimizer: OptimizerSpec;
  seed: number;
  checkpointEvery: number;
  eval: EvalSpec;
  corruption?: CorruptionSpec;
}

export interface LmEval {
  contextLength: number;
  loss: number;
  bpb: number;
  tokens: number;
}

export interface LmRunResult {
  /** 'diverged': training stopped on non-finite losses (train's maxNonFinite); no evaluation then. */
  status: 'completed' | 'diverged';
  message: string | null;
  steps: number;
  /** Steps reached (the divergence step when diverged). */
  step: number;
  tokens: number;
  parameters: number;
  skippedSteps: number;
  /** Training tokens per second (training compute, the last sitting). */
  tokensPerSec: number;
  /** Mean training loss over the last 10% of the logged steps (nats per byte-token). */
  finalTrainLoss: number | null;
  /** Per logged step: [step, loss (null when non-finite), gradNorm]. */
  curve: [number, number | null, number | null][];
  eval: LmEval[];
  corrupted: (LmEval & { fraction: number })[];
}

// ---- held-out data ----

const docCache = new Map<string, Document[]>();

/** The first `maxBytes` (UTF-16 length as a proxy, cut at the end) of a held-out split, tokenized. */
export function heldOutStream(data: DataSpec, maxBytes: number, split: 'validation' | 'test' = 'validation'): TokenStream {
  const key = `${data.corpus}\0${data.split.seed}\0${data.split.validation}\0${data.split.test}\0${split}`;
  let docs = docCache.get(key);
  if (!docs) {
    docs = splitCorpus(loadCorpus(data.corpus), { ...data.split, by: 'auto' })[split];
    docCache.set(key, docs);
  }
  if (docs.length === 0) throw new Error(`corpus '${data.corpus}': the ${split} split is empty`);
  const picked: Document[] = [];
  let left = maxBytes;
  for (const d of docs) {
    if (left <= 0) break;
    const text = d.text.length > left ? d.text.slice(0, left) : d.text;
    picked.push({ ...d, text });
    left -= Buffer.byteLength(text, 'utf8');
  }
  const tok = loadTokenizer(data.tokenizer);
  return tokenizeDocuments(picked, tok, { bosId: tok.bosId });
}

// ---- corruption ----

const PRINTABLE_LO = 32, PRINTABLE_N = 95; // ' ' … '~'

/**
 * A copy of the stream's tokens with a fraction of positions replaced. Whether position p is
 * corrupted, and by what, depends only on (seed, p), so every model and every window sees the same
 * corrupted text. The replacement always differs from the original token.
 */
export function corruptTokens(stream: TokenStream, fraction: number, replacement: 'printable' | 'uniform', seed: number): Int32Array {
  if (!(fraction >= 0 && fraction < 1)) throw new Error(`corruption fraction must lie in [0, 1), got ${fraction}`);
  const out = Int32Array.from(stream.tokens);
  if (fraction === 0) return out;
  const V = stream.vocabSize;
  for (let p = 0; p < out.length; p++) {
    if (hash32(seed, 2 * p) / 4294967296 >= fraction) continue;
    const h = hash32(seed, 2 * p + 1);
    if (replacement === 'printable' && V === 256) {
      let c = PRINTABLE_LO + (h % PRINTABLE_N);
      if (c === out[p]) c = PRINTABLE_LO + ((c - PRINTABLE_LO + 1) % PRINTABLE_N);
      out[p] = c;
    } else {
      out[p] = (out[p] + 1 + (h % (V - 1))) % V;
    }
  }
  return out;
}

/**
 * Loss and bits per byte when the model reads corrupted inputs but is scored on the clean next
 * tokens (the same windows as evaluate(): stride = fraction of the length).
 */
export async function evaluateCorrupted(model: Decoder, stream: TokenStream, corrupted: Int32Array, contextLength: number, strideFraction: number, batchTokens: number): Promise<LmEval> {
  const stride = Math.max(1, Math.min(contextLength, Math.round(strideFraction * contextLength)));
  const B = Math.max(1, Math.floor(batchTokens / contextLength));
  const clean = new EvalWindows(stream, { contextLength, stride, batchSize: B });
  const noisy = new EvalWindows({ ...stream, tokens: corrupted }, { contextLength, stride, batchSize: B });
  const backend = model.embed.weight.backend;
  let sum = 0, count = 0;
  for (let k = 0; k < clean.batchCount; k++) {
    const c = clean.batchArrays(k), n = noisy.batchArrays(k);
    // One read per batch, awaited (a GPU backend has no synchronous read).
    const t = noGrad(() => tidy(() => {
      const b = batchTensors({ ...c, inputs: n.inputs }, backend);
      return crossEntropy(model.forward(b.inputs, { docIds: b.docIds }), b.targets, { ignoreIndex: IGNORE_INDEX, reduction: 'none' });
    }));
    let losses: ArrayLike<number>;
    try { losses = await t.data(); } finally { t.dispose(); }
    for (let i = 0; i < losses.length; i++) if (c.targets[i] !== IGNORE_INDEX) { sum += losses[i]; count++; }
  }
  if (count === 0) throw new Error('evaluateCorrupted: nothing to score');
  return { contextLength, loss: sum / count, bpb: sum / Math.LN2 / clean.totals.scoredBytes, tokens: count };
}

// ---- the run ----

/** The part of a spec that the training folder depends on (everything but evaluation). */
export function trainPart(s: LmRunSpec): Omit<LmRunSpec, 'eval' | 'corruption'> {
  const { eval: _eval, corruption: _corruption, ...rest } = s;
  return rest;
}

export function trainConfigOf(s: LmRunSpec): Record<string, unknown> {
  const o = s.optimizer;
  return {
    model: s.model,
    data: { corpus: s.data.corpus, tokenizer: s.data.tokenizer, split: { ...s.data.split, by: 'auto' }, mode: 'packed' },
    steps: s.steps, batchSize: s.batchSize, seqLen: s.seqLen, gradAccum: 1,
    lr: o.lr, ...(o.minLr !== undefined ? { minLr: o.minLr } : {}), warmupSteps: Math.min(o.warmupSteps, s.steps),
    weightDecay: o.weightDecay, beta1: o.beta1, beta2: o.beta2, clip: o.clip,
    // No evaluation inside training: the experiment evaluates the final model itself.
    evalEvery: 0, evalBatches: 0,
    checkpointEvery: s.checkpointEvery, logEvery: 1, seed: s.seed,
  };
}

export async function runLm(spec: LmRunSpec, ctx: RunContext): Promise<LmRunResult> {
  const out = path.join(ctx.dir, 'train');
  const resume = readRunPointer(out) !== null;
  if (resume) ctx.log(`continuing from its checkpoint at step ${readRunPointer(out)!.step} of ${spec.steps}`);
  const evalCount = spec.eval.lengths.length + (spec.corruption?.fractions.length ?? 0);
  // Progress: training counts for most of a run; evaluations share the rest.
  const trainShare = 0.85;
  let status: LmRunResult['status'] = 'completed', message: string | null = null;
  let tokensPerSec = 0, parameters = 0, lastLoss = NaN;
  try {
    const summary = await train({
      config: trainConfigOf(spec), configSource: `run ${path.basename(ctx.dir)}`, out, resume, signal: ctx.signal, durable: false,
      onEvent: (e: TrainEvent) => {
        if (e.kind === 'start') parameters = e.parameters;
        if (e.kind === 'step') {
          if (Number.isFinite(e.loss)) lastLoss = e.loss;
          ctx.progress(trainShare * (e.step / e.steps), `step ${e.step}/${e.steps} · loss ${Number.isFinite(lastLoss) ? lastLoss.toFixed(3) : 'nan'} · ${Math.round(e.tokensPerSec)} tok/s`);
        }
      },
    });
    if (summary.stopped === 'aborted') throw new Error('aborted');
    tokensPerSec = summary.tokensPerSec;
    parameters = summary.parameters;
  } catch (e) {
    if (!(e instanceof NonFiniteError)) throw e;
    status = 'diverged';
    message = e.message.split('\n')[0];
  }
  const m = readMetrics(out);
  const curve = m.train.map((r) => [r.step, Number.isFinite(r.loss) ? r.loss : null, Number.isFinite(r.gradNorm) ? r.gradNorm : null] as [number, number | null, number | null]);
  const finite = curve.filter((c) => c[1] !== null).map((c) => c[1] as number);
  const tail = finite.slice(Math.floor(finite.length * 0.9));
  const result: LmRunResult = {
    status, message, steps: spec.steps, step: m.lastStep, tokens: m.lastStep * spec.batchSize * spec.seqLen, parameters,
    skippedSteps: m.skipped, tokensPerSec,
    finalTrainLoss: tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : null,
    curve, eval: [], corrupted: [],
  };
  if (status === 'diverged') return result;

  const { model } = loadModel(out);
  try {
    if (!result.parameters) result.parameters = model.numParameters();
    const stream = heldOutStream(spec.data, spec.eval.maxBytes, spec.eval.split);
    let done = 0;
    const step = (what: string): void => { done++; ctx.progress(trainShare + (1 - trainShare) * (done / Math.max(1, evalCount)), what); };
    for (const L of spec.eval.lengths) {
      const [r] = await evaluate(model, stream, { contextLengths: [L], stride: { fraction: spec.eval.stride }, batchTokens: spec.eval.batchTokens, trainSeqLen: spec.seqLen });
      result.eval.push({ contextLength: L, loss: r.loss, bpb: r.bitsPerByte, tokens: r.tokens });
      step(`eval at ${L}: ${r.bitsPerByte.toFixed(3)} bpb`);
    }
    if (spec.corruption) {
      const c = spec.corruption;
      for (const f of c.fractions) {
        const r = await evaluateCorrupted(model, stream, corruptTokens(stream, f, c.replacement, c.seed), c.contextLength, spec.eval.stride, spec.eval.batchTokens);
        result.corrupted.push({ ...r, fraction: f });
        step(`eval with ${(100 * f).toFixed(0)}% corrupted: ${r.bpb.toFixed(3)} bpb`);
      }
    }
  } finally {
    model.dispose();
  }
  return result;
}

// ---- loss curves ----

export interface SpikeSummary {
  /** Spike events (consecutive spiking steps count once). */
  count: number;
  /** The largest excess of a step's loss over the median of the window before it (nats). */
  maxExcess: number;
  /** Steps where events began. */
  steps: number[];
}

/** Loss spikes: steps whose loss exceeds the median of the previous `window` losses by > threshold. */
export function lossSpikes(curve: readonly [number, number | null, number | null][], window: number, threshold: number): SpikeSummary {
  const out: SpikeSummary = { count: 0, maxExcess: 0, steps: [] };
  const hist: number[] = [];
  let inSpike = false;
  for (const [step, loss] of curve) {
    if (loss === null) { inSpike = false; continue; }
    if (hist.length >= Math.min(window, 5)) {
      const sorted = [...hist].sort((a, b) => a - b);
      const med = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
      const excess = loss - med;
      if (excess > out.maxExcess) out.maxExcess = excess;
      if (excess > threshold) {
        if (!inSpike) { out.count++; out.steps.push(step); }
        inSpike = true;
      } else inSpike = false;
    }
    hist.push(loss);
    if (hist.length > window) hist.shift();
  }
  return out;
}

// ---- cost model ----

const timingCache = new Map<string, number>();

/** Median seconds of `reps` calls after two warm-ups (the first calls of a process also pay for
 * JIT compilation and pool growth), each until the backend has finished it (settled: a GPU's). */
async function timeIt(fn: () => void, reps: number): Promise<number> {
  return (await medianMs(fn, { warmup: 2, minRuns: reps, maxRuns: reps, minMs: 0, settle: settled(getBackend()) })) / 1000;
}

function randomIds(n: number, vocab: number, seed: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = hash32(seed, i) % vocab;
  return a;
}

/** Seconds of one training step (forward + backward + an update's worth of memory traffic) of this model at (B, T). */
export async function timeTrainStep(model: ModelConfigInput, B: number, T: number, reps = 3): Promise<number> {
  const key = `train\0${JSON.stringify(parseModelConfig(model))}\0${B}\0${T}`;
  const hit = timingCache.get(key);
  if (hit !== undefined) return hit;
  const m = new Decoder(model, 0);
  try {
    const V = m.config.vocabSize;
    const ids = randomIds(B * T, V, 1), tg = randomIds(B * T, V, 2);
    const params = m.parameters();
    const s = await timeIt(() => {
      tidy(() => {
        const l = m.loss(tensor(ids, [B, T], { dtype: 'int32' }), tensor(tg, [B, T], { dtype: 'int32' }));
        l.backward();
      });
      for (const p of params) { p.grad?.dispose(); p.grad = null; }
    }, reps);
    // AdamW and clipping read every parameter a few times: small next to the passes, added as 5%.
    timingCache.set(key, s * 1.05);
    return s * 1.05;
  } finally {
    m.dispose();
  }
}

/** Seconds per input token of a no-grad forward pass at context length L (batchTokens per pass). */
export async function timeForwardPerToken(model: ModelConfigInput, L: number, batchTokens: number): Promise<number> {
  const B = Math.max(1, Math.floor(batchTokens / L));
  const key = `fwd\0${JSON.stringify(parseModelConfig(model))}\0${B}\0${L}`;
  const hit = timingCache.get(key);
  if (hit !== undefined) return hit;
  const m = new Decoder(model, 0);
  try {
    const ids = randomIds(B * L, m.config.vocabSize, 3);
    const s = await timeIt(() => noGrad(() => tidy(() => { m.forward(tensor(ids, [B, L], { dtype: 'int32' })); })), 3);
    timingCache.set(key, s / (B * L));
    return s / (B * L);
  } finally {
    m.dispose();
  }
}

/** Estimated seconds of an LM run: its training steps, and evaluation over ~maxBytes tokens per length. */
export async function estimateLmRun(spec: LmRunSpec): Promise<number> {
  const train = spec.steps * await timeTrainStep(spec.model, spec.batchSize, spec.seqLen);
  let evalSeconds = 0;
  // Sliding windows with stride fraction f run each token about 1/f times.
  const evalTokens = spec.eval.maxBytes / spec.eval.stride;
  for (const L of spec.eval.lengths) evalSeconds += evalTokens * await timeForwardPerToken(spec.model, L, spec.eval.batchTokens);
  if (spec.corruption) {
    evalSeconds += spec.corruption.fractions.length * evalTokens * await timeForwardPerToken(spec.model, spec.corruption.contextLength, spec.eval.batchTokens);
  }
  // Loading and tokenizing the corpus, checkpoints: a few seconds per run.
  return train + evalSeconds + 3;
}
