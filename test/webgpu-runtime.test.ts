// The webgpu runtime's plans at scale, exercised at small sizes by lowering its limits: a pooled
// buffer never binds past the largest storage binding, and 1-D launches past the per-dimension
// workgroup limit fold into two dimensions and still cover every element exactly once. Skips where
// no WebGPU adapter exists.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backendByName } from '../src/index.ts';
import type { WebGPUBackend } from '../src/backends/webgpu/backend.ts';
import { webgpuUnavailable } from './webgpu-helpers.ts';

const why = await webgpuUnavailable();

/** Runs `fn` with one of the runtime's limits lowered to `value`, restoring it after. */
async function withLimit<T>(be: WebGPUBackend, name: 'maxStorageBufferBindingSize' | 'maxComputeWorkgroupsPerDimension', value: number,
  fn: () => Promise<T>): Promise<T> {
  const saved = be.rt.limits[name];
  be.rt.limits[name] = value;
  try { return await fn(); } finally { be.rt.limits[name] = saved; }
}

test('a pooled buffer is never larger than the largest storage binding', { skip: why ?? false }, async () => {
  const be = backendByName('webgpu') as WebGPUBackend;
  // 17000 values = 68000 bytes, whose size class (81920) passes a 70000-byte limit.
  await withLimit(be, 'maxStorageBufferBindingSize', 70000, async () => {
    const s = be.alloc('float32', 17000);
    assert.ok(be.rt.limits.maxStorageBufferBindingSize >= (s as unknown as { bytes: number }).bytes);
    be.fill(s, 2.5, 0, 17000);
    const got = await be.read(s, 0, 17000);
    be.free(s);
    assert.ok(got.every((v) => v === 2.5));
  });
});

test('launches past the per-dimension workgroup limit fold into two dimensions', { skip: why ?? false }, async () => {
  const be = backendByName('webgpu') as WebGPUBackend;
  await withLimit(be, 'maxComputeWorkgroupsPerDimension', 16, async () => {
    // 20001 values: 79 workgroups of 256, folded to 16 × 5 (one spare workgroup, partly past the end).
    const n = 20001;
    const a = Float32Array.from({ length: n }, (_, i) => i % 97);
    const sa = be.alloc('float32', n), sb = be.alloc('float32', n), out = be.alloc('float32', n + 300);
    be.write(sa, a);
    be.write(sb, a);
    be.fill(out, -1, 0, n + 300);
    be.binary('add', sa, [1], sb, [1], out, [n]);
    const sum = await be.read(out, 0, n + 300);
    for (let i = 0; i < n; i++) assert.equal(sum[i], 2 * a[i], `add at ${i}`);
    for (let i = n; i < n + 300; i++) assert.equal(sum[i], -1, `written past the end at ${i}`);
    // 100 rows of 200: a workgroup per row, 100 workgroups folded to 15 × 7.
    const rows = be.alloc('float32', 100);
    be.reduce('sum', sa, rows, 100, 200, 1);
    const got = await be.read(rows, 0, 100);
    for (let r = 0; r < 100; r++) {
      let want = 0;
      for (let j = 0; j < 200; j++) want += a[r * 200 + j];
      assert.equal(got[r], want, `row ${r}`);
    }
    for (const s of [sa, sb, out, rows]) be.free(s);
  });
});
