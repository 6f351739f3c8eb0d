// Memory of a training loop: a small MLP-ish language model (embedding → matmul → rmsNorm → silu →
// matmul → crossEntropy) trained for 100 steps of tidy(forward + backward) and in-place AdamW.
// After warm-up the pool must serve every allocation (bytesAllocated exactly flat from step 10 to
// step 100) and each step must hand back everything it took (bytesInUse back to its baseline).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as op from '../src/index.ts';
import { Rng, type Tensor } from '../src/index.ts';
import { backend, nativeTestOptions, requireNative, withBackend } from './helpers.ts';

const V = 61, D = 24, H = 40, N = 36; // vocab, model dim, hidden dim, tokens per batch

function trainLoop(name: string): void {
  withBackend(name, () => {
    const be = backend(name);
    const rng = new Rng(5);
    const param = (shape: number[], std: number, nm: string): Tensor => op.randn(shape, { rng, std, requiresGrad: true, name: nm });
    const params = [param([V, D], 1, 'embedding'), param([D, H], 1 / Math.sqrt(D), 'w1'), op.ones([H], { requiresGrad: true, name: 'norm' }), param([H, V], 1 / Math.sqrt(H), 'w2')];
    const [emb, w1, g, w2] = params;
    const moments = params.map((p) => [op.zeros(p.shape), op.zeros(p.shape)] as const);
    const baseline = be.memory().bytesInUse;

    const losses: number[] = [];
    const allocatedAt = new Map<number, number>();
    const peakAt = new Map<number, number>();
    for (let step = 1; step <= 100; step++) {
      be.resetPeak();
      op.tidy(() => {
        // A fresh batch each step (same shapes): next-token pairs from a fixed random walk, with
        // a few targets ignored.
        const ids = new Int32Array(N), targets = new Int32Array(N);
        for (let i = 0; i < N; i++) { ids[i] = rng.int(V); targets[i] = i % 11 === 10 ? -100 : (ids[i] * 7 + 3) % V; }
        const h = op.embedding(emb, op.tensor(ids));
        const a = op.silu(op.rmsNorm(op.matmul(h, w1), g));
        const loss = op.crossEntropy(op.matmul(a, w2), op.tensor(targets));
        losses.push(loss.item());
        loss.backward();
      });
      op.noGrad(() => {
        const bc1 = 1 - 0.9 ** step, bc2 = 1 - 0.999 ** step;
        params.forEach((p, i) => {
          assert.ok(p.grad, `${p.name} has a gradient at step ${step}`);
          op.adamwUpdate(p, p.grad, moments[i][0], moments[i][1], { lr: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, bc1, bc2 });
          p.grad.dispose();
          p.grad = null;
        });
      });
      assert.equal(be.memory().bytesInUse, baseline, `${name}: bytesInUse after step ${step} is not back to its baseline`);
      allocatedAt.set(step, be.memory().bytesAllocated);
      peakAt.set(step, be.memory().peakBytesInUse);
    }
    assert.equal(allocatedAt.get(100), allocatedAt.get(10), `${name}: bytesAllocated grew between step 10 and step 100`);
    assert.equal(peakAt.get(100), peakAt.get(10), `${name}: a step's peak bytesInUse changed between step 10 and step 100`);
    // The loop trains: the target is a fixed function of the input token.
    const first = losses.slice(0, 5).reduce((s, x) => s + x) / 5, last = losses.slice(-5).reduce((s, x) => s + x) / 5;
    assert.ok(Number.isFinite(last) && last < 0.5 * first, `${name}: loss went from ${first.toFixed(3)} to ${last.toFixed(3)}`);
    op.dispose([params, moments.flat()]);
    assert.equal(be.memory().bytesInUse, baseline - params.concat(moments.flat()).reduce((s, t) => s + 4 * t.size, 0), `${name}: disposing the model did not return its bytes`);
  });
}

describe('memory of a training loop', () => {
  test('reference backend', () => trainLoop('reference'));
  test('native backend', nativeTestOptions(), () => { requireNative(); trainLoop('native'); });
});
