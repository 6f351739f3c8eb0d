// Run folders and checkpoints. A run folder holds the latest checkpoint, a pointer to it and the
// metrics log:
//
//   <run>/
//     latest.json                 pointer: {"format":"cubit-run","checkpoint":"checkpoints/step-00000200","step":200}
//     metrics.jsonl               one JSON record per line (trainer.ts documents the records)
//     checkpoints/
//       step-00000200/            one checkpoint (the latest; older ones are removed once the pointer moves)
//         model.safetensors       the weights: the model's dotted parameter names, F32, row-major
//         optimizer.safetensors   AdamW moments 'm.<param>' and 'v.<param>' (F32); __metadata__ {"format":"cubit-adamw","step":"<updates taken>"}
//         config.json             model config + training config + tokenizer identity + software version + step
//         state.json              step, trainer RNG, data-sampler position, skipped-step counters
//         tokenizer.json          only for a Hugging Face tokenizer: a copy, so the checkpoint stands alone
//         tokenizer_config.json   with it, a copy of the tokenizer_config.json beside the original (BOS/EOS), if there was one
//
// Saving is crash-safe: the checkpoint folder is written under a temporary name, its files fsynced,
// and renamed into place (writeDirAtomicSync); only then is latest.json replaced (atomically), and
// only then are older checkpoints removed. latest.json is the truth: a process killed at any moment
// leaves it naming a complete checkpoint (or leaves no pointer before the first save). Debris of a
// killed save (a temporary folder, a complete folder the pointer never reached) is cleared by the
// next save.
//
// Test hook: CUBIT_TEST_CRASH="<point>[@<n>]" makes the n-th save (default 1) of this process
// SIGKILL itself at <point>: 'checkpoint-files' (between model.safetensors and
// optimizer.safetensors, inside the temporary folder), 'checkpoint-pointer' (folder in place,
// pointer not yet moved) or 'checkpoint-cleanup' (pointer moved, old checkpoint not yet removed);
// the trainer adds 'train-step' (after an optimizer update, before its metrics record).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Tensor } from '../core/tensor.ts';
import type { TokenizerIdentity } from '../data/tokenizer.ts';
import type { SamplerState } from '../data/batches.ts';
import { SafetensorsFile, writeSafetensorsSync, type TensorRecord } from '../io/safetensors.ts';
import { parseModelConfig, type ModelConfig } from '../models/config.ts';
import type { Decoder } from '../models/decoder.ts';
import { readJsonSync, removeStaleTemps, writeDirAtomicSync, writeFileAtomicSync, writeJsonAtomicSync } from '../util/atomic.ts';
import { lstatOrNull, refuseLink, removeEntrySync } from '../util/files.ts';
import { checkFiniteTensor, crashPoint, pruneCheckpoints } from './run-folder.ts';
import type { AdamW, MomentRecord } from './optimizer.ts';

/** File names of a run folder. */
export const RUN_FILES = {
  pointer: 'latest.json',
  metrics: 'metrics.jsonl',
  checkpoints: 'checkpoints',
} as const;

/** File names inside a checkpoint folder. */
export const CHECKPOINT_FILES = {
  model: 'model.safetensors',
  optimizer: 'optimizer.safetensors',
  config: 'config.json',
  state: 'state.json',
} as const;

/** Every file a complete checkpoint folder holds. */
export const CHECKPOINT_FILE_LIST: readonly string[] = Object.values(CHECKPOINT_FILES);

/**
 * Files a checkpoint holds in some cases: copies of a Hugging Face tokenizer.json and of the
 * tokenizer_config.json beside it (which names BOS/EOS), so that HfTokenizer.fromFile(<checkpoint>)
 * gives the tokenizer the run used. None for the byte tokenizer.
 */
export const CHECKPOINT_OPTIONAL_FILES = {
  tokenizer: 'tokenizer.json',
  tokenizerConfig: 'tokenizer_config.json',
} as const;

/** The `format` of a checkpoint's config.json. */
export const CHECKPOINT_FORMAT = 'cubit-checkpoint';
/** The `format` of a run folder's latest.json. */
export const RUN_POINTER_FORMAT = 'cubit-run';
/** The `format` in optimizer.safetensors' metadata. */
export const OPTIMIZER_FORMAT = 'cubit-adamw';
/** Bumped when a checkpoint written now could not be read by an older reader. */
export const CHECKPOINT_FORMAT_VERSION = 1;

/** The folder name of step `step`'s checkpoint (zero-padded, so names sort by step). */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

/** config.json of a checkpoint. */
export interface CheckpointConfig {
  format: typeof CHECKPOINT_FORMAT;
  formatVersion: number;
  software: { name: 'cubit'; version: string };
  /** Optimizer steps taken when it was saved (skipped ones included). */
  step: number;
  parameters: number;
  model: ModelConfig;
  /** The training config without its model (trainer.ts parses it with config.ts). */
  training: Record<string, unknown>;
  tokenizer: TokenizerIdentity;
}

/** state.json of a checkpoint: what, besides weights and moments, a resumed run needs to continue exactly. */
export interface TrainState {
  step: number;
  /** The trainer's generator (core/random.ts Rng state). */
  rng: { state: number };
  /** The training batch sampler's position (data/batches.ts). */
  sampler: SamplerState;
  /** Steps skipped for a non-finite loss or gradient, over the whole run. */
  skippedSteps: number;
  /** The current run of consecutive skipped steps. */
  nonFiniteInARow: number;
  /** Training tokens consumed (skipped steps included). */
  tokensSeen: number;
  /** Training wall time so far (informational). */
  elapsedSeconds: number;
}

/** latest.json of a run folder: which checkpoint is the latest. */
export interface RunPointer {
  format: typeof RUN_POINTER_FORMAT;
  /** The checkpoint folder, relative to the run folder. */
  checkpoint: string;
  step: number;
}

let cachedVersion: string | null = null;

/** The package version (package.json). */
export function softwareVersion(): string {
  cachedVersion ??= (JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cachedVersion;
}


// ---- saving ----

/** What {@link saveCheckpoint} writes. */
export interface SaveCheckpointInput {
  step: number;
  model: Decoder;
  optimizer: AdamW;
  config: CheckpointConfig;
  state: TrainState;
  /** The text of a Hugging Face tokenizer.json, copied into the checkpoint. */
  tokenizerJson?: string;
  /** The text of its tokenizer_config.json, copied beside it. */
  tokenizerConfigJson?: string;
  /** fsync files and folders (default true; tests of scratch folders may turn it off). */
  durable?: boolean;
}

/** Reads a run folder's pointer; null when there is none. Throws one line on a corrupt pointer. */
export function readRunPointer(runDir: string): RunPointer | null {
  const file = path.join(runDir, RUN_FILES.pointer);
  if (!fs.existsSync(file)) return null;
  const p = readJsonSync<RunPointer>(file);
  if (!p || typeof p !== 'object' || p.format !== RUN_POINTER_FORMAT || typeof p.checkpoint !== 'string' || !Number.isInteger(p.step)) {
    throw new Error(`${file}: not a cubit run pointer (expected {"format":"${RUN_POINTER_FORMAT}","checkpoint":…,"step":…})`);
  }
  if (path.isAbsolute(p.checkpoint) || p.checkpoint.split(/[\\/]/).includes('..')) throw new Error(`${file}: checkpoint '${p.checkpoint}' must be a path inside the run folder`);
  return p;
}

/** The tensors' values read back (awaited: a GPU backend has no synchronous read), by name. */
async function readTensors(tensors: Iterable<readonly [string, Tensor]>): Promise<Map<string, TensorRecord>> {
  const out = new Map<string, TensorRecord>();
  for (const [name, t] of tensors) out.set(name, { dtype: t.dtype, shape: [...t.shape], data: await t.data() });
  return out;
}

/**
 * Writes step `step`'s checkpoint into `runDir` and points latest.json at it; resolves to its
 * folder. Saving the step the pointer already names again does nothing.
 */
export async function saveCheckpoint(runDir: string, input: SaveCheckpointInput): Promise<string> {
  const durable = input.durable ?? true;
  const root = path.join(runDir, RUN_FILES.checkpoints);
  const pointerFile = path.join(runDir, RUN_FILES.pointer);
  // Writes and removals stay inside the run folder: links where cubit writes are refused.
  refuseLink(root, 'folder');
  refuseLink(pointerFile, 'file');
  fs.mkdirSync(root, { recursive: true });
  const rel = `${RUN_FILES.checkpoints}/${checkpointName(input.step)}`;
  const target = path.join(runDir, rel);
  const current = readRunPointer(runDir);
  if (current?.checkpoint === rel && lstatOrNull(target)?.isDirectory()) return target;
  removeStaleTemps(target);
  removeStaleTemps(pointerFile);
  // A complete folder the pointer never reached: a save killed before moving it. Replace it.
  removeEntrySync(root, checkpointName(input.step));

  // Every value is read before the first file is written: the writes below never wait on the device.
  const params = await readTensors(input.model.namedParameters());
  const moments = await readTensors(input.optimizer.stateTensors());
  writeDirAtomicSync(target, (tmp) => {
    writeSafetensorsSync(path.join(tmp, CHECKPOINT_FILES.model), params, { format: 'pt' }, { durable: false });
    crashPoint('checkpoint-files');
    writeSafetensorsSync(path.join(tmp, CHECKPOINT_FILES.optimizer), moments,
      { format: OPTIMIZER_FORMAT, step: String(input.optimizer.step) }, { durable: false });
    writeJsonAtomicSync(path.join(tmp, CHECKPOINT_FILES.state), input.state, { durable: false });
    writeJsonAtomicSync(path.join(tmp, CHECKPOINT_FILES.config), input.config, { durable: false });
    if (input.tokenizerJson !== undefined) writeFileAtomicSync(path.join(tmp, CHECKPOINT_OPTIONAL_FILES.tokenizer), input.tokenizerJson, { durable: false });
    if (input.tokenizerConfigJson !== undefined) writeFileAtomicSync(path.join(tmp, CHECKPOINT_OPTIONAL_FILES.tokenizerConfig), input.tokenizerConfigJson, { durable: false });
  }, { durable });
  crashPoint('checkpoint-pointer');
  const pointer: RunPointer = { format: RUN_POINTER_FORMAT, checkpoint: rel, step: input.step };
  writeJsonAtomicSync(path.join(runDir, RUN_FILES.pointer), pointer, { durable });
  crashPoint('checkpoint-cleanup');
  pruneCheckpoints(root, checkpointName(input.step));
  return target;
}



// ---- loading ----

/** A checkpoint folder's checked config.json and state.json (its tensors are read later). */
export interface CheckpointInfo {
  /** The checkpoint folder. */
  dir: string;
  config: CheckpointConfig;
  state: TrainState;
}

/**
 * The checkpoint a path names: a run folder (its latest.json) or a checkpoint folder itself.
 * Throws one line when there is none.
 */
export function resolveCheckpoint(p: string): string {
  if (!fs.existsSync(p)) throw new Error(`${p}: no such run or checkpoint folder`);
  const pointer = readRunPointer(p);
  if (pointer) {
    const dir = path.join(p, pointer.checkpoint);
    if (!fs.existsSync(dir)) throw new Error(`${path.join(p, RUN_FILES.pointer)}: names ${pointer.checkpoint}, which is missing`);
    return dir;
  }
  if (fs.existsSync(path.join(p, CHECKPOINT_FILES.config))) return p;
  throw new Error(`${p}: no checkpoint (neither a run folder with ${RUN_FILES.pointer} nor a checkpoint folder with ${CHECKPOINT_FILES.config})`);
}

function bad(dir: string, file: string, problem: string): never {
  throw new Error(`checkpoint ${path.join(dir, file)}: ${problem}`);
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** Checks a parsed config.json of a checkpoint (format CHECKPOINT_FORMAT) or a model folder (MODEL_FOLDER_FORMAT). */
function checkConfig(dir: string, config: CheckpointConfig, format: string): void {
  const cf = CHECKPOINT_FILES.config;
  if (!isObject(config) || config.format !== format) bad(dir, cf, `not a cubit ${format === CHECKPOINT_FORMAT ? 'checkpoint' : 'model folder'} config (format is not '${format}')`);
  if (!isCount(config.formatVersion) || config.formatVersion > CHECKPOINT_FORMAT_VERSION) {
    bad(dir, cf, `format version ${String(config.formatVersion)} is newer than this cubit (${softwareVersion()}) reads (${CHECKPOINT_FORMAT_VERSION})`);
  }
  if (!isCount(config.step)) bad(dir, cf, 'step must be a non-negative integer');
  if (!isObject(config.training)) bad(dir, cf, "'training' must be an object");
  const tok = config.tokenizer as unknown;
  if (!isObject(tok) || (tok.kind !== 'byte' && tok.kind !== 'hf') || !isCount(tok.vocabSize)) bad(dir, cf, "'tokenizer' is not a tokenizer identity");
  if (tok.kind === 'hf' && typeof tok.sha256 !== 'string') bad(dir, cf, "'tokenizer.sha256' must be a string");
  try { config.model = parseModelConfig(config.model); } catch (e) { bad(dir, cf, (e as Error).message); }
}

/** Reads and checks a checkpoint folder's config.json and state.json (the tensors are read later). */
export function readCheckpointInfo(dir: string): CheckpointInfo {
  for (const f of CHECKPOINT_FILE_LIST) {
    if (!fs.existsSync(path.join(dir, f))) bad(dir, f, 'missing (incomplete checkpoint)');
  }
  const config = readJsonSync<CheckpointConfig>(path.join(dir, CHECKPOINT_FILES.config));
  checkConfig(dir, config, CHECKPOINT_FORMAT);

  const sf = CHECKPOINT_FILES.state;
  const state = readJsonSync<TrainState>(path.join(dir, sf));
  if (!isObject(state)) bad(dir, sf, 'expected a JSON object');
  for (const key of ['step', 'skippedSteps', 'nonFiniteInARow', 'tokensSeen'] as const) {
    if (!isCount(state[key])) bad(dir, sf, `'${key}' must be a non-negative integer`);
  }
  if (state.step !== config.step) bad(dir, sf, `step ${state.step} differs from config.json's ${config.step}`);
  if (!isObject(state.rng) || !isCount(state.rng.state) || state.rng.state > 0xffffffff) bad(dir, sf, "'rng.state' must be a 32-bit unsigned integer");
  if (!isObject(state.sampler)) bad(dir, sf, "'sampler' must be an object");
  checkPointerStep(dir, config.step);
  return { dir, config, state };
}

/** When `dir` is the checkpoint its run folder's latest.json names, the pointer's step must be the checkpoint's. */
function checkPointerStep(dir: string, step: number): void {
  const runDir = path.dirname(path.dirname(dir));
  if (path.basename(path.dirname(dir)) !== RUN_FILES.checkpoints || !fs.existsSync(path.join(runDir, RUN_FILES.pointer))) return;
  const pointer = readRunPointer(runDir);
  if (!pointer || path.resolve(runDir, pointer.checkpoint) !== path.resolve(dir)) return;
  if (pointer.step !== step) throw new Error(`${path.join(runDir, RUN_FILES.pointer)}: step ${pointer.step} differs from its checkpoint's (${step} in ${path.join(dir, CHECKPOINT_FILES.config)})`);
}




/**
 * Copies a checkpoint's weights into a model's parameters (in place). Names, shapes and dtypes
 * must match exactly; nothing is written unless every tensor checks out.
 */
export function loadWeightsInto(model: Decoder, file: string): void {
  const f = SafetensorsFile.open(file);
  try {
    const params = model.namedParameters();
    const names = new Set(params.map(([n]) => n));
    for (const [name, p] of params) {
      if (!f.has(name)) throw new Error(`checkpoint ${file}: no tensor for parameter '${name}' (a different model?)`);
      const info = f.info(name);
      if (info.dtype !== p.dtype) throw new Error(`checkpoint ${file}: '${name}' is ${info.dtype}, the parameter ${p.dtype}`);
      if (info.shape.length !== p.shape.length || info.shape.some((d, i) => d !== p.shape[i])) {
        throw new Error(`checkpoint ${file}: '${name}' has shape [${info.shape.join(', ')}], the parameter [${p.shape.join(', ')}]`);
      }
    }
    for (const n of f.names) if (!names.has(n)) throw new Error(`checkpoint ${file}: unexpected tensor '${n}' (no such parameter in this model)`);
    const data = params.map(([name]) => {
      const d = f.read(name);
      checkFiniteTensor(file, name, d);
      return d;
    });
    params.forEach(([, p], i) => p.backend.write(p.storage, data[i]));
  } finally {
    f.close();
  }
}

/** Restores an optimizer's moments and step from optimizer.safetensors. */
export function loadOptimizerInto(optimizer: AdamW, file: string): void {
  const f = SafetensorsFile.open(file);
  try {
    if (f.metadata.format !== OPTIMIZER_FORMAT) throw new Error(`checkpoint ${file}: not an optimizer state (metadata format is not '${OPTIMIZER_FORMAT}')`);
    const step = Number(f.metadata.step);
    if (!Number.isInteger(step) || step < 0) throw new Error(`checkpoint ${file}: metadata step '${f.metadata.step}' is not a non-negative integer`);
    const moments = new Map<string, MomentRecord>();
    for (const name of f.names) {
      const info = f.info(name);
      if (info.dtype === 'int32') throw new Error(`checkpoint ${file}: '${name}' is int32, expected float moments`);
      const data = f.read(name) as Float32Array | Float64Array;
      // Second moments are running means of squares: negative is as impossible as NaN.
      checkFiniteTensor(file, name, data, name.startsWith('v.'));
      moments.set(name, { shape: info.shape, data });
    }
    try { optimizer.loadState(step, moments); } catch (e) { throw new Error(`checkpoint ${file}: ${(e as Error).message.replace(/^optimizer state: /, '')}`); }
  } finally {
    f.close();
  }
}

// ---- model folders ----
//
// A model folder is what a trained model needs to be shared on its own (`cubit export`):
//
//   <folder>/
//     model.safetensors   the weights (as in a checkpoint; F16/BF16 tensors are widened on load)
//     config.json         {"format":"cubit-model","model_type":"cubit",…}: a checkpoint's config.json
//                         with another format name and the Hugging Face keys model_type/architectures
//     tokenizer.json      the tokenizer as a Hugging Face tokenizer.json (for the byte tokenizer, one
//                         that reproduces its ids exactly; cubit itself still uses ByteTokenizer)
//
// No optimizer state and no trainer state: it can be evaluated and generated from, not resumed.

/** The `format` of a model folder's config.json. */
export const MODEL_FOLDER_FORMAT = 'cubit-model';
/** The files of a model folder. */
export const MODEL_FOLDER_FILES = {
  model: CHECKPOINT_FILES.model,
  config: CHECKPOINT_FILES.config,
  tokenizer: CHECKPOINT_OPTIONAL_FILES.tokenizer,
} as const;

/** config.json of a model folder. */
export interface ModelFolderConfig extends Omit<CheckpointConfig, 'format'> {
  format: typeof MODEL_FOLDER_FORMAT;
  /** Hugging Face's name of the architecture family. */
  model_type: string;
  architectures: string[];
}

/** A checkpoint or a model folder, ready to load a model from (state is null for a model folder). */
export interface ModelInfo {
  dir: string;
  config: CheckpointConfig | ModelFolderConfig;
  state: TrainState | null;
}

/** True when `dir` holds a config.json that says it is a model folder. */
export function isModelFolder(dir: string): boolean {
  const file = path.join(dir, CHECKPOINT_FILES.config);
  if (!fs.existsSync(file) || fs.existsSync(path.join(dir, RUN_FILES.pointer))) return false;
  try { return readJsonSync<{ format?: unknown }>(file).format === MODEL_FOLDER_FORMAT; } catch { return false; }
}

/** Reads and checks a model folder's config.json (the tensors are read later). */
export function readModelFolderInfo(dir: string): ModelInfo {
  for (const f of [MODEL_FOLDER_FILES.model, MODEL_FOLDER_FILES.config]) {
    if (!fs.existsSync(path.join(dir, f))) bad(dir, f, 'missing (incomplete model folder)');
  }
  const config = readJsonSync<ModelFolderConfig>(path.join(dir, CHECKPOINT_FILES.config));
  checkConfig(dir, config as unknown as CheckpointConfig, MODEL_FOLDER_FORMAT);
  return { dir, config, state: null };
}

/** A run folder's latest checkpoint, a checkpoint folder or a model folder: what inference can load. */
export function readModelInfo(p: string): ModelInfo {
  if (fs.existsSync(p) && isModelFolder(p)) return readModelFolderInfo(p);
  const dir = resolveCheckpoint(p);
  const cfg = path.join(dir, CHECKPOINT_FILES.config);
  let foreign: unknown = null;
  try {
    const raw = readJsonSync<{ format?: unknown; model_type?: unknown }>(cfg);
    if (raw.format === undefined && raw.model_type !== undefined) foreign = raw.model_type;
  } catch { /* readCheckpointInfo reports it */ }
  if (foreign !== null) bad(dir, CHECKPOINT_FILES.config, `a Hugging Face model (model_type ${JSON.stringify(foreign)}), not a cubit checkpoint or model folder (export without --to llama for cubit)`);
  return readCheckpointInfo(dir);
}
