// splitHeads / mergeHeads (src/ops/heads.ts): the fused projections' head layouts. Float64 gradient
// checks on the reference backend (every part used, some parts unused, a part used twice), equality
// with the composite they replace (reshape + permute, rotary splitting heads), and argument errors.
// Native against the reference: test/native-vs-reference.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as op from '../src/index.ts';
import type { Tensor } from '../src/index.ts';
import { gradcheck, randTensor, withBackend } from './helpers.ts';

let seed = 700;
const x = (shape: number[]): Tensor => randTensor(shape, { seed: seed++, requiresGrad: true });
const c = (shape: number[]): Tensor => randTensor(shape, { seed: seed++ });
const flat = (ts: Tensor[]): Tensor => op.concat(ts.map((t) => op.flatten(t)));

// q and k rotated (2 heads of 4), v (2 heads of 4), LRR-like logits (2 heads of 1), r (1 head of 4, rotated).
const parts: op.HeadsPart[] = [{ heads: 2, dim: 4, rotate: true }, { heads: 2, dim: 4, rotate: true }, { heads: 2, dim: 4 }, { heads: 2, dim: 1 }, { heads: 1, dim: 4, rotate: true }];
const C = 2 * 4 * 3 + 2 + 4;

function gc(name: string, fn: (...xs: Tensor[]) => Tensor, make: () => Tensor[]): void {
  test(name, () => withBackend('reference', () => {
    const inputs = make();
    try { gradcheck(fn, inputs); } finally { op.dispose(inputs); for (const t of inputs) t.grad?.dispose(); }
  }));
}

describe('splitHeads', () => {
  gc('every part, rotated and plain, with an offset', (y, cs, sn) => flat(op.splitHeads(y, parts, { cos: cs, sin: sn, offset: 2 })), () => [x([2, 3, C]), c([6, 2]), c([6, 2])]);
  gc('one part used: the others get zero gradient', (y, cs, sn) => op.splitHeads(y, parts, { cos: cs, sin: sn })[1], () => [x([2, 3, C]), c([3, 2]), c([3, 2])]);
  gc('a part used twice, another unused', (y, cs, sn) => {
    const [q, , v] = op.splitHeads(y, parts, { cos: cs, sin: sn, offset: 1 });
    return op.add(op.mul(q, q), op.mul(q, v));
  }, () => [x([1, 4, C]), c([5, 2]), c([5, 2])]);
  gc('no rotation, no tables', (y) => flat(op.splitHeads(y, [{ heads: 3, dim: 2 }, { heads: 1, dim: 5 }])), () => [x([2, 3, 11])]);

  test('the unused columns of a reused gradient buffer are zeroed (pooled storage is dirty)', () => withBackend('reference', () => {
    // Fill the pool with non-zero storages of the gradient's size, then take the gradient of one part.
    for (let i = 0; i < 3; i++) op.full([2, 3, C], 7, { dtype: 'float64' }).dispose();
    const y = x([2, 3, C]);
    op.tidy(() => { op.sum(op.splitHeads(y, parts, { cos: c([3, 2]), sin: c([3, 2]) })[2]).backward(); });
    const g = y.grad!.dataSync();
    for (let r = 0; r < 6; r++) {
      for (let j = 0; j < C; j++) assert.equal(g[r * C + j], j >= 16 && j < 24 ? 1 : 0, `grad[${r}, ${j}]`);
    }
    y.grad!.dispose(); y.dispose();
  }));

  test('equals the composite: rotary splitting heads, reshape + permute', () => withBackend('reference', () => op.tidy(() => {
    const y = c([3, 5, C]), cs = c([8, 2]), sn = c([8, 2]);
    const got = op.splitHeads(y, parts, { cos: cs, sin: sn, offset: 3 });
    let at = 0;
    parts.forEach((p, i) => {
      const block = op.slice(y, 2, at, at + p.heads * p.dim);
      at += p.heads * p.dim;
      const want = p.rotate ? op.rotary(block, cs, sn, { heads: p.heads, offset: 3 }) : op.permute(op.reshape(block, [3, 5, p.heads, p.dim]), [0, 2, 1, 3]);
      assert.deepEqual(got[i].shape, [3, p.heads, 5, p.dim]);
      assert.deepEqual(Array.from(got[i].dataSync()), Array.from(want.dataSync()), `part ${i}`);
    });
  })));

  test('without grad mode it records nothing', () => withBackend('reference', () => {
    const y = x([1, 2, 11]);
    const outs = op.noGrad(() => op.splitHeads(y, [{ heads: 1, dim: 5 }, { heads: 3, dim: 2 }]));
    assert.ok(outs.every((t) => t.node === null && !t.requiresGrad));
    op.dispose(outs); y.dispose();
  }));

  test('bad arguments are one-line errors naming them', () => withBackend('reference', () => op.tidy(() => {
    const y = c([1, 2, 8]), cs = c([4, 2]), sn = c([4, 2]);
    assert.throws(() => op.splitHeads(y, [{ heads: 1, dim: 4 }]), /cover 4 columns but y \[1, 2, 8\] has 8/);
    assert.throws(() => op.splitHeads(y, [{ heads: 2, dim: 4, rotate: true }]), /rotates but no cos\/sin/);
    assert.throws(() => op.splitHeads(y, [{ heads: 1, dim: 2, rotate: true }, { heads: 1, dim: 6 }], { cos: cs, sin: sn }), /part 0 has dim 2 but the tables/);
    assert.throws(() => op.splitHeads(y, [{ heads: 2, dim: 4, rotate: true }], { cos: cs, sin: sn, offset: 3 }), /exceed the tables' 4 rows/);
    assert.throws(() => op.splitHeads(op.reshape(y, [2, 8]), [{ heads: 2, dim: 4 }]), /must be \(B, T, C\)/);
    assert.throws(() => op.splitHeads(y, [{ heads: 0, dim: 4 }]), /part 0 needs positive integer heads/);
  })));
});

describe('mergeHeads', () => {
  gc('gradient', (t) => op.mergeHeads(t), () => [x([2, 3, 4, 5])]);
  test('equals permute + reshape', () => withBackend('reference', () => op.tidy(() => {
    const t = c([2, 3, 4, 5]);
    assert.deepEqual(Array.from(op.mergeHeads(t).dataSync()), Array.from(op.reshape(op.permute(t, [0, 2, 1, 3]), [2, 4, 15]).dataSync()));
  })));
});
