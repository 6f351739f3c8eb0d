// Every op, for the package root and for higher layers.
import './methods.ts';
export * from './creation.ts';
export * from './elementwise.ts';
export * from './matmul.ts';
export * from './nn.ts';
export * from './optim.ts';
export * from './reduce.ts';
export * from './shape.ts';
export { broadcastTo } from './util.ts';
export {
  causalKrrSolve, cubitSolve, lrrValues, mixerMask, normalizeReference, softmaxAttention, solveSpd, type AttentionOptions, type LrrInputs,
  type MixerOptions,
} from './mixers.ts';
export { splitHeads, mergeHeads, type HeadsPart, type SplitHeadsOptions } from './heads.ts';
