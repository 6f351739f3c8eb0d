// The webgpu attention kernels (src/backends/webgpu/kernels/attention.ts) against their dense
// float64 reference twins (attentionRef / attentionBackwardRef), at the kernel level on the same
// float32 inputs, for what the conformance suite's shapes leave out: T not a multiple of the
// 64-row workgroups or of the staged tiles (67, 300), a sliding window together with packed and
// recurring document ids, rows read as vec4 (D = 8, 12, 16) and as scalars (D = 1, 3, 5, 7, 17),
// the unrolled code and the looped code of D > 128 (forced at small D: a software adapter takes
// minutes to compile a large D), dK/dV with one or two threads per key, several (b, h) blocks,
// and the saved log-sum-exp rows. Tolerance: relErr ≤ 1e-4, as for the
// native kernels (float32 products, no T×T intermediate).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MixerDims, Storage } from '../src/core/backend.ts';
import { Rng } from '../src/core/random.ts';
import { backendByName } from '../src/index.ts';
import { attentionBackwardRef, attentionRef } from '../src/backends/reference/mixers.ts';
import type { WebGPUBackend } from '../src/backends/webgpu/backend.ts';
import { attentionCodegen } from '../src/backends/webgpu/kernels/attention.ts';
import { relErr } from './helpers.ts';
import { webgpuUnavailable } from './webgpu-helpers.ts';

const TOL = 1e-4;

interface Case {
  B: number; H: number; T: number; D: number; window: number; docs: 'none' | 'runs' | 'mixed'; seed: number;
  /** Code generation options: the looped code that rows longer than 128 use (here at small D), split dK/dV threads. */
  codegen?: Partial<typeof attentionCodegen>;
}

const cases: Case[] = [
  { B: 1, H: 1, T: 67, D: 3, window: 0, docs: 'none', seed: 1 },
  { B: 2, H: 2, T: 300, D: 17, window: 0, docs: 'none', seed: 2 },
  { B: 1, H: 3, T: 300, D: 16, window: 0, docs: 'none', seed: 3 },
  { B: 2, H: 1, T: 300, D: 8, window: 45, docs: 'none', seed: 4 },
  { B: 2, H: 2, T: 300, D: 5, window: 70, docs: 'runs', seed: 5 },
  { B: 2, H: 1, T: 131, D: 12, window: 33, docs: 'mixed', seed: 6 },
  { B: 1, H: 2, T: 97, D: 1, window: 0, docs: 'runs', seed: 7 },
  { B: 1, H: 1, T: 70, D: 12, window: 20, docs: 'none', seed: 8, codegen: { unrollVecs: 0 } },
  { B: 2, H: 1, T: 90, D: 7, window: 0, docs: 'mixed', seed: 10, codegen: { unrollVecs: 0, splitKeys: true } },
  { B: 2, H: 2, T: 300, D: 16, window: 0, docs: 'none', seed: 11, codegen: { splitKeys: true } },
  { B: 2, H: 1, T: 131, D: 5, window: 40, docs: 'runs', seed: 12, codegen: { splitKeys: true } },
  { B: 3, H: 1, T: 64, D: 16, window: 1, docs: 'none', seed: 9 },
];

/** Document ids (B, T): runs of random lengths, or ids recurring after another document. */
function docIds(c: Case, rng: Rng): Int32Array | null {
  if (c.docs === 'none') return null;
  const ids = new Int32Array(c.B * c.T);
  for (let b = 0; b < c.B; b++) {
    let id = 0, left = 1 + Math.floor(rng.next() * 60);
    for (let t = 0; t < c.T; t++) {
      if (c.docs === 'mixed') { ids[b * c.T + t] = [3, 3, 8, 3, 8, 1, 8][Math.floor(rng.next() * 7)]; continue; }
      if (left-- === 0) { id++; left = Math.floor(rng.next() * 60); }
      ids[b * c.T + t] = id;
    }
  }
  return ids;
}

/** One case: forward, then backward from g, each output against the reference. */
async function run(c: Case): Promise<void> {
  const be = backendByName('webgpu') as WebGPUBackend;
  const rng = new Rng(c.seed);
  const n = c.B * c.H * c.T * c.D, rows = c.B * c.H * c.T;
  const normal = (): Float32Array => Float32Array.from({ length: n }, () => rng.normal());
  const [q, k, v, g] = [normal(), normal(), normal(), normal()];
  const ids = docIds(c, rng);
  const scale = 1 / Math.sqrt(c.D);
  const dev = (x: Float32Array | Int32Array): Storage => {
    const s = be.alloc(x instanceof Int32Array ? 'int32' : 'float32', x.length);
    be.write(s, x);
    return s;
  };
  const made: Storage[] = [];
  const keep = (s: Storage): Storage => { made.push(s); return s; };
  const docsS = ids ? keep(dev(ids)) : null;
  const dims: MixerDims = { B: c.B, H: c.H, T: c.T, D: c.D, window: c.window, docIds: docsS };
  const [qS, kS, vS, gS] = [q, k, v, g].map((x) => keep(dev(x)));
  const [outS, dqS, dkS, dvS] = [0, 1, 2, 3].map(() => keep(be.alloc('float32', n)));
  const saved = be.attention(qS, kS, vS, outS, scale, dims);
  const out = await be.read(outS, 0, n) as Float32Array;
  const lse = await be.read(saved.storages[0], 0, rows);
  be.attentionBackward(qS, kS, vS, outS, saved, gS, scale, dqS, dkS, dvS, dims);
  const [dq, dk, dv] = await Promise.all([dqS, dkS, dvS].map((s) => be.read(s, 0, n)));
  for (const s of [...made, ...saved.storages]) be.free(s);

  const refDims: MixerDims = { ...dims, docIds: null };
  const want = { out: new Float64Array(n), lse: new Float64Array(rows), dq: new Float64Array(n), dk: new Float64Array(n), dv: new Float64Array(n) };
  attentionRef(q, k, v, want.out, want.lse, scale, refDims, ids);
  // The backward reference gets the webgpu forward's out, as the kernels do.
  attentionBackwardRef(q, k, v, out, want.lse, g, scale, want.dq, want.dk, want.dv, refDims, ids);
  const got = { out, lse, dq, dk, dv };
  for (const name of ['out', 'lse', 'dq', 'dk', 'dv'] as const) {
    const e = relErr(got[name], want[name]);
    assert.ok(e <= TOL, `${name}: relErr ${e.toExponential(2)} > ${TOL}`);
  }

}

const why = await webgpuUnavailable();

describe('webgpu attention kernels against the float64 reference', { skip: why ?? undefined }, () => {
  for (const c of cases) {
    test(`B=${c.B} H=${c.H} T=${c.T} D=${c.D} window=${c.window} docs=${c.docs}${c.codegen ? ` ${JSON.stringify(c.codegen)}` : ''}`, async () => {
      const before = { ...attentionCodegen };
      Object.assign(attentionCodegen, c.codegen ?? {});
      try { await run(c); } finally { Object.assign(attentionCodegen, before); }
    });
  }

  test('a head dimension past the kernels\' limit is refused with a clear error', () => {
    const be = backendByName('webgpu') as WebGPUBackend;
    const s = be.alloc('float32', 1025);
    try {
      assert.throws(() => be.attention(s, s, s, s, 1, { B: 1, H: 1, T: 1, D: 1025, window: 0, docIds: null }), /head dimension 1025 exceeds/);
    } finally { be.free(s); }
  });
});
