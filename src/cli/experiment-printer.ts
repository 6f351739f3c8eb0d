// Prints an experiment's events (cubit experiment, cubit demo) on stderr: the plan, a progress bar
// per run (on a terminal) or a line at each quarter of a run (elsewhere), run outcomes and the
// report's files. Each progress line has one counter (the run's own, e.g. 'step 120/250') and one
// ETA (the whole experiment's).
import { getBackend } from '../core/engine.ts';
import type { ExperimentEvent } from '../experiments/index.ts';
import { formatDuration, Progress, type ProgressOptions } from './progress.ts';

/** Options of {@link ExperimentPrinter}. */
export interface ExperimentPrinterOptions {
  /** Print nothing but failures (default false). */
  quiet?: boolean;
  /** Print where the report was written (default true; the demo says so itself). */
  report?: boolean;
  /** Where to write (default process.stderr) and whether it is a terminal (default: its isTTY). */
  stream?: ProgressOptions['stream'];
  tty?: boolean;
}

export class ExperimentPrinter {
  private progress: Progress | null = null;
  private runIndex = '';
  private configLine = '';
  private readonly stream: NonNullable<ProgressOptions['stream']>;
  private readonly tty: boolean;

  constructor(readonly name: string, readonly opts: ExperimentPrinterOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = opts.tty ?? Boolean(this.stream.isTTY);
  }

  /** One line, printed above the progress bar when one is shown. */
  readonly say = (line: string): void => {
    if (this.opts.quiet) return;
    if (this.progress) this.progress.log(line);
    else this.stream.write(line + '\n');
  };

  readonly onEvent = (e: ExperimentEvent): void => {
    const { say } = this;
    const quiet = Boolean(this.opts.quiet);
    switch (e.kind) {
      // The config and the plan make one line: the plan follows at once, or after the calibration.
      case 'config': this.configLine = `experiment ${this.name}, preset ${e.resolved.preset} (${e.resolved.file}) into ${e.out}, backend ${getBackend().name}; `; break;
      case 'calibrate':
        if (!quiet && this.tty) this.stream.write(`\rtiming the models for the estimate (${e.what})…\x1b[K`);
        break;
      case 'plan':
        if (!quiet && this.tty) this.stream.write('\r\x1b[K');
        say(`${this.configLine}plan: ${e.total} runs, ${e.finished} finished on disk, ${e.toRun} to run${e.estimateSeconds > 0 ? `; estimated ${formatDuration(e.estimateSeconds)} on this machine` : ''}`);
        break;
      case 'run-start':
        this.runIndex = `[${e.index}/${e.total}] ${e.id}`;
        // Off a terminal the progress lines name the run; a fresh start needs no line of its own.
        if (this.tty || e.resuming) say(`${this.runIndex}${e.resuming ? ' (resuming)' : ''}${e.estimate ? ` ~${formatDuration(e.estimate)}` : ''}`);
        this.progress = quiet ? null : new Progress({
          total: 100, every: 25, unit: `${this.runIndex}:`, count: false, finalLine: false, stream: this.stream, tty: this.tty,
        });
        break;
      case 'run-progress':
        this.progress?.update(Math.floor(e.fraction * 100), [[e.detail, '']], e.etaSeconds);
        break;
      case 'run-end':
        this.done();
        say(`${this.runIndex}: ${e.status === 'done' ? 'done' : `FAILED: ${(e.error ?? '').split('\n')[0]}`} in ${formatDuration(e.seconds)}`);
        break;
      case 'log': say(e.message); break;
      case 'report': if (this.opts.report ?? true) say(`report: ${e.files.html} (and ${e.files.markdown}, ${e.files.results})`); break;
    }
  };

  /** Ends the current progress bar. */
  done(): void {
    this.progress?.done();
    this.progress = null;
  }
}
