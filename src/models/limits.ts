// Hard limits on model sizes, and the parameters a config implies computed without building the
// model. A config.json is untrusted: every size in it is checked here before anything is
// allocated (a dModel of 1e6 or nLayers of 1e9 is one clear error, not an out-of-memory kill), and
// a checkpoint's safetensors headers are compared with parameterShapes() before its model is built.
import { layerMixers, type ModelConfig } from './config.ts';

/** The largest value each model size may take (docs/LIMITS.md). */
export const MODEL_LIMITS = {
  vocabSize: 1 << 24,
  dModel: 1 << 16,
  nLayers: 1024,
  nHeads: 4096,
  ffnHidden: 1 << 20,
  window: 1 << 24,
  blockSize: 1 << 16,
  /** Elements of one parameter tensor (typed arrays and the C kernels index with 32-bit ints). */
  tensorElements: 2 ** 31 - 1,
  /** Scalar parameters of the whole model (8 GiB of float32). */
  parameters: 2 ** 31,
} as const;

/** The longest sequence any model runs (training rows, evaluation windows, generation context). */
export const MAX_CONTEXT = 1 << 20;

/** Throws one line when a size in `c` exceeds MODEL_LIMITS. */
export function checkModelLimits(c: {
  vocabSize: number; dModel: number; nLayers: number; nHeads: number; ffnHidden?: number; window: number | null; blockSize?: number;
}, where: string): void {
  const sizes: [keyof typeof MODEL_LIMITS, number | null | undefined][] = [
    ['vocabSize', c.vocabSize], ['dModel', c.dModel], ['nLayers', c.nLayers], ['nHeads', c.nHeads],
    ['ffnHidden', c.ffnHidden], ['window', c.window], ['blockSize', c.blockSize],
  ];
  for (const [field, v] of sizes) {
    if (typeof v === 'number' && v > MODEL_LIMITS[field]) throw new Error(`${where}: ${field} ${v} exceeds the limit ${MODEL_LIMITS[field]}`);
  }
}

export interface ParameterShape {
  name: string;
  shape: number[];
}

/**
 * The parameters (dotted names, shapes, in registration order) of the Decoder `config` describes,
 * without building it: what a checkpoint's model.safetensors must hold. A test checks it against
 * Decoder.namedParameters() over many configs.
 */
export function parameterShapes(config: ModelConfig): ParameterShape[] {
  const { dModel: d, nHeads: H, vocabSize: V, ffnHidden: F } = config;
  const Dh = d / H, inner = H * Dh;
  const out: ParameterShape[] = [{ name: 'embed.weight', shape: [V, d] }];
  const linear = (name: string, inF: number, outF: number): void => { out.push({ name: `${name}.weight`, shape: [outF, inF] }); };
  layerMixers(config).forEach((kind, i) => {
    const b = `blocks.${i}`;
    out.push({ name: `${b}.mixerNorm.weight`, shape: [d] });
    const m = `${b}.mixer`;
    if (kind === 'cubit') {
      out.push({ name: `${m}.refScale`, shape: [H] }, { name: `${m}.logLambda`, shape: [H] });
      if (config.cubit.lrr) out.push({ name: `${m}.lrrLower`, shape: [H] }, { name: `${m}.lrrRange`, shape: [H] });
    }
    if (kind === 'local_linear') {
      const rank = config.localLinear.rank;
      if (rank !== undefined && rank < Dh) out.push({ name: `${m}.projection`, shape: [H, Dh, rank] });
    }
    linear(`${m}.wq`, d, inner); linear(`${m}.wk`, d, inner); linear(`${m}.wv`, d, inner); linear(`${m}.wo`, inner, d);
    if (kind === 'cubit') {
      if (!config.cubit.sharedKey) linear(`${m}.wr`, d, inner);
      if (config.cubit.lrr) linear(`${m}.wlrr`, d, H);
    }
    out.push({ name: `${b}.ffnNorm.weight`, shape: [d] });
    linear(`${b}.ffn.gate`, d, F); linear(`${b}.ffn.up`, d, F); linear(`${b}.ffn.down`, F, d);
  });
  out.push({ name: 'finalNorm.weight', shape: [d] });
  if (!config.tieEmbeddings) linear('head', d, V);
  return out;
}

/** Scalar parameters of the model `config` describes (computed, nothing built). */
export function parameterCount(config: ModelConfig): number {
  return parameterShapes(config).reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
}

/** Throws one line when a tensor or the whole model is larger than MODEL_LIMITS allows. */
export function checkParameterLimits(config: ModelConfig, where: string): void {
  let total = 0;
  for (const p of parameterShapes(config)) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    if (n > MODEL_LIMITS.tensorElements) throw new Error(`${where}: parameter '${p.name}' [${p.shape.join(', ')}] has ${n} elements, over the limit ${MODEL_LIMITS.tensorElements}`);
    total += n;
  }
  if (total > MODEL_LIMITS.parameters) throw new Error(`${where}: the model has ${total} parameters, over the limit ${MODEL_LIMITS.parameters}`);
}

