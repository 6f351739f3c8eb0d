// `cubit train`: trains a model from a JSON config into a run folder, or resumes one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getBackend } from '../core/engine.ts';
import { NativeBackend } from '../backends/native/backend.ts';
import { train, type TrainEvent } from '../train/trainer.ts';
import { readJsonFileSync } from '../util/files.ts';
import { type Command, intOption, UsageError } from './args.ts';
import { backendOption, useBackendOption } from './backend.ts';
import { formatCount, formatDuration, Progress } from './progress.ts';

function readConfigFile(file: string): unknown {
  if (!fs.existsSync(file)) throw new UsageError(`${file}: no such config file`);
  try { return readJsonFileSync(file); } catch (e) { throw new UsageError((e as Error).message); }
}

/**
 * The config file as given or, when it does not exist and names one of the package's own configs
 * (`configs/tiny-cubit.json`), that one: the README's commands then work from an installed package
 * as from a checkout.
 */
function resolveConfigPath(file: string): string {
  if (fs.existsSync(file) || path.isAbsolute(file)) return file;
  const rel = path.normalize(file);
  if (path.dirname(rel) !== 'configs') return file;
  const shipped = path.join(path.dirname(path.dirname(path.dirname(fileURLToPath(import.meta.url)))), rel);
  return fs.existsSync(shipped) ? shipped : file;
}

const num = (x: number, digits = 4): string => (Number.isFinite(x) ? x.toFixed(digits) : String(x));

export const trainCommand: Command = {
  name: 'train',
  summary: 'Trains a model from a JSON config into a run folder (or resumes one).',
  usage: 'train --config run.json [--out runs/name] [--resume] [--steps N] [--stop-at N] [--backend name] [--threads N]',
  options: {
    config: { type: 'string', description: 'the training config (configs/*.json); optional with --resume' } as never,
    out: { type: 'string', description: 'the run folder (default runs/<config name>)' } as never,
    resume: { type: 'boolean', description: 'continue the run in --out from its latest checkpoint' } as never,
    steps: { type: 'string', description: "total steps (overrides the config's)" } as never,
    'stop-at': { type: 'string', description: 'end this sitting after step N (checkpoint written; schedule unchanged)' } as never,
    backend: backendOption,
    threads: { type: 'string', description: 'threads of the native backend (default: all CPUs)' } as never,
    quiet: { type: 'boolean', description: 'no progress output (errors and the summary only)' } as never,
  },
  async run(values, positionals) {
    if (positionals.length) throw new UsageError(`train: unexpected argument '${positionals[0]}' (the config goes after --config)`);
    const configPath = values.config as string | undefined;
    const resume = Boolean(values.resume);
    if (!configPath && !resume) throw new UsageError('train: --config is required (or --resume with --out)');
    let out = values.out as string | undefined;
    if (!out) {
      if (!configPath) throw new UsageError('train: --resume needs --out (the run folder)');
      out = path.join('runs', path.basename(configPath).replace(/\.json$/i, ''));
    }
    const config = configPath ? readConfigFile(resolveConfigPath(configPath)) : undefined;
    const steps = values.steps === undefined ? undefined : intOption(values, 'steps', 0);
    const stopAt = values['stop-at'] === undefined ? undefined : intOption(values, 'stop-at', 0);
    await useBackendOption(values.backend);
    if (values.threads !== undefined) {
      const n = intOption(values, 'threads', 0, 0, 1024);
      const b = getBackend();
      if (!(b instanceof NativeBackend)) throw new UsageError('--threads applies to the native backend only');
      b.setThreads(n);
    }

    const quiet = Boolean(values.quiet);
    let progress: Progress | null = null;
    // Progress and messages go to stderr; stdout gets the summary line only.
    const say = (line: string): void => { if (!quiet) progress ? progress.log(line) : console.error(line); };
    const onEvent = (e: TrainEvent): void => {
      if (quiet) return;
      switch (e.kind) {
        case 'start': {
          const what = e.resumedFrom ? `resuming ${e.resumedFrom} at step ${e.step}` : `new run in ${out}`;
          say(`${what}: ${formatCount(e.parameters)} parameters, ${e.tokensPerStep} tokens/step, steps ${e.step} → ${e.end}${e.end < e.steps ? ` (of ${e.steps})` : ''}, backend ${e.backend}`);
          progress = new Progress({ total: e.end, every: e.logEvery });
          break;
        }
        case 'step':
          progress?.update(e.step, [
            ['loss', num(e.loss)], ['lr', e.lr.toExponential(2)], ['tok/s', formatCount(e.tokensPerSec)],
            ...(e.skippedSteps ? [['skipped', String(e.skippedSteps)] as const] : []),
          ]);
          break;
        case 'skip': say(`step ${e.step}: skipped (${e.reason}; ${e.inARow} in a row)`); break;
        case 'eval': say(`step ${e.step}: eval loss ${num(e.loss)} · ${num(e.bpb)} bits/byte`); break;
        case 'checkpoint': say(`step ${e.step}: checkpoint ${e.path}`); break;
      }
    };

    // Ctrl-C: finish the current step, write a checkpoint, exit 130. A second one exits at once.
    const abort = new AbortController();
    const onSigint = (): void => {
      process.off('SIGINT', onSigint);
      say('interrupted: finishing the step and writing a checkpoint (Ctrl-C again to quit at once)');
      abort.abort();
    };
    process.on('SIGINT', onSigint);
    try {
      const s = await train({ config, configSource: configPath, out, resume, steps, stopAt, signal: abort.signal, onEvent });
      (progress as Progress | null)?.done();
      if (s.step === s.startStep) {
        const why = stopAt !== undefined && stopAt <= s.step ? `--stop-at ${stopAt} is behind it` : 'raise --steps to train further';
        console.log(`${out}: already at step ${s.step} of ${s.steps}; nothing to do (${why})`);
        return 0;
      }
      const evalPart = s.evalLoss !== null ? `, eval loss ${num(s.evalLoss)} (${num(s.evalBpb!)} bits/byte)` : '';
      const skipped = s.skippedSteps ? `, ${s.skippedSteps} skipped` : '';
      const how = s.stopped === 'completed' ? 'done' : s.stopped === 'stop-at' ? `stopped at step ${s.step} (resume with --resume)` : 'interrupted (resume with --resume)';
      console.log(`${how}: step ${s.step}/${s.steps}, loss ${num(s.loss)}${evalPart}${skipped}, ${formatCount(s.tokensPerSec)} tok/s, ${formatDuration(s.seconds)}; checkpoint ${s.checkpoint}`);
      return s.stopped === 'aborted' ? 130 : 0;
    } catch (e) {
      (progress as Progress | null)?.done();
      throw e; // main prints it as one line (a diverged run: NonFiniteError names the last good checkpoint)
    } finally {
      process.off('SIGINT', onSigint);
    }
  },
};
