// `cubit/browser`: the layers that import no Node.js module, for bundlers and browsers: tensors,
// ops, the reference backend (plain TypeScript, the default here), the webgpu backend on the
// browser's navigator.gpu (`await prepareBackend('webgpu')`), layers, mixers, the
// model with its sampling loop, and the AdamW optimizer (a training loop of your own; see
// examples/browser/). The Trainer, checkpoints, tokenizer files and the native backend need Node
// and live in the package root ('cubit'). Use one entry or the other in a program, not
// both: each sets the default backend.
import { backendByName, registerBackend, setDefaultBackendChooser } from './core/engine.ts';
import { ReferenceBackend } from './backends/reference/backend.ts';
import { registerWebGPU } from './backends/webgpu/index.ts';

registerBackend('reference', () => new ReferenceBackend());
setDefaultBackendChooser(() => backendByName('reference'));
registerWebGPU(async () => {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) throw new Error('webgpu: this browser has no navigator.gpu (WebGPU is off or unsupported here, or the page is not a secure context: https or localhost)');
  return { gpu };
});

export type { Backend, MemoryStats, Storage } from './core/backend.ts';
export type { DType, TypedArray } from './core/dtype.ts';
export { backendNames, dispose, getBackend, prepareBackend, isGradEnabled, keep, noGrad, setBackend, tidy, withBackend } from './core/engine.ts';
export { Rng } from './core/random.ts';
export { Tensor } from './core/tensor.ts';
export * from './ops/index.ts';
export { ReferenceBackend };
export * from './nn/index.ts';
export * from './mixers/index.ts';
export { MIXER_KINDS, parseModelConfig, type MixerKind, type ModelConfig, type ModelConfigInput } from './models/config.ts';
export { Decoder } from './models/decoder.ts';
export {
  generate, sampleToken, type GenerateOptions, type GenerateResult, type SamplingOptions, type StopReason,
} from './models/generate.ts';
export { AdamW, decaysByDefault, type AdamWOptions } from './train/optimizer.ts';
