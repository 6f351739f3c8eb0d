// The command line's own plumbing: `cubit help <command>` is `cubit <command> --help`, -V and
// --version, one plain line for an unknown command or option (with a guess at a typo), and a reader
// that goes away (`| head -c 0`) ends the command quietly.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { cliInProcess } from './inference-fixtures.ts';

const root = path.join(import.meta.dirname, '..');
const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
const COMMANDS = ['demo', 'bench', 'eval', 'experiment', 'generate', 'info', 'train'];

describe('help and version', () => {
  test('cubit help <command> prints what cubit <command> --help prints', async () => {
    for (const cmd of COMMANDS) {
      const a = await cliInProcess(['help', cmd]);
      const b = await cliInProcess([cmd, '--help']);
      const c = await cliInProcess([cmd, '-h']);
      assert.equal(a.code, 0, cmd);
      assert.match(a.stdout, new RegExp(`^usage: cubit ${cmd}`));
      assert.equal(a.stdout, b.stdout, cmd);
      assert.equal(a.stdout, c.stdout, cmd);
    }
  });

  test('-V, --version and -v print the version', async () => {
    for (const flag of ['-V', '--version', '-v']) {
      const r = await cliInProcess([flag]);
      assert.equal(r.code, 0, flag);
      assert.equal(r.stdout, `${version}\n`, flag);
    }
  });

  test('cubit help and --help list the commands on stdout; no command at all is a usage error on stderr', async () => {
    for (const argv of [['help'], ['--help'], ['-h']]) {
      const r = await cliInProcess(argv);
      assert.equal(r.code, 0);
      for (const cmd of COMMANDS) assert.match(r.stdout, new RegExp(`\\n  ${cmd} `), `${argv} lists ${cmd}`);
      assert.match(r.stdout, /cubit help <command>/);
    }
    const none = await cliInProcess([]);
    assert.equal(none.code, 2);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /^cubit \d/);
  });
});

describe('unknown commands and options', () => {
  const cases: [string[], string][] = [
    [['trian'], "cubit: error: unknown command 'trian' (did you mean train?); commands: demo, bench, eval, experiment, export, generate, import, info, train"],
    [['frobnicate'], "cubit: error: unknown command 'frobnicate'; commands: demo, bench, eval, experiment, export, generate, import, info, train"],
    [['help', 'evl'], "cubit: error: unknown command 'evl' (did you mean eval?); commands: demo, bench, eval, experiment, export, generate, import, info, train"],
    [['--bogus'], "cubit: error: unknown option '--bogus': cubit takes a command first (demo, bench, eval, experiment, export, generate, import, info, train); see 'cubit --help'"],
    [['train', '--bogus'], "cubit: error: train: unknown option '--bogus'; see 'cubit train --help'"],
    [['train', '--stpes', '3'], "cubit: error: train: unknown option '--stpes' (did you mean --steps?); see 'cubit train --help'"],
    [['train', '-x'], "cubit: error: train: unknown option '-x'; see 'cubit train --help'"],
    [['train', '--out'], "cubit: error: train: --out needs a value; see 'cubit train --help'"],
    [['train', '--resume=yes'], "cubit: error: train: --resume takes no value; see 'cubit train --help'"],
  ];
  for (const [argv, message] of cases) {
    test(`cubit ${argv.join(' ')}`, async () => {
      const r = await cliInProcess(argv);
      assert.equal(r.code, 2);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, message + '\n');
    });
  }
});

test('a reader that closes the pipe early (cubit … | head -c 0) ends the command quietly', async () => {
  const child = spawn(process.execPath, [path.join(root, 'bin', 'cubit.mjs'), 'help', 'train'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy(); // as `head -c 0` does: the read end is gone before cubit writes
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += String(d); });
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(stderr, '', 'no stack trace, no message');
  assert.equal(code, 141, 'the status of a process ended by a closed pipe (128 + SIGPIPE)');
});
