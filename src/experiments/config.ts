// Experiment configuration files (experiments/<name>.json, or any copy given with --config):
//
//   {
//     "experiment": "length-scaling",       which experiment the file configures
//     "description": "…",                   free text
//     "defaults": { … },                    the full configuration
//     "presets": { "smoke": { … }, "cpu": { … }, "paper": { … }, "test": { … } }
//   }
//
// A preset is a partial configuration merged over `defaults` (objects merge key by key; arrays and
// values replace; a key set to null is removed), then `--set path=value` overrides are applied, then the result is validated by
// the experiment's schema (unknown fields are errors). A preset may carry "about" (text for the
// report) — it is not part of the configuration. The validated result is what a report records.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { describeIssue } from '../models/config.ts';
import { ESTIMATORS, FUNCTION_FAMILIES } from './regression.ts';

export const EXPERIMENT_NAMES = ['length-scaling', 'noise', 'ablations'] as const;
export type ExperimentName = (typeof EXPERIMENT_NAMES)[number];

const positiveInt = z.number().int().positive();
const positive = z.number().positive().finite();
const seeds = z.array(z.number().int().nonnegative()).nonempty();

/** The corpus and its split (the training config's `data`, minus file-format options). */
const dataSchema = z.strictObject({
  corpus: z.string().min(1).default('brown'),
  tokenizer: z.string().min(1).default('byte'),
  split: z.strictObject({
    seed: z.number().int().nonnegative().default(0),
    validation: z.number().gt(0).lt(1).default(0.05),
    test: z.number().min(0).lt(1).default(0.05),
  }).prefault({}),
}).prefault({});

/** Optimiser settings shared by every run of an experiment (the learning rate may vary in ablations). */
const optimizerSchema = z.strictObject({
  lr: positive.default(3e-3),
  /** Floor of the cosine decay (default lr / 10). */
  minLr: z.number().nonnegative().finite().optional(),
  warmupSteps: z.number().int().nonnegative().default(50),
  weightDecay: z.number().nonnegative().finite().default(0.1),
  beta1: z.number().min(0).lt(1).default(0.9),
  beta2: z.number().min(0).lt(1).default(0.95),
  clip: z.number().nonnegative().finite().default(1),
}).prefault({});

/** Held-out evaluation: the first maxBytes of the validation split, windows moving by stride · length. */
const evalSchema = z.strictObject({
  maxBytes: positiveInt.default(100_000),
  /** Stride as a fraction of each context length (0.5: every scored byte sees at least half a window). */
  stride: z.number().gt(0).max(1).default(0.5),
  /** Input tokens per forward pass. */
  batchTokens: positiveInt.default(8192),
  /** The split the reported numbers come from; the learning-rate sweep always uses 'validation'. */
  split: z.enum(['validation', 'test']).default('test'),
}).prefault({});

/**
 * The learning-rate sweep (tuning.ts): every tuned variant trains at each rate on the tuning seed
 * (not one of the main seeds), is evaluated on the validation split, and the rate with the lowest
 * validation bits per byte is used for the main grid's seeds.
 */
const tuningSchema = z.strictObject({
  /** Peak learning rates to try (log-spaced). */
  learningRates: z.array(positive).min(2),
  /** The seed of the sweep runs (must not be one of `seeds`). */
  seed: z.number().int().nonnegative(),
  /** length-scaling: the training length the sweep runs at (default: the median training length). */
  length: positiveInt.optional(),
}).optional();

/** What every trained run shares: data, base model, budget, optimiser, evaluation. */
const trainingFields = {
  data: dataSchema,
  /** The base model config (models/config.ts); variants are merged over it. */
  model: z.record(z.string(), z.unknown()).default({}),
  /** Training tokens per run (the same for every cell: the token budget). */
  tokensPerRun: positiveInt,
  /** Tokens per optimiser step; rows per step = tokensPerStep / seqLen. */
  tokensPerStep: positiveInt.default(4096),
  optimizer: optimizerSchema,
  eval: evalSchema,
  /** Checkpoint every N steps (a resumed run restarts from the last one; 0: only at the end). */
  checkpointEvery: z.number().int().nonnegative().default(200),
  seeds,
  tuning: tuningSchema,
};

const variantsSchema = z.record(z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/i, 'variant names are letters, digits, ".", "-" or "_"'), z.record(z.string(), z.unknown()));

export const lengthScalingSchema = z.strictObject({
  ...trainingFields,
  /** Model overrides per variant, merged over `model`. */
  variants: variantsSchema.default({ transformer: { mixer: 'softmax' }, cubit: { mixer: 'cubit' } }),
  /** gain = baseline bpb − candidate bpb. */
  baseline: z.string().default('transformer'),
  /** A second baseline the candidate is also compared with: the Transformer with Cubit's parameter count (variants' matchParameters). */
  matchedBaseline: z.string().optional(),
  candidate: z.string().default('cubit'),
  trainLengths: z.array(positiveInt).nonempty(),
  /** Evaluation lengths as multiples of the training length (1 = the training length). */
  evalMultipliers: z.array(positive).nonempty().default([1, 2, 4]),
});

export const noiseSchema = z.strictObject({
  parts: z.array(z.enum(['regression', 'lm'])).nonempty().default(['regression', 'lm']),
  regression: z.strictObject({
    families: z.array(z.enum(FUNCTION_FAMILIES)).nonempty().default(['linear', 'sine', 'smooth']),
    noise: z.array(z.number().nonnegative().finite()).nonempty().default([0, 0.1, 0.25, 0.5, 1]),
    estimators: z.array(z.enum(ESTIMATORS)).nonempty().default(['softmax', 'cubit', 'local_linear']),
    points: z.number().int().min(2).default(64),
    tasks: positiveInt.default(256),
    tuneTasks: positiveInt.default(128),
    interiorQueries: positiveInt.default(8),
    interior: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]).default([0.2, 0.8]),
    edgeDistances: z.array(z.number().min(0).max(0.5)).nonempty().default([0, 0.025, 0.05, 0.1, 0.2]),
    /** The noise level of the boundary figure (one of `noise`). */
    boundaryNoise: z.number().nonnegative().finite().default(0.25),
    grid: z.strictObject({
      bandwidths: z.array(positive).nonempty().default([0.02, 0.04, 0.08, 0.16, 0.32]),
      lambdas: z.array(positive).nonempty().default([1e-3, 1e-2, 0.1, 1, 10, 100]),
      ridges: z.array(positive).nonempty().default([1e-5, 1e-4, 1e-3, 1e-2]),
    }).prefault({}),
    dtype: z.enum(['float64', 'float32']).default('float64'),
    seeds,
  }).prefault({ seeds: [0] }),
  lm: z.strictObject({
    ...trainingFields,
    variants: variantsSchema.default({ transformer: { mixer: 'softmax' }, cubit: { mixer: 'cubit' } }),
    baseline: z.string().default('transformer'),
    matchedBaseline: z.string().optional(),
    candidate: z.string().default('cubit'),
    seqLen: positiveInt.default(128),
    corruption: z.strictObject({
      fractions: z.array(z.number().min(0).lt(1)).nonempty().default([0, 0.05, 0.1, 0.2, 0.3]),
      /** 'printable': a random printable ASCII byte (typos); 'uniform': any other byte value. */
      replacement: z.enum(['printable', 'uniform']).default('printable'),
      seed: z.number().int().nonnegative().default(1234),
    }).prefault({}),
  }).optional(),
});

export const ablationsSchema = z.strictObject({
  ...trainingFields,
  /** Model overrides per variant, merged over `model` (which should select mixer 'cubit'). */
  variants: variantsSchema,
  /** The variant the others are compared with (paired by seed). */
  reference: z.string().default('lrr-on'),
  seqLen: positiveInt.default(128),
  /** Named peak learning rates; every variant runs at each (the optimizer's lr is ignored). */
  learningRates: z.record(z.string(), positive).default({ normal: 1e-2, high: 1e-1 }),
  /** Loss spikes: a step whose loss exceeds the median of the previous `window` steps by more than `threshold` nats. */
  spikes: z.strictObject({ window: positiveInt.default(20), threshold: positive.default(0.3) }).prefault({}),
});

export type LengthScalingConfig = z.output<typeof lengthScalingSchema>;
export type NoiseConfig = z.output<typeof noiseSchema>;
export type AblationsConfig = z.output<typeof ablationsSchema>;
export type ExperimentConfig = LengthScalingConfig | NoiseConfig | AblationsConfig;

const schemas: Record<ExperimentName, z.ZodType> = {
  'length-scaling': lengthScalingSchema,
  noise: noiseSchema,
  ablations: ablationsSchema,
};

export interface ExperimentFile {
  experiment: ExperimentName;
  description?: string;
  defaults: Record<string, unknown>;
  presets: Record<string, Record<string, unknown>>;
}

/** The folder of the shipped configs (experiments/ at the package root). */
export function experimentsDir(): string {
  return path.join(path.dirname(path.dirname(path.dirname(fileURLToPath(import.meta.url)))), 'experiments');
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Objects merge key by key (recursively); anything else in `over` replaces. A key set to null in
 * `over` is removed (how a preset drops a variant it inherits).
 */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : structuredClone(over);
  const out: Record<string, unknown> = { ...structuredClone(base) };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else out[k] = k in out ? deepMerge(out[k], v) : structuredClone(v);
  }
  return out;
}

export function readExperimentFile(file: string): ExperimentFile {
  let raw: unknown;
  try { raw = JSON.parse(fs.readFileSync(file, 'utf8')); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${file}: no such file` : `${file}: ${(e as Error).message}`);
  }
  if (!isPlainObject(raw)) throw new Error(`${file}: expected a JSON object`);
  const known = new Set(['experiment', 'description', 'defaults', 'presets', '$comment']);
  for (const k of Object.keys(raw)) if (!known.has(k)) throw new Error(`${file}: unknown top-level field '${k}' (expected experiment, description, defaults, presets)`);
  if (!EXPERIMENT_NAMES.includes(raw.experiment as ExperimentName)) {
    throw new Error(`${file}: "experiment" must be one of ${EXPERIMENT_NAMES.join(', ')}, got ${JSON.stringify(raw.experiment)}`);
  }
  if (!isPlainObject(raw.defaults)) throw new Error(`${file}: "defaults" must be an object`);
  const presets = raw.presets ?? {};
  if (!isPlainObject(presets) || Object.values(presets).some((p) => !isPlainObject(p))) throw new Error(`${file}: "presets" must map names to objects`);
  return raw as unknown as ExperimentFile;
}

/** The shipped config file of an experiment. */
export function shippedConfigFile(name: ExperimentName): string {
  return path.join(experimentsDir(), `${name}.json`);
}

/**
 * Parses `path=value` overrides: the value is JSON when it parses (numbers, arrays, objects,
 * true/false/null), else a string. path is dotted: optimizer.lr=0.01, seeds=[0,1]. An object
 * merges into the value there as a preset does; null removes the key.
 */
export function parseOverride(s: string): [string[], unknown] {
  const eq = s.indexOf('=');
  if (eq <= 0) throw new Error(`--set '${s}': expected path=value (e.g. optimizer.lr=0.01)`);
  const key = s.slice(0, eq).trim(), text = s.slice(eq + 1);
  let value: unknown;
  try { value = JSON.parse(text); } catch { value = text; }
  const parts = key.split('.');
  if (parts.some((p) => p === '' || p === '__proto__' || p === 'constructor' || p === 'prototype')) throw new Error(`--set '${s}': bad path '${key}'`);
  return [parts, value];
}

export function applyOverride(obj: Record<string, unknown>, parts: string[], value: unknown): void {
  let o = obj;
  for (const p of parts.slice(0, -1)) {
    if (!isPlainObject(o[p])) o[p] = {};
    o = o[p] as Record<string, unknown>;
  }
  const key = parts[parts.length - 1];
  // Objects merge into what is there, as presets do (null removes a key); other values replace.
  if (value === null) delete o[key];
  else o[key] = isPlainObject(value) && isPlainObject(o[key]) ? deepMerge(o[key], value) : value;
}

export interface ResolvedConfig<C = ExperimentConfig> {
  experiment: ExperimentName;
  preset: string;
  /** The preset's "about" text. */
  about: string | null;
  file: string;
  config: C;
}

export interface ResolveOptions {
  preset?: string;
  /** A config file to use instead of the shipped one. */
  file?: string;
  /** `path=value` strings, or [path, value] pairs, applied after the preset. */
  overrides?: (string | [string[], unknown])[];
}

/** Loads the file, applies the preset and overrides, validates; throws one line naming the field. */
export function resolveConfig(name: ExperimentName, opts: ResolveOptions = {}): ResolvedConfig {
  if (!EXPERIMENT_NAMES.includes(name)) throw new Error(`unknown experiment '${name}' (experiments: ${EXPERIMENT_NAMES.join(', ')})`);
  const file = opts.file ?? shippedConfigFile(name);
  const f = readExperimentFile(file);
  if (f.experiment !== name) throw new Error(`${file} configures experiment '${f.experiment}', not '${name}'`);
  const presetName = opts.preset ?? 'cpu';
  let merged = structuredClone(f.defaults);
  let about: string | null = null;
  if (presetName !== 'defaults') {
    const p = f.presets[presetName];
    if (!p) throw new Error(`${file}: no preset '${presetName}' (presets: ${['defaults', ...Object.keys(f.presets)].join(', ')})`);
    const { about: a, ...rest } = p;
    about = typeof a === 'string' ? a : null;
    merged = deepMerge(merged, rest) as Record<string, unknown>;
  }
  for (const o of opts.overrides ?? []) {
    const [parts, value] = typeof o === 'string' ? parseOverride(o) : o;
    applyOverride(merged, parts, value);
  }
  const r = schemas[name].safeParse(merged);
  if (!r.success) throw new Error(`${file} (preset ${presetName}): ${describeIssue(r.error.issues[0])}`);
  return { experiment: name, preset: presetName, about, file, config: r.data as ExperimentConfig };
}

/** Preset names a config file offers. */
export function presetNames(name: ExperimentName, file?: string): string[] {
  return Object.keys(readExperimentFile(file ?? shippedConfigFile(name)).presets);
}
