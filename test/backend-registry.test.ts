// The backend registry: registerBackend(name, factory) makes a backend available by name to
// setBackend, CUBIT_BACKEND, the CLI's --backend and `cubit info`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { coreOnly } from '../src/backends/core-only.ts';
import { useBackendOption } from '../src/cli/backend.ts';
import { backendByName, backendNames, getBackend, registerBackend, setBackend, softmax, tensor, withBackend } from '../src/index.ts';

test('a registered backend is listed, chosen by name, and runs ops', async () => {
  registerBackend('registry-test', () => coreOnly(backendByName('reference'), 'registry-test'));
  assert.ok(backendNames().includes('registry-test'));
  const prev = getBackend().name;
  try {
    await useBackendOption('registry-test');
    assert.equal(getBackend().name, 'registry-test');
    // No fused softmax there: the composite runs, with the fused kernel's values.
    const x = [0.5, -1, 2, 0];
    const got = Array.from(softmax(tensor(x, [1, 4])).dataSync());
    const want = Array.from(withBackend('reference', () => softmax(tensor(x, [1, 4])).dataSync()));
    got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-6, `softmax[${i}]: ${g} vs ${want[i]}`));
  } finally {
    setBackend(prev);
  }
  await assert.rejects(useBackendOption('gpu'), /--backend must be one of 'reference', 'native', 'webgpu', .*'registry-test', got 'gpu'/);
});

test('CUBIT_BACKEND takes any registered name and rejects others naming them', () => {
  const script = `
    import { coreOnly } from './src/backends/core-only.ts';
    import { backendByName, getBackend, registerBackend } from './src/index.ts';
    registerBackend('env-test', () => coreOnly(backendByName('reference'), 'env-test'));
    console.log(getBackend().name);`;
  const run = (value: string): string => execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script],
    { env: { ...process.env, CUBIT_BACKEND: value }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  assert.equal(run('env-test'), 'env-test');
  assert.throws(() => run('nope'), /CUBIT_BACKEND must name a registered backend \('reference', 'native', 'webgpu', 'env-test'\), got 'nope'/);
});

test('dataSync names the way out on a backend without synchronous reads; data() still reads', async () => {
  // The reference backend seen without readSync, as a GPU backend would be.
  const inner = backendByName('reference');
  const asyncOnly = new Proxy(inner, {
    get: (t, p) => (p === 'readSync' ? undefined : p === 'name' ? 'async-only' : Reflect.get(t, p, t)),
  });
  const x = tensor([1, 2, 3], [3], { backend: asyncOnly });
  try {
    assert.throws(() => x.dataSync(), /dataSync: backend 'async-only' has no synchronous reads; use 'await tensor.data\(\)'/);
    assert.deepEqual(Array.from(await x.data()), [1, 2, 3]);
  } finally {
    x.dispose();
  }
});
