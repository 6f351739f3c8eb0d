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

export function parse(cmd: Command, argv: string[]): { values: Record<string, unknown>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { ...cmd.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    return { values, positionals };
  } catch (e) {
    throw new UsageError(`${cmd.name}: ${(e as Error).message.split('\n')[0]} (see 'cubit ${cmd.name} --help')`);
  }
}

export function helpText(cmd: Command): string {
  const lines = [`usage: cubit ${cmd.usage}`, '', cmd.summary, ''];
  const opts = Object.entries(cmd.options);
  if (opts.length) {
    lines.push('options:');
    for (const [name, o] of opts) {
      const flag = `--${name}${o.type === 'string' ? ' <value>' : ''}`;
      lines.push(`  ${flag.padEnd(28)} ${(o as { description?: string }).description ?? ''}`);
    }
  }
  return lines.join('\n');
}

export function intOption(values: Record<string, unknown>, name: string, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const v = values[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer ≥ ${min}, got '${v}'`);
  if (n > max) throw new UsageError(`--${name} must be at most ${max}, got '${v}'`);
  return n;
}

export function numberOption(values: Record<string, unknown>, name: string, fallback: number): number {
  const v = values[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${v}'`);
  return n;
}
