// Progress of a long command, on stderr (stdout carries results): a one-line bar redrawn in place
// (count, fields, ETA) when stderr is a terminal, otherwise one plain line each time the count
// passes a multiple of `every` (logs, CI, pipes) — never two lines for the same step of `every`, one
// counter and one ETA per line. The ETA is measured from the first update of this sitting (a
// resumed run's earlier steps do not count), unless the caller knows better and passes its own.

export interface ProgressOptions {
  /** Items to reach (steps). */
  total: number;
  /** Where to write (default process.stderr). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Force bar (true) or plain lines (false); default: whether the stream is a TTY. */
  tty?: boolean;
  /** Plain mode: print a line each time the count passes a multiple of this (and at the total); default 1. */
  every?: number;
  /** TTY mode: redraw at most this often (ms; default 100). */
  redrawMs?: number;
  /** Name of an item in plain lines (default 'step'). */
  unit?: string;
  /** Show `current/total (pct%)` (default true); false when one of the fields carries the count already. */
  count?: boolean;
  /** Plain mode: print a line on reaching the total (default true); false when the caller prints its own closing line. */
  finalLine?: boolean;
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
  private givenEta: number | null | undefined = undefined;
  /** Plain mode: the last multiple of `every` printed (or passed before the first update). */
  private lastBucket = -1;
  private finalPrinted = false;

  constructor(readonly opts: ProgressOptions) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = opts.tty ?? Boolean(this.stream.isTTY);
    this.every = Math.max(1, Math.floor(opts.every ?? 1));
    this.redrawMs = opts.redrawMs ?? 100;
    this.unit = opts.unit ?? 'step';
  }

  /** Seconds left: the caller's estimate, else the rate seen so far this sitting (NaN before two updates). */
  eta(): number {
    if (this.givenEta !== undefined) return this.givenEta ?? NaN;
    if (this.firstCount < 0 || this.current <= this.firstCount) return NaN;
    const rate = (this.current - this.firstCount) / ((performance.now() - this.firstTime) / 1000);
    return (this.opts.total - this.current) / rate;
  }

  /**
   * Reports reaching item `current`, with fields to show (name, formatted value; an empty value
   * shows the name alone). `eta`, when given, is the seconds left as the caller estimates them
   * (null: unknown) and replaces the rate-based estimate.
   */
  update(current: number, fields: ProgressFields = [], eta?: number | null): void {
    if (this.firstCount < 0) {
      this.firstCount = current;
      this.firstTime = performance.now();
      // The multiple of `every` reached before this sitting's first item is not printed again.
      this.lastBucket = Math.floor(Math.max(0, current - 1) / this.every);
    }
    this.current = current;
    this.fields = fields;
    this.givenEta = eta;
    if (this.tty) {
      const now = performance.now();
      if (now - this.lastDraw >= this.redrawMs || current >= this.opts.total) { this.lastDraw = now; this.drawBar(); }
      return;
    }
    const bucket = Math.floor(current / this.every);
    if (current >= this.opts.total) {
      if ((this.opts.finalLine ?? true) && !this.finalPrinted) { this.finalPrinted = true; this.writeLine(this.plainLine()); }
    } else if (bucket > this.lastBucket) this.writeLine(this.plainLine());
    this.lastBucket = Math.max(this.lastBucket, bucket);
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
    const parts = this.fields.map(([k, v]) => (v ? `${k} ${v}` : k));
    const eta = this.eta();
    if (this.current < this.opts.total && Number.isFinite(eta)) parts.push(`ETA ${formatDuration(eta)}`);
    return parts.join(' · ');
  }

  private plainLine(): string {
    const rest = this.text();
    if (this.opts.count === false) return `${this.unit}${rest ? ' ' + rest : ''}`;
    const pct = this.opts.total > 0 ? ` (${((100 * this.current) / this.opts.total).toFixed(0)}%)` : '';
    return `${this.unit} ${this.current}/${this.opts.total}${pct}${rest ? ' ' + rest : ''}`;
  }

  private drawBar(): void {
    const cols = this.stream.columns ?? 100;
    const count = this.opts.count === false ? '' : `${this.current}/${this.opts.total}`;
    const rest = this.text();
    const width = Math.max(10, Math.min(30, cols - count.length - rest.length - 6));
    const frac = this.opts.total > 0 ? Math.min(1, this.current / this.opts.total) : 1;
    const filled = Math.round(frac * width);
    let line = `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]${count ? ' ' + count : ''}${rest ? ' ' + rest : ''}`;
    if (line.length > cols - 1) line = line.slice(0, cols - 1);
    this.stream.write(`\r\x1b[2K${line}`);
    this.barShown = true;
  }

  private writeLine(line: string): void {
    this.stream.write(line + '\n');
  }
}
