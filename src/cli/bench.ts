// `cubit bench <suite>`: benchmarks that print JSON lines.
import { benchMixer } from '../bench/mixer.ts';
import { benchOps } from '../bench/ops.ts';
import { benchTrain } from '../bench/train.ts';
import { type Command, UsageError } from './args.ts';
import { backendOption, useBackendOption } from './backend.ts';

const suites: Record<string, (threads: number[] | undefined, filter: string | undefined) => void | Promise<void>> = {
  ops: (threads, filter) => benchOps({ threads, filter }),
  mixer: (threads, filter) => benchMixer({ threads, filter }),
  train: (threads, filter) => benchTrain({ threads, filter }),
};

export const benchCommand: Command = {
  name: 'bench',
  summary: `Benchmarks, one JSON line per case (median ms). Suites: ${Object.keys(suites).join(', ')}.`,
  usage: 'bench <suite> [--threads 1,2] [--backend name] [--filter text]',
  options: {
    threads: { type: 'string', description: 'comma-separated thread counts (native backend)' } as never,
    backend: backendOption,
    filter: { type: 'string', description: 'only cases whose name contains this text' } as never,
  },
  async run(values, positionals) {
    const suite = positionals[0];
    if (!suite || !(suite in suites)) throw new UsageError(`bench: choose a suite: ${Object.keys(suites).join(', ')}`);
    await useBackendOption(values.backend);
    const threads = values.threads === undefined ? undefined : String(values.threads).split(',').map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`--threads: '${s}' is not a positive integer`);
      return n;
    });
    await suites[suite](threads, values.filter as string | undefined);
    return 0;
  },
};
