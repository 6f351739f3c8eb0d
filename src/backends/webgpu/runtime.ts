// The WebGPU runtime under the webgpu backend: device buffers with a size-keyed pool, kernels
// (WGSL compute shaders) recorded many to a command submission, and reads that are the only points
// where the host waits for the GPU. No Node.js module is imported here: the same code runs in
// browsers (navigator.gpu) and in Node (the `webgpu` package, see ./node.ts).
//
// A kernel's bindings follow one convention, so a kernel is a WGSL string and a list of buffers:
//   @group(0) @binding(0..n-1)  storage buffers, in the order given to run(); `read` or `read_write`
//   @group(0) @binding(n)       var<uniform> p: Params  — 4-byte fields, filled from a ParamWriter
// Pipelines are cached by their WGSL text.
import type { MemoryStats, Storage } from '../../core/backend.ts';
import type { DType, TypedArray } from '../../core/dtype.ts';

/* eslint-disable no-bitwise */

// Buffer usage flags (GPUBufferUsage), spelled out so this file needs no WebGPU globals at load.
const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const MAP_MODE_READ = 0x1;
const SHADER_STAGE_COMPUTE = 0x4;

/** A device buffer holding `length` values of `dtype` (float32 or int32: WGSL has no float64). */
export class GpuStorage implements Storage {
  refs = 1;
  constructor(readonly buffer: GPUBuffer, readonly dtype: DType, readonly length: number, readonly bytes: number) {}
}

/** How a kernel uses each storage it binds. */
export type Access = 'read' | 'read_write';

/** A compiled kernel: the WGSL text, its storage accesses in binding order, and the pipeline. */
export interface Kernel {
  readonly name: string;
  readonly access: readonly Access[];
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
}

/** The uniform block of one dispatch, written field by field in the WGSL struct's order. */
export class ParamWriter {
  private readonly words: ArrayBuffer;
  private readonly u: Uint32Array;
  private readonly i: Int32Array;
  private readonly f: Float32Array;
  private n = 0;
  constructor(capacityWords = 64) {
    this.words = new ArrayBuffer(capacityWords * 4);
    this.u = new Uint32Array(this.words); this.i = new Int32Array(this.words); this.f = new Float32Array(this.words);
  }
  /** An unsigned 32-bit field (sizes, offsets, flags). */
  u32(...vs: number[]): this { for (const v of vs) this.u[this.n++] = v >>> 0; return this; }
  /** A signed 32-bit field. */
  i32(...vs: number[]): this { for (const v of vs) this.i[this.n++] = v | 0; return this; }
  /** A float32 field. */
  f32(...vs: number[]): this { for (const v of vs) this.f[this.n++] = v; return this; }
  get byteLength(): number { return this.n * 4; }
  bytes(): Uint8Array { return new Uint8Array(this.words, 0, Math.max(this.n, 1) * 4); }
}

/** The device's limits this runtime plans with (what it requested from the adapter). */
export interface RuntimeLimits {
  maxStorageBufferBindingSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupsPerDimension: number;
  maxStorageBuffersPerShaderStage: number;
  minUniformBufferOffsetAlignment: number;
}

/** CUBIT_WEBGPU_DEBUG=1 (Node) logs each dispatch and submits it at once, to find a failing kernel. */
const DEBUG = typeof process !== 'undefined' && process.env?.CUBIT_WEBGPU_DEBUG === '1';

// Uniform blocks of the dispatches of one submission live side by side in one buffer, at offsets
// aligned to the device's minimum; when it fills up the submission is flushed.
const UNIFORM_SLOT_BYTES = 256;
const UNIFORM_BUFFER_BYTES = 1 << 20;
/** Dispatches per submission before a flush: keeps command buffers small and the GPU busy. */
const MAX_DISPATCHES_PER_SUBMIT = 512;

export class GpuRuntime {
  readonly limits: RuntimeLimits;
  /** Number of read-backs (each one waits for the GPU). */
  hostReads = 0;
  /** Kernels dispatched so far (a counter for benchmarks and tests). */
  dispatches = 0;
  private readonly kernels = new Map<string, Kernel>();
  private readonly pool = new Map<number, GPUBuffer[]>();
  private inUse = 0;
  private allocated = 0;
  private peak = 0;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pending = 0;
  private uniformStaging = new Uint8Array(UNIFORM_BUFFER_BYTES);
  private uniformUsed = 0;
  private uniforms: GPUBuffer | null = null;
  private readonly slot: number;
  private lostReason: string | null = null;
  private uncaptured: string | null = null;

  constructor(readonly device: GPUDevice, readonly features: ReadonlySet<string>) {
    const l = device.limits;
    this.limits = {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      minUniformBufferOffsetAlignment: l.minUniformBufferOffsetAlignment,
    };
    this.slot = Math.max(UNIFORM_SLOT_BYTES, l.minUniformBufferOffsetAlignment);
    void device.lost.then((info) => { this.lostReason = `the GPU device was lost (${info.reason}): ${info.message}`; });
    device.addEventListener?.('uncapturederror', (e) => {
      const err = (e as GPUUncapturedErrorEvent).error;
      if (!this.uncaptured) this.uncaptured = err.message;
    });
  }

  has(feature: string): boolean { return this.features.has(feature); }

  // ---- memory ----

  /** A pooled device buffer for `length` values (4 bytes each; at least 4 bytes, WebGPU has no empty bindings). */
  alloc(dtype: DType, length: number): GpuStorage {
    if (dtype === 'float64') throw new Error("the webgpu backend has no float64 (WGSL has no 64-bit floats): use float32, or the 'reference' backend for float64");
    const bytes = Math.max(4, length * 4);
    if (bytes > this.limits.maxStorageBufferBindingSize) {
      throw new RangeError(`webgpu: a tensor of ${length} values (${bytes} bytes) exceeds this device's largest storage binding (${this.limits.maxStorageBufferBindingSize} bytes)`);
    }
    // The size class, but never past the largest binding: the whole buffer is bound, and a class
    // rounded up past the limit (a tensor of 1.75–2 GiB where the limit is 2 GiB − 4) could not be.
    const size = Math.min(bucket(bytes), this.limits.maxStorageBufferBindingSize - (this.limits.maxStorageBufferBindingSize % 4));
    const buffer = this.pool.get(size)?.pop() ?? this.createBuffer(size);
    this.inUse += size;
    if (this.inUse > this.peak) this.peak = this.inUse;
    return new GpuStorage(buffer, dtype, length, size);
  }

  private createBuffer(size: number): GPUBuffer {
    this.allocated += size;
    return this.device.createBuffer({ size, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST });
  }

  /**
   * Back to the pool at once: a kernel recorded earlier that still reads it runs before any later
   * kernel that reuses it (dispatches run in order), and write() flushes before it writes.
   */
  release(s: GpuStorage): void {
    this.inUse -= s.bytes;
    this.pooled(s.bytes).push(s.buffer);
  }

  private pooled(size: number): GPUBuffer[] {
    let list = this.pool.get(size);
    if (!list) { list = []; this.pool.set(size, list); }
    return list;
  }

  /** Destroys the pooled buffers (memory goes back to the device). */
  trim(): void {
    this.flush();
    for (const [size, list] of this.pool) { for (const b of list) b.destroy(); this.allocated -= size * list.length; }
    this.pool.clear();
  }

  stats(): MemoryStats { return { bytesInUse: this.inUse, bytesAllocated: this.allocated, peakBytesInUse: this.peak }; }
  resetPeak(): void { this.peak = this.inUse; }

  /** Host values into s at `offset` (queued behind every kernel recorded so far). */
  write(s: GpuStorage, values: ArrayLike<number>, offset = 0): void {
    if (offset + values.length > s.length) throw new RangeError(`write: ${values.length} values at ${offset} overflow a storage of ${s.length}`);
    if (values.length === 0) return;
    const data = s.dtype === 'int32' ? Int32Array.from(values) : Float32Array.from(values);
    this.flush();
    this.device.queue.writeBuffer(s.buffer, offset * 4, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Copies `length` values of each region to the host in one submission; the only wait on the GPU. */
  async readMany(regions: readonly { s: GpuStorage; offset: number; length: number }[]): Promise<TypedArray[]> {
    this.hostReads++;
    this.checkAlive();
    let total = 0;
    const at = regions.map((r) => { const o = total; total += Math.max(4, r.length * 4); return o; });
    const staging = this.device.createBuffer({ size: Math.max(4, total), usage: USAGE.MAP_READ | USAGE.COPY_DST });
    const enc = this.beginEncoder();
    this.endPass();
    regions.forEach((r, i) => { if (r.length > 0) enc.copyBufferToBuffer(r.s.buffer, r.offset * 4, staging, at[i], r.length * 4); });
    this.flush();
    try {
      await staging.mapAsync(MAP_MODE_READ);
    } catch (e) {
      this.checkAlive();
      throw e;
    }
    const bytes = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    this.checkAlive();
    return regions.map((r, i) => (r.s.dtype === 'int32' ? new Int32Array(bytes, at[i], r.length) : new Float32Array(bytes, at[i], r.length)));
  }

  private checkAlive(): void {
    if (this.lostReason) throw new Error(this.lostReason);
    if (this.uncaptured) { const m = this.uncaptured; this.uncaptured = null; throw new Error(`webgpu: ${m}`); }
  }

  // ---- kernels ----

  /**
   * The kernel compiled from `wgsl` (cached by its text), whose storage bindings 0…n−1 have the
   * given accesses and whose binding n is the Params uniform (when `uniform` is true).
   */
  kernel(name: string, wgsl: string, access: readonly Access[], uniform = true): Kernel {
    const key = wgsl;
    let k = this.kernels.get(key);
    if (!k) {
      unusedBindings(name, wgsl);
      const entries: GPUBindGroupLayoutEntry[] = access.map((a, i) => ({
        binding: i, visibility: SHADER_STAGE_COMPUTE, buffer: { type: a === 'read' ? 'read-only-storage' : 'storage' },
      }));
      if (uniform) entries.push({ binding: access.length, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'uniform' } });
      const layout = this.device.createBindGroupLayout({ label: name, entries });
      const module = this.device.createShaderModule({ label: name, code: wgsl });
      const pipeline = this.device.createComputePipeline({
        label: name, layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: 'main' },
      });
      k = { name, access, pipeline, layout };
      this.kernels.set(key, k);
    }
    return k;
  }

  /**
   * Records one dispatch of `k` over `workgroups` (x, y, z) with `storages` bound in order and
   * `params` as its uniform. A storage bound both read-only and writable in one dispatch (an op
   * run in place) is read through a copy, since WebGPU forbids that aliasing.
   */
  run(k: Kernel, storages: readonly GpuStorage[], params: ParamWriter | null, workgroups: readonly [number, number?, number?]): void {
    if (storages.length !== k.access.length) throw new Error(`webgpu kernel ${k.name}: ${storages.length} storages for ${k.access.length} bindings`);
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) throw new Error(`webgpu kernel ${k.name}: ${x}×${y}×${z} workgroups exceed ${max} per dimension`);
    let bound = storages;
    const temps: GpuStorage[] = [];
    const written = new Set(storages.filter((_, i) => k.access[i] === 'read_write').map((s) => s.buffer));
    if (written.size > 0 && storages.some((s, i) => k.access[i] === 'read' && written.has(s.buffer))) {
      bound = storages.map((s, i) => {
        if (k.access[i] !== 'read' || !written.has(s.buffer)) return s;
        const t = this.alloc(s.dtype, s.length);
        this.copyBuffer(s, 0, t, 0, s.length);
        temps.push(t);
        return t;
      });
    }
    if (params && this.uniformUsed + this.slot > UNIFORM_BUFFER_BYTES) this.flush();
    const entries: GPUBindGroupEntry[] = bound.map((s, i) => ({ binding: i, resource: { buffer: s.buffer, size: s.bytes } }));
    if (params) {
      const at = this.uniformUsed;
      this.uniformStaging.set(params.bytes(), at);
      this.uniformUsed += this.slot;
      entries.push({ binding: bound.length, resource: { buffer: this.uniformBuffer(), offset: at, size: Math.max(16, roundUp(params.byteLength, 16)) } });
    }
    if (DEBUG) console.error(`webgpu: ${k.name} [${storages.map((s) => s.length).join(', ')}] ${x}×${y}×${z}`);
    const group = this.device.createBindGroup({ layout: k.layout, entries });
    const pass = this.beginPass();
    pass.setPipeline(k.pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
    this.dispatches++;
    for (const t of temps) this.release(t);
    if (++this.pending >= MAX_DISPATCHES_PER_SUBMIT || DEBUG) this.flush();
  }

  /** A buffer-to-buffer copy recorded in order with the kernels (lengths in 4-byte values). */
  copyBuffer(src: GpuStorage, srcOffset: number, dst: GpuStorage, dstOffset: number, length: number): void {
    if (length <= 0) return;
    const enc = this.beginEncoder();
    this.endPass();
    enc.copyBufferToBuffer(src.buffer, srcOffset * 4, dst.buffer, dstOffset * 4, length * 4);
  }

  /** Submits what has been recorded (the GPU starts on it; nothing waits). */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.uniformUsed > 0) {
      this.device.queue.writeBuffer(this.uniformBuffer(), 0, this.uniformStaging.buffer, 0, this.uniformUsed);
    }
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.pending = 0;
    this.uniformUsed = 0;
    // Queue order (this submission's dispatches before the next writeBuffer) lets the next
    // submission reuse the same uniform buffer.
  }

  /** Waits until the GPU has finished everything submitted (benchmarks). */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.checkAlive();
  }

  private uniformBuffer(): GPUBuffer {
    this.uniforms ??= this.device.createBuffer({ size: UNIFORM_BUFFER_BYTES, usage: USAGE.UNIFORM | USAGE.COPY_DST });
    return this.uniforms;
  }

  private beginEncoder(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }

  private beginPass(): GPUComputePassEncoder {
    if (!this.pass) this.pass = this.beginEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) { this.pass.end(); this.pass = null; }
  }
}

function roundUp(n: number, m: number): number { return Math.ceil(n / m) * m; }

/**
 * Pool size classes: exact below 64 KiB (rounded to 256 bytes), else the next of four steps per
 * power of two (at most 19% slack), so training's varied sizes share buffers.
 */
export function bucket(bytes: number): number {
  if (bytes <= 65536) return roundUp(bytes, 256);
  const p = 2 ** Math.floor(Math.log2(bytes));
  const step = p / 4;
  return roundUp(bytes, step);
}

/**
 * A 1-D launch of `count` threads in workgroups of `size`, folded into two dimensions when it
 * passes the per-dimension limit. The kernel recovers its index with `linearIndex` (wgsl.ts).
 */
export function grid1d(count: number, size: number, maxPerDim = 65535): [number, number] {
  const groups = Math.ceil(count / size);
  if (groups <= maxPerDim) return [groups, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y];
}

/**
 * Fails when a declared binding is never used: the shader compiler drops it, and a bind group
 * entry for a dropped binding crashes some drivers (seen on Mesa lavapipe), so kernels bind only
 * what they read or write.
 */
function unusedBindings(name: string, wgsl: string): void {
  for (const m of wgsl.matchAll(/@binding\(\d+\)\s*var(?:<[^>]*>)?\s+(\w+)/g)) {
    const uses = wgsl.match(new RegExp(`\\b${m[1]}\\b`, 'g'))?.length ?? 0;
    if (uses < 2) throw new Error(`webgpu kernel ${name}: binding '${m[1]}' is declared but never used`);
  }
}
