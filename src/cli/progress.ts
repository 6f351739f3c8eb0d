// Progress of a long command: a one-line bar redrawn in place (count, fields, rate, ETA) when the
// output is a terminal, plain periodic lines otherwise (logs, CI, pipes). Rates and the ETA are
// measured from the first update of this sitting, so a resumed run's earlier steps do not count.

export interface ProgressOptions {
  /** Items to reach (steps). */
  total: number;
  /** Where to write (default process.stdout). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Force bar (true) or plain lines (false); default: whether the stream is a TTY. */
  tty?: boolean;
  /** Plain mode: print a line every this many items (and at done()); default 1. */
  every?: number;
  /** TTY mode: redraw at most this often (ms; default 100). */
  redrawMs?: number;
  /** Name of an item in plain lines (default 'step'). */
  unit?: string;
}

export type ProgressFields = readonly (readonly [string, string])[];

/** "1m05s", "3h02m", "42s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** 12345 → "12.3k", 2.5e6 → "2.50M". */
export function formatCount(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 1e9) return `${(x / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${(x / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${(x / 1e3).toPrecision(3)}k`;
  return a >= 100 ? x.toFixed(0) : x.toPrecision(3);
}

export class Progress {
  readonly tty: boolean;
  private readonly stream: NonNullable<ProgressOptions['stream']>;
  private readonly every: number;
  private readonly redrawMs: number;
  private readonly unit: string;
  private firstCount = -1;
  private firstTime = 0;
  private lastDraw = 0;
  private barShown = false;
  private current = 0;
  private fields: ProgressFields = [];

  constructor(readonly opts: ProgressOptions) {
    this.stream = opts.stream ?? process.stdout;
    this.tty = opts.tty ?? Boolean(this.stream.isTTY);
    this.every = Math.max(1, Math.floor(opts.every ?? 1));
    this.redrawMs = opts.redrawMs ?? 100;
    this.unit = opts.unit ?? 'step';
  }

  /** Seconds left at the rate seen so far this sitting (NaN before two updates). */
  eta(): number {
    if (this.firstCount < 0 || this.current <= this.firstCount) return NaN;
    const rate = (this.current - this.firstCount) / ((performance.now() - this.firstTime) / 1000);
    return (this.opts.total - this.current) / rate;
  }

  /** Reports reaching item `current`, with fields to show (name, formatted value). */
  update(current: number, fields: ProgressFields = []): void {
    if (this.firstCount < 0) { this.firstCount = current; this.firstTime = performance.now(); }
    this.current = current;
    this.fields = fields;
    if (this.tty) {
      const now = performance.now();
      if (now - this.lastDraw >= this.redrawMs || current >= this.opts.total) { this.lastDraw = now; this.drawBar(); }
    } else if (current % this.every === 0 || current >= this.opts.total) {
      this.writeLine(this.plainLine());
    }
  }

  /** Prints a line of its own (above the bar in TTY mode). */
  log(line: string): void {
    if (this.tty && this.barShown) this.stream.write('\r\x1b[2K');
    this.stream.write(line + '\n');
    if (this.tty && this.barShown) this.drawBar();
  }

  /** Ends the bar (its last state stays on screen). */
  done(): void {
    if (this.tty && this.barShown) { this.drawBar(); this.stream.write('\n'); this.barShown = false; }
  }

  private text(): string {
    const parts = this.fields.map(([k, v]) => `${k} ${v}`);
    const eta = this.eta();
    if (this.current < this.opts.total && Number.isFinite(eta)) parts.push(`ETA ${formatDuration(eta)}`);
    return parts.join(' · ');
  }

  private plainLine(): string {
    const pct = this.opts.total > 0 ? ` (${((100 * this.current) / this.opts.total).toFixed(0)}%)` : '';
    const rest = this.text();
    return `${this.unit} ${this.current}/${this.opts.total}${pct}${rest ? ' ' + rest : ''}`;
  }

  private drawBar(): void {
    const cols = this.stream.columns ?? 100;
    const count = `${this.current}/${this.opts.total}`;
    const rest = this.text();
    const width = Math.max(10, Math.min(30, cols - count.length - rest.length - 6));
    const frac = this.opts.total > 0 ? Math.min(1, this.current / this.opts.total) : 1;
    const filled = Math.round(frac * width);
    let line = `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${count}${rest ? ' ' + rest : ''}`;
    if (line.length > cols - 1) line = line.slice(0, cols - 1);
    this.stream.write(`\r\x1b[2K${line}`);
    this.barShown = true;
  }

  private writeLine(line: string): void {
    this.stream.write(line + '\n');
  }
}
