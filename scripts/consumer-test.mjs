#!/usr/bin/env node
// The package as a user gets it: `npm pack`, install the tarball into a fresh project, then import
// it from plain .mjs and .cjs files, type-check a strict TypeScript consumer, and run the installed
// `cubit` (--version, info, the README's first-model commands). It also hides the prebuilt addon
// to check the loud fallback to the reference backend, and with --from-source, compiles the addon
// at install as a platform without a prebuilt would. Any failure ends it with a non-zero exit and
// the failing step's output.
//
//   node scripts/consumer-test.mjs [--tarball cubit-x.y.z.tgz] [--from-source] [--ignore-scripts] [--keep]
//
// The Node that runs this script is the one tested: it is put first on PATH for npm, its install
// scripts and the installed bin. Dependencies come from the npm cache or the registry.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const { values: opts } = parseArgs({
  options: { tarball: { type: 'string' }, 'from-source': { type: 'boolean' }, 'ignore-scripts': { type: 'boolean' }, keep: { type: 'boolean' } },
});
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8'));
const locked = (name) => lock.packages[`node_modules/${name}`].version;

const work = mkdtempSync(path.join(os.tmpdir(), 'cubit-consumer-'));
const app = path.join(work, 'app');
const env = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}`, npm_config_update_notifier: 'false' };
delete env.CUBIT_BACKEND;
const summary = { node: process.version };

let current = '';
function step(name) {
  current = name;
  console.log(`consumer test (${process.version}): ${name}`);
}

/** Runs a command in the app folder; fails the test (with its output) unless it exits 0. */
function run(cmd, args, { cwd = app, allowFail = false, extraEnv = {} } = {}) {
  const r = spawnSync(cmd, args, { cwd, env: { ...env, ...extraEnv }, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 600_000 });
  if (!allowFail && r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  }
  return r;
}
const cubit = (args, o) => run(path.join(app, 'node_modules', '.bin', 'cubit'), args, o);
const duKiB = (dir) => Number(run('du', ['-sk', dir]).stdout.split('\t')[0]);

function info() {
  const r = cubit(['info']);
  try { return { json: JSON.parse(r.stdout), stderr: r.stderr }; } catch { throw new Error(`cubit info printed no JSON:\n${r.stdout}`); }
}

try {
  step('npm pack');
  let tarball = opts.tarball && path.resolve(opts.tarball);
  if (!tarball) {
    const r = run('npm', ['pack', '--json', '--pack-destination', work], { cwd: root });
    tarball = path.join(work, JSON.parse(r.stdout)[0].filename);
  }
  summary.tarballKiB = Math.round(statSync(tarball).size / 1024);

  step('npm install the tarball into a new project');
  run('mkdir', ['-p', app], { cwd: work });
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'cubit-consumer', private: true, type: 'module' }, null, 2));
  // --ignore-scripts: as pnpm 10 installs by default (and npm with ignore-scripts set): the
  // prebuilt binary must serve without the install script.
  const install = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...(opts['ignore-scripts'] ? ['--ignore-scripts'] : []), tarball]);
  const installed = path.join(app, 'node_modules', 'cubit');
  assert.equal(JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')).version, pkg.version);
  assert.ok(!existsSync(path.join(installed, 'src')), 'the package ships dist/, not the TypeScript sources');
  assert.ok(!existsSync(path.join(installed, 'node_modules', 'tsx')) && !existsSync(path.join(app, 'node_modules', 'tsx')), 'tsx is not installed for users');
  assert.ok(!existsSync(path.join(installed, 'build')), `the prebuilt addon was used, nothing compiled at install:\n${install.stderr}`);
  summary.installedKiB = { cubit: duKiB(installed), withDependencies: duKiB(path.join(app, 'node_modules')) };

  step('import from plain .mjs on the native backend');
  writeFileSync(path.join(app, 'consumer.mjs'), `
import assert from 'node:assert/strict';
import { cubitAttention, getBackend, randn, tensor, tidy } from 'cubit';
const x = tensor([[1, 2], [3, 4]], undefined, { requiresGrad: true });
const y = x.matmul(x).sum();
y.backward();
assert.equal(y.item(), 54);
assert.deepEqual(x.grad.toArray(), [[7, 11], [9, 13]]);
const [B, H, T, D] = [1, 2, 16, 8];
const shape = tidy(() => cubitAttention({
  q: randn([B, H, T, D], { seed: 1 }), k: randn([B, H, T, D], { seed: 2 }), v: randn([B, H, T, D], { seed: 3 }),
  r: randn([B, H, T, D], { seed: 4 }), lrrLogits: randn([B, H, T], { seed: 5 }),
  refScale: tensor([1, 1]), logLambda: tensor([-13.8, -13.8]), lrrLower: tensor([0.5, 0.5]), lrrRange: tensor([1.5, 1.5]),
}).output.shape);
assert.deepEqual(shape, [B, H, T, D]);
console.log(getBackend().name);
`);
  assert.equal(run('node', ['consumer.mjs']).stdout.trim(), 'native');

  step("import 'cubit/browser' (the reference backend, no Node modules)");
  writeFileSync(path.join(app, 'browser.mjs'), `
import { getBackend, tensor } from 'cubit/browser';
if (tensor([1, 2, 3]).sum().item() !== 6 || getBackend().name !== 'reference') throw new Error('cubit/browser is broken');
`);
  run('node', ['browser.mjs']);

  step('require() from plain .cjs');
  writeFileSync(path.join(app, 'consumer.cjs'), `
const { tensor } = require('cubit');
if (tensor([1, 2, 3]).sum().item() !== 6) throw new Error('require(cubit) gave a wrong sum');
`);
  run('node', ['consumer.cjs']);

  step('type-check a strict TypeScript consumer');
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--save-dev', `typescript@${locked('typescript')}`, `@types/node@${locked('@types/node')}`]);
  writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false,
      exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true, noImplicitOverride: true, noImplicitReturns: true,
      noPropertyAccessFromIndexSignature: true, verbatimModuleSyntax: true, types: ['node'],
    },
    files: ['consumer.ts'],
  }, null, 2));
  writeFileSync(path.join(app, 'consumer.ts'), `
import { tensor, tidy, type Tensor } from 'cubit';
import { Decoder, type ModelConfigInput } from 'cubit/browser';
const t: Tensor = tidy(() => tensor([[1, 2], [3, 4]]).matmul(tensor([[1], [1]])));
const rows: readonly number[] = t.shape;
const config: ModelConfigInput = { vocabSize: 16, dModel: 8, nLayers: 1, nHeads: 2, mixer: 'cubit' };
console.log(rows.length, Decoder.name, config.mixer);
`);
  run('node', [path.join('node_modules', 'typescript', 'bin', 'tsc'), '-p', '.']);
  // TypeScript before 5.7 reads no .ts specifier in a declaration file: scripts/build.mjs rewrites them.
  const tsSpecifiers = run('grep', ['-rlE', `(from|import|declare module) *\\(? *['"]\\.{1,2}/[^'"]*\\.ts['"]`, path.join(installed, 'dist'), '--include=*.d.ts'], { allowFail: true });
  assert.equal(tsSpecifiers.stdout, '', `declarations import .ts files:\n${tsSpecifiers.stdout}`);
  // The check can fail: a wrong type in the consumer must be reported.
  writeFileSync(path.join(app, 'consumer.ts'), `import { tensor } from 'cubit';\nconst n: string = tensor([1]);\nconsole.log(n);\n`);
  const bad = run('node', [path.join('node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], { allowFail: true });
  assert.ok(bad.status !== 0 && /TS2322/.test(bad.stdout), `tsc accepted a Tensor as a string: the declarations are not being read\n${bad.stdout}`);

  step('cubit --version and its start-up time');
  assert.equal(cubit(['--version']).stdout.trim(), pkg.version);
  const times = [];
  for (let i = 0; i < 11; i++) {
    const t0 = process.hrtime.bigint();
    cubit(['--version']);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  summary.versionStartupMs = { median: Math.round(times[5]), min: Math.round(times[0]), max: Math.round(times[10]), runs: 11 };

  step('cubit info: the prebuilt native backend');
  const i1 = info().json;
  assert.equal(i1.backend, 'native', JSON.stringify(i1));
  assert.equal(i1.native, 'prebuilt', JSON.stringify(i1));

  step("the README's first model: train (a few steps), resume, eval, generate");
  cubit(['train', '--config', 'configs/tiny-cubit.json', '--out', 'runs/tiny-cubit', '--steps', '4', '--quiet']);
  cubit(['train', '--resume', '--out', 'runs/tiny-cubit', '--steps', '6', '--quiet']);
  assert.ok(existsSync(path.join(app, 'runs', 'tiny-cubit', 'checkpoints', 'step-00000006')), 'a checkpoint at step 6');
  const evalOut = JSON.parse(cubit(['eval', 'runs/tiny-cubit', '--context', '64,256', '--max-documents', '2']).stdout);
  assert.deepEqual(evalOut.results.map((r) => r.contextLength), [64, 256]);
  assert.ok(evalOut.results.every((r) => Number.isFinite(r.bitsPerByte) && r.bitsPerByte > 0), JSON.stringify(evalOut.results));
  const gen = cubit(['generate', 'runs/tiny-cubit', '--prompt', 'The jury said', '--max-new-tokens', '8', '--seed', '1']);
  assert.ok(gen.stdout.length > 0, 'generate printed nothing');

  step('cubit export: a model folder, and one for PyTorch with the python/ files');
  cubit(['export', 'runs/tiny-cubit', 'model']);
  assert.ok(cubit(['generate', 'model', '--prompt', 'The ', '--max-new-tokens', '4']).stdout.length > 0, 'generate from the model folder printed nothing');
  cubit(['export', 'runs/tiny-cubit', 'model-torch', '--to', 'pytorch']);
  assert.ok(existsSync(path.join(app, 'model-torch', 'modeling_cubit.py')), 'export --to pytorch copied modeling_cubit.py from the package');

  step('cubit experiment with a shipped config (the smallest preset), report and figures');
  cubit(['experiment', 'length-scaling', '--preset', 'test', '--out', 'runs/length-scaling']);
  for (const f of ['report.md', 'report.html', 'results.json', path.join('figures', 'gain.svg')]) {
    assert.ok(existsSync(path.join(app, 'runs', 'length-scaling', f)), `the experiment wrote ${f}`);
  }

  step('no usable addon: the reference backend, with one loud warning');
  const prebuilds = path.join(installed, 'prebuilds');
  renameSync(prebuilds, `${prebuilds}.hidden`);
  try {
    const i2 = info();
    assert.equal(i2.json.native, 'unavailable');
    assert.match(i2.json.nativeError, /cubit_native\.node/);
    writeFileSync(path.join(app, 'fallback.mjs'), `
import { getBackend, tensor } from 'cubit';
tensor([1, 2]).add(tensor([3, 4])).dataSync();
tensor([1]).neg().dataSync();
console.log(getBackend().name);
`);
    const fb = run('node', ['fallback.mjs']);
    assert.equal(fb.stdout.trim(), 'reference');
    assert.equal(fb.stderr.split('the native backend is unavailable').length - 1, 1, `one warning expected:\n${fb.stderr}`);
    assert.match(fb.stderr, /100× slower/);
    assert.match(fb.stderr, /npm rebuild cubit/);

    if (opts['from-source']) {
      step('no prebuilt: npm rebuild compiles the addon from source');
      run('npm', ['rebuild', 'cubit', '--foreground-scripts']);
      const i3 = info().json;
      assert.equal(i3.native, 'built from source', JSON.stringify(i3));
      assert.equal(i3.backend, 'native');
      rmSync(path.join(installed, 'build'), { recursive: true, force: true });
    }
  } finally {
    renameSync(`${prebuilds}.hidden`, prebuilds);
  }
  console.log(`consumer test passed: ${JSON.stringify(summary)}`);
} catch (e) {
  console.error(`consumer test FAILED on ${process.version} at "${current}": ${e instanceof Error ? e.message : e}`);
  process.exitCode = 1;
} finally {
  if (opts.keep) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
