// Prints an experiment's events (cubit experiment, cubit demo): the plan, a progress bar per run
// (plain lines when not on a terminal), run outcomes and the report's files.
import { getBackend } from '../core/engine.ts';
import type { ExperimentEvent } from '../experiments/index.ts';
import { formatDuration, Progress } from './progress.ts';

export class ExperimentPrinter {
  private progress: Progress | null = null;
  private runIndex = '';
  /** With several jobs: no bars; a status line of the runs going now, at most every 30 s. */
  private jobs = 1;
  private going = new Map<string, number>();
  private lastStatus = 0;

  constructor(readonly name: string, readonly quiet: boolean) {}

  /** One line, printed above the progress bar when one is shown. */
  readonly say = (line: string): void => {
    if (this.quiet) return;
    if (this.progress) this.progress.log(line);
    else console.log(line);
  };

  readonly onEvent = (e: ExperimentEvent): void => {
    const { say, quiet } = this;
    switch (e.kind) {
      case 'config': say(`experiment ${this.name}, preset ${e.resolved.preset} (${e.resolved.file}): ${e.runs} runs into ${e.out}; backend ${getBackend().name}`); break;
      case 'calibrate': if (!quiet && process.stdout.isTTY) process.stdout.write(`\rtiming the models for the estimate (${e.what})…\x1b[K`); break;
      case 'plan':
        if (!quiet && process.stdout.isTTY) process.stdout.write('\r\x1b[K');
        this.jobs = e.jobs;
        say(`plan: ${e.total} runs, ${e.finished} finished on disk, ${e.toRun} to run${e.estimateSeconds > 0 ? `; estimated ${formatDuration(e.estimateSeconds)} of one worker on this machine` : ''}${e.jobs > 1 ? `; ${e.jobs} at once` : ''}`);
        break;
      case 'phase':
        say(e.phase === 'tuning' ? `learning-rate sweep: ${e.runs} runs` : `grid: ${e.runs} runs${e.rates ? `; learning rates from the sweep: ${Object.entries(e.rates).map(([v, r]) => `${v} ${r}`).join(', ')}` : ''}`);
        break;
      case 'run-start':
        if (this.jobs > 1) {
          this.going.set(e.id, 0);
          say(`[${e.index}/${e.total}] ${e.id}${e.resuming ? ' (resuming)' : ''} started${e.estimate ? ` ~${formatDuration(e.estimate)}` : ''}`);
          break;
        }
        this.runIndex = `[${e.index}/${e.total}]`;
        say(`${this.runIndex} ${e.id}${e.resuming ? ' (resuming)' : ''}${e.estimate ? ` ~${formatDuration(e.estimate)}` : ''}`);
        this.progress = quiet ? null : new Progress({ total: 100, every: 10, unit: `${this.runIndex} ${e.id}` });
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
        this.progress?.update(Math.floor(e.fraction * 100), [[e.detail, ''], ...(e.etaSeconds !== null ? [['experiment ETA', formatDuration(e.etaSeconds)] as const] : [])]);
        break;
      case 'run-end':
        this.done();
        this.going.delete(e.id);
        say(`${this.jobs > 1 ? '' : `${this.runIndex} `}${e.id}: ${e.status === 'done' ? 'done' : `FAILED: ${(e.error ?? '').split('\n')[0]}`} in ${formatDuration(e.seconds)}`);
        break;
      case 'log': say(e.message); break;
      case 'report': say(`report: ${e.files.html}\n        ${e.files.markdown}\n        ${e.files.results}`); break;
    }
  };

  /** Ends the current progress bar. */
  done(): void {
    this.progress?.done();
    this.progress = null;
  }
}
