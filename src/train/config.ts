// The training configuration (the `--config run.json` of `cubit train`): the model config, the data
// (corpus, split, tokenizer, packed or padded rows) and the optimisation hyperparameters, validated
// by a strict schema so that an unknown or misspelt field is one clear error before anything runs.
// Paths in `data` are resolved against the working directory.
import { z } from 'zod';
import { describeIssue, parseModelConfig, type ModelConfig } from '../models/config.ts';

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
const fraction = z.number().min(0).lt(1);

/** The zod schema of a training config's `data` section (corpus, tokenizer, split, mode). */
export const dataConfigSchema = z.strictObject({
  /** 'brown', a folder of .txt/.md files, a .jsonl file, or a text file (see data/corpus.ts). */
  corpus: z.string().min(1).default('brown'),
  /** 'byte', or a path to a Hugging Face tokenizer.json (or a folder holding one). */
  tokenizer: z.string().min(1).default('byte'),
  /** The train / validation / test split (by document when it can, else by position). */
  split: z.strictObject({
    seed: nonNegativeInt.default(0),
    validation: fraction.default(0.05),
    test: fraction.default(0.05),
    by: z.enum(['auto', 'document', 'position']).default('auto'),
  }).default({ seed: 0, validation: 0.05, test: 0.05, by: 'auto' }),
  /** 'packed': rows cut from the concatenated documents (document-masked); 'padded': one document window per row. */
  mode: z.enum(['packed', 'padded']).default('packed'),
  /** Text files: one document per file ('whole') or per blank-line-separated section. */
  fileSplit: z.enum(['whole', 'blank-lines']).optional(),
  /** JSONL: the field holding the text (default 'text'). */
  textField: z.string().min(1).optional(),
  /** Folders: file endings that count as documents (default ['.txt', '.md']). */
  extensions: z.array(z.string().min(1)).nonempty().optional(),
});

/** The zod schema of a training config (configs/*.json); {@link parseTrainConfig} applies it. */
export const trainConfigSchema = z.strictObject({
  /** The model (models/config.ts). vocabSize, when omitted, is the tokenizer's. */
  model: z.record(z.string(), z.unknown()),
  data: dataConfigSchema.default(dataConfigSchema.parse({})),
  /** Optimizer steps of the whole run (the schedule's length unless lrDecaySteps says otherwise). */
  steps: positiveInt.default(1000),
  /** Rows per micro-batch. */
  batchSize: positiveInt.default(8),
  /** Tokens per row. */
  seqLen: positiveInt.default(128),
  /** Micro-batches per optimizer step (tokens per step = batchSize · seqLen · gradAccum). */
  gradAccum: positiveInt.default(1),
  /** Peak learning rate, reached at the end of the warm-up. */
  lr: z.number().positive().finite().default(1e-3),
  /** The cosine decay's floor (default lr / 10). */
  minLr: z.number().nonnegative().finite().optional(),
  /** Linear warm-up steps (0: none). */
  warmupSteps: nonNegativeInt.default(100),
  /** The step at which the cosine reaches minLr (default: steps); later steps stay at minLr. */
  lrDecaySteps: positiveInt.optional(),
  /** Decoupled weight decay on matrices (optimizer.ts says which parameters decay). */
  weightDecay: z.number().nonnegative().finite().default(0.1),
  beta1: fraction.default(0.9),
  beta2: fraction.default(0.95),
  eps: z.number().positive().finite().default(1e-8),
  /** Gradient clipping by global norm (0: off). */
  clip: z.number().nonnegative().finite().default(1),
  /** Evaluate every N steps (0: only at the end). */
  evalEvery: nonNegativeInt.default(100),
  /** Validation batches per evaluation (a fixed set spread over the split; 0: no evaluation). */
  evalBatches: nonNegativeInt.default(16),
  /** Write a checkpoint every N steps (0: only at the end). */
  checkpointEvery: nonNegativeInt.default(500),
  /** Append a training record to metrics.jsonl every N steps. */
  logEvery: positiveInt.default(10),
  /** Seeds the parameters, the batch order and the trainer's generator. */
  seed: nonNegativeInt.default(0),
  /** Stop after this many non-finite steps in a row (each is skipped without an update). */
  maxNonFinite: positiveInt.default(5),
});

/** A checked `data` section of a training config, defaults filled in. */
export type DataConfig = z.output<typeof dataConfigSchema>;
/** A training config as written in JSON (configs/*.json; defaults may be left out). */
export type TrainConfigInput = z.input<typeof trainConfigSchema>;
/**
 * A validated training config; `model` is the fully parsed model config. minLr and lrDecaySteps
 * stay absent when not given (they follow lr and steps: see schedule.ts's scheduleOf).
 */
export type TrainConfig = Omit<z.output<typeof trainConfigSchema>, 'model'> & { model: ModelConfig };

/**
 * Validates a training config; throws one line naming the field. `tokenizerVocab`, when given,
 * fills a missing model vocabSize and checks that the model's covers it.
 */
export function parseTrainConfig(input: unknown, where = 'training config', tokenizerVocab?: number): TrainConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw new Error(`${where}: expected a JSON object`);
  if (!('model' in input)) throw new Error(`${where}: missing field 'model' (the model config)`);
  const r = trainConfigSchema.safeParse(input);
  if (!r.success) throw new Error(`${where}: ${describeIssue(r.error.issues[0])}`);
  const c = r.data;
  const rawModel = { ...c.model };
  if (tokenizerVocab !== undefined && rawModel.vocabSize === undefined) rawModel.vocabSize = tokenizerVocab;
  const model = parseModelConfig(rawModel, `${where}: model`);
  if (tokenizerVocab !== undefined && model.vocabSize < tokenizerVocab) {
    throw new Error(`${where}: model.vocabSize ${model.vocabSize} is smaller than the tokenizer's vocabulary (${tokenizerVocab})`);
  }
  if (c.minLr !== undefined && c.minLr > c.lr) throw new Error(`${where}: minLr ${c.minLr} exceeds lr ${c.lr}`);
  if (c.data.split.validation + c.data.split.test >= 1) {
    throw new Error(`${where}: data.split: validation + test (${c.data.split.validation + c.data.split.test}) must leave documents to train on`);
  }
  if (c.evalBatches > 0 && c.data.split.validation === 0) {
    throw new Error(`${where}: evalBatches is ${c.evalBatches} but data.split.validation is 0 (no held-out data; set evalBatches to 0)`);
  }
  return { ...c, model };
}
