// Pooled typed-array storage shared by the CPU backends. Fresh memory is slow on these machines
// (page faults: a fresh 16 MB array costs ~5× a reused one), so freed arrays wait in a pool keyed
// by dtype and length and are handed out again for the next tensor of that size.
import type { MemoryStats, Storage } from '../../core/backend.ts';
import { arrayFor, bytesPer, type DType, type TypedArray } from '../../core/dtype.ts';

export class CpuStorage implements Storage {
  refs = 1;
  constructor(readonly data: TypedArray, readonly dtype: DType) {}
  get length(): number { return this.data.length; }
}

export class CpuPool {
  private free = new Map<string, TypedArray[]>();
  private inUse = 0;
  private allocated = 0;
  private peak = 0;
  /** Arrays smaller than this are not pooled (cheap to make; avoids many tiny lists). */
  static readonly minPooled = 64;

  alloc(dtype: DType, length: number): CpuStorage {
    const bytes = length * bytesPer(dtype);
    const list = length >= CpuPool.minPooled ? this.free.get(`${dtype}:${length}`) : undefined;
    let data = list?.pop();
    if (!data) {
      data = arrayFor(dtype, length);
      this.allocated += bytes;
    }
    this.inUse += bytes;
    if (this.inUse > this.peak) this.peak = this.inUse;
    return new CpuStorage(data, dtype);
  }

  release(s: CpuStorage): void {
    const bytes = s.length * bytesPer(s.dtype);
    this.inUse -= bytes;
    if (s.length < CpuPool.minPooled) { this.allocated -= bytes; return; }
    const key = `${s.dtype}:${s.length}`;
    let list = this.free.get(key);
    if (!list) { list = []; this.free.set(key, list); }
    list.push(s.data);
  }

  /** Drops pooled arrays (the garbage collector takes them). */
  trim(): void {
    for (const [key, list] of this.free) {
      const [dtype, len] = key.split(':');
      this.allocated -= list.length * Number(len) * bytesPer(dtype as DType);
    }
    this.free.clear();
  }

  stats(): MemoryStats {
    return { bytesInUse: this.inUse, bytesAllocated: this.allocated, peakBytesInUse: this.peak };
  }

  resetPeak(): void { this.peak = this.inUse; }
}
