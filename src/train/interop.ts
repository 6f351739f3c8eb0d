// Leaving cubit and coming back (docs/INTEROP.md).
//
// exportModel: a run folder, checkpoint folder or model folder → a model folder (checkpoint.ts
//   describes it: model.safetensors, config.json, tokenizer.json). With `to: 'pytorch'` the folder
//   also holds modeling_cubit.py (the model as a PyTorch nn.Module) and train_torch.py (continued
//   training under torchrun); with `to: 'llama'` an all-softmax model is written in the tensor
//   names and config.json of Hugging Face's LlamaForCausalLM instead.
// importRun: a checkpoint train_torch.py wrote (cubit's checkpoint format) → a cubit run folder,
//   read through cubit's own model and optimizer so that every name and shape is checked, and
//   written by cubit's checkpoint writer, so `train --resume`, eval, generate and experiments
//   continue from it.
//
// Both write their target atomically: a crash leaves either no target or a complete one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withBackend } from '../core/engine.ts';
import { ByteTokenizer, HfTokenizer } from '../data/tokenizer.ts';
import { checkpointTokenizer } from '../eval/checkpoint.ts';
import { SafetensorsFile, writeSafetensorsSync, type TensorRecord } from '../io/safetensors.ts';
import { layerMixers, type ModelConfig } from '../models/config.ts';
import { Decoder } from '../models/decoder.ts';
import { writeDirAtomicSync, writeFileAtomicSync } from '../util/atomic.ts';
import { FILE_LIMITS, readRegularFileSync, readTextFileSync } from '../util/files.ts';
import { checkCheckpointTensors } from './run-folder.ts';
import {
  CHECKPOINT_FILES, CHECKPOINT_OPTIONAL_FILES, loadOptimizerInto, loadWeightsInto, MODEL_FOLDER_FILES, MODEL_FOLDER_FORMAT,
  readCheckpointInfo, readModelInfo, resolveCheckpoint, RUN_FILES, saveCheckpoint, type CheckpointConfig, type ModelFolderConfig,
  type ModelInfo,
} from './checkpoint.ts';
import { AdamW } from './optimizer.ts';
import { parseTrainConfig } from './config.ts';

/** What `exportModel` writes: a cubit model folder, the same plus the PyTorch files, or the LLaMA layout. */
export type ExportTarget = 'cubit' | 'pytorch' | 'llama';
/** Every ExportTarget. */
export const EXPORT_TARGETS: readonly ExportTarget[] = ['cubit', 'pytorch', 'llama'];

/** The `model_type` of an exported config.json (Hugging Face's name of the architecture family). */
export const HF_MODEL_TYPE = 'cubit';
/** The `architectures` entry of an exported config.json: the class in modeling_cubit.py. */
export const HF_ARCHITECTURE = 'CubitForCausalLM';

/** The Python files `--to pytorch` copies beside the weights (from the package's python/ folder). */
export const PYTORCH_FILES = ['modeling_cubit.py', 'train_torch.py'] as const;

/** The package's python/ folder. */
export function pythonDir(): string {
  return fileURLToPath(new URL('../../python/', import.meta.url));
}

/** Options of exportModel. */
export interface ExportOptions {
  /** Default 'cubit'. */
  to?: ExportTarget;
  /** fsync (default true). */
  durable?: boolean;
}

function emptyOrMissing(dir: string, what: string): void {
  if (!fs.existsSync(dir)) return;
  if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir}: exists and is not a folder; choose another ${what}`);
  if (fs.readdirSync(dir).length > 0) throw new Error(`${dir}: the folder is not empty; choose another ${what} (nothing is overwritten)`);
  fs.rmdirSync(dir);
}

/** The model's parameters read from a checkpoint or model folder, checked against its config. */
function readWeights(info: ModelInfo): Map<string, TensorRecord> {
  checkCheckpointTensors(info.config.model, { model: path.join(info.dir, CHECKPOINT_FILES.model) }, info.dir);
  // Files in, files out: the weights pass through host memory (the reference backend), whatever
  // backend CUBIT_BACKEND names (a GPU's has no synchronous read, nor needs setting up for this).
  const model = withBackend('reference', () => new Decoder(info.config.model, 0));
  try {
    const file = path.join(info.dir, CHECKPOINT_FILES.model);
    loadWeightsInto(model, file); // checks every name, shape and dtype
    const out = new Map<string, TensorRecord>();
    for (const [name, p] of model.namedParameters()) out.set(name, { dtype: 'F32', shape: [...p.shape], data: p.dataSync() as Float32Array });
    return out;
  } finally {
    model.dispose();
  }
}

/** The tokenizer files for the folder: tokenizer.json (and the tokenizer_config.json beside a Hugging Face one, which names BOS/EOS). */
function tokenizerFiles(info: ModelInfo): Record<string, string> {
  const tok = checkpointTokenizer(info); // found and checked against the recorded sha256
  if (!(tok instanceof HfTokenizer)) return { [MODEL_FOLDER_FILES.tokenizer]: ByteTokenizer.hfJson() };
  const out: Record<string, string> = { [MODEL_FOLDER_FILES.tokenizer]: tok.json };
  const id = tok.identity();
  const cfg = id.kind === 'hf' && id.source ? path.join(path.dirname(id.source), CHECKPOINT_OPTIONAL_FILES.tokenizerConfig) : null;
  if (cfg && fs.existsSync(cfg)) out[CHECKPOINT_OPTIONAL_FILES.tokenizerConfig] = readTextFileSync(cfg);
  return out;
}

/** config.json of a model folder exported from `info`. */
export function modelFolderConfig(info: ModelInfo): ModelFolderConfig {
  const { format: _format, ...rest } = info.config as CheckpointConfig;
  // The tokenizer travels in the folder: where it came from on this machine is no concern of a reader's.
  const tokenizer = { ...rest.tokenizer };
  if (tokenizer.kind === 'hf') delete tokenizer.source;
  return { format: MODEL_FOLDER_FORMAT, model_type: HF_MODEL_TYPE, architectures: [HF_ARCHITECTURE], ...rest, tokenizer };
}

/**
 * Writes the model of `source` (a run folder, checkpoint folder or model folder) into the new
 * folder `target` (missing or empty). Returns the files written.
 *
 * ```ts
 * exportModel('runs/mine', 'models/mine');                      // model.safetensors, config.json, tokenizer.json
 * exportModel('runs/mine', 'models/mine-pt', { to: 'pytorch' }); // + modeling_cubit.py, train_torch.py
 * ```
 */
export function exportModel(source: string, target: string, opts: ExportOptions = {}): string[] {
  const to = opts.to ?? 'cubit';
  if (!EXPORT_TARGETS.includes(to)) throw new Error(`export: unknown target '${to}' (expected ${EXPORT_TARGETS.join(', ')})`);
  const info = readModelInfo(source);
  if (to === 'llama') checkLlamaCompatible(info.config.model, info.dir);
  const weights = readWeights(info);
  const toks = tokenizerFiles(info);
  emptyOrMissing(target, 'export folder');
  fs.mkdirSync(path.dirname(path.resolve(target)), { recursive: true });
  const written: string[] = [];
  writeDirAtomicSync(target, (tmp) => {
    const put = (name: string, text: string): void => { writeFileAtomicSync(path.join(tmp, name), text, { durable: false }); written.push(name); };
    if (to === 'llama') {
      writeSafetensorsSync(path.join(tmp, MODEL_FOLDER_FILES.model), llamaTensors(info.config.model, weights), { format: 'pt' }, { durable: false });
      put(MODEL_FOLDER_FILES.config, JSON.stringify(llamaConfig(info.config.model), null, 2) + '\n');
    } else {
      writeSafetensorsSync(path.join(tmp, MODEL_FOLDER_FILES.model), weights, { format: 'pt' }, { durable: false });
      put(MODEL_FOLDER_FILES.config, JSON.stringify(modelFolderConfig(info), null, 2) + '\n');
    }
    written.push(MODEL_FOLDER_FILES.model);
    for (const [name, text] of Object.entries(toks)) put(name, text);
    if (to === 'pytorch') for (const f of PYTORCH_FILES) put(f, fs.readFileSync(path.join(pythonDir(), f), 'utf8'));
  }, { durable: opts.durable ?? true });
  return written.sort();
}

// ---- LLaMA layout ----
//
// An all-softmax cubit model is a LLaMA model without biases: RMSNorm (eps inside the root),
// SwiGLU, rotate-half RoPE on q and k with θ_i = base^(−2i/D), no embedding scaling. The only
// renaming is of tensors (table below); cubit's rotary pairs feature i with i + D/2 within each
// head, which is exactly what Hugging Face's LlamaForCausalLM rotate_half does, so q and k need no
// permutation (test/interop.test.ts checks this numerically against a forward written from the
// public LLaMA definition).

const LLAMA_NAMES: [RegExp, string][] = [
  [/^embed\.weight$/, 'model.embed_tokens.weight'],
  [/^finalNorm\.weight$/, 'model.norm.weight'],
  [/^head\.weight$/, 'lm_head.weight'],
  [/^blocks\.(\d+)\.mixerNorm\.weight$/, 'model.layers.$1.input_layernorm.weight'],
  [/^blocks\.(\d+)\.ffnNorm\.weight$/, 'model.layers.$1.post_attention_layernorm.weight'],
  [/^blocks\.(\d+)\.mixer\.wq\.weight$/, 'model.layers.$1.self_attn.q_proj.weight'],
  [/^blocks\.(\d+)\.mixer\.wk\.weight$/, 'model.layers.$1.self_attn.k_proj.weight'],
  [/^blocks\.(\d+)\.mixer\.wv\.weight$/, 'model.layers.$1.self_attn.v_proj.weight'],
  [/^blocks\.(\d+)\.mixer\.wo\.weight$/, 'model.layers.$1.self_attn.o_proj.weight'],
  [/^blocks\.(\d+)\.ffn\.gate\.weight$/, 'model.layers.$1.mlp.gate_proj.weight'],
  [/^blocks\.(\d+)\.ffn\.up\.weight$/, 'model.layers.$1.mlp.up_proj.weight'],
  [/^blocks\.(\d+)\.ffn\.down\.weight$/, 'model.layers.$1.mlp.down_proj.weight'],
];

/** The LlamaForCausalLM name of a cubit parameter (null when it has none). */
export function llamaName(name: string): string | null {
  for (const [re, to] of LLAMA_NAMES) if (re.test(name)) return name.replace(re, to);
  return null;
}

function checkLlamaCompatible(m: ModelConfig, where: string): void {
  const kinds = layerMixers(m);
  const other = kinds.findIndex((k) => k !== 'softmax');
  if (other >= 0) throw new Error(`${where}: --to llama needs softmax attention in every layer; layer ${other} is ${kinds[other]}`);
  if (m.window !== null) throw new Error(`${where}: --to llama: the model uses a sliding window (${m.window}), which LlamaForCausalLM does not have`);
}

function llamaTensors(m: ModelConfig, weights: Map<string, TensorRecord>): Map<string, TensorRecord> {
  const out = new Map<string, TensorRecord>();
  for (const [name, t] of weights) {
    const to = llamaName(name);
    if (!to) throw new Error(`export --to llama: no LLaMA name for '${name}'`);
    out.set(to, t);
  }
  // LLaMA loaders expect lm_head.weight unless tie_word_embeddings is set; cubit ties by default and says so.
  if (m.tieEmbeddings && out.has('lm_head.weight')) out.delete('lm_head.weight');
  return out;
}

/** config.json of LlamaForCausalLM for an all-softmax cubit model. */
export function llamaConfig(m: ModelConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: m.vocabSize,
    hidden_size: m.dModel,
    intermediate_size: m.ffnHidden,
    num_hidden_layers: m.nLayers,
    num_attention_heads: m.nHeads,
    num_key_value_heads: m.nHeads,
    head_dim: m.dModel / m.nHeads,
    hidden_act: 'silu',
    rms_norm_eps: m.normEps,
    rope_theta: m.rotaryBase,
    rope_scaling: null,
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: m.tieEmbeddings,
    max_position_embeddings: 4096,
    initializer_range: 0.02,
    torch_dtype: 'float32',
    bos_token_id: null,
    eos_token_id: null,
  };
}

// ---- import ----

/** Options of importRun. */
export interface ImportOptions {
  /** fsync (default true). */
  durable?: boolean;
}

/**
 * Reads the checkpoint `source` names (a run folder with latest.json, or a checkpoint folder: what
 * train_torch.py writes) through cubit's model and optimizer and writes it as a new run folder
 * `out` (missing or empty). Resolves to the checkpoint folder written.
 */
export async function importRun(source: string, out: string, opts: ImportOptions = {}): Promise<string> {
  const info = readCheckpointInfo(resolveCheckpoint(source));
  const where = info.dir;
  try { parseTrainConfig({ ...info.config.training, model: info.config.model }, `${where}/${CHECKPOINT_FILES.config}`); } catch (e) {
    throw new Error(`cannot import: ${(e as Error).message}`);
  }
  emptyOrMissing(out, 'run folder');
  const files = { model: path.join(info.dir, CHECKPOINT_FILES.model), optimizer: path.join(info.dir, CHECKPOINT_FILES.optimizer) };
  checkCheckpointTensors(info.config.model, files, info.dir);
  const t = info.config.training as { beta1?: number; beta2?: number; eps?: number; weightDecay?: number };
  // On the host, as readWeights.
  const { model, optimizer } = withBackend('reference', () => {
    const m = new Decoder(info.config.model, 0);
    return { model: m, optimizer: new AdamW(m.namedParameters(), { beta1: t.beta1 ?? 0.9, beta2: t.beta2 ?? 0.95, eps: t.eps ?? 1e-8, weightDecay: t.weightDecay ?? 0.1 }) };
  });
  try {
    loadWeightsInto(model, path.join(info.dir, CHECKPOINT_FILES.model));
    loadOptimizerInto(optimizer, path.join(info.dir, CHECKPOINT_FILES.optimizer));
    const tokFile = path.join(info.dir, CHECKPOINT_OPTIONAL_FILES.tokenizer);
    const tokCfg = path.join(info.dir, CHECKPOINT_OPTIONAL_FILES.tokenizerConfig);
    const tokenizerJson = info.config.tokenizer.kind === 'hf' && fs.existsSync(tokFile) ? readTextFileSync(tokFile, { maxBytes: FILE_LIMITS.tokenizer }) : undefined;
    const tokenizerConfigJson = tokenizerJson !== undefined && fs.existsSync(tokCfg) ? readTextFileSync(tokCfg) : undefined;
    fs.mkdirSync(out, { recursive: true });
    // The training log comes along only from the run folder the checkpoint sits in (<run>/checkpoints/step-N).
    const inRun = path.basename(path.dirname(info.dir)) === RUN_FILES.checkpoints;
    const metrics = path.join(path.dirname(path.dirname(info.dir)), RUN_FILES.metrics);
    writeFileAtomicSync(path.join(out, RUN_FILES.metrics), inRun && fs.existsSync(metrics) ? readRegularFileSync(metrics) : '', { durable: opts.durable ?? true });
    return await saveCheckpoint(out, {
      step: info.config.step, model, optimizer, config: info.config, state: info.state,
      tokenizerJson, tokenizerConfigJson, durable: opts.durable ?? true,
    });
  } finally {
    model.dispose();
    optimizer.dispose();
  }
}
