// The command-line entry: dispatches to one command and turns user errors into one line.
import '../index.ts';
import { closest, type Command, helpText, parse, UsageError } from './args.ts';
import { benchCommand } from './bench.ts';
import { demoCommand } from './demo.ts';
import { evalCommand } from './eval.ts';
import { experimentCommand } from './experiment.ts';
import { exportCommand, importCommand } from './export.ts';
import { generateCommand } from './generate.ts';
import { infoCommand } from './info.ts';
import { trainCommand } from './train.ts';
import { version } from './version.ts';

const commands: Command[] = [demoCommand, benchCommand, evalCommand, experimentCommand, exportCommand, generateCommand, importCommand, infoCommand, trainCommand];

function topHelp(): string {
  return [
    `cubit ${version()}: language models with the Cubit token mixer (kernel ridge regression attention)`,
    '',
    'usage: cubit <command> [options]   (cubit help <command>, or cubit <command> --help, for its options)',
    '',
    ...commands.map((c) => `  ${c.name.padEnd(10)} ${c.summary}`),
    '',
    '  -h, --help      this help',
    '  -V, --version   the version',
  ].join('\n');
}

/** The command named `name`; a one-line UsageError (with a guess at a typo) when there is none. */
function findCommand(name: string): Command {
  const cmd = commands.find((c) => c.name === name);
  if (cmd) return cmd;
  const names = commands.map((c) => c.name);
  if (name.startsWith('-')) throw new UsageError(`unknown option '${name}': cubit takes a command first (${names.join(', ')}); see 'cubit --help'`);
  const guess = closest(name, names);
  throw new UsageError(`unknown command '${name}'${guess ? ` (did you mean ${guess}?)` : ''}; commands: ${names.join(', ')}`);
}

let pipesGuarded = false;

/**
 * A reader that goes away (`cubit generate … | head -c 100`) makes the next write fail with EPIPE:
 * end quietly then, with the status of a process killed by SIGPIPE (128 + 13), as C tools do,
 * instead of an unhandled 'error' event and its stack trace.
 */
function exitQuietlyOnClosedPipe(): void {
  if (pipesGuarded) return;
  pipesGuarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(141);
      throw e;
    });
  }
}

export async function main(argv: string[]): Promise<number> {
  exitQuietlyOnClosedPipe();
  const [name, ...rest] = argv;
  if (!name) { console.error(topHelp()); return 2; }
  if (name === '--help' || name === '-h') { console.log(topHelp()); return 0; }
  if (name === '--version' || name === '-V' || name === '-v') { console.log(version()); return 0; }
  try {
    if (name === 'help') {
      // `cubit help <command>` is `cubit <command> --help`.
      if (rest.length === 0) { console.log(topHelp()); return 0; }
      if (rest.length > 1) throw new UsageError(`help: name one command (got ${rest.join(' ')})`);
      console.log(helpText(findCommand(rest[0])));
      return 0;
    }
    const cmd = findCommand(name);
    const { values, positionals } = parse(cmd, rest);
    if (values.help) { console.log(helpText(cmd)); return 0; }
    return await cmd.run(values, positionals);
  } catch (e) {
    if (process.env.CUBIT_DEBUG) console.error(e);
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`cubit: error: ${msg.split('\n')[0]}`);
    return e instanceof UsageError ? 2 : 1;
  }
}
