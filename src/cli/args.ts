// Command-line parsing on node:util's parseArgs, with one-line errors for user mistakes.
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** An error meant for the user: printed as one line, never with a stack trace. */
export class UsageError extends Error {}

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: Options;
  run(values: Record<string, unknown>, positionals: string[]): Promise<number> | number;
}

/** Edit distance (insertions, deletions, substitutions, swaps of neighbours) between two short strings. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The closest of `names` to `given`, when it is close enough to be a typo (or a prefix of it). */
export function closest(given: string, names: readonly string[]): string | null {
  let best: string | null = null, bestD = Infinity;
  for (const n of names) {
    const d = n.startsWith(given) ? 0.5 : editDistance(given, n);
    if (d < bestD) { bestD = d; best = n; }
  }
  return bestD <= (given.length <= 4 ? 1 : 2) ? best : null;
}

// node:util's parseArgs messages are long and quote oddly ('-- "--x"); these say the same in one plain line.
function describeParseError(cmd: Command, e: Error & { code?: string }): string {
  const see = `see 'cubit ${cmd.name} --help'`;
  const flag = /option '(?:-\w, )?(-{1,2}[^' ,]+)/i.exec(e.message)?.[1]; // "Option '-p, --prompt <value>' …" names both
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag) {
    const guess = flag.startsWith('--') ? closest(flag.slice(2), Object.keys(cmd.options)) : null;
    return `${cmd.name}: unknown option '${flag}'${guess ? ` (did you mean --${guess}?)` : ''}; ${see}`;
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag) {
    return /does not take/.test(e.message) ? `${cmd.name}: ${flag} takes no value; ${see}` : `${cmd.name}: ${flag} needs a value; ${see}`;
  }
  return `${cmd.name}: ${e.message.split('\n')[0]}; ${see}`;
}

export function parse(cmd: Command, argv: string[]): { values: Record<string, unknown>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { ...cmd.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    return { values, positionals };
  } catch (e) {
    throw new UsageError(describeParseError(cmd, e as Error));
  }
}

export function helpText(cmd: Command): string {
  const lines = [`usage: cubit ${cmd.usage}`, '', cmd.summary, ''];
  const opts = Object.entries(cmd.options);
  if (opts.length) {
    lines.push('options:');
    lines.push(`  ${'-h, --help'.padEnd(28)} this help`);
    for (const [name, o] of opts) {
      const flag = `${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'string' ? ' <value>' : ''}`;
      lines.push(`  ${flag.padEnd(28)} ${(o as { description?: string }).description ?? ''}`);
    }
  }
  return lines.join('\n');
}

export function intOption(values: Record<string, unknown>, name: string, fallback: number, min = 1): number {
  const v = values[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer ≥ ${min}, got '${v}'`);
  return n;
}

export function numberOption(values: Record<string, unknown>, name: string, fallback: number): number {
  const v = values[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${v}'`);
  return n;
}
