// Bad input to the mixers gives one clear Error naming the argument, never a wrong answer: shapes,
// dtypes, mask options, and non-finite per-head parameters.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  causalKrrSolve, cubitAttention, cubitSolve, getBackend, localLinearAttention, mixerMask, softmaxAttention, solveSpd, tensor, tidy,
  withBackend, type CubitInputs, type DType, type Tensor,
} from '../src/index.ts';
import { nativeTestOptions, randTensor, requireNative } from './helpers.ts';

const [B, H, T, D] = [2, 2, 6, 3];

const t4 = (seed: number, dtype: DType = 'float32', shape = [B, H, T, D]): Tensor => randTensor(shape, { seed, dtype });
const heads = (values: number[], dtype: DType = 'float32'): Tensor => tensor(values, [values.length], { dtype });

function cubitInputs(over: Partial<CubitInputs> = {}): CubitInputs {
  return {
    q: t4(1), k: t4(2), v: t4(3), r: t4(4), lrrLogits: randTensor([B, H, T], { seed: 5, dtype: 'float32' }),
    refScale: heads([1, 1]), logLambda: heads([-5, -5]), lrrLower: heads([0.5, 0.5]), lrrRange: heads([1.5, 1.5]), ...over,
  };
}

/** Asserts fn throws an Error whose message matches every pattern, and that no storage leaked. */
function throwsNaming(fn: () => unknown, ...patterns: RegExp[]): void {
  withBackend('reference', () => {
    const before = getBackend().memory().bytesInUse;
    let caught: unknown = null;
    tidy(() => { try { fn(); } catch (e) { caught = e; } });
    assert.ok(caught instanceof Error, 'expected an Error to be thrown');
    for (const p of patterns) assert.match((caught as Error).message, p);
    assert.ok(!(caught as Error).message.includes('\n'), `one-line message expected: ${(caught as Error).message}`);
    assert.equal(getBackend().memory().bytesInUse, before, 'the failed call leaked storage');
  });
}

describe('softmaxAttention', () => {
  const att = (o: Parameters<typeof softmaxAttention>[3] = {}, q = t4(1), k = t4(2), v = t4(3)) => softmaxAttention(q, k, v, o);
  test('shapes', () => {
    throwsNaming(() => att({}, t4(1, 'float32', [H, T, D])), /softmaxAttention/, /\bq\b/, /\(B, H, T, D\)/);
    throwsNaming(() => att({}, t4(1), t4(2, 'float32', [B, H, T + 1, D])), /\bk\b/, /shape/);
    throwsNaming(() => att({}, t4(1), t4(2), t4(3, 'float32', [B, H, T, D + 1])), /\bv\b/, /shape/);
    throwsNaming(() => att({}, t4(1, 'float32', [B, H, 0, D]), t4(2, 'float32', [B, H, 0, D]), t4(3, 'float32', [B, H, 0, D])), /\bq\b/, /≥ 1/);
  });
  test('dtypes', () => {
    throwsNaming(() => att({}, t4(1), t4(2, 'float64')), /\bk\b/, /float64/);
    throwsNaming(() => att({}, tensor(new Int32Array(B * H * T * D), [B, H, T, D])), /\bq\b/, /int32/);
  });
  test('window must be a positive integer', () => {
    for (const w of [0, -1, 2.5, Number.NaN, Infinity]) throwsNaming(() => att({ window: w }), /window/, /positive integer/);
    withBackend('reference', () => tidy(() => { att({ window: T + 10 }); att({ window: null }); att({ window: 1 }); }));
  });
  test('docIds: dtype, shape', () => {
    throwsNaming(() => att({ docIds: tensor([0, 0, 0, 1, 1, 1], [T], { dtype: 'float32' }) }), /docIds/, /int32/);
    throwsNaming(() => att({ docIds: tensor(new Int32Array(T + 1), [T + 1]) }), /docIds/, /\[2, 6\] or \[6\]/);
    throwsNaming(() => att({ docIds: tensor(new Int32Array((B + 1) * T), [B + 1, T]) }), /docIds/, /shape/);
    throwsNaming(() => att({ docIds: tensor(new Int32Array(B * T), [B, T, 1]) }), /docIds/, /shape/);
    throwsNaming(() => att({ docIds: [0, 0, 0, 1, 1, 1] as unknown as Tensor }), /docIds/, /tensor/);
    // Valid: (T), (B, T), any int32 values including negatives, an id recurring after another.
    withBackend('reference', () => tidy(() => {
      att({ docIds: tensor(Int32Array.from([3, 3, -1, -1, 7, 7]), [T]) });
      att({ docIds: tensor(Int32Array.from([0, 0, 0, 1, 1, 1, 0, 1, 2, 3, 4, 5]), [B, T]) });
      att({ docIds: tensor(Int32Array.from([0, 0, 1, 1, 0, 0]), [T]) });
    }));
  });
  test('scale must be finite', () => {
    throwsNaming(() => att({ scale: Number.NaN } as never), /scale/);
  });
  test('inputs on different backends', nativeTestOptions(), () => {
    requireNative();
    const q = withBackend('reference', () => t4(1));
    const k = withBackend('native', () => t4(2));
    assert.throws(() => withBackend('reference', () => softmaxAttention(q, k, q)), /different backends/);
    q.dispose(); k.dispose();
  });
});

describe('cubitSolve', () => {
  const lrr = (z = randTensor([B, H, T], { seed: 5, dtype: 'float32' }), lower = heads([0.5, 0.5]), range = heads([1.5, 1.5])) =>
    ({ logits: z, lower, range });
  const solve = (o: { a?: Tensor; v?: Tensor; ll?: Tensor; eps?: number; l?: ReturnType<typeof lrr> | null } = {}) =>
    cubitSolve(t4(1), o.a ?? heads([1, 1]), o.v ?? t4(3), o.l === undefined ? lrr() : o.l, o.ll ?? heads([-5, -5]), { eps: o.eps });
  test('per-head parameters: shape, finite values, λ overflow', () => {
    throwsNaming(() => solve({ a: heads([1, 1, 1]) }), /cubitSolve/, /refScale/, /\[2\]/);
    throwsNaming(() => solve({ a: heads([1, Number.NaN]) }), /cubitSolve/, /refScale\[1\]/, /finite/);
    throwsNaming(() => solve({ ll: heads([800, -5]) }), /cubitSolve/, /logLambda\[0\]/, /overflow/);
    throwsNaming(() => solve({ l: lrr(undefined, heads([0.5, Infinity])) }), /cubitSolve/, /lrrLower\[1\]/, /finite/);
  });
  test('v, LRR logits and eps', () => {
    throwsNaming(() => solve({ v: t4(3, 'float32', [B, H, T + 1, D]) }), /cubitSolve/, /\bv\b/);
    throwsNaming(() => solve({ l: lrr(randTensor([B, H, T + 1], { seed: 5, dtype: 'float32' })) }), /cubitSolve/, /lrrLogits/, /\[2, 2, 6\]/);
    throwsNaming(() => solve({ eps: 0 }), /cubitSolve/, /eps/);
    withBackend('reference', () => tidy(() => { solve({ l: null }); })); // LRR off is fine
  });
});

describe('causalKrrSolve', () => {
  const solve = (ll: Tensor, o = {}, y = t4(3)) => causalKrrSolve(t4(1), t4(2), y, ll, o);
  test('logLambda shape and dtype', () => {
    throwsNaming(() => solve(heads([-5, -5, -5])), /logLambda/, /\[2\]/);
    throwsNaming(() => solve(tensor([-5, -5], [1, 2])), /logLambda/);
    throwsNaming(() => solve(heads([-5, -5], 'float64')), /logLambda/, /float64/);
  });
  test('non-finite or overflowing logLambda', () => {
    for (const bad of [Number.NaN, Infinity, -Infinity]) throwsNaming(() => solve(heads([-5, bad])), /causalKrrSolve/, /logLambda\[1\]/, /finite/);
    throwsNaming(() => solve(heads([800, -5])), /logLambda\[0\]/, /overflow/);
    withBackend('reference', () => tidy(() => { solve(heads([-700, -60])); })); // λ ≈ 0 is fine
  });
  test('y and rHat shapes', () => {
    throwsNaming(() => solve(heads([-5, -5]), {}, t4(3, 'float32', [B, H, T, D + 1])), /\by\b/);
    throwsNaming(() => causalKrrSolve(t4(1), t4(2, 'float32', [B, H + 1, T, D]), t4(3), heads([-5, -5])), /rHat/);
  });
  test('mask options', () => {
    throwsNaming(() => solve(heads([-5, -5]), { window: 0 }), /causalKrrSolve/, /window/);
    throwsNaming(() => solve(heads([-5, -5]), { docIds: tensor(new Int32Array(T - 1), [T - 1]) }), /causalKrrSolve/, /docIds/);
  });
});

describe('cubitAttention', () => {
  test('non-finite per-head parameters name the parameter and head', () => {
    for (const name of ['refScale', 'logLambda', 'lrrLower', 'lrrRange'] as const) {
      for (const bad of [Number.NaN, Infinity, -Infinity]) {
        throwsNaming(() => cubitAttention(cubitInputs({ [name]: heads([1, bad]) })), /cubitAttention/, new RegExp(`${name}\\[1\\]`), /finite/);
      }
    }
  });
  test('per-head parameters of the wrong length or dtype', () => {
    throwsNaming(() => cubitAttention(cubitInputs({ refScale: heads([1, 1, 1]) })), /refScale/, /\[2\]/);
    throwsNaming(() => cubitAttention(cubitInputs({ lrrRange: heads([1.5]) })), /lrrRange/);
    throwsNaming(() => cubitAttention(cubitInputs({ lrrLower: heads([0.5, 0.5], 'float64') })), /lrrLower/, /float64/);
  });
  test('token inputs of the wrong shape or dtype', () => {
    throwsNaming(() => cubitAttention(cubitInputs({ r: t4(4, 'float32', [B, H, T, D + 1]) })), /\br\b/);
    throwsNaming(() => cubitAttention(cubitInputs({ v: t4(4, 'float64') })), /\bv\b/, /float64/);
    throwsNaming(() => cubitAttention(cubitInputs({ lrrLogits: randTensor([B, H, T, 1], { dtype: 'float32' }) })), /lrrLogits/, /\[2, 2, 6\]/);
    throwsNaming(() => cubitAttention(cubitInputs({ lrrLogits: randTensor([B, H, T], { dtype: 'float64' }) })), /lrrLogits/, /float64/);
  });
  test('mask options and normEps', () => {
    throwsNaming(() => cubitAttention(cubitInputs(), { window: -3 }), /cubitAttention/, /window/);
    throwsNaming(() => cubitAttention(cubitInputs(), { docIds: tensor(new Int32Array(T + 1), [T + 1]) }), /cubitAttention/, /docIds/);
    throwsNaming(() => cubitAttention(cubitInputs(), { normEps: 0 }), /normEps/);
  });
});

describe('localLinearAttention', () => {
  const ll = (o: Parameters<typeof localLinearAttention>[3] = {}, v = t4(3)) => localLinearAttention(t4(1), t4(2), v, o);
  test('ridge', () => {
    for (const r of [0, -1, Number.NaN, Infinity]) throwsNaming(() => ll({ ridge: r }), /localLinearAttention/, /ridge/);
    throwsNaming(() => ll({ ridge: heads([1, 0]) }), /ridge\[1\]/, /positive/);
    throwsNaming(() => ll({ ridge: heads([1, Number.NaN]) }), /ridge\[1\]/, /finite/);
    throwsNaming(() => ll({ ridge: heads([1, 1, 1]) }), /ridge/, /\[2\]/);
  });
  test('projection', () => {
    throwsNaming(() => ll({ projection: randTensor([D + 1, 2], { dtype: 'float32' }) }), /projection/, /\(D, m\)/);
    throwsNaming(() => ll({ projection: randTensor([H + 1, D, 2], { dtype: 'float32' }) }), /projection/);
    throwsNaming(() => ll({ projection: randTensor([D, 0], { dtype: 'float32' }) }), /projection/);
    throwsNaming(() => ll({ projection: randTensor([D, 2], { dtype: 'float64' }) }), /projection/, /float64/);
  });
  test('features', () => {
    const f = (shape: number[], dtype: DType = 'float32') => randTensor(shape, { dtype });
    throwsNaming(() => ll({ features: { q: f([B, H, T, 2]), k: f([B, H, T, 2]) }, projection: f([D, 2]) }), /projection or features/);
    throwsNaming(() => ll({ features: { q: f([B, H, T + 1, 2]), k: f([B, H, T, 2]) } }), /features\.q/);
    throwsNaming(() => ll({ features: { q: f([B, H, T, 2]), k: f([B, H, T, 3]) } }), /features\.q and features\.k/);
    throwsNaming(() => ll({ features: { q: f([B, H, T, 2]), k: f([B, H, T, 2], 'float64') } }), /features\.k/, /float64/);
  });
  test('v and mask options', () => {
    throwsNaming(() => ll({}, t4(3, 'float32', [B, H, T + 1, D])), /\bv\b/);
    throwsNaming(() => ll({ window: 1.5 }), /localLinearAttention/, /window/);
    throwsNaming(() => ll({ docIds: tensor(new Int32Array(B * T), [T, B]) }), /localLinearAttention/, /docIds/);
  });
});

test('solveSpd: a matrix that is not positive definite', () => {
  throwsNaming(() => solveSpd(tensor([1, 0, 0, 1, 1, 2, 2, 1], [2, 2, 2]), tensor([1, 1, 1, 1], [2, 2, 1])), /solveSpd/, /matrix 1/, /positive definite/);
  throwsNaming(() => solveSpd(tensor([1, 0, 0, 1], [2, 2]), tensor([1, 1, 1], [3, 1])), /solveSpd/, /\bb\b/);
});

test('mixerMask validates like the ops', () => {
  throwsNaming(() => mixerMask(B, T, { window: 0 }), /mixerMask/, /window/);
});
