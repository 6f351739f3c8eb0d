// `cubit experiment <name>`: runs a named experiment (a grid of training runs and evaluations) from
// experiments/<name>.json at a preset, skipping runs already finished in its output folder, and
// writes report.html, report.md, results.json and figures/ there. docs/EXPERIMENTS.md explains.
import * as fs from 'node:fs';
import { getBackend } from '../core/engine.ts';
import { NativeBackend } from '../backends/native/backend.ts';
import {
  defaultOut, EXPERIMENT_NAMES, InterruptedError, presetNames, resolveConfig, runExperiment, type ExperimentName,
} from '../experiments/index.ts';
import { readExperimentFile, shippedConfigFile } from '../experiments/config.ts';
import { type Command, intOption, UsageError } from './args.ts';
import { backendOption, useBackendOption } from './backend.ts';
import { ExperimentPrinter } from './experiment-printer.ts';
import { formatDuration } from './progress.ts';

function listText(): string {
  const lines = ['experiments (cubit experiment <name> --preset <preset>):'];
  for (const name of EXPERIMENT_NAMES) {
    const f = readExperimentFile(shippedConfigFile(name));
    lines.push(`  ${name.padEnd(15)} ${f.description ?? ''}`);
    for (const [p, v] of Object.entries(f.presets)) lines.push(`    --preset ${p.padEnd(7)} ${typeof v.about === 'string' ? v.about : ''}`);
  }
  return lines.join('\n');
}

export const experimentCommand: Command = {
  name: 'experiment',
  summary: 'Runs a named experiment (length-scaling, noise, ablations) and writes its report.',
  usage: 'experiment <name|list> [--preset smoke|cpu|paper] [--config file.json] [--out dir] [--set path=value]… [--dry-run]',
  options: {
    preset: { type: 'string', description: 'smoke (minutes), cpu (about an hour on 2 cores, the default), paper (GPU scale), test' } as never,
    config: { type: 'string', description: 'a config file to use instead of experiments/<name>.json (a copy you edited)' } as never,
    out: { type: 'string', description: 'output folder (default runs/experiments/<name>-<preset>)' } as never,
    set: { type: 'string', multiple: true, description: 'override a config value after the preset, e.g. --set seeds=[0,1] --set optimizer.lr=0.01' } as never,
    'dry-run': { type: 'boolean', description: 'print the plan and the time estimate, run nothing' } as never,
    'no-estimate': { type: 'boolean', description: 'skip timing the models for the estimate' } as never,
    'print-config': { type: 'boolean', description: 'print the resolved configuration as JSON and exit' } as never,
    backend: backendOption,
    threads: { type: 'string', description: 'threads of the native backend (default: all CPUs)' } as never,
    quiet: { type: 'boolean', description: 'no progress output' } as never,
  },
  async run(values, positionals) {
    const name = positionals[0];
    if (!name) throw new UsageError(`experiment: name one of ${EXPERIMENT_NAMES.join(', ')} (or 'list')`);
    if (name === 'list') { console.log(listText()); return 0; }
    if (!EXPERIMENT_NAMES.includes(name as ExperimentName)) throw new UsageError(`experiment: unknown experiment '${name}' (${EXPERIMENT_NAMES.join(', ')}, or 'list')`);
    if (positionals.length > 1) throw new UsageError(`experiment: unexpected argument '${positionals[1]}'`);
    const file = values.config as string | undefined;
    if (file && !fs.existsSync(file)) throw new UsageError(`--config: ${file}: no such file`);
    const preset = (values.preset as string | undefined) ?? 'cpu';
    const presets = presetNames(name as ExperimentName, file);
    if (preset !== 'defaults' && !presets.includes(preset)) throw new UsageError(`--preset: '${preset}' is not a preset of ${name} (${presets.join(', ')})`);
    const overrides = (values.set as string[] | undefined) ?? [];
    if (values['print-config']) {
      console.log(JSON.stringify(resolveConfig(name as ExperimentName, { preset, file, overrides }).config, null, 2));
      return 0;
    }
    useBackendOption(values.backend);
    if (values.threads !== undefined) {
      const b = getBackend();
      if (!(b instanceof NativeBackend)) throw new UsageError('--threads applies to the native backend only');
      b.setThreads(intOption(values, 'threads', 0));
    }
    const quiet = Boolean(values.quiet);
    const out = (values.out as string | undefined) ?? defaultOut(name, preset);
    const printer = new ExperimentPrinter(name, quiet);
    const { say, onEvent } = printer;
    const abort = new AbortController();
    const onSigint = (): void => {
      process.off('SIGINT', onSigint);
      say('interrupted: finishing the current step and writing a checkpoint (Ctrl-C again to quit at once)');
      abort.abort();
    };
    process.on('SIGINT', onSigint);
    try {
      const r = await runExperiment(name as ExperimentName, {
        preset, file, overrides, out, onEvent, signal: abort.signal, estimate: !values['no-estimate'], dryRun: Boolean(values['dry-run']),
      });
      if (values['dry-run']) {
        console.log(`dry run: ${r.runs.length} runs${r.estimateSeconds !== null ? `, estimated ${formatDuration(r.estimateSeconds)} in all (finished runs on disk are skipped)` : ''}`);
        for (const d of r.runs) console.log(`  ${d.id}${d.estimate ? `  ~${formatDuration(d.estimate)}` : ''}`);
        return 0;
      }
      if (!quiet && r.conclusion) console.log(`\n${r.conclusion}`);
      const failed = r.outcomes.filter((o) => o.status.status === 'failed').length;
      if (failed) console.error(`cubit: ${failed} of ${r.outcomes.length} runs failed (their errors are in the report and in <run>/error.json); run again to retry them`);
      return failed ? 1 : 0;
    } catch (e) {
      printer.done();
      if (e instanceof InterruptedError) { console.error(`cubit: ${e.message}`); return 130; }
      throw e;
    } finally {
      process.off('SIGINT', onSigint);
    }
  },
};
