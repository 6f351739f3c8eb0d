// Tensor API behaviour: construction, reading, scopes and disposal, grad mode, backward, views, and
// the one-line errors bad shapes get. Runs on the default backend (CUBIT_BACKEND picks it).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as op from '../src/index.ts';
import { getBackend, type Tensor } from '../src/index.ts';
import { backend } from './helpers.ts';

const inUse = (): number => getBackend().memory().bytesInUse;

/** Runs fn and asserts it left bytesInUse where it found it. */
function noLeak(fn: () => void): void {
  const before = inUse();
  fn();
  assert.equal(inUse(), before, 'storage leaked');
}

describe('construction and reading', () => {
  test('tensor() from nested arrays infers the shape', () => {
    const t = op.tensor([[1, 2, 3], [4, 5, 6]]);
    assert.deepEqual(t.shape, [2, 3]);
    assert.equal(t.dtype, 'float32');
    assert.equal(t.size, 6);
    assert.equal(t.rank, 2);
    assert.deepEqual(t.toArray(), [[1, 2, 3], [4, 5, 6]]);
    t.dispose();
  });

  test('tensor() from a flat array with a shape, and from typed arrays', () => {
    const a = op.tensor([1, 2, 3, 4, 5, 6], [3, 2]);
    assert.deepEqual(a.toArray(), [[1, 2], [3, 4], [5, 6]]);
    const b = op.tensor(new Int32Array([7, 8]));
    assert.equal(b.dtype, 'int32');
    assert.deepEqual(b.shape, [2]);
    const c = op.tensor(new Float32Array([1.5]), [1, 1]);
    assert.deepEqual(c.shape, [1, 1]);
    op.dispose([a, b, c]);
  });

  test('tensor() from a number is rank 0; item() and toArray() read it', () => {
    const t = op.tensor(2.5);
    assert.deepEqual(t.shape, []);
    assert.equal(t.size, 1);
    assert.equal(t.item(), 2.5);
    assert.equal(t.toArray(), 2.5);
    t.dispose();
  });

  test('float64 tensors exist on the reference backend only', () => {
    const r = op.tensor([1, 2], [2], { dtype: 'float64', backend: backend('reference') });
    assert.equal(r.dtype, 'float64');
    assert.ok(r.dataSync() instanceof Float64Array);
    r.dispose();
    if (!getBackend().supportsFloat64) {
      assert.throws(() => op.tensor([1], [1], { dtype: 'float64' }), /has no float64 tensors/);
    }
  });

  test('requiresGrad and name options', () => {
    const t = op.tensor([1, 2], [2], { requiresGrad: true, name: 'w' });
    assert.equal(t.requiresGrad, true);
    assert.equal(t.isLeaf, true);
    assert.match(t.describe(), /^w float32\[2\]$/);
    assert.equal(String(t), 'Tensor(w float32[2])');
    t.dispose();
  });

  test('empty dimensions', () => {
    const t = op.zeros([2, 0, 3]);
    assert.equal(t.size, 0);
    assert.deepEqual(t.toArray(), [[], []]);
    const s = op.sum(t, 1);
    assert.deepEqual(s.shape, [2, 3]);
    assert.deepEqual(Array.from(s.dataSync()), [0, 0, 0, 0, 0, 0]);
    op.dispose([t, s]);
  });

  test('dataSync() and data() return copies', async () => {
    const t = op.tensor([1, 2, 3]);
    const a = t.dataSync();
    a[0] = 99;
    assert.deepEqual(Array.from(t.dataSync()), [1, 2, 3]);
    const b = await t.data();
    assert.ok(b instanceof Float32Array);
    assert.deepEqual(Array.from(b), [1, 2, 3]);
    t.dispose();
  });

  test('item() on a tensor of several elements says so', () => {
    const t = op.tensor([1, 2]);
    assert.throws(() => t.item(), /item: tensor of shape \[2\] has 2 elements, not 1/);
    t.dispose();
  });

  test('creation helpers', () => {
    const f = op.full([2, 2], 3);
    assert.deepEqual(Array.from(f.dataSync()), [3, 3, 3, 3]);
    const o = op.ones([3]);
    const z = op.zerosLike(o);
    assert.deepEqual(Array.from(z.dataSync()), [0, 0, 0]);
    const r = op.arange(4);
    assert.equal(r.dtype, 'int32');
    assert.deepEqual(Array.from(r.dataSync()), [0, 1, 2, 3]);
    const n1 = op.randn([5], { seed: 3 }), n2 = op.randn([5], { seed: 3 });
    assert.deepEqual(Array.from(n1.dataSync()), Array.from(n2.dataSync()));
    const u = op.rand([100], { seed: 1, low: 2, high: 3 });
    assert.ok(Array.from(u.dataSync()).every((v) => v >= 2 && v < 3));
    op.dispose([f, o, z, r, n1, n2, u]);
  });
});

describe('scopes and disposal', () => {
  test('tidy disposes what it made except what it returns', () => {
    noLeak(() => {
      let inner: Tensor | null = null;
      const out = op.tidy(() => {
        const a = op.ones([100]);
        inner = op.mul(a, 2);
        return op.add(inner, 1);
      });
      assert.ok(inner!.isDisposed);
      assert.ok(!out.isDisposed);
      assert.deepEqual(Array.from(out.dataSync().slice(0, 2)), [3, 3]);
      out.dispose();
    });
  });

  test('tidy keeps tensors in returned arrays, objects and Maps', () => {
    noLeak(() => {
      const r = op.tidy(() => ({ a: op.ones([70]), list: [op.zeros([70])], map: new Map([['k', op.full([70], 2)]]), n: 3 }));
      assert.ok(!r.a.isDisposed && !r.list[0].isDisposed && !r.map.get('k')!.isDisposed);
      op.dispose([r.a, r.list[0], r.map.get('k')!]);
    });
  });

  test('nested tidy hands its result to the outer scope', () => {
    noLeak(() => {
      let mid: Tensor | null = null;
      op.tidy(() => {
        mid = op.tidy(() => op.ones([80]));
        assert.ok(!mid.isDisposed);
      });
      assert.ok(mid!.isDisposed);
    });
  });

  test('keep() survives tidy; a throwing fn still disposes', () => {
    noLeak(() => {
      let k: Tensor | null = null;
      op.tidy(() => { k = op.ones([90]).keep(); op.ones([90]); });
      assert.ok(!k!.isDisposed);
      k!.dispose();
    });
    const before = inUse();
    let k: Tensor | null = null;
    op.tidy(() => { k = op.keep(op.ones([90])); });
    assert.ok(!k!.isDisposed);
    k!.dispose();
    assert.equal(inUse(), before);
    assert.throws(() => op.tidy(() => { op.ones([90]); throw new Error('boom'); }), /boom/);
    assert.equal(inUse(), before);
  });

  test('tidy refuses an async fn', () => {
    assert.throws(() => op.tidy(() => Promise.resolve(1)), /must be synchronous/);
  });

  test('reading a disposed tensor names it; disposing twice is harmless', () => {
    const t = op.tensor([1, 2], [2], { name: 'x' });
    t.dispose();
    t.dispose();
    assert.throws(() => t.dataSync(), /dataSync: tensor x float32\[2\] was disposed/);
    assert.throws(() => op.add(t, 1), /add: tensor x float32\[2\] was disposed/);
  });

  test('views share storage and outlive their source', () => {
    noLeak(() => {
      const t = op.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const v = op.reshape(t, [3, 2]);
      assert.equal(v.storage, t.storage);
      const f = op.flatten(t), u = op.unsqueeze(t, 0), s = op.squeeze(u), d = op.detach(t);
      assert.deepEqual([f.shape, u.shape, s.shape, d.shape], [[6], [1, 2, 3], [2, 3], [2, 3]]);
      t.dispose();
      assert.deepEqual(v.toArray(), [[1, 2], [3, 4], [5, 6]]);
      op.dispose([v, f, u, s, d]);
    });
  });

  test('copies do not share storage', () => {
    const t = op.tensor([1, 2, 3, 4], [2, 2]);
    const c = op.clone(t), p = op.transpose(t), s = op.slice(t, 0, 0, 1);
    for (const x of [c, p, s]) assert.notEqual(x.storage, t.storage);
    assert.deepEqual(p.toArray(), [[1, 3], [2, 4]]);
    assert.deepEqual(s.toArray(), [[1, 2]]);
    op.dispose([t, c, p, s]);
  });
});

const ids = (v: number[]): Tensor => op.tensor(Int32Array.from(v));

describe('autograd', () => {
  test('noGrad records nothing', () => {
    const w = op.tensor([1, 2], [2], { requiresGrad: true });
    const y = op.noGrad(() => op.mul(w, 3));
    assert.equal(y.requiresGrad, false);
    assert.equal(y.node, null);
    assert.equal(op.isGradEnabled(), true);
    assert.throws(() => y.backward(), /does not require grad/);
    op.dispose([w, y]);
  });

  test('outputs of inputs without requiresGrad record nothing', () => {
    const a = op.tensor([1, 2]);
    const y = op.mul(a, a);
    assert.equal(y.requiresGrad, false);
    assert.equal(y.node, null);
    op.dispose([a, y]);
  });

  test('backward accumulates into .grad across forwards', () => {
    const w = op.tensor([1, 2, 3], [3], { requiresGrad: true });
    op.tidy(() => op.sum(op.mul(w, w)).backward());
    assert.deepEqual(Array.from(w.grad!.dataSync()), [2, 4, 6]);
    op.tidy(() => op.sum(op.mul(w, 3)).backward());
    assert.deepEqual(Array.from(w.grad!.dataSync()), [5, 7, 9]);
    assert.ok(!w.grad!.isDisposed, '.grad lives outside scopes');
    w.grad!.dispose(); w.dispose();
  });

  test('a leaf used by several ops gets the sum of its gradients', () => {
    const w = op.tensor([2], [1], { requiresGrad: true });
    op.tidy(() => op.sum(op.add(op.mul(w, w), op.add(w, w))).backward());
    assert.deepEqual(Array.from(w.grad!.dataSync()), [6]);
    w.grad!.dispose(); w.dispose();
  });

  test('backward on a leaf seeds ones', () => {
    const w = op.tensor(3, undefined, { requiresGrad: true });
    w.backward();
    assert.equal(w.grad!.item(), 1);
    w.grad!.dispose(); w.dispose();
  });

  test('backward twice on one graph errors clearly', () => {
    const w = op.tensor([1, 2], [2], { requiresGrad: true });
    op.tidy(() => {
      const loss = op.sum(op.exp(w));
      loss.backward();
      assert.throws(() => loss.backward(), /already released \(backward runs once per forward\)/);
    });
    w.grad!.dispose(); w.dispose();
  });

  test('backward of a non-scalar needs its gradient', () => {
    const w = op.tensor([1, 2], [2], { requiresGrad: true });
    op.tidy(() => {
      const y = op.mul(w, 2);
      assert.throws(() => y.backward(), /is not a scalar; pass its gradient/);
      y.backward(op.tensor([1, 10]));
    });
    assert.deepEqual(Array.from(w.grad!.dataSync()), [2, 20]);
    w.grad!.dispose(); w.dispose();
  });

  test('gradients flow through intermediates that tidy already disposed', () => {
    const x = op.tensor([0.5, -1, 2], [1, 3], { requiresGrad: true });
    const w = op.tensor([1, 2, 3, 4, 5, 6], [3, 2], { requiresGrad: true });
    noLeak(() => {
      const loss = op.tidy(() => op.sum(op.tanh(op.matmul(x, w))));
      loss.backward();
      loss.dispose();
      assert.ok(x.grad && w.grad, 'leaves got gradients');
      x.grad.dispose(); w.grad.dispose(); x.grad = null; w.grad = null;
    });
    op.dispose([x, w]);
  });

  test('a forward that is never run backward frees everything when disposed', () => {
    const x = op.tensor(Array.from({ length: 120 }, (_, i) => i / 100), [3, 4, 10], { requiresGrad: true });
    noLeak(() => {
      op.tidy(() => { op.logsumexp(x, [0, 2]); op.max(x, [0, 1]); op.mean(op.softmax(x)); });
    });
    x.dispose();
  });

  test('backward outside any scope leaks nothing (grads that are views of their seed)', () => {
    const x = op.tensor(Array.from({ length: 100 }, (_, i) => i / 50), [10, 10], { requiresGrad: true });
    noLeak(() => {
      const sq = op.mul(x, x), flat = op.reshape(sq, [100]), y = op.sum(flat);
      y.backward();
      assert.equal(x.grad!.dataSync()[3], Math.fround(2 * Math.fround(3 / 50)));
      op.dispose([sq, flat, y, x.grad]);
      x.grad = null;
    });
    x.dispose();
  });

  describe('composite ops free their hidden intermediates outside any scope', () => {
    // Each case registers (v) every tensor it makes itself; after disposing those, the output and
    // x.grad, bytesInUse must be back where it was: anything left was made inside the op.
    type V = <T extends Tensor>(t: T) => T;
    const cases: [string, (x: Tensor, v: V) => Tensor][] = [
      ['number operand', (x, v) => op.mul(v(op.add(x, 2)), 3)],
      ['comparison with a number', (x, v) => op.mul(x, v(op.gt(x, 0.5)))],
      ['where with a number', (x, v) => op.where(v(op.gt(x, 0.5)), x, 0)],
      ['sum over all axes', (x) => op.sum(x)],
      ['sum over two axes', (x, v) => op.sum(v(op.reshape(x, [4, 5, 4])), [0, 2])],
      ['mean', (x) => op.mean(x, 0)],
      ['max over two axes', (x, v) => op.max(v(op.reshape(x, [4, 5, 4])), [0, 2])],
      ['logsumexp', (x) => op.logsumexp(x, -1)],
      ['matmul 1-D · 1-D', (x, v) => op.matmul(v(op.reshape(x, [80])), v(op.reshape(x, [80])))],
      ['matmul 1-D · 2-D', (x, v) => op.matmul(v(op.reshape(v(op.slice(x, 0, 0, 1)), [20])), v(op.transpose(x)))],
      ['matmul mixed broadcast', (x, v) => op.matmul(v(op.reshape(x, [2, 1, 5, 8])), v(op.reshape(x, [1, 2, 8, 5])))],
      ['maskedSoftmax', (x, v) => op.maskedSoftmax(x, v(op.gt(x, 0.3)))],
      ['crossEntropy mean', (x, v) => op.crossEntropy(v(op.reshape(x, [8, 10])), v(ids([0, 1, 2, 3, 4, 5, 6, 7])))],
      ['crossEntropy mean, ignored targets', (x, v) => op.crossEntropy(v(op.reshape(x, [8, 10])), v(ids([0, -100, 2, 3, 4, 5, 6, 7])))],
      ['crossEntropy sum', (x, v) => op.crossEntropy(v(op.reshape(x, [8, 10])), v(ids([0, 1, 2, 3, 4, 5, 6, 7])), { reduction: 'sum' })],
      ['dropout', (x) => op.dropout(x, 0.5, 1)],
      ['stack', (x) => op.stack([x, x], 1)],
    ];
    for (const [name, f] of cases) {
      test(name, () => {
        const x = op.tensor(Array.from({ length: 80 }, (_, i) => ((i * 37) % 80) / 80 + 0.01), [4, 20], { requiresGrad: true });
        for (const grad of [false, true]) {
          noLeak(() => {
            const mine: Tensor[] = [];
            const v: V = (t) => { mine.push(t); return t; };
            const y = grad ? f(x, v) : op.noGrad(() => f(x, v));
            if (grad) {
              const seed = y.size === 1 ? undefined : v(op.ones(y.shape));
              y.backward(seed);
              assert.ok(x.grad, 'x got a gradient');
              x.grad.dispose(); x.grad = null;
            }
            op.dispose([y, mine]);
          });
        }
        x.dispose();
      });
    }
  });

  test('dispose and tidy of a graph after backward free the saved storages', () => {
    const x = op.tensor(Array.from({ length: 100 }, (_, i) => i), [100], { requiresGrad: true });
    noLeak(() => {
      op.tidy(() => { op.sum(op.sigmoid(op.mul(x, 0.01))).backward(); });
      x.grad!.dispose(); x.grad = null;
    });
    x.dispose();
  });
});

describe('errors for bad shapes and arguments', () => {
  const a = op.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  const cases: [string, () => unknown, RegExp][] = [
    ['tensor() count', () => op.tensor([1, 2, 3], [2, 2]), /tensor: 3 values do not fill shape \[2, 2\] \(4 elements\)/],
    ['tensor() ragged', () => op.tensor([[1, 2], [3]]), /ragged/],
    ['negative dimension', () => op.zeros([2, -1]), /shape \[2, -1\] must hold non-negative integers/],
    ['broadcast', () => op.add(a, op.ones([4])), /add: shapes \[2, 3\] and \[4\] do not broadcast/],
    ['matmul inner', () => op.matmul(a, a), /matmul: inner dimensions differ: \[2, 3\] · \[2, 3\]/],
    ['matmul batch', () => op.matmul(op.ones([2, 2, 3]), op.ones([3, 3, 4])), /matmul: shapes \[2\] and \[3\] do not broadcast/],
    ['matmul dtype', () => op.matmul(a, op.ones([3, 2], { dtype: 'int32' })), /matmul: b must be a float tensor, got int32\[3, 2\]/],
    ['matmul rank 0', () => op.matmul(op.tensor(2), a), /matmul: operands must have rank ≥ 1, got \[\] · \[2, 3\]/],
    ['matmul 1-D transposed', () => op.matmul(op.ones([2]), a, { transA: true }), /matmul: a 1-D operand cannot be transposed/],
    ['reshape', () => op.reshape(a, [4, 2]), /reshape: \[2, 3\] \(6 elements\) cannot become \[4, 2\]/],
    ['reshape -1', () => op.reshape(a, [4, -1]), /reshape: cannot infer -1 reshaping \[2, 3\] to \[4, -1\]/],
    ['permute', () => op.permute(a, [0, 0]), /permute: \[0,0\] is not a permutation of the 2 axes of \[2, 3\]/],
    ['axis', () => op.sum(a, 2), /sum: axis 2 is out of range for a tensor of rank 2/],
    ['squeeze', () => op.squeeze(a, 0), /squeeze: axis 0 of \[2, 3\] is not 1/],
    ['slice', () => op.slice(a, 1, 2, 4), /slice: range \[2, 4\) is outside axis 1 of length 3/],
    ['concat', () => op.concat([a, op.ones([3, 3])], 1), /concat: float32\[3, 3\] does not match float32\[2, 3\] outside axis 1/],
    ['broadcastTo', () => op.broadcastTo(a, [3, 3]), /broadcastTo: shapes \[2, 3\] and \[3, 3\] do not broadcast/],
    ['embedding id', () => op.embedding(a, op.tensor(new Int32Array([0, 2]))), /embedding: id 2 at position 1 is outside \[0, 2\)/],
    ['embedding ids dtype', () => op.embedding(a, op.tensor([0])), /embedding: ids must be int32, got float32\[1\]/],
    ['crossEntropy targets', () => op.crossEntropy(a, op.tensor(new Int32Array([0, 1, 2]))), /crossEntropy: targets \[3\] must match logits \[2, 3\] without the last axis/],
    ['crossEntropy target range', () => op.crossEntropy(a, op.tensor(new Int32Array([0, 3]))), /crossEntropy: id 3 at position 1 is outside \[0, 3\)/],
    ['rmsNorm weight', () => op.rmsNorm(a, op.ones([2]), 1e-6), /rmsNorm: weight \[2\] must be \[3\]/],
    ['layerNorm bias', () => op.layerNorm(a, null, op.ones([2])), /layerNorm: bias \[2\] must be \[3\]/],
    ['dropout p', () => op.dropout(a, 1, 0), /dropout: p must be in \[0, 1\), got 1/],
    ['adamw shapes', () => op.adamwUpdate(a, op.ones([3]), a, a, { lr: 1, beta1: 0.9, beta2: 0.9, eps: 1e-8, weightDecay: 0, bc1: 1, bc2: 1 }), /adamwUpdate: grad float32\[3\] must match float32\[2, 3\]/],
    ['unary on int32', () => op.exp(op.arange(3)), /exp: x must be a float tensor, got int32\[3\]/],
    ['mixed float dtypes', () => op.add(op.ones([1], { dtype: 'float64', backend: backend('reference') }), op.ones([1], { dtype: 'float32', backend: backend('reference') })), /add: dtypes float64 and float32 do not mix; cast one first/],
  ];
  for (const [name, fn, re] of cases) {
    test(name, () => { op.tidy(() => { assert.throws(fn, re); }); });
  }
  test('an unknown backend lists the known ones', () => {
    assert.throws(() => op.withBackend('tpu', () => 0), /unknown backend 'tpu' \(known: reference, native, webgpu\)/);
  });
});

describe('matmul shapes follow NumPy', () => {
  const shapes: [number[], number[], number[]][] = [
    [[4], [4], []],
    [[4], [4, 5], [5]],
    [[3, 4], [4], [3]],
    [[2, 3, 4], [4], [2, 3]],
    [[4], [2, 4, 5], [2, 5]],
    [[2, 1, 3, 4], [1, 5, 4, 2], [2, 5, 3, 2]],
    [[3, 0], [0, 2], [3, 2]],
  ];
  for (const [sa, sb, want] of shapes) {
    test(`${JSON.stringify(sa)}·${JSON.stringify(sb)} → ${JSON.stringify(want)}`, () => op.tidy(() => {
      const y = op.matmul(op.ones(sa), op.ones(sb));
      assert.deepEqual(y.shape, want);
      const k = sa[sa.length - 1];
      assert.ok(Array.from(y.dataSync()).every((v) => v === k));
    }));
  }
});
