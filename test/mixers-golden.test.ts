// The mixers against the float64 golden vectors of docs/SPEC.md §2 (test/golden, see its README;
// or CUBIT_GOLDEN_DIR): outputs, the solution X and every gradient, in float64 on the reference
// backend (1e-9) and in float32 on both backends (1e-4).
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cubitAttention, dispose, softmaxAttention, tensor, tidy, withBackend, type DType, type Tensor } from '../src/index.ts';
import { nativeTestOptions, relErr, requireNative, withBlockSize } from './helpers.ts';
import { webgpuUnavailable } from './webgpu-helpers.ts';

interface Json { shape: number[]; data: number[] }
interface GoldenCase {
  name: string;
  config: { B: number; H: number; T: number; D: number; window: number | null; doc_ids: number[] | null; shared_key: boolean; norm_eps: number };
  inputs: Record<string, Json>;
  outputs: Record<'output' | 'solution' | 'softmax_output', Json>;
  grads: Record<string, Json>;
}

export const goldenDir = process.env.CUBIT_GOLDEN_DIR
  ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'golden');

export function loadGolden(): GoldenCase[] {
  if (!existsSync(goldenDir)) throw new Error(`golden vectors not found at ${goldenDir} (set CUBIT_GOLDEN_DIR)`);
  const files = readdirSync(goldenDir).filter((f) => f.endsWith('.json')).sort();
  if (files.length === 0) throw new Error(`no golden .json files in ${goldenDir}`);
  return files.map((f) => ({ name: f.replace(/\.json$/, ''), ...JSON.parse(readFileSync(path.join(goldenDir, f), 'utf8')) }));
}

const cases = loadGolden();

// Golden names → cubitAttention's input names.
const inputNames: Record<string, string> = {
  q: 'q', k: 'k', v: 'v', r: 'r', lrr_logits: 'lrrLogits', ref_scale: 'refScale', log_lambda: 'logLambda',
  lrr_lower: 'lrrLower', lrr_range: 'lrrRange',
};

interface Got { outputs: Record<string, Float64Array>; grads: Record<string, Float64Array> }

/** Runs Cubit and plain attention on a case (on the current backend); the tensors compared, not read yet. */
function computeCase(c: GoldenCase, dtype: DType, blockSize: number): { outputs: Record<string, Tensor>; grads: Record<string, Tensor> } {
  return withBlockSize(blockSize, () => tidy(() => {
    const t: Record<string, Tensor> = {};
    for (const [g, name] of Object.entries(inputNames)) {
      const j = c.inputs[g];
      if (!j) continue;
      t[name] = tensor(Float64Array.from(j.data), j.shape, { dtype, requiresGrad: true });
    }
    const docIds = c.config.doc_ids ? tensor(Int32Array.from(c.config.doc_ids), [c.config.T]) : null;
    const options = { window: c.config.window, docIds, normEps: c.config.norm_eps };
    const { output, solution } = cubitAttention({
      q: t.q, k: t.k, v: t.v, r: t.r ?? null, lrrLogits: t.lrrLogits,
      refScale: t.refScale, logLambda: t.logLambda, lrrLower: t.lrrLower, lrrRange: t.lrrRange,
    }, options);
    const go = c.inputs.grad_output;
    output.backward(tensor(Float64Array.from(go.data), go.shape, { dtype }));
    const grads: Record<string, Tensor> = {};
    for (const [g, name] of Object.entries(inputNames)) {
      const x = t[name];
      if (!x) continue;
      assert.ok(x.grad, `${c.name}: no gradient reached ${name}`);
      assert.deepEqual(x.grad.shape, x.shape);
      grads[g] = x.grad;
      x.grad = null;
    }
    return { outputs: { output, solution, softmax_output: softmaxAttention(t.q, t.k, t.v, options) }, grads };
  }));
}

/** computeCase, read back as float64 (asynchronously: a GPU backend has no synchronous read). */
async function runCase(c: GoldenCase, dtype: DType, blockSize = 64): Promise<Got> {
  const { outputs, grads } = computeCase(c, dtype, blockSize);
  try {
    const got: Got = { outputs: {}, grads: {} };
    for (const [k, x] of Object.entries(outputs)) got.outputs[k] = Float64Array.from(await x.data());
    for (const [k, x] of Object.entries(grads)) got.grads[k] = Float64Array.from(await x.data());
    return got;
  } finally {
    dispose([outputs, grads]);
  }
}

function compare(c: GoldenCase, got: Got, tol: number, label: string): void {
  for (const key of ['output', 'solution', 'softmax_output'] as const) {
    const e = relErr(got.outputs[key], c.outputs[key].data);
    assert.ok(e <= tol, `${c.name} ${label}: ${key} relErr ${e.toExponential(2)} > ${tol}`);
  }
  const names = Object.keys(c.grads);
  assert.deepEqual(Object.keys(got.grads).sort(), names.sort(), `${c.name}: gradients computed for other inputs than the golden's`);
  for (const g of names) {
    const e = relErr(got.grads[g], c.grads[g].data);
    assert.ok(e <= tol, `${c.name} ${label}: ∂${g} relErr ${e.toExponential(2)} > ${tol}`);
  }
}

test('golden cases are present and cover the configurations', () => {
  assert.ok(cases.length >= 6, `expected the 6 golden cases, found ${cases.length}`);
  assert.ok(cases.some((c) => c.config.window !== null), 'a sliding-window case');
  assert.ok(cases.some((c) => c.config.doc_ids !== null), 'a packed-documents case');
  assert.ok(cases.some((c) => c.config.shared_key), 'a shared-key case');
});

const noWebgpu = await webgpuUnavailable();

/** runCase on `backend`: set as current only while the (synchronous) computation runs. */
const runOn = (backend: string, c: GoldenCase, dtype: DType, blockSize = 64): Promise<Got> =>
  withBackend(backend, () => runCase(c, dtype, blockSize));

for (const c of cases) {
  test(`golden ${c.name}: reference float64 within 1e-9`, async () => {
    compare(c, await runOn('reference', c, 'float64'), 1e-9, 'reference/float64');
  });
  test(`golden ${c.name}: reference float32 within 1e-4`, async () => {
    compare(c, await runOn('reference', c, 'float32'), 1e-4, 'reference/float32');
  });
  test(`golden ${c.name}: native float32 within 1e-4`, nativeTestOptions(), async () => {
    requireNative();
    compare(c, await runOn('native', c, 'float32'), 1e-4, 'native/float32');
    // Streaming block sizes, including blocks that split every document and window.
    for (const bs of [1, 3, 64]) compare(c, await runOn('native', c, 'float32', bs), 1e-4, `native/float32 blockSize ${bs}`);
  });
  // The webgpu backend's fused kernels (streaming solve, attention) where an adapter exists.
  test(`golden ${c.name}: webgpu float32 within 1e-4`, { skip: noWebgpu ?? false }, async () => {
    compare(c, await runOn('webgpu', c, 'float32'), 1e-4, 'webgpu/float32');
  });
}
