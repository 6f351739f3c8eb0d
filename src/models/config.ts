// The model configuration: a JSON object validated by a schema, so that an unknown field or an
// impossible shape is one clear error before any tensor is made. docs/MODEL.md documents it.
import { z } from 'zod';
import { checkModelLimits, checkParameterLimits } from './limits.ts';

/** The token mixers a model layer can use. */
export const MIXER_KINDS = ['softmax', 'cubit', 'local_linear'] as const;
/** One of {@link MIXER_KINDS}: 'softmax' (attention), 'cubit' or 'local_linear'. */
export type MixerKind = (typeof MIXER_KINDS)[number];

const positiveInt = z.number().int().positive();

const cubitOptions = z.strictObject({
  /** Shared-key ablation: r = k instead of the reference projection W_r x. */
  sharedKey: z.boolean().default(false),
  /** Initial α (reference scale). */
  refScale: z.number().finite().default(1),
  /** Initial λ (ridge), kept positive by its log parameterisation. */
  lambda: z.number().positive().finite().default(1e-6),
  /** Limited-Range Rescale on (s ∈ [lower, lower + range]) or off (s ≡ 1). */
  lrr: z.boolean().default(true),
  lrrLower: z.number().finite().default(0.5),
  lrrRange: z.number().finite().default(1.5),
});

const localLinearOptions = z.strictObject({
  /** Ridge ρ of the local linear fit. */
  ridge: z.number().positive().finite().default(1),
  /** Rank m of the learnt projection holding the linear term (omitted: the full head dimension). */
  rank: positiveInt.optional(),
});

export const modelConfigSchema = z.strictObject({
  vocabSize: positiveInt.default(256),
  dModel: positiveInt.default(128),
  nLayers: positiveInt.default(4),
  nHeads: positiveInt.default(4),
  /** SwiGLU hidden width (default 4·dModel). */
  ffnHidden: positiveInt.optional(),
  rotaryBase: z.number().positive().finite().default(10000),
  tieEmbeddings: z.boolean().default(true),
  normEps: z.number().positive().default(1e-6),
  /** One mixer for every layer, or one per layer. */
  mixer: z.union([z.enum(MIXER_KINDS), z.array(z.enum(MIXER_KINDS))]).default('softmax'),
  /** With mixer 'cubit': Cubit only on layers [start, end), softmax attention elsewhere. */
  cubitLayers: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]).optional(),
  /** Sliding attention window for every mixer (null: full causal context). */
  window: positiveInt.nullable().default(null),
  /**
   * Accepted for configs written before it moved to the native backend (a cache knob of its
   * kernels, not of the model): validated and then dropped.
   */
  blockSize: positiveInt.optional(),
  cubit: cubitOptions.default(cubitOptions.parse({})),
  localLinear: localLinearOptions.default(localLinearOptions.parse({})),
});

/** A model config as written in JSON (defaults may be left out); {@link parseModelConfig} checks it. */
export type ModelConfigInput = z.input<typeof modelConfigSchema>;
/** A checked model config with every default filled in (what {@link Decoder} takes). */
export type ModelConfig = Omit<z.output<typeof modelConfigSchema>, 'blockSize'> & { ffnHidden: number };

/** Validates a config object; throws one line naming the field on error. */
export function parseModelConfig(input: unknown, where = 'model config'): ModelConfig {
  const r = modelConfigSchema.safeParse(input ?? {});
  if (!r.success) throw new Error(`${where}: ${describeIssue(r.error.issues[0])}`);
  const c = r.data;
  checkModelLimits(c, where);
  if (c.dModel % c.nHeads !== 0) throw new Error(`${where}: dModel ${c.dModel} is not divisible by nHeads ${c.nHeads}`);
  if ((c.dModel / c.nHeads) % 2 !== 0) throw new Error(`${where}: the head dimension dModel/nHeads = ${c.dModel / c.nHeads} must be even (rotary embedding)`);
  if (Array.isArray(c.mixer) && c.mixer.length !== c.nLayers) throw new Error(`${where}: mixer lists ${c.mixer.length} layers but nLayers is ${c.nLayers}`);
  if (c.cubitLayers) {
    const [s, e] = c.cubitLayers;
    if (c.mixer !== 'cubit') throw new Error(`${where}: cubitLayers needs mixer 'cubit'`);
    if (!(s < e && e <= c.nLayers)) throw new Error(`${where}: cubitLayers [${s}, ${e}) must be a non-empty range within the ${c.nLayers} layers`);
  }
  const { blockSize: _dropped, ...rest } = c;
  const parsed = { ...rest, ffnHidden: c.ffnHidden ?? 4 * c.dModel };
  checkParameterLimits(parsed, where);
  return parsed;
}

/** The mixer of each layer. */
export function layerMixers(c: ModelConfig): MixerKind[] {
  if (Array.isArray(c.mixer)) return [...c.mixer];
  return Array.from({ length: c.nLayers }, (_, i) => {
    if (c.mixer === 'cubit' && c.cubitLayers) return i >= c.cubitLayers[0] && i < c.cubitLayers[1] ? 'cubit' : 'softmax';
    return c.mixer as MixerKind;
  });
}

export function describeIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path.length ? issue.path.join('.') : '(top level)';
  if (issue.code === 'unrecognized_keys') return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${[...issue.path, k].join('.')}'`).join(', ')}`;
  return `${path}: ${issue.message}`;
}
