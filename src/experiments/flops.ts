// A rough count of the floating-point operations of an LM run, for sizing presets for other
// machines (the dry run prints it; the timed estimate is for this machine only). Per token and
// layer, a forward pass costs 2 FLOPs per weight of the projections and the SwiGLU, plus the
// mixer's causal products (QKᵀ and the weighted sum: 2·T·d on average over a length-T window);
// Cubit's mixer also forms the reference Gram matrix and solves with it, counted as twice the
// softmax mixer's products (an approximation, not a kernel count). The tied output head adds
// 2·V·d. Training costs three forward passes (forward, and the backward's two products).
import { parseModelConfig, type ModelConfigInput } from '../models/config.ts';

/** Forward FLOPs per token of a model at context length T. */
export function forwardFlopsPerToken(model: ModelConfigInput, T: number): number {
  const c = parseModelConfig(model);
  const d = c.dModel;
  const mixers = Array.isArray(c.mixer) ? c.mixer : new Array(c.nLayers).fill(c.mixer);
  let f = 2 * c.vocabSize * d;
  mixers.forEach((m, i) => {
    const cubit = m === 'cubit' && (!c.cubitLayers || (i >= c.cubitLayers[0] && i < c.cubitLayers[1]));
    const window = c.window ?? T;
    const span = Math.min(T, window);
    const projections = (cubit && !c.cubit.sharedKey ? 5 : 4) * d * d;
    f += 2 * (projections + 3 * d * c.ffnHidden) + (cubit ? 3 : 1) * 2 * span * d;
  });
  return f;
}

/** FLOPs of a run spec: training steps × tokens per step × 3 forward passes, plus its evaluations. */
export function flopsOfRun(spec: unknown): number {
  const s = spec as { model?: ModelConfigInput; seqLen?: number; batchSize?: number; steps?: number; eval?: { lengths: number[]; maxBytes: number; stride: number }; corruption?: { fractions: number[]; contextLength: number } };
  if (!s.model || !s.seqLen || !s.batchSize || !s.steps) return 0; // not an LM run
  let f = 3 * s.steps * s.batchSize * s.seqLen * forwardFlopsPerToken(s.model, s.seqLen);
  if (s.eval) {
    const tokens = s.eval.maxBytes / s.eval.stride;
    for (const L of s.eval.lengths) f += tokens * forwardFlopsPerToken(s.model, L);
    if (s.corruption) f += s.corruption.fractions.length * tokens * forwardFlopsPerToken(s.model, s.corruption.contextLength);
  }
  return f;
}
