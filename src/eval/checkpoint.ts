// A model ready for inference: loadModel reads it with the trainer's checkpoint reader
// (src/train/checkpoint.ts: a run folder's latest checkpoint, a checkpoint folder, or a model folder
// that `cubit export` wrote) together with
// its tokenizer. This is the one loader the library, the CLI and the experiments use. Also the
// header-only summary that `cubit info <checkpoint>` prints.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { withBackend } from '../core/engine.ts';
import {
  ByteTokenizer, checkTokenizer, HfTokenizer, loadTokenizer, type Tokenizer, type TokenizerIdentity,
} from '../data/tokenizer.ts';
import { SafetensorsFile } from '../io/safetensors.ts';
import { layerMixers, type MixerKind, type ModelConfig } from '../models/config.ts';
import { Decoder } from '../models/decoder.ts';
import { parameterShapes } from '../models/limits.ts';
import { CHECKPOINT_FILES, loadWeightsInto, readModelInfo, type ModelInfo } from '../train/checkpoint.ts';
import { checkCheckpointTensors, checkFiniteTensor } from '../train/run-folder.ts';

/** What {@link loadModel} returns: a model in eval mode with the tokenizer it was trained with. */
export interface LoadedModel {
  /** The model, on the backend it was loaded on; `model.dispose()` frees its weights. */
  model: Decoder;
  /** The tokenizer the model was trained with: text → ids for the model, ids → text back. */
  tokenizer: Tokenizer;
  /** The model's config (sizes, mixers). */
  config: ModelConfig;
  /** The folder the weights were read from (a run folder's latest checkpoint). */
  dir: string;
  /** Optimizer steps the model was trained for. */
  step: number;
  /** The training sequence length (evaluation flags the lengths beyond it), when recorded. */
  trainSeqLen: number | null;
  /** The training config without its model (data.corpus, data.split, seqLen, …); empty when unknown. */
  training: Record<string, unknown>;
}

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /** 'byte' or a tokenizer.json path (or a Tokenizer) instead of the checkpoint's own; it must match. */
  tokenizer?: Tokenizer | string;
  /** Backend to build the model on (default: the active one). */
  backend?: string;
}

function isFile(p: string): boolean {
  try { return fs.statSync(p).isFile(); } catch { return false; }
}

function obj(v: unknown): Record<string, unknown> {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/**
 * The tokenizer of a checkpoint: `given` (checked against the recorded identity); else the byte
 * tokenizer when that is what was recorded; else the first tokenizer.json whose sha256 matches,
 * looked for in the checkpoint folder, the run folder, the recorded source and the training
 * config's data.tokenizer.
 */
export function checkpointTokenizer(info: ModelInfo, given?: Tokenizer | string): Tokenizer {
  const where = `the checkpoint ${info.dir}`;
  const id: TokenizerIdentity = info.config.tokenizer;
  let tok: Tokenizer | null = null;
  if (given !== undefined) {
    tok = typeof given === 'string' ? loadTokenizer(given) : given;
    checkTokenizer(id, tok, where);
  } else if (id.kind === 'byte') {
    tok = new ByteTokenizer();
  } else {
    const run = path.dirname(path.dirname(info.dir));
    const places = [info.dir, run].map((d) => path.join(d, 'tokenizer.json'));
    if (id.source) places.push(id.source);
    const spec = obj(obj(info.config.training).data).tokenizer;
    if (typeof spec === 'string' && spec !== 'byte') places.push(fs.existsSync(spec) && fs.statSync(spec).isDirectory() ? path.join(spec, 'tokenizer.json') : spec);
    for (const f of places) {
      if (!isFile(f)) continue;
      let t: HfTokenizer;
      try { t = HfTokenizer.fromFile(f); } catch { continue; }
      if (t.sha256 === id.sha256) { tok = t; break; }
    }
    if (!tok) throw new Error(`${where}: its tokenizer (${id.source ?? 'a tokenizer.json'}, sha256 ${id.sha256.slice(0, 12)}…) was not found; pass it with --tokenizer`);
  }
  if (tok.vocabSize > info.config.model.vocabSize) {
    throw new Error(`tokenizer mismatch: ${tok.name} has ${tok.vocabSize} tokens but the model's vocabulary is ${info.config.model.vocabSize}`);
  }
  return tok;
}

function positiveIntOrNull(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : null;
}

/**
 * Loads the model of a run folder's latest checkpoint (or of a checkpoint folder, or of a model
 * folder that {@link exportModel} wrote) with its tokenizer, ready for {@link generateText}, {@link generate} and {@link evaluate}. The config,
 * state and tokenizer are checked before any tensor is read; every problem is one Error line
 * naming the file.
 *
 * @example
 * const { model, tokenizer } = loadModel('runs/tiny-cubit');
 * const { text } = await generateText({ model, tokenizer }, 'The jury said', { maxNewTokens: 40 });
 * model.dispose();
 */
export function loadModel(p: string, opts: LoadModelOptions = {}): LoadedModel {
  const info = readModelInfo(p);
  const tokenizer = checkpointTokenizer(info, opts.tokenizer);
  checkCheckpointTensors(info.config.model, { model: path.join(info.dir, CHECKPOINT_FILES.model) }, info.dir);
  const build = (): Decoder => {
    const model = new Decoder(info.config.model, 0);
    try { loadWeightsInto(model, path.join(info.dir, CHECKPOINT_FILES.model)); } catch (e) { model.dispose(); throw e; }
    return model.eval();
  };
  const model = opts.backend ? withBackend(opts.backend, build) : build();
  const training = obj(info.config.training);
  return {
    model, tokenizer, config: info.config.model, dir: info.dir, step: info.config.step,
    trainSeqLen: positiveIntOrNull(training.seqLen), training,
  };
}

/** The parameter names and shapes a config's model has (computed: nothing is built). */
export function expectedTensors(config: ModelConfig): { name: string; shape: number[] }[] {
  return parameterShapes(config);
}

/** What `cubit info <checkpoint>` reports. */
export interface CheckpointSummary {
  checkpoint: string;
  files: { name: string; bytes: number }[];
  step: number;
  format: string;
  formatVersion: number;
  software: unknown;
  model: ModelConfig;
  mixers: MixerKind[];
  tokenizer: TokenizerIdentity;
  trainSeqLen: number | null;
  parameters: number;
  tensors: { name: string; dtype: string; shape: number[] }[];
  /** Differences between model.safetensors and what config.json implies (empty: consistent). */
  problems: string[];
  training: Record<string, unknown>;
  /** The trainer state (null for a model folder). */
  state: Record<string, unknown> | null;
}

/**
 * Reads a checkpoint's config, state and tensor headers and checks them against each other; no
 * model is built. When the headers agree with config.json, each tensor's data is then read, one
 * at a time, to report non-finite values.
 */
export function summarizeCheckpoint(p: string): CheckpointSummary {
  const info = readModelInfo(p);
  const file = SafetensorsFile.open(path.join(info.dir, CHECKPOINT_FILES.model));
  try {
    const tensors = file.names.map((name) => {
      const t = file.info(name);
      return { name, dtype: t.stored, shape: t.shape };
    });
    const problems: string[] = [];
    const have = new Map(tensors.map((t) => [t.name, t]));
    const expected = expectedTensors(info.config.model);
    for (const e of expected) {
      const t = have.get(e.name);
      if (!t) problems.push(`missing tensor '${e.name}' [${e.shape.join(', ')}]`);
      else if (t.shape.join(',') !== e.shape.join(',')) problems.push(`tensor '${e.name}' is [${t.shape.join(', ')}], config.json implies [${e.shape.join(', ')}]`);
      else if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') problems.push(`tensor '${e.name}' is ${t.dtype}, parameters are F32 (or F16/BF16, widened on load)`);
    }
    const names = new Set(expected.map((e) => e.name));
    for (const t of tensors) if (!names.has(t.name)) problems.push(`unexpected tensor '${t.name}'`);
    if (problems.length === 0) {
      for (const t of tensors) {
        try { checkFiniteTensor(file.path, t.name, file.read(t.name)); } catch (e) { problems.push((e as Error).message.replace(/^checkpoint [^:]*: /, '')); }
      }
    }
    const training = obj(info.config.training);
    return {
      checkpoint: info.dir,
      files: fs.readdirSync(info.dir).sort().map((name) => ({ name, bytes: fs.statSync(path.join(info.dir, name)).size })),
      step: info.config.step,
      format: info.config.format,
      formatVersion: info.config.formatVersion,
      software: info.config.software,
      model: info.config.model,
      mixers: layerMixers(info.config.model),
      tokenizer: info.config.tokenizer,
      trainSeqLen: positiveIntOrNull(training.seqLen),
      parameters: tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0),
      tensors,
      problems,
      training,
      state: info.state as unknown as Record<string, unknown> | null,
    };
  } finally {
    file.close();
  }
}
