// The package root: tensors, ops, backends, and (as later layers land) modules, models and training.
import './backends/index.ts';
export type { Backend, CoreBackend, FusedKernels, MemoryStats, SavedState, Storage } from './core/backend.ts';
export { hasKernel } from './core/backend.ts';
export type { DType, TypedArray } from './core/dtype.ts';
export { backendByName, backendNames, dispose, getBackend, isGradEnabled, keep, noGrad, registerBackend, setBackend, tidy, withBackend } from './core/engine.ts';
export { Rng } from './core/random.ts';
export { Tensor } from './core/tensor.ts';
export * from './ops/index.ts';
export { NativeBackend, ReferenceBackend } from './backends/index.ts';
export * from './mixers/index.ts';
export * from './train/index.ts';
