// Shared test utilities: temporary folders, error norms, a float64 finite-difference gradient check, seeded random
// tensors, and backend selection (native tests fail without the addon unless CUBIT_BACKEND=reference).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { backendByName, getBackend } from '../src/core/engine.ts';
import { NativeBackend } from '../src/backends/native/backend.ts';
import { loadNativeAddon, nativeLoadError } from '../src/backends/native/addon.ts';
import { noGrad, Rng, tensor, tidy, withBackend, type Backend, type DType, type Tensor } from '../src/index.ts';

export { withBackend };

const tmpDirs: string[] = [];
process.on('exit', () => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh folder under the OS temp dir (cubit-<tag>-XXXXXX), removed when the test process exits. */
export function tmpDir(tag: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `cubit-${tag}-`));
  tmpDirs.push(dir);
  return dir;
}

type Values = ArrayLike<number> | Tensor;

function valuesOf(v: Values): ArrayLike<number> {
  return (v as Tensor).isTensor === true ? (v as Tensor).dataSync() : (v as ArrayLike<number>);
}

/** ‖a‖₂ in float64. */
export function norm(v: Values): number {
  const a = valuesOf(v);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/**
 * ‖got − want‖ / ‖want‖ (2-norms, float64). When want is all zeros it is ‖got‖ (the absolute
 * error), so a gradient that must vanish still has to vanish. NaN anywhere gives Infinity.
 */
export function relErr(got: Values, want: Values): number {
  const g = valuesOf(got), w = valuesOf(want);
  if (g.length !== w.length) throw new Error(`relErr: lengths differ (${g.length} vs ${w.length})`);
  let d = 0, n = 0;
  for (let i = 0; i < g.length; i++) {
    if (Number.isNaN(g[i]) !== Number.isNaN(w[i])) return Infinity;
    if (Number.isNaN(g[i])) continue;
    if (g[i] === w[i]) { n += w[i] * w[i]; continue; } // equal infinities
    const e = g[i] - w[i];
    d += e * e; n += w[i] * w[i];
  }
  if (!Number.isFinite(d)) return Infinity;
  return n === 0 ? Math.sqrt(d) : Math.sqrt(d / n);
}

/** Asserts relErr(got, want) ≤ tol with a message naming what was compared. */
export function assertClose(got: Values, want: Values, tol: number, what = 'value'): void {
  const e = relErr(got, want);
  assert.ok(e <= tol, `${what}: relErr ${e.toExponential(2)} > ${tol.toExponential(2)}`);
}

// ---- random inputs ----

export interface RandOptions {
  seed?: number;
  dtype?: DType;
  requiresGrad?: boolean;
  /** Uniform in [low, high) instead of a standard normal. */
  low?: number;
  high?: number;
  /** Keep |x| ≥ awayFrom (moves values off a kink at 0, keeping their sign). */
  awayFrom?: number;
}

/** Seeded random values (standard normal unless low/high are given). */
export function randValues(n: number, opts: RandOptions = {}): Float64Array {
  const rng = new Rng(opts.seed ?? 1);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let x = opts.low !== undefined || opts.high !== undefined
      ? (opts.low ?? 0) + ((opts.high ?? 1) - (opts.low ?? 0)) * rng.next()
      : rng.normal();
    if (opts.awayFrom !== undefined && Math.abs(x) < opts.awayFrom) x = x < 0 ? x - opts.awayFrom : x + opts.awayFrom;
    v[i] = x;
  }
  return v;
}

/** A seeded random tensor on the active backend (float64 by default: gradient checks). */
export function randTensor(shape: readonly number[], opts: RandOptions = {}): Tensor {
  let n = 1;
  for (const d of shape) n *= d;
  return tensor(randValues(n, opts), shape, { dtype: opts.dtype ?? 'float64', requiresGrad: opts.requiresGrad ?? false });
}

/** Seeded int32 ids in [0, n). */
export function randIds(shape: readonly number[], n: number, seed = 1): Tensor {
  let size = 1;
  for (const d of shape) size *= d;
  const rng = new Rng(seed);
  return tensor(Int32Array.from({ length: size }, () => rng.int(n)), shape);
}

// ---- gradient check ----

export interface GradcheckOptions {
  /** Central-difference step (default 1e-6). */
  eps?: number;
  /** Largest relErr(analytic, numeric) allowed per input (default 1e-6). */
  tol?: number;
  /** Seed of the fixed random output weights w. */
  seed?: number;
  /** Also check that the pass leaves the backend's bytesInUse where it found it (default true). */
  checkLeaks?: boolean;
}

export interface GradcheckResult {
  /** relErr per input (NaN for inputs that do not require grad). */
  errors: number[];
  /** The analytic gradients (float64 copies; null where the input does not require grad). */
  analytic: (Float64Array | null)[];
  numeric: (Float64Array | null)[];
}

/**
 * Compares backward() with central differences of L = Σ out ⊙ w (w fixed, seeded) for every input
 * that requires grad. Runs on the reference backend; inputs must be float64 tensors on it that do
 * not share storage. Throws an assertion error naming the input and the error when one is off.
 */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: readonly Tensor[], opts: GradcheckOptions = {}): GradcheckResult {
  const eps = opts.eps ?? 1e-6, tol = opts.tol ?? 1e-6;
  return withBackend('reference', () => {
    const be = backendByName('reference');
    for (const [i, x] of inputs.entries()) {
      assert.equal(x.backend, be, `gradcheck: input ${i} is not on the reference backend`);
      if (x.requiresGrad) assert.equal(x.dtype, 'float64', `gradcheck: input ${i} must be float64, got ${x.dtype}`);
      if (x.grad) { x.grad.dispose(); x.grad = null; }
    }
    const before = be.memory().bytesInUse;

    // Analytic: backward with seed w.
    let outShape: readonly number[] = [];
    let w: Float64Array = new Float64Array(0);
    tidy(() => {
      const out = fn(...inputs);
      assert.equal(out.dtype, 'float64', 'gradcheck: fn must return a float64 tensor');
      outShape = out.shape;
      w = randValues(out.size, { seed: opts.seed ?? 12345 });
      if (out.requiresGrad) out.backward(tensor(w, out.shape, { dtype: 'float64' }));
    });
    const analytic = inputs.map((x) => {
      if (!x.requiresGrad) return null;
      const g = x.grad ? Float64Array.from(x.grad.dataSync()) : new Float64Array(x.size);
      if (x.grad) assert.deepEqual(x.grad.shape, x.shape, `gradcheck: grad of input shape ${JSON.stringify(x.grad.shape)} ≠ ${JSON.stringify(x.shape)}`);
      x.grad?.dispose(); x.grad = null;
      return g;
    });

    // Numeric: perturb each element in place.
    const loss = (): number => noGrad(() => tidy(() => {
      const out = fn(...inputs);
      assert.deepEqual(out.shape, outShape, 'gradcheck: fn changed its output shape');
      const y = out.dataSync();
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i] * w[i];
      return s;
    }));
    const numeric = inputs.map((x) => {
      if (!x.requiresGrad) return null;
      const g = new Float64Array(x.size);
      for (let j = 0; j < x.size; j++) {
        const v = x.dataSync()[j];
        be.write(x.storage, [v + eps], j); const lp = loss();
        be.write(x.storage, [v - eps], j); const lm = loss();
        be.write(x.storage, [v], j);
        g[j] = (lp - lm) / (2 * eps);
      }
      return g;
    });

    const errors = inputs.map((_, i) => (analytic[i] ? relErr(analytic[i]!, numeric[i]!) : NaN));
    for (const [i, e] of errors.entries()) {
      if (Number.isNaN(e)) continue;
      assert.ok(e <= tol, `gradcheck: input ${i} ${inputs[i].describe()}: relErr(analytic, numeric) = ${e.toExponential(2)} > ${tol.toExponential(2)}\n  analytic ${fmt(analytic[i]!)}\n  numeric  ${fmt(numeric[i]!)}`);
    }
    if (opts.checkLeaks ?? true) {
      assert.equal(be.memory().bytesInUse, before, 'gradcheck: the forward/backward pass leaked storage');
    }
    return { errors, analytic, numeric };
  });
}

function fmt(a: Float64Array): string {
  const head = Array.from(a.slice(0, 8), (x) => x.toPrecision(6)).join(', ');
  return `[${head}${a.length > 8 ? `, … (${a.length})` : ''}]`;
}

// ---- backends ----

/**
 * Whether native tests can run. Without the addon they must fail (a missing build must not look
 * green) unless CUBIT_BACKEND=reference says the run is reference-only; then they skip.
 * Use as `test(name, nativeTestOptions(), () => { requireNative(); … })`.
 */
export function nativeTestOptions(): { skip?: string } {
  if (loadNativeAddon()) return {};
  if (process.env.CUBIT_BACKEND === 'reference') return { skip: `native addon not loaded (${nativeLoadError()?.split('\n')[0]}); CUBIT_BACKEND=reference` };
  return {};
}

/** Throws (failing the test) when the native addon is missing. */
export function requireNative(): void {
  if (!loadNativeAddon()) {
    throw new Error(`native addon not loaded: ${nativeLoadError()}; build it with 'npm run build:native', or set CUBIT_BACKEND=reference to skip native tests`);
  }
}

export function backend(name: string): Backend {
  return backendByName(name);
}

/** Runs fn with the active backend's streaming block size at `rows` when it has one (native). */
export function withBlockSize<T>(rows: number, fn: () => T): T {
  const be = getBackend();
  if (!(be instanceof NativeBackend)) return fn();
  const prev = be.blockSize;
  be.blockSize = rows;
  try { return fn(); } finally { be.blockSize = prev; }
}
