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
  /** With several jobs: no bars; a status line of the runs going now, at most every 30 s. */
  private jobs = 1;
  private going = new Map<string, number>();
  private lastStatus = 0;

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
        this.jobs = e.jobs;
        say(`${this.configLine}plan: ${e.total} runs, ${e.finished} finished on disk, ${e.toRun} to run${e.estimateSeconds > 0 ? `; estimated ${formatDuration(e.estimateSeconds)} of one worker on this machine` : ''}${e.jobs > 1 ? `; ${e.jobs} at once` : ''}`);
        this.configLine = ''; // a sweep and the grid each have a plan; the config goes with the first
        break;
      case 'phase':
        say(`${this.configLine}${e.phase === 'tuning' ? `learning-rate sweep: ${e.runs} runs` : `grid: ${e.runs} runs${e.rates ? `; learning rates from the sweep: ${Object.entries(e.rates).map(([v, r]) => `${v} ${r}`).join(', ')}` : ''}`}`);
        this.configLine = '';
        break;
      case 'run-start':
        if (this.jobs > 1) {
          this.going.set(e.id, 0);
          say(`[${e.index}/${e.total}] ${e.id}${e.resuming ? ' (resuming)' : ''} started${e.estimate ? ` ~${formatDuration(e.estimate)}` : ''}`);
          break;
        }
        this.runIndex = `[${e.index}/${e.total}] ${e.id}`;
        // Off a terminal the progress lines name the run; a fresh start needs no line of its own.
        if (this.tty || e.resuming) say(`${this.runIndex}${e.resuming ? ' (resuming)' : ''}${e.estimate ? ` ~${formatDuration(e.estimate)}` : ''}`);
        this.progress = quiet ? null : new Progress({
          total: 100, every: 25, unit: `${this.runIndex}:`, count: false, finalLine: false, stream: this.stream, tty: this.tty,
        });
        break;
      case 'run-progress':
        if (this.jobs > 1) {
          this.going.set(e.id, e.fraction);
          if (performance.now() - this.lastStatus > 30_000) {
            this.lastStatus = performance.now();
            say(`running: ${[...this.going].map(([id, f]) => `${id} ${Math.floor(100 * f)}%`).join(', ')}${e.etaSeconds !== null ? `; ETA ${formatDuration(e.etaSeconds)}` : ''}`);
          }
          break;
        }
        this.progress?.update(Math.floor(e.fraction * 100), [[e.detail, '']], e.etaSeconds);
        break;
      case 'run-end':
        this.done();
        this.going.delete(e.id);
        say(`${this.jobs > 1 ? e.id : this.runIndex}: ${e.status === 'done' ? 'done' : `FAILED: ${(e.error ?? '').split('\n')[0]}`} in ${formatDuration(e.seconds)}`);
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
