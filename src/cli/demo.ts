// `cubit demo`: the product's main job in one command. Trains a small Transformer and a small
// Cubit model on the Brown corpus (bytes) with the same budget, evaluates both on held-out text at
// the training length and at 4× it, samples from each, and leaves a run folder with checkpoints,
// logs and a report. It is the `demo` preset of the length-scaling experiment
// (experiments/length-scaling.json), so every run is resumable and described in its report.
import { loadModel } from '../eval/checkpoint.ts';
import { InterruptedError, runExperiment } from '../experiments/index.ts';
import type { LmRunResult } from '../experiments/lm.ts';
import { generateText } from '../eval/generate-text.ts';
import { writeFileAtomicSync } from '../util/atomic.ts';
import path from 'node:path';
import { type Command, intOption, UsageError } from './args.ts';
import { backendOption, useBackendOption } from './backend.ts';
import { ExperimentPrinter } from './experiment-printer.ts';
import { formatCount, formatDuration } from './progress.ts';

const PROMPT = 'The ';

export const demoCommand: Command = {
  name: 'demo',
  summary: 'Trains a small Transformer and a small Cubit model on Brown (≤ 5 min on 2 cores), compares them, samples from both.',
  usage: 'demo [--out runs/demo] [--sample-bytes 300] [--seed 0]',
  options: {
    out: { type: 'string', description: 'run folder (default runs/demo; a finished demo there is reused)' } as never,
    'sample-bytes': { type: 'string', description: 'bytes to generate from each model (default 300)' } as never,
    seed: { type: 'string', description: 'sampling seed (default 0)' } as never,
    backend: backendOption,
    quiet: { type: 'boolean', description: 'only the results' } as never,
  },
  async run(values) {
    await useBackendOption(values.backend);
    const out = (values.out as string | undefined) ?? path.join('runs', 'demo');
    const sampleBytes = intOption(values, 'sample-bytes', 300, 0);
    const seed = intOption(values, 'seed', 0, 0);
    const printer = new ExperimentPrinter('length-scaling', { quiet: Boolean(values.quiet), report: false });
    const t0 = performance.now();
    const abort = new AbortController();
    const onSigint = (): void => { process.off('SIGINT', onSigint); printer.say('interrupted: finishing the current step'); abort.abort(); };
    process.on('SIGINT', onSigint);
    let r;
    try {
      r = await runExperiment('length-scaling', { preset: 'demo', out, onEvent: printer.onEvent, signal: abort.signal, estimate: false });
    } catch (e) {
      printer.done();
      if (e instanceof InterruptedError) { console.error(`cubit: ${e.message} (run 'cubit demo' again to continue)`); return 130; }
      throw e;
    } finally {
      process.off('SIGINT', onSigint);
    }
    const done = r.outcomes.filter((o) => o.result !== null);
    if (done.length === 0) throw new Error(`every demo run failed; see ${out}/*/error.json`);
    const lengths = [...new Set(done.flatMap((o) => (o.result as LmRunResult).eval.map((e) => e.contextLength)))].sort((a, b) => a - b);

    const lines: string[] = [];
    lines.push(`Held-out bits per byte (lower is better), Brown validation text; trained at ${lengths[0]} bytes:`);
    lines.push(['model'.padEnd(14), 'parameters'.padStart(10), 'train tok/s'.padStart(12), ...lengths.map((L) => `bpb @${L}`.padStart(10))].join(' '));
    for (const o of done) {
      const res = o.result as LmRunResult;
      const name = String(o.def.labels.variant);
      lines.push([name.padEnd(14), formatCount(res.parameters).padStart(10), formatCount(res.tokensPerSec).padStart(12),
        ...lengths.map((L) => (res.eval.find((e) => e.contextLength === L)?.bpb.toFixed(3) ?? '—').padStart(10))].join(' '));
    }
    const samples: string[] = [];
    for (const o of done) {
      const ck = loadModel(path.join(out, o.def.id, 'train'));
      try {
        const text = PROMPT + (await generateText(ck, PROMPT, { maxNewTokens: sampleBytes, temperature: 0.8, topK: 40, seed })).text;
        samples.push(`--- ${o.def.labels.variant} (temperature 0.8, top-k 40, seed ${seed}) ---\n${text}\n`);
      } finally {
        ck.model.dispose();
      }
    }
    lines.push('', ...samples);
    lines.push(`Run folder: ${out} (each run's checkpoint and metrics.jsonl under <run>/train; report.md and report.html beside them).`);
    lines.push(`Total time: ${formatDuration((performance.now() - t0) / 1000)}.`);
    const text = lines.join('\n');
    console.log(text);
    writeFileAtomicSync(path.join(out, 'demo.txt'), text + '\n', { durable: false });
    if (done.length < r.outcomes.length) throw new UsageError(`${r.outcomes.length - done.length} demo run(s) failed; see ${out}/*/error.json`);
    return 0;
  },
};
