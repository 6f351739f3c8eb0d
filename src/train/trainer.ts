// The training loop, in one sitting as nanoGPT's: each step runs gradAccum micro-batches of
// forward + backward (each in its own memory scope, the loss divided by gradAccum so the gradients
// sum to the mean's), clips the global gradient norm, takes one AdamW step at the scheduled
// learning rate and zeroes the gradients. A step whose loss or gradient is not finite is skipped
// (no parameter or optimizer-state change) and counted; maxNonFinite of them in a row stop the run.
// Every evalEvery steps the model is scored on a fixed set of validation batches (mean loss in
// nats per token and bits per byte); every checkpointEvery steps, and at the end, a checkpoint is
// written (checkpoint.ts). A resumed run continues bit-identically: weights, moments, the sampler's
// position and the trainer's generator are restored exactly.
//
// metrics.jsonl (in the run folder) gets one JSON object per line:
//   {"kind":"train","step":s,"loss":…,"lr":…,"gradNorm":…,"tokensPerSec":…,"skippedSteps":n,"tokens":…,"time":…}
//       every logEvery steps: loss and gradNorm averaged over the finite steps since the last
//       record, lr of step s, tokens/s of the training compute since the last record (evaluation
//       and checkpoint time excluded), tokens seen so far, seconds since the sitting began.
//   {"kind":"eval","step":s,"evalLoss":…,"evalBpb":…,"evalTokens":…,"time":…}
//   {"kind":"skip","step":s,"reason":"non-finite loss"|"non-finite gradient","inARow":k,"skippedSteps":n,"time":…}
// `step` counts completed optimizer steps (the first step logs as 1). On resume, records after the
// checkpoint's step (a killed sitting's) are dropped before appending.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { getBackend, noGrad, setBackend, tidy } from '../core/engine.ts';
import { hash32, Rng } from '../core/random.ts';
import type { Tensor } from '../core/tensor.ts';
import { BatchSampler, batchTensors, EvalWindows, tokenizeDocuments, type BatchArrays } from '../data/batches.ts';
import { loadCorpus, splitCorpus } from '../data/corpus.ts';
import { checkTokenizer, HfTokenizer, loadTokenizer, sameTokenizer, type Tokenizer } from '../data/tokenizer.ts';
import { Decoder } from '../models/decoder.ts';
import { parseModelConfig } from '../models/config.ts';
import { zeros, tensor } from '../ops/creation.ts';
import { add, div } from '../ops/elementwise.ts';
import { concat, detach, reshape } from '../ops/shape.ts';
import { crossEntropy } from '../ops/nn.ts';
import { parameterCount } from '../models/limits.ts';
import { removeStaleTemps, writeFileAtomicSync } from '../util/atomic.ts';
import { fsErrorMessage, makeFolderSync, openAppendNoFollowSync, readTextFileSync, refuseLink } from '../util/files.ts';
import {
  CHECKPOINT_FILES, CHECKPOINT_FORMAT, CHECKPOINT_OPTIONAL_FILES, CHECKPOINT_FORMAT_VERSION, loadOptimizerInto, loadWeightsInto, readCheckpointInfo, readRunPointer, resolveCheckpoint, RUN_FILES, saveCheckpoint, softwareVersion, type CheckpointConfig,
  type CheckpointInfo, type TrainState,
} from './checkpoint.ts';
import { clipGradNormOnDevice } from './clip.ts';
import { checkCheckpointTensors, checkMemory, crashPoint, pruneCheckpoints } from './run-folder.ts';
import { parseTrainConfig, type TrainConfig } from './config.ts';
import { AdamW } from './optimizer.ts';
import { learningRate, scheduleOf, type LrSchedule } from './schedule.ts';

/** Test hooks into the training step. */
export interface TrainHooks {
  /** Called after a step's backward passes, before clipping (tests inject non-finite gradients here). */
  afterBackward?(step: number, model: Decoder): void;
}

/** Options of {@link train}. */
export interface TrainOptions {
  /** The training config (config.ts); required for a new run, optional on resume (the checkpoint's is used). */
  config?: unknown;
  /** Named in error messages (the config file). */
  configSource?: string;
  /** The run folder. */
  out: string;
  /** Continue the run in `out` from its latest checkpoint. */
  resume?: boolean;
  /** Overrides the config's total steps. */
  steps?: number;
  /** Ends this sitting after this step (a checkpoint is written); the schedule still spans `steps`. */
  stopAt?: number;
  /** Aborting ends the sitting after the current step, with a checkpoint. */
  signal?: AbortSignal;
  /** A registered backend's name ('native', 'reference', …): made the active backend. Default: the active one. */
  backend?: string;
  /** Progress events (the CLI prints them). */
  onEvent?: (e: TrainEvent) => void;
  hooks?: TrainHooks;
  /** fsync checkpoints (default true). */
  durable?: boolean;
}

/**
 * Progress events of {@link train} (`onEvent`): the start, each step, a skipped step, an
 * evaluation, a checkpoint.
 */
export type TrainEvent =
  | { kind: 'start'; step: number; steps: number; end: number; parameters: number; tokensPerStep: number; logEvery: number; resumedFrom: string | null; backend: string }
  | { kind: 'step'; step: number; steps: number; end: number; loss: number; lr: number; gradNorm: number; tokensPerSec: number; skippedSteps: number }
  | { kind: 'skip'; step: number; reason: string; inARow: number }
  | { kind: 'eval'; step: number; loss: number; bpb: number }
  | { kind: 'checkpoint'; step: number; path: string };

/** What {@link train} returns when a sitting ends. */
export interface TrainSummary {
  out: string;
  /** The checkpoint written last (null when the run had nothing to do and had none). */
  checkpoint: string | null;
  /** The step this sitting began at (0 for a new run) and the one it ended at. */
  startStep: number;
  step: number;
  steps: number;
  stopped: 'completed' | 'stop-at' | 'aborted';
  skippedSteps: number;
  /** Mean training loss of the sitting's last logging window (NaN when no step ran). */
  loss: number;
  evalLoss: number | null;
  evalBpb: number | null;
  /** Training tokens per second of this sitting (training compute only). */
  tokensPerSec: number;
  seconds: number;
  parameters: number;
}

/** Thrown when maxNonFinite steps in a row had a non-finite loss or gradient. */
export class NonFiniteError extends Error {
  constructor(message: string, readonly step: number, readonly checkpoint: string | null) { super(message); }
}

/** What one {@link Trainer} step did. */
export interface StepResult {
  /** Mean loss over the micro-batches (nats per target). */
  loss: number;
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Why the step was skipped, or null when it was taken. */
  skipped: string | null;
}

/** The validation loss {@link Trainer} measures every evalEvery steps. */
export interface EvalResult {
  /** Mean loss in nats per scored token. */
  loss: number;
  bpb: number;
  tokens: number;
}

interface EvalSet {
  batches: BatchArrays[];
  tokens: number;
  bytes: number;
}

/** Entries a folder may hold and still count as a (checkpoint-less) run folder. */
function isRunDebris(name: string): boolean {
  return name === RUN_FILES.metrics || name === RUN_FILES.checkpoints || name.startsWith(`.${RUN_FILES.pointer}.tmp-`);
}

/**
 * A training run made ready to step: config, data, model, optimizer and position, fresh or resumed.
 * train() drives it; it is exported for callers that want their own loop.
 */
export class Trainer {
  readonly config: TrainConfig;
  readonly schedule: LrSchedule;
  readonly tokenizer: Tokenizer;
  readonly model: Decoder;
  readonly optimizer: AdamW;
  readonly sampler: BatchSampler;
  readonly rng: Rng;
  readonly evalSet: EvalSet | null;
  readonly out: string;
  readonly tokensPerStep: number;
  /** The checkpoint it was resumed from. */
  readonly resumedFrom: string | null;
  readonly state: Omit<TrainState, 'rng' | 'sampler'>;
  /** The seed of the current step for stochastic layers (drawn from the trainer's generator each step). */
  stepSeed = 0;
  lastCheckpoint: string | null;
  private readonly params: Tensor[];
  private readonly inputs: Tensor;
  private readonly targets: Tensor;
  private readonly docIds: Tensor;
  private batch: BatchArrays | undefined;
  private readonly durable: boolean;
  /** Copies of a Hugging Face tokenizer's files for each checkpoint. */
  private readonly tokenizerFiles: { tokenizerJson?: string; tokenizerConfigJson?: string } = {};

  constructor(opts: TrainOptions) {
    this.out = opts.out;
    this.durable = opts.durable ?? true;
    let info: CheckpointInfo | null = null;
    if (opts.resume) {
      const pointer = readRunPointer(opts.out);
      if (!pointer) throw new Error(`${opts.out}: no checkpoint to resume (${RUN_FILES.pointer} is missing); start a new run without --resume`);
      info = readCheckpointInfo(resolveCheckpoint(opts.out));
      // Headers against config.json (and the memory a model that size needs) before anything is built.
      const files = { model: path.join(info.dir, CHECKPOINT_FILES.model), optimizer: path.join(info.dir, CHECKPOINT_FILES.optimizer) };
      try { checkCheckpointTensors(info.config.model, files, info.dir); } catch (e) { throw new Error(`cannot resume ${info.dir}: ${(e as Error).message}`); }
    } else {
      checkNewRunFolder(opts.out);
    }
    this.resumedFrom = info?.dir ?? null;

    // The config: the given one (a new run, or a resume that changes hyperparameters), else the checkpoint's.
    const source = opts.config !== undefined ? (opts.configSource ?? 'training config') : `${info!.dir}/${CHECKPOINT_FILES.config}`;
    const raw = opts.config !== undefined ? opts.config : { ...info!.config.training, model: info!.config.model };
    if (raw === undefined) throw new Error('train: a config is needed for a new run');
    const first = parseTrainConfig(raw, source);
    this.tokenizer = info && opts.config === undefined ? resumeTokenizer(first.data.tokenizer, info) : loadTokenizer(first.data.tokenizer);
    let config = parseTrainConfig(raw, source, this.tokenizer.vocabSize);
    if (this.tokenizer instanceof HfTokenizer) {
      this.tokenizerFiles.tokenizerJson = this.tokenizer.json;
      // HfTokenizer.fromFile read BOS/EOS from the tokenizer_config.json beside the file: copy that too.
      const src = this.tokenizer.identity();
      const cfgFile = src.kind === 'hf' && src.source ? path.join(path.dirname(src.source), 'tokenizer_config.json') : null;
      if (cfgFile && fs.existsSync(cfgFile)) this.tokenizerFiles.tokenizerConfigJson = readTextFileSync(cfgFile);
    }
    if (opts.steps !== undefined) {
      if (!Number.isInteger(opts.steps) || opts.steps <= 0 || opts.steps > 1e12) throw new Error(`train: steps must be a positive integer of at most 1e12, got ${opts.steps}`);
      config = { ...config, steps: opts.steps };
    }
    if (info) {
      checkTokenizer(info.config.tokenizer, this.tokenizer, info.dir);
      const saved = JSON.stringify(parseModelConfig(info.config.model)), now = JSON.stringify(config.model);
      if (saved !== now) throw new Error(`cannot resume ${info.dir}: ${source} describes a different model than the checkpoint's (model configs differ)`);
    }
    checkMemory(trainingBytes(config), `training this model (${source})`);
    this.config = config;
    this.schedule = scheduleOf(config);

    // Data: the corpus split by document, tokenized; training rows from a seeded sampler.
    const { data } = config;
    const docs = loadCorpus(data.corpus, { split: data.fileSplit, field: data.textField, extensions: data.extensions });
    const split = splitCorpus(docs, data.split);
    const bosId = this.tokenizer.bosId;
    const trainStream = tokenizeDocuments(split.train, this.tokenizer, { bosId });
    try {
      this.sampler = new BatchSampler(trainStream, { batchSize: config.batchSize, seqLen: config.seqLen, seed: config.seed, mode: data.mode });
    } catch (e) {
      throw new Error(`training data (${data.corpus}, ${split.train.length} documents): ${(e as Error).message.replace(/^BatchSampler: /, '')}`);
    }
    this.evalSet = config.evalBatches > 0 ? buildEvalSet(tokenizeDocuments(split.validation, this.tokenizer, { bosId }), this.tokenizer, config) : null;
    this.tokensPerStep = config.batchSize * config.seqLen * config.gradAccum;

    // Model and optimizer; the gradients live across steps (zeroed in place after each update).
    this.model = new Decoder(config.model, config.seed);
    const named = this.model.namedParameters();
    this.params = named.map(([, p]) => p);
    this.optimizer = new AdamW(named, { beta1: config.beta1, beta2: config.beta2, eps: config.eps, weightDecay: config.weightDecay });
    for (const p of this.params) p.grad = zeros(p.shape, { dtype: p.dtype, backend: p.backend }).keep();
    const B = config.batchSize, T = config.seqLen, i32 = { dtype: 'int32' as const };
    this.inputs = tensor(new Int32Array(B * T), [B, T], i32).keep();
    this.targets = tensor(new Int32Array(B * T), [B, T], i32).keep();
    this.docIds = tensor(new Int32Array(B * T), [B, T], i32).keep();

    this.rng = new Rng(hash32(config.seed, 0x7472));
    this.state = { step: 0, skippedSteps: 0, nonFiniteInARow: 0, tokensSeen: 0, elapsedSeconds: 0 };
    this.lastCheckpoint = null;
    if (info) {
      try {
        loadWeightsInto(this.model, path.join(info.dir, CHECKPOINT_FILES.model));
        loadOptimizerInto(this.optimizer, path.join(info.dir, CHECKPOINT_FILES.optimizer));
        this.sampler.setState(info.state.sampler);
      } catch (e) {
        this.dispose();
        throw new Error(`cannot resume ${info.dir}: ${(e as Error).message.replace(/^BatchSampler\.setState: cannot resume: /, '')}`);
      }
      this.rng.state = info.state.rng.state;
      const { step, skippedSteps, nonFiniteInARow, tokensSeen, elapsedSeconds } = info.state;
      Object.assign(this.state, { step, skippedSteps, nonFiniteInARow, tokensSeen, elapsedSeconds: Number(elapsedSeconds) || 0 });
      this.lastCheckpoint = info.dir;
      finishInterruptedSave(opts.out);
    } else {
      // Only now, with everything checked and built, does the run folder appear.
      try { prepareNewRunFolder(opts.out); } catch (e) { this.dispose(); throw e; }
    }
  }

  get parameters(): number { return this.model.numParameters(); }

  /**
   * One optimizer step: forward + backward over gradAccum micro-batches, clip, AdamW, zero grads.
   * Asynchronous: it awaits its one read (the loss and gradient norm, for the skip decision).
   */
  async step(hooks?: TrainHooks): Promise<StepResult> {
    const accum = this.config.gradAccum;
    const lr = learningRate(this.state.step, this.schedule);
    this.stepSeed = Math.floor(this.rng.next() * 4294967296);
    // The loss and the gradient norm stay on the device until one read of both after clipping:
    // the only read of a step (the skip decision below needs them on the host).
    let lossSum: Tensor | null = null;
    for (let micro = 0; micro < accum; micro++) {
      this.batch = this.sampler.nextArrays(this.batch);
      const b = this.inputs.backend;
      b.write(this.inputs.storage, this.batch.inputs);
      b.write(this.targets.storage, this.batch.targets);
      b.write(this.docIds.storage, this.batch.docIds);
      const part = tidy(() => {
        const l = this.model.loss(this.inputs, this.targets, { docIds: this.docIds });
        const scaled = accum > 1 ? div(l, accum) : l;
        scaled.backward();
        return detach(scaled);
      });
      const prev: Tensor | null = lossSum;
      lossSum = prev ? noGrad(() => add(prev, part)).keep() : part.keep();
      if (prev) { prev.dispose(); part.dispose(); }
    }
    hooks?.afterBackward?.(this.state.step, this.model);
    const normT = clipGradNormOnDevice(this.params, this.config.clip);
    const both = noGrad(() => tidy(() => concat([reshape(lossSum!, [1]), normT ? reshape(normT, [1]) : zeros([1], { dtype: lossSum!.dtype, backend: lossSum!.backend })])));
    let loss: number, norm: number;
    try { [loss, norm] = await both.data(); } finally { for (const t of [both, lossSum!, normT]) t?.dispose(); }
    let skipped: string | null = null;
    if (!Number.isFinite(loss)) skipped = 'non-finite loss';
    else if (!Number.isFinite(norm)) skipped = 'non-finite gradient';
    if (skipped === null) {
      this.optimizer.update(lr);
      this.state.nonFiniteInARow = 0;
    } else {
      this.state.skippedSteps++;
      this.state.nonFiniteInARow++;
    }
    this.zeroGrads();
    this.state.step++;
    this.state.tokensSeen += this.tokensPerStep;
    return { loss, lr, gradNorm: norm, skipped };
  }

  zeroGrads(): void {
    for (const p of this.params) if (p.grad) p.backend.fill(p.grad.storage, 0, 0, p.grad.size);
  }

  /** Mean loss and bits per byte on the fixed validation batches (one read, awaited). */
  async evaluate(): Promise<EvalResult | null> {
    const set = this.evalSet;
    if (!set) return null;
    let nats = 0;
    this.model.eval();
    try {
      // Summed on the device (float32), read once at the end.
      let total: Tensor | null = null;
      noGrad(() => {
        for (const arrays of set.batches) {
          const prev: Tensor | null = total;
          total = tidy(() => {
            const b = batchTensors(arrays);
            const s = crossEntropy(this.model.forward(b.inputs, { docIds: b.docIds }), b.targets, { reduction: 'sum' });
            return prev ? add(prev, s) : s;
          }).keep();
          prev?.dispose();
        }
      });
      const sum = total as Tensor | null;
      if (sum) { try { nats = (await sum.data())[0]; } finally { sum.dispose(); } }
    } finally {
      this.model.train();
    }
    return { loss: nats / set.tokens, bpb: nats / Math.LN2 / set.bytes, tokens: set.tokens };
  }

  /**
   * Writes a checkpoint of the current step; resolves to its folder. Weights or moments that are
   * not finite are never saved (NonFiniteError): the latest checkpoint stays a healthy one.
   */
  async save(): Promise<string> {
    const { step } = this.state;
    for (const [what, tensors] of [['parameter', new Map(this.model.namedParameters())], ['optimizer moment', this.optimizer.stateTensors()]] as const) {
      for (const [name, t] of tensors) {
        const d = await t.data();
        for (let i = 0; i < d.length; i++) {
          if (!Number.isFinite(d[i])) {
            const kept = this.lastCheckpoint ? `the last good checkpoint is ${this.lastCheckpoint}` : 'no checkpoint was written';
            throw new NonFiniteError(`training diverged: ${what} '${name}' is not finite at step ${step}, so no checkpoint was written; ${kept}. Lower lr, lengthen warmupSteps or clip harder, then resume.`, step, this.lastCheckpoint);
          }
        }
      }
    }
    const { model, ...training } = this.config;
    const config: CheckpointConfig = {
      format: CHECKPOINT_FORMAT,
      formatVersion: CHECKPOINT_FORMAT_VERSION,
      software: { name: 'cubit', version: softwareVersion() },
      step,
      parameters: this.parameters,
      model,
      training: JSON.parse(JSON.stringify(training)) as Record<string, unknown>,
      tokenizer: this.tokenizer.identity(),
    };
    const state: TrainState = { ...this.state, rng: { state: this.rng.state }, sampler: this.sampler.state() };
    this.lastCheckpoint = await saveCheckpoint(this.out, { step, model: this.model, optimizer: this.optimizer, config, state, ...this.tokenizerFiles, durable: this.durable });
    return this.lastCheckpoint;
  }

  dispose(): void {
    this.model.dispose();
    this.optimizer.dispose();
    this.inputs.dispose();
    this.targets.dispose();
    this.docIds.dispose();
  }
}

/**
 * The tokenizer of a resumed run (config from the checkpoint): the recorded one where it still is
 * and unchanged, else the checkpoint's own copy (CHECKPOINT_OPTIONAL_FILES).
 */
function resumeTokenizer(spec: string, info: CheckpointInfo): Tokenizer {
  let error: Error | null = null;
  try {
    const t = loadTokenizer(spec);
    if (sameTokenizer(info.config.tokenizer, t.identity())) return t;
  } catch (e) { error = e as Error; }
  if (fs.existsSync(path.join(info.dir, CHECKPOINT_OPTIONAL_FILES.tokenizer))) return HfTokenizer.fromFile(info.dir);
  if (error) throw error;
  return loadTokenizer(spec); // checkTokenizer reports the mismatch
}

/**
 * Finishes what a save killed after moving the pointer left undone: the older checkpoints and
 * stale temporaries go (a resume that has no step left to take would otherwise keep them forever).
 */
function finishInterruptedSave(runDir: string): void {
  const pointer = readRunPointer(runDir);
  if (!pointer) return;
  const [folder, name, ...rest] = pointer.checkpoint.split(/[\\/]/);
  if (folder !== RUN_FILES.checkpoints || !name || rest.length > 0) return;
  pruneCheckpoints(path.join(runDir, RUN_FILES.checkpoints), name);
  removeStaleTemps(path.join(runDir, RUN_FILES.pointer));
}

/**
 * A new run may go into a missing folder, an empty one, or one a sitting left before its first
 * checkpoint. What it left must be what cubit writes: a link in its place (metrics.jsonl aimed at
 * another file, checkpoints/ at another folder) is refused, never written through.
 */
function checkNewRunFolder(out: string): void {
  const pointer = readRunPointer(out);
  if (pointer) throw new Error(`${out} already holds a run (at step ${pointer.step}); pass --resume to continue it, or choose another --out`);
  if (!fs.existsSync(out)) return;
  if (!fs.statSync(out).isDirectory()) throw new Error(`${out}: exists and is not a folder`);
  const foreign = fs.readdirSync(out).filter((n) => !isRunDebris(n));
  if (foreign.length > 0) throw new Error(`${out}: the folder is not empty and holds no run ('${foreign[0]}'); choose another --out`);
  refuseLink(path.join(out, RUN_FILES.metrics), 'file');
  refuseLink(path.join(out, RUN_FILES.checkpoints), 'folder');
}

function prepareNewRunFolder(out: string): void {
  checkNewRunFolder(out);
  // What a sitting killed before its first checkpoint left: start over (only what cubit wrote).
  pruneCheckpoints(path.join(out, RUN_FILES.checkpoints), null);
  makeFolderSync(out);
  try { writeFileAtomicSync(path.join(out, RUN_FILES.metrics), ''); } catch (e) { throw new Error(fsErrorMessage(path.join(out, RUN_FILES.metrics), e, 'cannot write')); }
}

/** A rough upper estimate of what training `c` allocates: weights, gradients, two moments, activations, logits. */
function trainingBytes(c: TrainConfig): number {
  const { dModel: d, ffnHidden: F, nLayers: N, vocabSize: V, nHeads: H } = c.model;
  const tokens = c.batchSize * c.seqLen;
  const block = Math.min(c.seqLen, 64); // a row block of the streamed mixers (the native backend's default)
  const perLayer = tokens * (16 * d + 4 * F) + c.batchSize * H * c.seqLen * block;
  return 4 * (4 * parameterCount(c.model) + N * perLayer + 3 * tokens * V);
}

/** The fixed evaluation batches: up to evalBatches of the validation windows' batches, spread evenly over the split. */
function buildEvalSet(stream: ReturnType<typeof tokenizeDocuments>, tokenizer: Tokenizer, c: TrainConfig): EvalSet {
  const windows = new EvalWindows(stream, { contextLength: c.seqLen, batchSize: c.batchSize });
  const count = windows.batchCount;
  if (count === 0) throw new Error('the validation split has no document of two tokens or more (set evalBatches to 0, or raise data.split.validation)');
  const n = Math.min(c.evalBatches, count);
  const batches: BatchArrays[] = [];
  for (let i = 0; i < n; i++) batches.push(windows.batchArrays(Math.floor((i * count) / n)));
  const tokens = batches.reduce((s, b) => s + b.targetCount, 0);
  let bytes: number;
  if (n === count) bytes = windows.totals.scoredBytes;
  else if (tokenizer.name === 'byte') bytes = tokens;
  else {
    // The UTF-8 bytes of each row's scored targets (a contiguous run of tokens).
    bytes = 0;
    for (const b of batches) {
      for (let r = 0; r < b.B; r++) {
        const ids: number[] = [];
        for (let t = 0; t < b.T; t++) { const id = b.targets[r * b.T + t]; if (id !== windows.ignoreIndex) ids.push(id); }
        if (ids.length) bytes += Buffer.byteLength(tokenizer.decode(ids), 'utf8');
      }
    }
  }
  return { batches, tokens, bytes: Math.max(bytes, 1) };
}

class MetricsLog {
  private fd: number;
  constructor(readonly file: string, keepUpTo: number | null) {
    if (keepUpTo !== null && fs.existsSync(file)) {
      // Drop what a killed sitting logged after the checkpoint it resumes from.
      refuseLink(file, 'file');
      const kept = readTextFileSync(file).split('\n').filter((line) => {
        if (!line.trim()) return false;
        try { return (JSON.parse(line) as { step?: number }).step! <= keepUpTo; } catch { return false; }
      });
      writeFileAtomicSync(file, kept.map((l) => l + '\n').join(''));
    }
    this.fd = openAppendNoFollowSync(file);
  }
  write(record: Record<string, unknown>): void {
    fs.writeSync(this.fd, JSON.stringify(record) + '\n');
  }
  close(): void { fs.closeSync(this.fd); }
}

const round = (x: number, digits = 6): number => (Number.isFinite(x) ? Number(x.toPrecision(digits)) : x);
const nextTick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Trains (or resumes) a run and returns a summary. Throws one-line Errors for user mistakes
 * (config, data, run folder, checkpoint) and NonFiniteError when the loss diverged.
 */
export async function train(opts: TrainOptions): Promise<TrainSummary> {
  if (opts.backend) setBackend(opts.backend);
  const trainer = new Trainer(opts);
  const { config } = trainer;
  const metrics = new MetricsLog(path.join(opts.out, RUN_FILES.metrics), opts.resume ? trainer.state.step : null);
  const emit = opts.onEvent ?? (() => {});
  const startStep = trainer.state.step;
  const end = Math.min(config.steps, opts.stopAt ?? Infinity);
  const began = performance.now();
  const time = (): number => round((performance.now() - began) / 1000, 4);
  let trainSeconds = 0, trainTokens = 0;
  let window = { loss: 0, gradNorm: 0, finite: 0, seconds: 0, tokens: 0 };
  let lastLoss = NaN, rate = 0;
  let lastEval: EvalResult | null = null;
  let stopped: TrainSummary['stopped'] = 'completed';

  const evaluate = async (): Promise<void> => {
    const r = await trainer.evaluate();
    if (!r) return;
    lastEval = r;
    metrics.write({ kind: 'eval', step: trainer.state.step, evalLoss: round(r.loss), evalBpb: round(r.bpb), evalTokens: r.tokens, time: time() });
    emit({ kind: 'eval', step: trainer.state.step, loss: r.loss, bpb: r.bpb });
  };
  const checkpoint = async (): Promise<void> => {
    const p = await trainer.save();
    emit({ kind: 'checkpoint', step: trainer.state.step, path: p });
  };

  try {
    emit({ kind: 'start', step: startStep, steps: config.steps, end, parameters: trainer.parameters, tokensPerStep: trainer.tokensPerStep, logEvery: config.logEvery, resumedFrom: trainer.resumedFrom, backend: getBackend().name });
    while (trainer.state.step < end) {
      if (opts.signal?.aborted) { stopped = 'aborted'; break; }
      const t0 = performance.now();
      const r = await trainer.step(opts.hooks);
      crashPoint('train-step');
      const dt = (performance.now() - t0) / 1000;
      const step = trainer.state.step;
      trainer.state.elapsedSeconds += dt;
      trainSeconds += dt; trainTokens += trainer.tokensPerStep;
      window.seconds += dt; window.tokens += trainer.tokensPerStep;
      if (r.skipped === null) { window.loss += r.loss; window.gradNorm += r.gradNorm; window.finite++; }
      else {
        const { nonFiniteInARow: inARow, skippedSteps } = trainer.state;
        metrics.write({ kind: 'skip', step, reason: r.skipped, inARow, skippedSteps, time: time() });
        emit({ kind: 'skip', step, reason: r.skipped, inARow });
        if (inARow >= config.maxNonFinite) {
          const kept = trainer.lastCheckpoint ? `the last good checkpoint is ${trainer.lastCheckpoint}` : 'no checkpoint was written';
          throw new NonFiniteError(`training diverged: ${inARow} steps in a row had a ${r.skipped} (last at step ${step}, loss ${r.loss}, gradient norm ${r.gradNorm}); ${kept}. Lower lr, lengthen warmupSteps or clip harder, then resume.`, step, trainer.lastCheckpoint);
        }
      }
      if (step % config.logEvery === 0 || step === end) {
        rate = window.seconds > 0 ? window.tokens / window.seconds : 0;
        if (window.finite > 0) lastLoss = window.loss / window.finite;
        metrics.write({
          kind: 'train', step, loss: round(window.finite ? window.loss / window.finite : NaN), lr: round(r.lr),
          gradNorm: round(window.finite ? window.gradNorm / window.finite : NaN), tokensPerSec: round(rate, 5),
          skippedSteps: trainer.state.skippedSteps, tokens: trainer.state.tokensSeen, time: time(),
        });
        window = { loss: 0, gradNorm: 0, finite: 0, seconds: 0, tokens: 0 };
      }
      emit({ kind: 'step', step, steps: config.steps, end, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, tokensPerSec: rate || trainTokens / trainSeconds, skippedSteps: trainer.state.skippedSteps });
      if (config.evalEvery > 0 && step % config.evalEvery === 0 && step !== end) await evaluate();
      // No periodic checkpoint in the middle of a non-finite streak: the latest stays a healthy one.
      if (config.checkpointEvery > 0 && step % config.checkpointEvery === 0 && step !== end && trainer.state.nonFiniteInARow === 0) await checkpoint();
      await nextTick(); // lets signals (Ctrl-C) and output through
    }
    if (stopped === 'completed' && end < config.steps) stopped = 'stop-at';
    if (trainer.state.step > startStep) {
      await evaluate();
      await checkpoint();
    }
    return {
      out: opts.out,
      checkpoint: trainer.lastCheckpoint,
      startStep,
      step: trainer.state.step,
      steps: config.steps,
      stopped,
      skippedSteps: trainer.state.skippedSteps,
      loss: lastLoss,
      evalLoss: (lastEval as EvalResult | null)?.loss ?? null,
      evalBpb: (lastEval as EvalResult | null)?.bpb ?? null,
      tokensPerSec: trainSeconds > 0 ? trainTokens / trainSeconds : 0,
      seconds: (performance.now() - began) / 1000,
      parameters: trainer.parameters,
    };
  } finally {
    metrics.close();
    trainer.dispose();
  }
}
