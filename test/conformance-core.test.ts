// The conformance suite (conformance.ts) with every fused kernel switched off: the CPU backends seen
// through their core kernels only, so each op runs its composite (the reference itself is the
// suite's oracle, checked in float64 by the gradient and golden tests). This is what a backend that
// implements only the core (CoreBackend) runs: it must pass the same cases, and train a whole model
// to the same loss and gradients.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { registerBackend } from '../src/core/engine.ts';
import { coreOnly } from '../src/backends/core-only.ts';
import { Decoder } from '../src/models/decoder.ts';
import { tensor, tidy, withBackend } from '../src/index.ts';
import { backend, nativeTestOptions, relErr, requireNative } from './helpers.ts';
import { conformance } from './conformance.ts';

registerBackend('reference-core', () => coreOnly(backend('reference')));
registerBackend('native-core', () => coreOnly(backend('native')));
conformance('reference-core', { composites: true });
conformance('native-core', { composites: true });

/** Loss and every parameter gradient of a 2-layer model (Cubit with LRR, then softmax) on `name`. */
async function modelStep(name: string): Promise<{ loss: number; grads: Map<string, Float64Array> }> {
  const model = withBackend(name, () => new Decoder({ vocabSize: 37, dModel: 16, nLayers: 2, nHeads: 2, mixer: ['cubit', 'softmax'] }, 5));
  try {
    const B = 2, T = 9;
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % 37);
    const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 5 === 4 ? -100 : (i * 11 + 1) % 37));
    const docIds = Int32Array.from({ length: B * T }, (_, i) => (i % T < 4 ? 0 : 1));
    const loss = withBackend(name, () => tidy(() => {
      const i32 = { dtype: 'int32' as const };
      const l = model.loss(tensor(ids, [B, T], i32), tensor(targets, [B, T], i32), { docIds: tensor(docIds, [B, T], i32) });
      l.backward();
      return l;
    }));
    const grads = new Map<string, Float64Array>();
    for (const [n, p] of model.namedParameters()) grads.set(n, Float64Array.from(await p.grad!.data()));
    const value = (await loss.data())[0];
    loss.dispose();
    return { loss: value, grads };
  } finally {
    model.dispose();
  }
}

for (const name of ['reference-core', 'native-core']) {
  test(`a Cubit + softmax model on '${name}' gives the reference's loss and gradients`, name.startsWith('native') ? nativeTestOptions() : {}, async () => {
    if (name.startsWith('native')) requireNative();
    const want = await modelStep('reference'), got = await modelStep(name);
    assert.ok(Math.abs(got.loss - want.loss) <= 1e-6 * Math.abs(want.loss), `loss ${got.loss} vs ${want.loss}`);
    for (const [n, g] of want.grads) {
      const e = relErr(got.grads.get(n)!, g);
      assert.ok(e <= 1e-5, `${n}: gradient relErr ${e.toExponential(2)}`);
    }
  });
}
