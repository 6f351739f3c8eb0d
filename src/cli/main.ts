// The command-line entry: dispatches to one command and turns user errors into one line.
import '../index.ts';
import { type Command, helpText, parse, UsageError } from './args.ts';
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
    'usage: cubit <command> [options]   (cubit <command> --help for its options)',
    '',
    ...commands.map((c) => `  ${c.name.padEnd(10)} ${c.summary}`),
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') { console.log(topHelp()); return name ? 0 : 2; }
  if (name === '--version' || name === '-v') { console.log(version()); return 0; }
  const cmd = commands.find((c) => c.name === name);
  try {
    if (!cmd) throw new UsageError(`unknown command '${name}' (commands: ${commands.map((c) => c.name).join(', ')})`);
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
