// Token mixers: the functional forms (and, as they land, the modules with decode caches).
// (MixerOptions, shared with the ops, is exported by src/ops.)
export {
  cubitAttention, localLinearAttention, localLinearDecode, type CubitInputs, type CubitOptions, type CubitResult, type LocalLinearOptions,
} from './functional.ts';
export {
  CubitMixer, LocalLinearMixer, MixerState, SoftmaxMixer, TokenMixer, type CubitMixerConfig, type LocalLinearMixerConfig, type MixerConfig,
  type MixerForwardOptions,
} from './modules.ts';
