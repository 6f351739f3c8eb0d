// The native backend: the reference backend's storage and bookkeeping, with its float32 kernels
// replaced by the C addon's (AVX-512 / AVX2 / portable C, chosen at run time). A kernel the addon
// lacks falls through to the reference twin, which the tests compare it against.
import type { MatmulParams, Storage } from '../../core/backend.ts';
import { ReferenceBackend } from '../reference/backend.ts';
import type { CpuStorage } from '../cpu/memory.ts';
import type { NativeAddon } from './addon.ts';

const f32 = (s: Storage): Float32Array => (s as CpuStorage).data as Float32Array;
const isF32 = (...ss: Storage[]): boolean => ss.every((s) => s.dtype === 'float32');

export class NativeBackend extends ReferenceBackend {
  override readonly name = 'native';
  override readonly supportsFloat64 = false;

  constructor(readonly addon: NativeAddon) { super(); }

  setThreads(n: number): void { this.addon.setThreads(n); }
  threads(): number { return this.addon.getThreads(); }

  override matmul(a: Storage, b: Storage, out: Storage, p: MatmulParams): void {
    if (!isF32(a, b, out)) return super.matmul(a, b, out, p);
    this.addon.sgemm(p.batch, p.m, p.n, p.k, p.transA, p.transB,
      f32(a), p.aOffset, p.aBatchStride, p.transA ? p.m : p.k,
      f32(b), p.bOffset, p.bBatchStride, p.transB ? p.k : p.n,
      f32(out), p.cOffset, p.cBatchStride, p.n, p.accumulate);
  }
}
