// `cubit experiment <name>`: runs a named experiment (a grid of training runs and evaluations) from
// experiments/<name>.json at a preset, skipping runs already finished in its output folder, and
// writes report.html, report.md, results.json and figures/ there. docs/EXPERIMENTS.md explains.
import * as fs from 'node:fs';
import os from 'node:os';
import * as path from 'node:path';
import { getBackend } from '../core/engine.ts';
import { NativeBackend } from '../backends/native/backend.ts';
import {
  defaultOut, EXPERIMENT_NAMES, InterruptedError, presetNames, resolveConfig, runExperiment, type ExperimentName, type ExperimentResult,
} from '../experiments/index.ts';
import { flopsOfRun } from '../experiments/flops.ts';
import { packExperiment, unpackExperiment } from '../experiments/pack.ts';
import { resultsSection, writeResultsSection } from '../experiments/summary.ts';
import { readExperimentFile, shippedConfigFile } from '../experiments/config.ts';
import { type Command, intOption, numberOption, UsageError } from './args.ts';
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

/**
 * The dry run's plan: every run with its estimate, the single-core total, and with --jobs N the
 * wall time of the two phases (sweep, then grid) on N workers, each phase as long as its longest
 * chain of runs when the runs are dealt to the workers longest first. Also the training FLOPs.
 */
function dryRunText(r: ExperimentResult, jobs: number): string {
  const lines: string[] = [];
  const wall = (defs: { estimate?: number }[]): number => {
    const loads = new Array(jobs).fill(0);
    for (const e of defs.map((d) => d.estimate ?? 0).sort((a, b) => b - a)) { const k = loads.indexOf(Math.min(...loads)); loads[k] += e; }
    return Math.max(0, ...loads);
  };
  const sum = (defs: { estimate?: number }[]): number => defs.reduce((s, d) => s + (d.estimate ?? 0), 0);
  const flops = [...r.sweep, ...r.runs].reduce((s, d) => s + flopsOfRun(d.spec), 0);
  const phases = [['learning-rate sweep', r.sweep], ['grid', r.runs]] as const;
  for (const [name, defs] of phases) {
    if (!defs.length) continue;
    lines.push(`${name}: ${defs.length} runs${r.estimateSeconds !== null ? `, ${formatDuration(sum(defs))} on one worker${jobs > 1 ? `, about ${formatDuration(wall(defs))} on ${jobs} workers` : ''}` : ''}`);
    for (const d of defs) lines.push(`  ${d.id}${d.estimate ? `  ~${formatDuration(d.estimate)}` : ''}`);
  }
  if (r.sweep.length && !r.tuning) lines.push('(the grid\'s learning rates are chosen by the sweep; until it has run, the config\'s rate stands in: the estimates do not depend on it)');
  lines.push(`dry run: ${r.sweep.length + r.runs.length} runs${r.estimateSeconds !== null ? `, estimated ${formatDuration(r.estimateSeconds)} on one worker of this machine${jobs > 1 ? `, about ${formatDuration(wall(r.sweep) + wall(r.runs))} with --jobs ${jobs} (if the workers run as fast as the timed one)` : ''}` : ''} (finished runs on disk are skipped)`);
  lines.push(`training and evaluation compute: ${(flops / 1e15).toFixed(2)} PFLOP (about ${formatDuration(flops / 10e12)} at 10 TFLOP/s sustained, ${formatDuration(flops / 25e12)} at 25)`);
  return lines.join('\n');
}

export const experimentCommand: Command = {
  name: 'experiment',
  summary: 'Runs a named experiment (length-scaling, noise, ablations) and writes its report.',
  usage: 'experiment <name|list> [--preset smoke|cpu|gpu|paper] [--config file.json] [--out dir] [--set path=value]… [--jobs N] [--dry-run] [--report-only]\n' +
    '       cubit experiment pack <out dir> --to <dir> [--name n] [--weights]     (parts <name>.000 … of at most 16 MiB)\n' +
    '       cubit experiment unpack <part files…> --out <dir>\n' +
    '       cubit experiment summary <results.json…> [--readme README.md]',
  options: {
    preset: { type: 'string', description: 'smoke (minutes), cpu (about an hour on 2 cores, the default), paper (GPU scale), test' } as never,
    config: { type: 'string', description: 'a config file to use instead of experiments/<name>.json (a copy you edited)' } as never,
    out: { type: 'string', description: 'output folder (default runs/experiments/<name>-<preset>)' } as never,
    set: { type: 'string', multiple: true, description: 'override a config value after the preset, e.g. --set seeds=[0,1] --set optimizer.lr=0.01' } as never,
    'dry-run': { type: 'boolean', description: 'print the plan and the time estimate, run nothing' } as never,
    'no-estimate': { type: 'boolean', description: 'skip timing the models for the estimate' } as never,
    'print-config': { type: 'boolean', description: 'print the resolved configuration as JSON and exit' } as never,
    backend: backendOption,
    threads: { type: 'string', description: 'threads of the native backend, per job with --jobs (default: all CPUs; with --jobs N: CPUs / N)' } as never,
    jobs: { type: 'string', description: 'runs at once, each in its own worker process (default 1); results are those of a serial run' } as never,
    'no-new-runs-after': { type: 'string', description: 'start no run after this many seconds; let the running ones finish, then exit 130 (fewer half-done runs to carry than --stop-after)' } as never,
    'stop-after': { type: 'string', description: 'stop cleanly (checkpoints written, exit 130) after this many seconds; the same command continues' } as never,
    quiet: { type: 'boolean', description: 'no progress output' } as never,
    'report-only': { type: 'boolean', description: 'run nothing: write the report from the runs finished on disk' } as never,
    to: { type: 'string', description: 'pack: the folder the parts go to' } as never,
    name: { type: 'string', description: 'pack: the parts\' name (default: the folder\'s name)' } as never,
    weights: { type: 'boolean', description: 'pack: keep finished runs\' final weights (never their optimizer state)' } as never,
    readme: { type: 'string', description: 'summary: write the section between the results markers of this Markdown file' } as never,
  },
  async run(values, positionals) {
    const name = positionals[0];
    if (!name) throw new UsageError(`experiment: name one of ${EXPERIMENT_NAMES.join(', ')} (or 'list')`);
    if (name === 'list') { console.log(listText()); return 0; }
    if (name === 'pack') {
      const dir = positionals[1], to = values.to as string | undefined;
      if (!dir || !to || positionals.length > 2) throw new UsageError('experiment pack: usage: cubit experiment pack <out dir> --to <dir> [--name n] [--weights]');
      const parts = packExperiment(dir, to, (values.name as string | undefined) ?? path.basename(path.resolve(dir)), { weights: Boolean(values.weights) });
      for (const p of parts) console.log(`${p}  ${(fs.statSync(p).size / 2 ** 20).toFixed(2)} MiB`);
      return 0;
    }
    if (name === 'unpack') {
      const parts = positionals.slice(1), out = values.out as string | undefined;
      if (!parts.length || !out) throw new UsageError('experiment unpack: usage: cubit experiment unpack <part files…> --out <dir>');
      console.log(`${unpackExperiment(parts, out)} files into ${out}`);
      return 0;
    }
    if (name === 'summary') {
      const files = positionals.slice(1);
      if (!files.length) throw new UsageError('experiment summary: name the results.json files (e.g. docs/results/*/results.json)');
      const readme = values.readme as string | undefined;
      const section = resultsSection(files, readme ? path.dirname(readme) : '.');
      if (readme) { writeResultsSection(readme, section); console.log(`wrote the results section of ${readme}`); } else console.log(section);
      return 0;
    }
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
    await useBackendOption(values.backend);
    const jobs = intOption(values, 'jobs', 1);
    const stopAfter = values['stop-after'] === undefined ? null : numberOption(values, 'stop-after', 0);
    if (stopAfter !== null && !(stopAfter > 0)) throw new UsageError(`--stop-after must be a positive number of seconds, got '${values['stop-after']}'`);
    let threads: number | undefined;
    if (values.threads !== undefined || jobs > 1) {
      const b = getBackend();
      if (values.threads !== undefined && !(b instanceof NativeBackend)) throw new UsageError('--threads applies to the native backend only');
      threads = values.threads !== undefined ? intOption(values, 'threads', 0) : Math.max(1, Math.floor(os.availableParallelism() / jobs));
      if (b instanceof NativeBackend) b.setThreads(threads);
    }
    const quiet = Boolean(values.quiet);
    const out = (values.out as string | undefined) ?? defaultOut(name, preset);
    const printer = new ExperimentPrinter(name, { quiet });
    const { say, onEvent } = printer;
    const abort = new AbortController();
    const onSigint = (): void => {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
      say('interrupted: finishing the current step and writing a checkpoint (Ctrl-C again to quit at once)');
      abort.abort();
    };
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);
    const timer = stopAfter === null ? null : setTimeout(() => {
      say(`--stop-after ${stopAfter}: stopping; the runs write checkpoints and the same command continues`);
      abort.abort();
    }, stopAfter * 1000);
    timer?.unref();
    const drain = new AbortController();
    const drainAfter = values['no-new-runs-after'] === undefined ? null : numberOption(values, 'no-new-runs-after', 0);
    if (drainAfter !== null && !(drainAfter > 0)) throw new UsageError(`--no-new-runs-after must be a positive number of seconds, got '${values['no-new-runs-after']}'`);
    const drainTimer = drainAfter === null ? null : setTimeout(() => {
      say(`--no-new-runs-after ${drainAfter}: starting no further run; the running ones finish`);
      drain.abort();
    }, drainAfter * 1000);
    drainTimer?.unref();
    try {
      const r = await runExperiment(name as ExperimentName, {
        preset, file, overrides, out, onEvent, signal: abort.signal, drain: drain.signal, estimate: !values['no-estimate'], dryRun: Boolean(values['dry-run']),
        jobs, worker: { backend: getBackend().name, ...(threads !== undefined ? { threads } : {}) }, reportOnly: Boolean(values['report-only']),
      });
      if (values['dry-run']) {
        console.log(dryRunText(r, jobs));
        return 0;
      }
      if (!quiet && r.conclusion) console.log(`\n${r.conclusion}`);
      const failed = r.outcomes.filter((o) => o.status.status === 'failed').length;
      if (values['report-only']) {
        if (failed) console.error(`cubit: ${failed} of ${r.outcomes.length} runs are not finished on disk and are left out of the report`);
        return 0;
      }
      if (failed) console.error(`cubit: ${failed} of ${r.outcomes.length} runs failed (their errors are in the report and in <run>/error.json); run again to retry them`);
      return failed ? 1 : 0;
    } catch (e) {
      printer.done();
      if (e instanceof InterruptedError) { console.error(`cubit: ${e.message}`); return 130; }
      throw e;
    } finally {
      if (timer) clearTimeout(timer);
      if (drainTimer) clearTimeout(drainTimer);
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
    }
  },
};
