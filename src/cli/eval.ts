// `cubit eval <run-or-checkpoint>`: held-out loss, perplexity and bits per byte at several context
// lengths (sliding windows), as JSON on stdout or in --out.
import { layerMixers } from '../models/config.ts';
import { MAX_CONTEXT } from '../models/limits.ts';
import { loadCorpus, splitCorpus, type CorpusOptions, type Document, type SplitOptions } from '../data/corpus.ts';
import { tokenizeDocuments } from '../data/batches.ts';
import { loadModel } from '../eval/checkpoint.ts';
import { evaluate, type StrideSpec } from '../eval/evaluate.ts';
import { writeJsonAtomicSync } from '../util/atomic.ts';
import { type Command, intOption, UsageError } from './args.ts';
import { backendOption, useBackendOption } from './backend.ts';

const SPLITS = ['validation', 'test', 'train', 'all'] as const;

/** '0.5' (a fraction of each length: has a decimal point) or '256' (tokens). */
export function parseStride(v: unknown): StrideSpec {
  const s = String(v).trim();
  const n = Number(s);
  if (s === '' || !Number.isFinite(n)) throw new UsageError(`--stride must be a number of tokens (e.g. 256) or a fraction of the context length (e.g. 0.5), got '${s}'`);
  if (s.includes('.') || s.toLowerCase().includes('e')) {
    if (!(n > 0 && n <= 1)) throw new UsageError(`--stride as a fraction must be in (0, 1], got '${s}'`);
    return { fraction: n };
  }
  if (!(Number.isInteger(n) && n > 0)) throw new UsageError(`--stride must be a positive integer number of tokens, got '${s}'`);
  return n;
}

export function parseLengths(v: unknown): number[] {
  const parts = String(v).split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (parts.length === 0) throw new UsageError(`--context must list positive integers, e.g. 128,256,512`);
  return parts.map((p) => {
    const n = Number(p);
    if (!(Number.isInteger(n) && n > 0)) throw new UsageError(`--context: '${p}' is not a positive integer`);
    if (n > MAX_CONTEXT) throw new UsageError(`--context: ${p} is over the limit ${MAX_CONTEXT}`);
    return n;
  });
}

function obj(v: unknown): Record<string, unknown> {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export const evalCommand: Command = {
  name: 'eval',
  summary: 'Held-out loss, perplexity and bits per byte of a checkpoint at several context lengths (JSON).',
  usage: 'eval <run-or-checkpoint> [--context 128,256,512] [--stride 0.5|N] [--corpus brown] [--split validation] [--out results.json]',
  options: {
    context: { type: 'string', description: 'context lengths, comma-separated (default: 1, 2 and 4 × the training length)' } as never,
    stride: { type: 'string', description: 'window step: tokens (256) or a fraction of each length (0.5, the default)' } as never,
    corpus: { type: 'string', description: "'brown', a folder, a .jsonl or a text file (default: the training corpus)" } as never,
    split: { type: 'string', description: `which part: ${SPLITS.join(', ')} (default validation)` } as never,
    'split-seed': { type: 'string', description: 'seed of the document split (default: the training one, else 0)' } as never,
    'max-documents': { type: 'string', description: 'evaluate only the first N documents of the split' } as never,
    'batch-size': { type: 'string', description: 'windows per forward pass (default: 8192 tokens worth)' } as never,
    tokenizer: { type: 'string', description: "'byte' or a tokenizer.json (default: the checkpoint's own; must match it)" } as never,
    backend: backendOption,
    out: { type: 'string', description: 'write the JSON here (atomically) instead of stdout' } as never,
  },
  async run(values, positionals) {
    if (positionals.length !== 1) throw new UsageError(`eval: give one run or checkpoint folder (see 'cubit eval --help')`);
    await useBackendOption(values.backend);
    const split = String(values.split ?? 'validation');
    if (!(SPLITS as readonly string[]).includes(split)) throw new UsageError(`--split must be one of ${SPLITS.join(', ')}, got '${split}'`);
    const stride = values.stride === undefined ? { fraction: 0.5 } : parseStride(values.stride);
    const maxDocs = values['max-documents'] === undefined ? null : intOption(values, 'max-documents', 0, 1);
    const batchSize = values['batch-size'] === undefined ? undefined : intOption(values, 'batch-size', 1, 1, 1 << 16);
    const explicitLengths = values.context === undefined ? null : parseLengths(values.context);

    const ck = loadModel(positionals[0], { tokenizer: values.tokenizer as string | undefined });
    try {
      const lengths = explicitLengths ?? (ck.trainSeqLen ? [ck.trainSeqLen, 2 * ck.trainSeqLen, 4 * ck.trainSeqLen] : null);
      if (!lengths) throw new UsageError(`eval: the checkpoint does not record its training length; give --context, e.g. --context 128,256`);

      // The held-out data: by default the corpus and split the run trained with.
      const data = obj(ck.training.data);
      const recordedSplit = obj(data.split);
      const corpus = String(values.corpus ?? data.corpus ?? 'brown');
      const corpusOpts: CorpusOptions = {};
      if (values.corpus === undefined) {
        if (typeof data.fileSplit === 'string') corpusOpts.split = data.fileSplit as CorpusOptions['split'];
        if (typeof data.textField === 'string') corpusOpts.field = data.textField;
        if (Array.isArray(data.extensions)) corpusOpts.extensions = data.extensions as string[];
      }
      const splitOpts: SplitOptions = {
        seed: values['split-seed'] !== undefined ? intOption(values, 'split-seed', 0, 0) : typeof recordedSplit.seed === 'number' ? recordedSplit.seed : 0,
      };
      if (typeof recordedSplit.validation === 'number') splitOpts.validation = recordedSplit.validation;
      if (typeof recordedSplit.test === 'number') splitOpts.test = recordedSplit.test;
      if (typeof recordedSplit.by === 'string') splitOpts.by = recordedSplit.by as SplitOptions['by'];
      const docs = loadCorpus(corpus, corpusOpts);
      let part: Document[];
      if (split === 'all') part = docs;
      else {
        const parts = splitCorpus(docs, splitOpts);
        part = parts[split as 'validation' | 'test' | 'train'];
      }
      if (maxDocs !== null) part = part.slice(0, maxDocs);
      if (part.length === 0) throw new UsageError(`eval: the ${split} split of '${corpus}' has no documents`);
      // As the trainer does: each document starts with the tokenizer's BOS token, when it has one.
      const stream = tokenizeDocuments(part, ck.tokenizer, { bosId: ck.tokenizer.bosId });

      const t0 = performance.now();
      const results = await evaluate(ck.model, stream, {
        contextLengths: lengths, stride, batchSize, trainSeqLen: ck.trainSeqLen,
        onProgress: ({ contextLength, batch, batches }) => {
          if (process.stderr.isTTY) process.stderr.write(`\reval: context ${contextLength}: batch ${batch}/${batches}${batch === batches ? '\n' : ''}`);
        },
      });
      const report = {
        checkpoint: ck.dir,
        step: ck.step,
        trainSeqLen: ck.trainSeqLen,
        parameters: ck.model.numParameters(),
        mixers: layerMixers(ck.config),
        window: ck.config.window,
        tokenizer: ck.tokenizer.name,
        backend: ck.model.embed.weight.backend.name,
        data: {
          corpus, split, splitSeed: splitOpts.seed ?? 0,
          documents: part.length, tokens: stream.tokens.length,
          bytes: part.reduce((s, d) => s + Buffer.byteLength(d.text, 'utf8'), 0),
        },
        results,
        seconds: (performance.now() - t0) / 1000,
      };
      if (values.out !== undefined) writeJsonAtomicSync(String(values.out), report);
      else process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      return 0;
    } finally {
      ck.model.dispose();
    }
  },
};
