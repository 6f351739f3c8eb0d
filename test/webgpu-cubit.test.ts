// The webgpu backend's streaming KRR / Cubit solve (src/backends/webgpu/kernels/cubit.ts) at a
// length that spans several row blocks and chunks of the sweep (T = 300), with a sliding window
// and packed documents, against the reference backend's dense float64 oracle: the solution and
// every input gradient. The conformance suite covers short sequences; this one the block
// boundaries, the chunked sums and the window / document masks across them. Runs where a WebGPU
// adapter exists (the software adapters CI installs), skips elsewhere.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as op from '../src/index.ts';
import { backendByName, Rng, type Tensor } from '../src/index.ts';
import { relErr, withBackend } from './helpers.ts';
import { webgpuUnavailable } from './webgpu-helpers.ts';

const why = await webgpuUnavailable();

interface Input { shape: number[]; values: Float32Array | Int32Array; grad: boolean }

function uniform(shape: number[], seed: number, low: number, high: number): Input {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, values: Float32Array.from({ length: n }, () => low + (high - low) * rng.next()), grad: true };
}

/** Runs fn on `name` with a seeded output gradient; the output and the inputs' gradients. */
async function run(name: string, inputs: Input[], fn: (...xs: Tensor[]) => Tensor): Promise<Float64Array[]> {
  const { y, xs } = withBackend(name, () => {
    const xs = inputs.map((i) => op.tensor(i.values.slice(), i.shape, { requiresGrad: i.grad }));
    const y = fn(...xs);
    const rng = new Rng(99);
    op.tidy(() => y.backward(op.tensor(Float32Array.from({ length: y.size }, () => rng.normal()), y.shape)));
    return { y, xs };
  });
  try {
    const out = [Float64Array.from(await y.data())];
    for (const x of xs) if (x.requiresGrad) out.push(Float64Array.from(await x.grad!.data()));
    return out;
  } finally {
    for (const x of xs) { x.grad?.dispose(); x.dispose(); }
    y.dispose();
  }
}

/** Counts calls of the webgpu backend's kernel `k` while fn runs. */
async function counting<T>(k: string, fn: () => Promise<T>): Promise<[T, number]> {
  const be = backendByName('webgpu') as unknown as Record<string, (...a: unknown[]) => unknown>;
  const orig = be[k];
  let calls = 0;
  be[k] = function (this: unknown, ...a: unknown[]) { calls++; return orig.apply(this, a); };
  try { return [await fn(), calls]; } finally { delete be[k]; }
}

const [B, H, T, D] = [2, 2, 300, 16];
const shape = [B, H, T, D];
// Batch row 0: two documents (split at 170); row 1: ids 0, 1, then 0 again (recurring ids).
const docOf = (b: number, t: number): number => (b === 0 ? (t < 170 ? 0 : 1) : t < 90 || t >= 250 ? 0 : 1);
const docIds: Input = { shape: [B, T], values: Int32Array.from({ length: B * T }, (_, i) => docOf(Math.floor(i / T), i % T)), grad: false };

const cases: { name: string; inputs: Input[]; fn: (...xs: Tensor[]) => Tensor; kernel: string }[] = [
  {
    name: 'cubitSolve with LRR, window 100 and packed documents',
    inputs: [uniform(shape, 1, -1, 1), uniform([H], 2, 0.5, 2), uniform(shape, 3, -1, 1), uniform([B, H, T], 4, -4, 4),
      uniform([H], 5, 0.3, 0.7), uniform([H], 6, 1, 2), uniform([H], 7, -0.5, 0.5), docIds],
    fn: (r, a, v, z, lo, ra, ll, d) => op.cubitSolve(r, a, v, { logits: z, lower: lo, range: ra }, ll, { window: 100, docIds: d }),
    kernel: 'cubitSolveBackward',
  },
  {
    name: 'cubitSolve without LRR or mask',
    inputs: [uniform(shape, 11, -1, 1), uniform([H], 12, 0.5, 2), uniform(shape, 13, -1, 1), uniform([H], 14, -0.5, 0.5)],
    fn: (r, a, v, ll) => op.cubitSolve(r, a, v, null, ll),
    kernel: 'cubitSolveBackward',
  },
  {
    name: 'causalKrrSolve, window 37',
    inputs: [uniform(shape, 21, -1, 1), uniform(shape, 22, -1, 1), uniform(shape, 23, -1, 1), uniform([H], 24, -0.5, 0.5)],
    fn: (r, rh, y, ll) => op.causalKrrSolve(r, rh, y, ll, { window: 37 }),
    kernel: 'krrSolveBackward',
  },
];

for (const c of cases) {
  test(`webgpu streaming solve T=${T}: ${c.name}`, { skip: why ?? false }, async () => {
    const want = await run('reference', c.inputs, c.fn);
    const [got, calls] = await counting(c.kernel, () => run('webgpu', c.inputs, c.fn));
    assert.equal(calls, 1, `the webgpu ${c.kernel} kernel ran`);
    // float32 against float64 over sums of up to T·D terms (conformance.ts: red(T·D) = 1e-6·√(T·D); measured 4e-8 to 6e-7 on lavapipe).
    const tol = 1e-6 * Math.sqrt(T * D);
    got.forEach((g, i) => {
      const e = relErr(g, want[i]);
      if (process.env.CUBIT_TEST_VERBOSE) console.error(`${c.name} ${i}: relErr ${e.toExponential(2)}`);
      assert.ok(e <= tol, `${c.name}: ${i === 0 ? 'solution' : `gradient ${i}`} relErr ${e.toExponential(2)} > ${tol.toExponential(2)}`);
    });
  });
}
