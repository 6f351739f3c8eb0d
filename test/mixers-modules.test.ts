// The mixer modules: decoding (prefill + token-by-token with caches, CUBIT.md §4) reproduces the
// parallel forward, packing documents equals running them apart, gradients reach every parameter,
// caches respect the window, and nothing leaks.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  concat, CubitMixer, dispose, getBackend, LocalLinearMixer, matmul, matmulRows, MixerState, noGrad, Rng, slice, SoftmaxMixer,
  tensor, tidy, withBackend, type Tensor, type TokenMixer,
} from '../src/index.ts';
import { nativeTestOptions, randTensor, relErr, requireNative } from './helpers.ts';

const dModel = 16, nHeads = 2;

const kinds: { name: string; make: (window: number | null) => TokenMixer }[] = [
  { name: 'SoftmaxMixer', make: (window) => new SoftmaxMixer({ dModel, nHeads, window }, new Rng(1)) },
  // refScale 2 and λ = 1e-3 keep X moderate; the defaults are exercised by the gradient test.
  { name: 'CubitMixer', make: (window) => new CubitMixer({ dModel, nHeads, window, refScale: 2, lambda: 1e-3 }, new Rng(2)) },
  { name: 'CubitMixer (shared key)', make: (window) => new CubitMixer({ dModel, nHeads, window, sharedKey: true, refScale: 2, lambda: 1e-3 }, new Rng(3)) },
  { name: 'CubitMixer (LRR off)', make: (window) => new CubitMixer({ dModel, nHeads, window, lrr: false, refScale: 2, lambda: 1e-3 }, new Rng(8)) },
  { name: 'CubitMixer (no rotary)', make: (window) => new CubitMixer({ dModel, nHeads, window, rotary: false }, new Rng(4)) },
  { name: 'LocalLinearMixer (rank 4)', make: (window) => new LocalLinearMixer({ dModel, nHeads, window, rank: 4, ridge: 0.5 }, new Rng(5)) },
  { name: 'LocalLinearMixer (rank 3, no rotary)', make: (window) => new LocalLinearMixer({ dModel, nHeads, window, rank: 3, rotary: false }, new Rng(7)) },
  { name: 'LocalLinearMixer (full rank)', make: (window) => new LocalLinearMixer({ dModel, nHeads, window }, new Rng(6)) },
];

const backends = [
  { name: 'reference', opts: {} as { skip?: string } },
  { name: 'native', opts: nativeTestOptions() },
];

function onBackend<T>(name: string, fn: () => T): T {
  if (name === 'native') requireNative();
  return withBackend(name, fn);
}

/** Outputs of decoding x in chunks of the given sizes (from a fresh state), concatenated. */
function decode(m: TokenMixer, x: Tensor, chunks: number[]): Float64Array {
  const state = m.initState();
  try {
    return tidy(() => {
      const outs: Tensor[] = [];
      let at = 0;
      for (const n of chunks) { outs.push(m.step(slice(x, 1, at, at + n), state)); at += n; }
      assert.equal(at, x.shape[1]);
      assert.equal(state.position, at);
      for (const [name, t] of state.entries()) {
        assert.equal(t.shape[2], Math.min(m.window ?? Infinity, at), `cache '${name}' holds ${t.shape[2]} positions`);
      }
      return Float64Array.from(concat(outs, 1).dataSync());
    });
  } finally {
    state.dispose();
  }
}

describe('decoding equals the parallel forward', () => {
  const T = 11;
  for (const be of backends) {
    for (const kind of kinds) {
      for (const window of [null, 4]) {
        test(`${kind.name}, window ${window}, ${be.name}: prefill + steps, steps only, prefill + chunk`, be.opts, () => {
          onBackend(be.name, () => {
            const m = kind.make(window);
            const x = randTensor([2, T, dModel], { seed: 9, dtype: 'float32' });
            try {
              const full = noGrad(() => tidy(() => Float64Array.from(m.forward(x).dataSync())));
              for (const chunks of [[5, 1, 1, 1, 1, 1, 1], Array(T).fill(1), [5, 6], [T]]) {
                const e = relErr(decode(m, x, chunks), full);
                assert.ok(e < 2e-5, `chunks ${JSON.stringify(chunks)}: relErr ${e.toExponential(2)}`);
              }
            } finally { x.dispose(); m.dispose(); }
          });
        });
      }
    }
  }
});

describe('decode caches', () => {
  for (const be of backends) {
    test(`MixerState.append keeps the last window positions in order through growth and moves, ${be.name}`, be.opts, () => {
      onBackend(be.name, () => {
        const b = getBackend();
        const before = b.memory().bytesInUse;
        for (const window of [null, 1, 3, 8]) {
          const state = new MixerState();
          const rng = new Rng(window ?? 0);
          let all: number[][] = [[], [], [], [], [], []]; // per (b, h) block: rows of D = 2 values
          let next = 0;
          for (let i = 0; i < 60; i++) {
            const n = i === 0 ? 5 : rng.next() < 0.2 ? 1 + Math.floor(rng.next() * 10) : 1;
            const vals: number[] = [];
            for (let bh = 0; bh < 6; bh++) for (let t = 0; t < n; t++) { vals.push(next, -next); all[bh].push(next++); }
            tidy(() => state.append('k', tensor(vals, [2, 3, n, 2]), window, i === 0));
            all = all.map((r) => (window === null ? r : r.slice(Math.max(0, r.length - window))));
            const want = all.flatMap((r) => r.flatMap((v) => [v, -v]));
            const got = state.get('k');
            assert.deepEqual(got.shape, [2, 3, all[0].length, 2]);
            assert.deepEqual(Array.from(got.dataSync()), want, `window ${window}, append ${i}`);
            const { buf, start, end } = state.rows('k');
            assert.deepEqual(tidy(() => Array.from(slice(buf, 2, start, end).dataSync())), want);
          }
          state.dispose();
        }
        assert.equal(b.memory().bytesInUse, before, 'MixerState leaked storage');
      });
    });

    test(`matmulRows equals matmul on the sliced rows, ${be.name}`, be.opts, () => {
      onBackend(be.name, () => tidy(() => {
        const bm = randTensor([2, 3, 9, 4], { seed: 1, dtype: 'float32' });
        const q = randTensor([2, 3, 1, 4], { seed: 2, dtype: 'float32' });
        const p = randTensor([2, 3, 1, 5], { seed: 3, dtype: 'float32' });
        assert.deepEqual(Array.from(matmulRows(q, bm, 2, 7, { transB: true }).dataSync()), Array.from(matmul(q, slice(bm, 2, 2, 7), { transB: true }).dataSync()));
        assert.deepEqual(Array.from(matmulRows(p, bm, 4, 9).dataSync()), Array.from(matmul(p, slice(bm, 2, 4, 9)).dataSync()));
        assert.throws(() => matmulRows(p, bm, 5, 10), /rows \[5, 10\) are outside/);
        assert.throws(() => matmulRows(q, bm, 4, 9), /inner dimensions differ/);
      }));
    });

    for (const kind of kinds) {
      test(`${kind.name}, window 3, ${be.name}: a long decode (caches grow and slide) equals the forward`, be.opts, () => {
        onBackend(be.name, () => {
          const m = kind.make(3);
          const T = 40;
          const x = randTensor([1, T, dModel], { seed: 11, dtype: 'float32' });
          try {
            const full = noGrad(() => tidy(() => Float64Array.from(m.forward(x).dataSync())));
            const e = relErr(decode(m, x, [2, ...Array(T - 2).fill(1)]), full);
            assert.ok(e < 2e-5, `relErr ${e.toExponential(2)}`);
          } finally { x.dispose(); m.dispose(); }
        });
      });
    }
  }
});

describe('modules', () => {
  for (const kind of kinds) {
    test(`${kind.name}: gradients reach every parameter and the input`, () => {
      withBackend('reference', () => {
        const m = kind.make(null);
        const x = randTensor([2, 7, dModel], { seed: 2, dtype: 'float32', requiresGrad: true });
        try {
          tidy(() => m.forward(x).backward(randTensor([2, 7, dModel], { seed: 3, dtype: 'float32' })));
          for (const [name, p] of [...m.namedParameters(), ['x', x] as [string, Tensor]]) {
            assert.ok(p.grad, `${name} has no gradient`);
            const g = p.grad.dataSync();
            assert.ok(g.every(Number.isFinite) && g.some((v) => v !== 0), `${name}: gradient is zero or not finite`);
            p.grad.dispose(); p.grad = null;
          }
        } finally { x.dispose(); m.dispose(); }
      });
    });

    test(`${kind.name}: packed documents give what each document gives alone`, () => {
      withBackend('reference', () => {
        const m = kind.make(null);
        const lens = [4, 7, 3];
        const x = randTensor([1, 14, dModel], { seed: 5, dtype: 'float32' });
        try {
          noGrad(() => tidy(() => {
            const ids = tensor(Int32Array.from(lens.flatMap((n, d) => Array(n).fill(d))), [14]);
            const packed = m.forward(x, { docIds: ids });
            let at = 0;
            for (const n of lens) {
              const alone = m.forward(slice(x, 1, at, at + n));
              const e = relErr(slice(packed, 1, at, at + n), alone);
              assert.ok(e < 1e-5, `document at ${at}: relErr ${e.toExponential(2)}`);
              at += n;
            }
          }));
        } finally { x.dispose(); m.dispose(); }
      });
    });

    test(`${kind.name}: no output sees later tokens`, () => {
      withBackend('reference', () => {
        const m = kind.make(3);
        const x = randTensor([2, 9, dModel], { seed: 7, dtype: 'float32' });
        const x2 = tidy(() => concat([slice(x, 1, 0, 5), randTensor([2, 4, dModel], { seed: 8, dtype: 'float32' })], 1));
        try {
          noGrad(() => tidy(() => {
            const a = m.forward(x), b = m.forward(x2);
            assert.deepEqual(slice(b, 1, 0, 5).dataSync(), slice(a, 1, 0, 5).dataSync());
            assert.ok(relErr(slice(b, 1, 5, 9), slice(a, 1, 5, 9)) > 1e-3);
          }));
        } finally { dispose([x, x2]); m.dispose(); }
      });
    });
  }

  test('parameter names (checkpoint keys) and counts', () => {
    withBackend('reference', () => {
      const c = new CubitMixer({ dModel, nHeads }, new Rng(1));
      assert.deepEqual(c.namedParameters().map(([n]) => n),
        ['refScale', 'logLambda', 'lrrLower', 'lrrRange', 'wq.weight', 'wk.weight', 'wv.weight', 'wo.weight', 'wr.weight', 'wlrr.weight']);
      assert.equal(c.numParameters(), 5 * dModel * dModel + nHeads * dModel + 4 * nHeads);
      assert.deepEqual(Array.from(c.refScale.dataSync()), [1, 1]);
      assert.deepEqual(Array.from(c.lrrLower!.dataSync()), [0.5, 0.5]);
      assert.deepEqual(Array.from(c.lrrRange!.dataSync()), [1.5, 1.5]);
      // LRR off (the ablation): no W_lrr and no bounds; the values reach the solve unscaled.
      const off = new CubitMixer({ dModel, nHeads, lrr: false }, new Rng(1));
      assert.ok(!off.namedParameters().some(([n]) => n.startsWith('wlrr') || n.startsWith('lrr')));
      assert.equal(off.numParameters(), 5 * dModel * dModel + 2 * nHeads);
      assert.ok(Math.abs(c.logLambda.dataSync()[0] - Math.log(1e-6)) < 1e-5);
      const s = new CubitMixer({ dModel, nHeads, sharedKey: true }, new Rng(1));
      assert.ok(!s.namedParameters().some(([n]) => n.startsWith('wr')));
      const l = new LocalLinearMixer({ dModel, nHeads, rank: 4 }, new Rng(1));
      assert.deepEqual(l.namedParameters().map(([n]) => n), ['projection', 'wq.weight', 'wk.weight', 'wv.weight', 'wo.weight']);
      assert.deepEqual(l.projection!.shape, [nHeads, dModel / nHeads, 4]);
      const a = new SoftmaxMixer({ dModel, nHeads }, new Rng(1));
      assert.equal(a.numParameters(), 4 * dModel * dModel);
      for (const m of [c, s, l, a]) m.dispose();
    });
  });

  test('bad configuration and input give one clear error', () => {
    withBackend('reference', () => {
      const rng = new Rng(1);
      assert.throws(() => new SoftmaxMixer({ dModel: 10, nHeads: 3 }, rng), /SoftmaxMixer: headDim/);
      assert.throws(() => new SoftmaxMixer({ dModel: 6, nHeads: 2 }, rng), /rotary embedding needs an even headDim/);
      assert.throws(() => new CubitMixer({ dModel, nHeads, window: 0 }, rng), /CubitMixer: window/);
      assert.throws(() => new CubitMixer({ dModel, nHeads, lambda: 0 }, rng), /CubitMixer: lambda/);
      assert.throws(() => new LocalLinearMixer({ dModel, nHeads, rank: 0 }, rng), /LocalLinearMixer: rank/);
      assert.throws(() => new LocalLinearMixer({ dModel, nHeads, ridge: -1 }, rng), /LocalLinearMixer: ridge/);
      assert.throws(() => new LocalLinearMixer({ dModel, nHeads, rank: 3 }, rng), /LocalLinearMixer: rank must be even/);
      const m = new CubitMixer({ dModel, nHeads }, rng);
      const state = m.initState();
      try {
        tidy(() => {
          assert.throws(() => m.forward(randTensor([2, 5, dModel + 1], { dtype: 'float32' })), /CubitMixer: input must be \(B, T, 16\)/);
          m.step(randTensor([2, 3, dModel], { dtype: 'float32' }), state);
          assert.throws(() => m.step(randTensor([3, 1, dModel], { dtype: 'float32' }), state), /batch 3 differs/);
        });
      } finally { state.dispose(); m.dispose(); }
    });
  });
});

describe('memory', () => {
  for (const kind of kinds) {
    test(`${kind.name}: a decode loop frees everything once the state and outputs are disposed`, () => {
      withBackend('reference', () => {
        const b = getBackend();
        const m = kind.make(4);
        const x = randTensor([1, 9, dModel], { seed: 4, dtype: 'float32' });
        noGrad(() => dispose(m.forward(x))); // builds the rotary tables, which the module keeps
        const before = b.memory().bytesInUse;
        const state = m.initState();
        const outs: Tensor[] = [];
        for (let t = 0; t < 9; t++) outs.push(tidy(() => m.step(slice(x, 1, t, t + 1), state)));
        // The cache is bounded by the window: 4 positions per cached tensor.
        assert.ok(state.entries().length >= 2);
        for (const [name, t] of state.entries()) assert.deepEqual(t.shape.slice(0, 3), [1, nHeads, 4], `cache '${name}'`);
        state.dispose();
        dispose(outs);
        assert.equal(b.memory().bytesInUse, before, 'decode leaked storage');
        x.dispose(); m.dispose();
      });
    });
  }
});
