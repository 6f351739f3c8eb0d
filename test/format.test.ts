// docs/FORMAT.md is exact: scripts/reference_forward.py, a float64 NumPy forward written from it
// alone (reading safetensors by hand), reproduces the TypeScript model's logits from a checkpoint
// saved by the trainer's writer, for every mixer kind and option that changes the tensors or the
// maths. Skipped (with the reason) when python3 with numpy is not installed.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { noGrad, tensor, tidy } from '../src/index.ts';
import type { ModelConfigInput } from '../src/models/config.ts';
import type { Decoder } from '../src/models/decoder.ts';
import { perturbedModel, saveRun, tmpDir } from './inference-fixtures.ts';
import { relErr } from './helpers.ts';

const SCRIPT = path.join(import.meta.dirname, '..', 'scripts', 'reference_forward.py');

function pythonSkipReason(): string | null {
  const r = spawnSync('python3', ['-c', 'import numpy; print(numpy.__version__)'], { encoding: 'utf8' });
  if (r.error) return `python3 is not installed (${(r.error as NodeJS.ErrnoException).code})`;
  if (r.status !== 0) return 'python3 has no numpy (pip install numpy)';
  return null;
}
const skip = pythonSkipReason();
const opts = skip ? { skip } : {};

const B = 2, T = 13;
const base: ModelConfigInput = { vocabSize: 61, dModel: 24, nLayers: 2, nHeads: 3, ffnHidden: 40 };
// Row 0 packs two documents (docIds 0 | 1), row 1 is one document.
const ids = Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % 61);
const docIds = Array.from({ length: B * T }, (_, i) => (i < T ? (i < 6 ? 0 : 1) : 2));

const cases: { name: string; config: ModelConfigInput }[] = [
  { name: 'softmax', config: { mixer: 'softmax' } },
  { name: 'cubit', config: { mixer: 'cubit' } },
  { name: 'cubit, shared key, LRR off, untied head', config: { mixer: 'cubit', cubit: { sharedKey: true, lrr: false }, tieEmbeddings: false } },
  { name: 'local_linear, full rank', config: { mixer: 'local_linear', localLinear: { ridge: 2 } } },
  { name: 'local_linear, rank 4', config: { mixer: 'local_linear', localLinear: { rank: 4, ridge: 0.5 } } },
  { name: 'cubit on layer 1 of 3 (cubitLayers), window 5', config: { mixer: 'cubit', nLayers: 3, cubitLayers: [1, 2], window: 5 } },
  { name: 'per-layer mixers, rotaryBase 500, normEps 1e-5', config: { mixer: ['local_linear', 'cubit', 'softmax'], nLayers: 3, rotaryBase: 500, normEps: 1e-5 } },
];

function tsLogits(model: Decoder): Float64Array {
  return noGrad(() => tidy(() => {
    const x = tensor(Int32Array.from(ids), [B, T], { dtype: 'int32' });
    const d = tensor(Int32Array.from(docIds), [B, T], { dtype: 'int32' });
    return Float64Array.from(model.forward(x, { docIds: d }).dataSync());
  }));
}

function pyLogits(run: string): Float64Array {
  const rows = (a: number[]): string => Array.from({ length: B }, (_, b) => a.slice(b * T, (b + 1) * T).join(',')).join(';');
  const out = path.join(run, 'logits.f64');
  execFileSync('python3', [SCRIPT, run, '--ids', rows(ids), '--doc-ids', rows(docIds), '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  const buf = fs.readFileSync(out);
  return new Float64Array(buf.buffer, buf.byteOffset, buf.byteLength / 8).slice();
}

describe('checkpoint format: an independent NumPy forward reproduces the logits', () => {
  for (const c of cases) {
    test(c.name, opts, async () => {
      const model = perturbedModel({ ...base, ...c.config }, 3);
      const run = tmpDir('format');
      try {
        await saveRun(run, model);
        const want = pyLogits(run);
        const got = tsLogits(model);
        assert.equal(got.length, B * T * model.config.vocabSize);
        const e = relErr(got, want);
        assert.ok(e < 1e-4, `logits relErr ${e.toExponential(2)} ≥ 1e-4`);
      } finally {
        model.dispose();
        fs.rmSync(run, { recursive: true, force: true });
      }
    });
  }

  test('cubit with negative refScale: both read α as |refScale|', opts, async () => {
    const model = perturbedModel({ ...base, mixer: 'cubit' }, 3);
    const run = tmpDir('format');
    try {
      noGrad(() => {
        for (const [name, p] of model.namedParameters()) {
          if (name.endsWith('refScale')) p.backend.write(p.storage, Float64Array.from(p.dataSync(), (v, i) => (i % 2 === 0 ? -v : v)));
        }
      });
      await saveRun(run, model);
      const e = relErr(tsLogits(model), pyLogits(run));
      assert.ok(e < 1e-4, `logits relErr ${e.toExponential(2)} ≥ 1e-4`);
    } finally {
      model.dispose();
      fs.rmSync(run, { recursive: true, force: true });
    }
  });

  test('the comparison resolves a 5% change of one per-head scalar or of one head of a projection', opts, async () => {
    const model = perturbedModel({ ...base, mixer: 'cubit' }, 3);
    const run = tmpDir('format');
    try {
      await saveRun(run, model);
      const want = pyLogits(run);
      const nudge = (name: string, pick: (i: number) => boolean): number => {
        const p = model.namedParameters().find(([n]) => n === name)![1];
        const orig = Float64Array.from(p.dataSync());
        p.backend.write(p.storage, orig.map((v, i) => (pick(i) ? v * 1.05 : v)));
        try { return relErr(tsLogits(model), want); } finally { p.backend.write(p.storage, orig); }
      };
      const Dh = 8, dModel = 24;
      for (const [name, pick] of [
        ['blocks.0.mixer.refScale', (i: number) => i === 1],
        ['blocks.0.mixer.lrrRange', (i: number) => i === 2],
        ['blocks.1.mixer.wr.weight', (i: number) => Math.floor(i / dModel) >= Dh && Math.floor(i / dModel) < 2 * Dh], // head 1's rows
      ] as const) {
        const e = nudge(name, pick);
        // At least 5× the tolerance above: such a slip in the format would fail the comparison.
        assert.ok(e > 5e-4, `${name}: a 5% change moved the logits by only ${e.toExponential(2)}`);
      }
      assert.ok(relErr(tsLogits(model), want) < 1e-4);
    } finally {
      model.dispose();
      fs.rmSync(run, { recursive: true, force: true });
    }
  });
});
