// `cubit bench <suite>`: benchmarks that print JSON lines.
import { benchMixer, parseMixerShapes } from '../bench/mixer.ts';
import { benchOps } from '../bench/ops.ts';
import { benchTrain, parseTrainModel, parseTrainShapes } from '../bench/train.ts';
import { type Command, UsageError } from './args.ts';
import { backendOption, useBackendOption } from './backend.ts';

interface SuiteOptions { threads?: number[]; filter?: string; sizes?: string; shapes?: string; model?: string }

/** A size option's parsed value; its parser's message becomes a usage error naming the option. */
function parsed<T>(option: string, text: string | undefined, parse: (s: string) => T): T | undefined {
  if (text === undefined) return undefined;
  try { return parse(text); } catch (e) { throw new UsageError(`${option}: ${(e as Error).message}`); }
}

const positiveInts = (s: string): number[] => s.split(',').map((p) => {
  const n = Number(p);
  if (!Number.isInteger(n) || n < 1) throw new Error(`'${p}' is not a positive integer`);
  return n;
});

/** Which size options each suite takes (the others are refused, so a typo is not silently ignored). */
const suites: Record<string, { takes: (keyof SuiteOptions)[]; run: (o: SuiteOptions) => Promise<void> }> = {
  ops: { takes: ['sizes'], run: (o) => benchOps({ threads: o.threads, filter: o.filter, sizes: parsed('--sizes', o.sizes, positiveInts) }) },
  mixer: { takes: ['shapes'], run: (o) => benchMixer({ threads: o.threads, filter: o.filter, shapes: parsed('--shapes', o.shapes, parseMixerShapes) }) },
  train: {
    takes: ['shapes', 'model'],
    run: (o) => benchTrain({ threads: o.threads, filter: o.filter, shapes: parsed('--shapes', o.shapes, parseTrainShapes), model: parsed('--model', o.model, parseTrainModel) }),
  },
};

export const benchCommand: Command = {
  name: 'bench',
  summary: `Benchmarks, one JSON line per case (median ms). Suites: ${Object.keys(suites).join(', ')}.`,
  usage: 'bench <suite> [--threads 1,2] [--backend name] [--filter text] [--sizes 4096 | --shapes … | --model …]',
  options: {
    threads: { type: 'string', description: 'comma-separated thread counts (native backend)' } as never,
    backend: backendOption,
    filter: { type: 'string', description: 'only cases whose name contains this text' } as never,
    sizes: { type: 'string', description: 'ops: sizes n of the n×n×n matmuls (default 512,1024,2048)' } as never,
    shapes: { type: 'string', description: 'mixer: BxHxTxD list (e.g. 8x8x4096x64); train: TxB list (e.g. 1024x32,4096x8)' } as never,
    model: { type: 'string', description: 'train: dModel x layers x heads x ffn (default 128x4x4x512)' } as never,
  },
  async run(values, positionals) {
    const suite = positionals[0];
    if (!suite || !(suite in suites)) throw new UsageError(`bench: choose a suite: ${Object.keys(suites).join(', ')}`);
    for (const k of ['sizes', 'shapes', 'model'] as const) {
      if (values[k] !== undefined && !suites[suite].takes.includes(k)) throw new UsageError(`bench ${suite}: --${k} applies to ${Object.keys(suites).filter((s) => suites[s].takes.includes(k)).join(', ')} only`);
    }
    await useBackendOption(values.backend);
    const threads = parsed('--threads', values.threads as string | undefined, positiveInts);
    await suites[suite].run({ threads, filter: values.filter as string | undefined, sizes: values.sizes as string | undefined, shapes: values.shapes as string | undefined, model: values.model as string | undefined });
    return 0;
  },
};
