// The webgpu backend from the outside: a CPU-only run never loads Dawn (the optional 'webgpu'
// package), CUBIT_BACKEND=webgpu without prepareBackend says what to call, and the CLI sets the
// backend up for `--backend webgpu` / CUBIT_BACKEND=webgpu (`cubit info` shows the adapter, or why
// there is none; `cubit bench` waits for the GPU and names the adapter in its lines).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { Trainer } from '../src/train/trainer.ts';
import { tinyConfig, tmpDir, writeCorpus } from './train-fixtures.ts';
import { webgpuUnavailable } from './webgpu-helpers.ts';

const why = await webgpuUnavailable();

/** Runs an ES module snippet in a fresh node (tsx) and returns its stdout. */
function node(script: string, env: Record<string, string> = {}): string {
  return execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script],
    { env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** Whether Dawn's native module is mapped into this process (Linux: /proc/self/maps). */
const DAWN_MAPPED = `(await import('node:fs')).readFileSync('/proc/self/maps', 'utf8').includes('dawn.node')`;

const linux = fs.existsSync('/proc/self/maps') ? undefined : 'needs /proc/self/maps (Linux)';

test('a CPU-only run (training step, CLI info and bench) never loads the webgpu package', { skip: linux }, (t) => {
  // The check can fail: importing the package maps the module (with or without an adapter).
  const control = node(`await import('webgpu').catch(() => {}); console.log('DAWN ' + ${DAWN_MAPPED});`);
  if (control !== 'DAWN true') { t.skip("the optional package 'webgpu' is not installed here"); return; }
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
    import { main } from './src/cli/main.ts';
    import { Decoder, tensor } from './src/index.ts';
    const m = new Decoder({ vocabSize: 32, dModel: 8, nLayers: 1, nHeads: 2, ffnHidden: 16, mixer: 'cubit' }, 0);
    m.loss(tensor(Int32Array.from([1, 2, 3, 4]), [1, 4], { dtype: 'int32' }), tensor(Int32Array.from([2, 3, 4, 5]), [1, 4], { dtype: 'int32' })).backward();
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = () => true;
    await main(['info']);
    await main(['bench', 'ops', '--sizes', '8', '--filter', 'sgemm']);
    write('DAWN ' + ${DAWN_MAPPED} + '\\n');`], { env: { ...process.env, CUBIT_BACKEND: '' }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'DAWN false');
});

test('CUBIT_BACKEND=webgpu in a library that has not called prepareBackend says what to do', () => {
  const out = node(`
    import { tensor } from './src/index.ts';
    try { tensor([1, 2]); console.log('no error'); } catch (e) { console.log(e.message); }`, { CUBIT_BACKEND: 'webgpu' });
  assert.match(out, /^CUBIT_BACKEND=webgpu: the webgpu backend is not set up yet: call 'await prepareBackend\("webgpu"\)'/);
});

/** `cubit …` in a fresh process: exit status, stdout, stderr. */
function cubit(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['bin/cubit.mjs', ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('cubit info --backend webgpu and CUBIT_BACKEND=webgpu show the adapter, its features and limits', { skip: why ?? undefined }, () => {
  for (const [args, env] of [[['info', '--backend', 'webgpu'], {}], [['info'], { CUBIT_BACKEND: 'webgpu' }]] as const) {
    const r = cubit([...args], env);
    assert.equal(r.status, 0, r.stderr);
    const info = JSON.parse(r.stdout);
    assert.equal(info.backend, 'webgpu');
    assert.equal(info.webgpu.available, true);
    assert.equal(typeof info.webgpu.vendor, 'string');
    assert.ok(Array.isArray(info.webgpu.features));
    assert.ok(info.webgpu.limits.maxStorageBufferBindingSize >= 128 << 20);
  }
  // Plain `cubit info` does not look for a GPU.
  const plain = JSON.parse(cubit(['info'], { CUBIT_BACKEND: '' }).stdout);
  assert.equal(plain.webgpu, undefined);
});

test('cubit info --backend webgpu without an adapter says why, in the JSON and on stderr', { skip: linux }, (t) => {
  // No Vulkan driver and no GL: Dawn finds no adapter.
  const r = cubit(['info', '--backend', 'webgpu'], { VK_ICD_FILENAMES: '/nonexistent.json', VK_DRIVER_FILES: '/nonexistent.json', LD_LIBRARY_PATH: '/nonexistent', CUBIT_WEBGPU_ADAPTER: 'vulkan' });
  if (r.status === 0) { t.skip('a GPU answered through the system Vulkan loader'); return; }
  assert.equal(r.status, 1);
  const info = JSON.parse(r.stdout);
  assert.equal(info.webgpu.available, false);
  assert.match(info.webgpu.error, /webgpu/);
  assert.match(r.stderr, /^cubit: error: webgpu/m);
});

test('cubit bench ops|mixer|train --backend webgpu time the GPU and name the adapter', { skip: why ?? undefined }, () => {
  const lines = (args: string[]): Record<string, unknown>[] => {
    const r = cubit(['bench', ...args, '--backend', 'webgpu']);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  };
  const [op] = lines(['ops', '--sizes', '32', '--filter', 'sgemm 32']);
  assert.equal(op.backend, 'webgpu');
  assert.equal(typeof op.adapter, 'string');
  assert.ok((op.median_ms as number) > 0);
  const mixer = lines(['mixer', '--shapes', '1x2x16x8']);
  assert.deepEqual(mixer.map((l) => l.mixer ?? l.bench), ['cubit', 'softmax', 'mixer-ratio']);
  const train = lines(['train', '--model', '16x1x2x32', '--shapes', '16x2', '--filter', 'train cubit']);
  assert.equal(train.length, 1);
  assert.ok((train[0].tokens_per_s as number) > 0, JSON.stringify(train[0]));
});

test('export and import work under CUBIT_BACKEND=webgpu without a GPU: files pass through host memory', async () => {
  const dir = tmpDir('webgpu-cli-export');
  const run = path.join(dir, 'run');
  const trainer = new Trainer({ config: tinyConfig(writeCorpus(path.join(dir, 'corpus'), 4, 100), { steps: 1 }), out: run, durable: false });
  try { await trainer.step(); await trainer.save(); } finally { trainer.dispose(); }
  // No adapter may exist here: export and import must not need the backend set up.
  const env = { CUBIT_BACKEND: 'webgpu', VK_ICD_FILENAMES: '/nonexistent.json', VK_DRIVER_FILES: '/nonexistent.json' };
  const exported = cubit(['export', run, path.join(dir, 'folder')], env);
  assert.equal(exported.status, 0, exported.stderr);
  assert.ok(fs.existsSync(path.join(dir, 'folder', 'model.safetensors')));
  const imported = cubit(['import', run, path.join(dir, 'again')], env);
  assert.equal(imported.status, 0, imported.stderr);
  assert.ok(fs.existsSync(path.join(dir, 'again', 'latest.json')));
});
