// The package's own machinery, in the checkout: the native addon's loader and its fallback
// warning, the `cubit/browser` entry (bundled for a browser and run where no Node global exists),
// and the shipped configs behind the README's commands. scripts/consumer-test.mjs (in CI) checks
// the same things from an installed tarball.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import vm from 'node:vm';
import { build } from 'esbuild';
import { fallbackWarning } from '../src/backends/index.ts';
import { loadNativeAddon, nativeAddonOrigin, nativeLoadError, prebuildPlatform } from '../src/backends/native/addon.ts';

const root = path.join(import.meta.dirname, '..');
const bin = path.join(root, 'bin', 'cubit.mjs');

test('prebuildPlatform names the platform, the CPU and on Linux the C library', () => {
  const p = prebuildPlatform();
  assert.ok(p.startsWith(`${process.platform}-${process.arch}`), p);
  if (process.platform === 'linux') assert.match(p, /^linux-[a-z0-9]+-(glibc|musl)$/);
});

test('the loader says where the addon came from, or why none loaded', () => {
  const addon = loadNativeAddon();
  if (addon) {
    const origin = nativeAddonOrigin();
    assert.ok(origin, 'an origin for a loaded addon');
    assert.ok(['built from source', 'prebuilt'].includes(origin.source), origin.source);
    assert.ok(existsSync(origin.path), origin.path);
    // A checkout loads what it compiled (build/Release), never a stale prebuilt copy.
    if (existsSync(path.join(root, 'build', 'Release', 'cubit_native.node'))) assert.equal(origin.source, 'built from source');
    assert.equal(nativeLoadError(), null);
  } else {
    assert.equal(nativeAddonOrigin(), null);
    assert.match(nativeLoadError() ?? '', /cubit_native\.node/);
  }
});

test('the fallback warning gives the reason, the slowdown and the fix', () => {
  const w = fallbackWarning('cannot load x.node: wrong ELF class');
  assert.match(w, /wrong ELF class/);
  assert.match(w, /100× slower/);
  assert.match(w, /410 tokens\/s/);
  assert.match(w, /npm rebuild cubit/);
  assert.match(w, /CUBIT_BACKEND=reference/);
});

test("cubit info reports the addon's origin", () => {
  const r = spawnSync(process.execPath, [bin, 'info'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  const origin = loadNativeAddon() ? nativeAddonOrigin() : null;
  assert.equal(info.native, origin ? origin.source : 'unavailable');
  if (!origin) assert.match(info.nativeError, /cubit_native\.node/);
});

test('cubit/browser bundles for a browser (no node: import) and runs without Node globals', async () => {
  const out = await build({
    entryPoints: [path.join(root, 'src', 'browser.ts')], bundle: true, platform: 'browser', format: 'iife',
    globalName: 'cubit', write: false, logLevel: 'silent',
  });
  // Only what a browser has: no process, Buffer, require.
  const context = vm.createContext({ console, performance });
  vm.runInContext(`${out.outputFiles[0].text};globalThis.cubit = cubit;`, context);
  const result = await vm.runInContext(`(async () => {
    const t = cubit.tensor([[1, 2], [3, 4]]);
    const model = new cubit.Decoder({ vocabSize: 16, dModel: 8, nLayers: 1, nHeads: 2, mixer: 'cubit' }, 1);
    const g = await cubit.generate(model, [1, 2, 3], { maxNewTokens: 4, temperature: 0 });
    return { sum: t.matmul(t).sum().item(), backend: cubit.getBackend().name, tokens: g.tokens.length, hasProcess: typeof process };
  })()`, context) as { sum: number; backend: string; tokens: number; hasProcess: string };
  assert.deepEqual({ ...result }, { sum: 54, backend: 'reference', tokens: 4, hasProcess: 'undefined' });
});

test("train --config configs/<name>.json finds the package's config when the folder has none", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cubit-config-'));
  try {
    const ok = spawnSync(process.execPath, [bin, 'train', '--config', 'configs/tiny-cubit.json', '--out', 'run', '--steps', '1', '--quiet'],
      { cwd: dir, encoding: 'utf8', timeout: 240_000 });
    assert.equal(ok.status, 0, ok.stderr);
    assert.ok(existsSync(path.join(dir, 'run', 'checkpoints', 'step-00000001')), 'a checkpoint of step 1');
    const missing = spawnSync(process.execPath, [bin, 'train', '--config', 'configs/no-such.json', '--steps', '1'], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /configs\/no-such\.json: no such config file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
