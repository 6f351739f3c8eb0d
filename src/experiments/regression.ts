// In-context regression with the mixers used directly as estimators (experiment `noise`, part a).
//
// A task is n pairs (x_i, y_i = f(x_i) + σ ε_i), x_i ~ U[0, 1] in random order, followed by query
// tokens x_q. The three mixers read the pairs as keys and values and answer each query:
//
//   softmax      Nadaraya–Watson: Σ_j p_qj y_j,  p = softmax over the data of the kernel logits
//   cubit        attention over X = (W + λI)⁻¹ (s y): the causal kernel-ridge solve of CUBIT.md §2
//   local linear the NW weights with the first-order correction of CUBIT.md §5, fitted in x
//
// One kernel serves all three. x is embedded on a quarter circle, c(x) = (cos ωx, sin ωx) with
// ω = π/2, so ‖c‖ = 1 and κ c(x)·c(x') = κ cos(ω(x − x')) is a von Mises kernel, close to a
// Gaussian of bandwidth h = 1/(ω√κ) in x. The attention logit is q·k with q = κ c(x_q), k = c(x_j)
// (scale 1); Cubit's reference vectors are r = c(x) with α = κ (r̂ = α r/‖r‖ = κ c), so W uses
// the same kernel among the data. Query tokens carry a 'null' key (a third coordinate that gives
// their logits −10⁴) and value 0, so a query never reads itself or another query; the queries sit
// after the data, so the causal mask lets each see every pair, and the data rows never see a query.
//
// Cubit's values are scaled by s = 1 + λ (a constant LRR: lower = 1 + λ, range 0). With W row-
// stochastic, λ → ∞ then gives X → y and Cubit → NW, and λ → 0 the unregularised solve: the λ grid
// spans from NW to "deconvolving" the kernel. The local linear fit uses the 1-d feature x itself
// (features option, m = 1) with ridge ρ.
//
// Hyperparameters (h, and λ or ρ) are chosen per (family, noise) on separate tuning tasks by the
// mean squared error at interior queries, then reported on fresh test tasks: interior queries
// (uniform in [interior]) and queries at distance d from either edge of the data's support.
import { noGrad, tidy, withBackend, getBackend } from '../core/engine.ts';
import type { DType } from '../core/dtype.ts';
import { hash32, Rng } from '../core/random.ts';
import type { Tensor } from '../core/tensor.ts';
import { tensor } from '../ops/creation.ts';
import { softmaxAttention } from '../ops/mixers.ts';
import { cubitAttention, localLinearAttention } from '../mixers/functional.ts';

export const FUNCTION_FAMILIES = ['linear', 'sine', 'smooth'] as const;
export type FunctionFamily = (typeof FUNCTION_FAMILIES)[number];
export const ESTIMATORS = ['softmax', 'cubit', 'local_linear'] as const;
export type Estimator = (typeof ESTIMATORS)[number];

const OMEGA = Math.PI / 2;
const NULL_LOGIT = -1e4;
const D = 4; // c(x) (2), the null-key flag, one spare (even head size)

/** κ for bandwidth h: κ c·c' ≈ κ − (x − x')²/(2h²) near x = x'. */
export const kappaOf = (h: number): number => 1 / (OMEGA * h) ** 2;

/** A random function of the family on [0, 1], with values of order 1. */
export function sampleFunction(family: FunctionFamily, rng: Rng): (x: number) => number {
  switch (family) {
    case 'linear': {
      const a = 2 * rng.next() - 1, b = 4 * rng.next() - 2;
      return (x) => a + b * x;
    }
    case 'sine': {
      const w = 0.5 + rng.next(), phi = 2 * Math.PI * rng.next();
      return (x) => Math.sin(2 * Math.PI * w * x + phi);
    }
    case 'smooth': {
      // A random smooth function: four sine modes with amplitudes falling as 1/k, scaled to unit RMS amplitude.
      const c = [1, 2, 3, 4].map((k) => rng.normal() / k), phi = [0, 1, 2, 3].map(() => 2 * Math.PI * rng.next());
      const norm = 1 / Math.sqrt(c.reduce((s, v) => s + (v * v) / 2, 0) || 1);
      return (x) => norm * c.reduce((s, ck, k) => s + ck * Math.sin(Math.PI * (k + 1) * x + phi[k]), 0);
    }
  }
}

export interface TaskSetOptions {
  family: FunctionFamily;
  /** Noise standard deviation σ. */
  noise: number;
  tasks: number;
  /** Data pairs per task (n). */
  points: number;
  /** Interior queries per task, uniform in [interior[0], interior[1]]. */
  interiorQueries: number;
  interior: [number, number];
  /** Query distances to the edges: each d adds queries at x = d and x = 1 − d. */
  edgeDistances: number[];
  seed: number;
}

export interface TaskSet {
  opts: TaskSetOptions;
  /** (tasks × points) inputs and noisy targets. */
  x: Float64Array;
  y: Float64Array;
  /** (tasks × Q) query positions and the clean f there; Q = interiorQueries + 2·edgeDistances. */
  qx: Float64Array;
  qf: Float64Array;
  Q: number;
}

export function sampleTasks(o: TaskSetOptions): TaskSet {
  const { tasks, points: n } = o;
  if (!(Number.isInteger(tasks) && tasks > 0)) throw new Error(`regression: tasks must be a positive integer, got ${tasks}`);
  if (!(Number.isInteger(n) && n > 1)) throw new Error(`regression: points must be an integer ≥ 2, got ${n}`);
  if (!(o.noise >= 0)) throw new Error(`regression: noise must be ≥ 0, got ${o.noise}`);
  const Q = o.interiorQueries + 2 * o.edgeDistances.length;
  if (Q < 1) throw new Error('regression: no queries (interiorQueries and edgeDistances are both empty)');
  const x = new Float64Array(tasks * n), y = new Float64Array(tasks * n), qx = new Float64Array(tasks * Q), qf = new Float64Array(tasks * Q);
  const familyIndex = FUNCTION_FAMILIES.indexOf(o.family);
  for (let t = 0; t < tasks; t++) {
    const rng = new Rng(hash32(hash32(o.seed, familyIndex), t));
    const f = sampleFunction(o.family, rng);
    for (let i = 0; i < n; i++) {
      const xi = rng.next();
      x[t * n + i] = xi;
      y[t * n + i] = f(xi) + o.noise * rng.normal();
    }
    let k = t * Q;
    for (let i = 0; i < o.interiorQueries; i++) qx[k++] = o.interior[0] + (o.interior[1] - o.interior[0]) * rng.next();
    for (const d of o.edgeDistances) { qx[k++] = d; qx[k++] = 1 - d; }
    for (let j = t * Q; j < (t + 1) * Q; j++) qf[j] = f(qx[j]);
  }
  return { opts: o, x, y, qx, qf, Q };
}

/** The (B, 1, T, D) inputs shared by the estimators, T = n + Q. */
function sequences(s: TaskSet, kappa: number, dtype: DType) {
  const B = s.opts.tasks, n = s.opts.points, Q = s.Q, T = n + Q;
  const q = new Float64Array(B * T * D), k = new Float64Array(B * T * D), v = new Float64Array(B * T * D), r = new Float64Array(B * T * D);
  const fq = new Float64Array(B * T), fk = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) {
      const xi = s.x[b * n + i], o = (b * T + i) * D;
      k[o] = r[o] = Math.cos(OMEGA * xi);
      k[o + 1] = r[o + 1] = Math.sin(OMEGA * xi);
      v[o] = s.y[b * n + i];
      fk[b * T + i] = xi;
    }
    for (let j = 0; j < Q; j++) {
      const xq = s.qx[b * Q + j], o = (b * T + n + j) * D;
      q[o] = kappa * Math.cos(OMEGA * xq);
      q[o + 1] = kappa * Math.sin(OMEGA * xq);
      q[o + 2] = NULL_LOGIT;
      k[o + 2] = 1; // the null key: logit −10⁴ for every query
      r[o + 2] = 1; // any unit vector: the query rows of X are never read
      fq[b * T + n + j] = xq;
    }
  }
  const shape = [B, 1, T, D];
  return {
    B, n, Q, T,
    q: tensor(q, shape, { dtype }), k: tensor(k, shape, { dtype }), v: tensor(v, shape, { dtype }), r: tensor(r, shape, { dtype }),
    fq: tensor(fq, [B, 1, T, 1], { dtype }), fk: tensor(fk, [B, 1, T, 1], { dtype }),
  };
}

export interface EstimatorParams {
  /** Bandwidth h in x. */
  h: number;
  /** Cubit: ridge λ. */
  lambda?: number;
  /** Local linear: ridge ρ. */
  ridge?: number;
}

/** The estimator's predictions at every query, (tasks × Q), in float64. */
export function predict(s: TaskSet, est: Estimator, p: EstimatorParams, dtype: DType = 'float64'): Float64Array {
  if (!(p.h > 0)) throw new Error(`regression: bandwidth h must be positive, got ${p.h}`);
  // float64 tensors need the reference backend (the native kernels are float32).
  const run = (): Float64Array => noGrad(() => tidy(() => {
    const kappa = kappaOf(p.h);
    const t = sequences(s, kappa, dtype);
    let out: Tensor;
    if (est === 'softmax') {
      out = softmaxAttention(t.q, t.k, t.v, { scale: 1 });
    } else if (est === 'cubit') {
      const lambda = p.lambda ?? 1e-2;
      if (!(lambda > 0)) throw new Error(`regression: cubit lambda must be positive, got ${lambda}`);
      const head = (v: number): Tensor => tensor([v], [1], { dtype });
      // cubitAttention's attention step uses 1/√D; q is scaled up by √D to make its logits κ c·c'.
      const qScaled = tensor(Float64Array.from(t.q.dataSync(), (v) => v * Math.sqrt(D)), t.q.shape, { dtype });
      out = cubitAttention({
        q: qScaled, k: t.k, v: t.v, r: t.r, lrrLogits: tensor(new Float64Array(t.B * t.T), [t.B, 1, t.T], { dtype }),
        refScale: head(kappa), logLambda: head(Math.log(lambda)), lrrLower: head(1 + lambda), lrrRange: head(0),
      }).output;
    } else if (est === 'local_linear') {
      const ridge = p.ridge ?? 1e-3;
      out = localLinearAttention(t.q, t.k, t.v, { scale: 1, ridge, features: { q: t.fq, k: t.fk } });
    } else {
      throw new Error(`regression: unknown estimator '${String(est)}' (${ESTIMATORS.join(', ')})`);
    }
    const all = out.dataSync();
    const pred = new Float64Array(t.B * t.Q);
    for (let b = 0; b < t.B; b++) for (let j = 0; j < t.Q; j++) pred[b * t.Q + j] = all[(b * t.T + t.n + j) * D];
    return pred;
  }));
  return dtype === 'float64' && getBackend().name !== 'reference' ? withBackend('reference', run) : run();
}

export interface TaskErrors {
  /** Per task: mean squared error over its interior queries (against the clean f). */
  interior: number[];
  /** Per edge distance, per task: squared error averaged over the two queries (x = d, 1 − d). */
  edge: number[][];
  /** The same averaged over tasks. */
  interiorMse: number;
  edgeMse: number[];
}

export function taskErrors(s: TaskSet, pred: Float64Array): TaskErrors {
  const B = s.opts.tasks, Q = s.Q, nI = s.opts.interiorQueries, nd = s.opts.edgeDistances.length;
  const interior: number[] = [], edge: number[][] = Array.from({ length: nd }, () => []);
  for (let b = 0; b < B; b++) {
    let acc = 0;
    for (let j = 0; j < nI; j++) acc += (pred[b * Q + j] - s.qf[b * Q + j]) ** 2;
    interior.push(nI > 0 ? acc / nI : NaN);
    for (let e = 0; e < nd; e++) {
      const j = nI + 2 * e;
      edge[e].push(((pred[b * Q + j] - s.qf[b * Q + j]) ** 2 + (pred[b * Q + j + 1] - s.qf[b * Q + j + 1]) ** 2) / 2);
    }
  }
  const avg = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length;
  return { interior, edge, interiorMse: avg(interior), edgeMse: edge.map(avg) };
}

export interface RegressionGrid {
  bandwidths: number[];
  lambdas: number[];
  ridges: number[];
}

/** Every grid point of an estimator. */
export function gridOf(est: Estimator, g: RegressionGrid): EstimatorParams[] {
  const out: EstimatorParams[] = [];
  for (const h of g.bandwidths) {
    if (est === 'softmax') out.push({ h });
    else if (est === 'cubit') for (const lambda of g.lambdas) out.push({ h, lambda });
    else for (const ridge of g.ridges) out.push({ h, ridge });
  }
  return out;
}

export interface EstimatorResult {
  estimator: Estimator;
  /** The grid point chosen on the tuning tasks. */
  chosen: EstimatorParams;
  /** Tuning MSE (interior) of every grid point. */
  tuning: { params: EstimatorParams; mse: number }[];
  /** Test errors at the chosen point. */
  test: TaskErrors;
}

export interface CellOptions extends Omit<TaskSetOptions, 'tasks' | 'seed'> {
  tasks: number;
  tuneTasks: number;
  seed: number;
  grid: RegressionGrid;
  estimators: readonly Estimator[];
  dtype?: DType;
}

/** Tunes each estimator on its own tasks and evaluates it on shared test tasks (paired by task). */
export function runRegressionCell(o: CellOptions): EstimatorResult[] {
  const base = { family: o.family, noise: o.noise, points: o.points, interiorQueries: o.interiorQueries, interior: o.interior, edgeDistances: o.edgeDistances };
  // Tuning tasks use interior queries only; test tasks come from a different stream of the seed.
  const tune = sampleTasks({ ...base, edgeDistances: [], interiorQueries: Math.max(1, o.interiorQueries), tasks: o.tuneTasks, seed: hash32(o.seed, 1) });
  const test = sampleTasks({ ...base, tasks: o.tasks, seed: hash32(o.seed, 2) });
  return o.estimators.map((est) => {
    const tuning = gridOf(est, o.grid).map((params) => {
      const mse = taskErrors(tune, predict(tune, est, params, o.dtype)).interiorMse;
      return { params, mse: Number.isFinite(mse) ? mse : Infinity };
    });
    const best = tuning.reduce((a, b) => (b.mse < a.mse ? b : a));
    return { estimator: est, chosen: best.params, tuning, test: taskErrors(test, predict(test, est, best.params, o.dtype)) };
  });
}
