// The package root: everything a user needs, from tensors to a trained model and back to text.
// Grouped by layer (docs/ARCHITECTURE.md); docs/api is generated from the doc comments of what is
// exported here (`npm run docs`), and test/api-docs.test.ts checks every export has one.
import './backends/index.ts';

// Tensors, autograd, memory scopes and backends.
export type { Backend, CoreBackend, FusedKernels, MemoryStats, SavedState, Storage } from './core/backend.ts';
export { hasKernel } from './core/backend.ts';
export type { DType, TypedArray } from './core/dtype.ts';
export { backendByName, backendNames, dispose, getBackend, isGradEnabled, keep, noGrad, prepareBackend, registerBackend, setBackend, tidy, withBackend } from './core/engine.ts';
export { Rng } from './core/random.ts';
export { Tensor } from './core/tensor.ts';
export * from './ops/index.ts';
export { NativeBackend, ReferenceBackend } from './backends/index.ts';

// Modules, token mixers and the model.
export * from './nn/index.ts';
export * from './mixers/index.ts';
export { MIXER_KINDS, parseModelConfig, type MixerKind, type ModelConfig, type ModelConfigInput } from './models/config.ts';
export { Decoder } from './models/decoder.ts';
export {
  generate, sampleToken, type GenerateOptions, type GenerateResult, type SamplingOptions, type StopReason,
} from './models/generate.ts';

// Text and data: tokenizers, corpora, token streams and batches.
export * from './data/index.ts';

// A trained model: loading it with its tokenizer, generating text, evaluating it.
export { loadModel, summarizeCheckpoint, type CheckpointSummary, type LoadedModel, type LoadModelOptions } from './eval/checkpoint.ts';
export { generateText, promptIds, type GenerateTextOptions, type GenerateTextResult } from './eval/generate-text.ts';
export { evaluate, resolveStride, type EvaluateOptions, type LengthResult, type StrideSpec } from './eval/evaluate.ts';

// Training: configs, the optimizer and schedule, checkpoints and the loop.
export * from './train/index.ts';

// Tensors on disk: the safetensors format.
export {
  decodeSafetensors, encodeSafetensors, loadSafetensorsSync, readSafetensorsSync, SafetensorsFile, writeSafetensorsSync,
  type SafeDType, type SafetensorsContents, type TensorInfo, type TensorRecord, type TensorSource,
} from './io/safetensors.ts';
