// The webgpu backend: the CoreBackend contract on a GPU through WebGPU (WGSL compute shaders), and
// the fused kernels the models use. Kernels are recorded, not run: the runtime submits them in
// batches, and the host waits only in read(). There is no readSync (WebGPU cannot wait
// synchronously), so dataSync() throws and every caller reads with `await t.data()`.
// Value checks (checkValues) run as kernels that record the first failing index in a slot buffer;
// the next read returns it, and the read then throws the same error a CPU backend throws at once.
import type {
  AdamWParams, Backend, HeadsBlock, LrrGradStorages, LrrStorages, MatmulParams, MemoryStats, MixerDims, BinaryOp, ReduceOp, SavedState,
  Storage, UnaryOp, ValueRule,
} from '../../core/backend.ts';
import { valueError } from '../../core/backend.ts';
import type { DType, TypedArray } from '../../core/dtype.ts';
import type { AdapterSummary } from './device.ts';
import * as attn from './kernels/attention.ts';
import { cholesky } from './kernels/cholesky.ts';
import * as core from './kernels/core.ts';
import * as cubit from './kernels/cubit.ts';
import * as mm from './kernels/matmul.ts';
import * as nn from './kernels/nn.ts';
import { GpuRuntime, type GpuStorage } from './runtime.ts';

const g = (s: Storage): GpuStorage => s as GpuStorage;

/** Checks recorded per slot buffer; more pending checks than this start another buffer. */
const SLOTS_PER_BUFFER = 1024;

interface PendingCheck { rule: ValueRule; op: string; name: string; dtype: DType; id: number }

export class WebGPUBackend implements Backend {
  readonly name: string = 'webgpu';
  readonly supportsFloat64 = false;
  readonly rt: GpuRuntime;
  private pendingChecks: PendingCheck[] = [];
  private slotBuffers: GpuStorage[] = [];

  /** `owners`: objects the device needs kept alive (the GPU instance and adapter). */
  constructor(device: GPUDevice, readonly adapter: AdapterSummary, private readonly owners: readonly object[] = []) {
    this.rt = new GpuRuntime(device, new Set(adapter.features));
  }

  get hostReads(): number { return this.rt.hostReads; }

  // ---- memory ----

  alloc(dtype: DType, length: number): Storage { return this.rt.alloc(dtype, length); }
  free(s: Storage): void { this.rt.release(g(s)); }
  write(s: Storage, values: ArrayLike<number>, offset = 0): void { this.rt.write(g(s), values, offset); }
  memory(): MemoryStats { return this.rt.stats(); }
  resetPeak(): void { this.rt.resetPeak(); }
  /** Returns pooled device memory to the GPU. */
  trim(): void { this.rt.trim(); }
  /** Waits for every kernel submitted so far (benchmarks time with it). */
  sync(): Promise<void> { return this.rt.sync(); }

  async read(s: Storage, offset: number, length: number): Promise<TypedArray> {
    const checks = this.pendingChecks;
    const slotRegions = this.slotBuffers.map((b, i) => ({
      s: b, offset: 0, length: 2 * Math.min(SLOTS_PER_BUFFER, checks.length - i * SLOTS_PER_BUFFER),
    })).filter((r) => r.length > 0);
    const [values, ...slots] = await this.rt.readMany([{ s: g(s), offset, length }, ...slotRegions]);
    if (checks.length > 0) {
      this.pendingChecks = [];
      for (const r of slotRegions) this.rt.write(r.s, new Int32Array(r.length).fill(-1));
      for (const c of checks) {
        const words = slots[Math.floor(c.id / SLOTS_PER_BUFFER)] as Int32Array;
        const at = words[2 * (c.id % SLOTS_PER_BUFFER)] >>> 0;
        if (at === 0xffffffff) continue;
        const bits = new Int32Array([words[2 * (c.id % SLOTS_PER_BUFFER) + 1]]);
        const v = c.dtype === 'int32' ? bits[0] : new Float32Array(bits.buffer)[0];
        throw new Error(valueError(c.rule, c.op, c.name, at, v) ?? `${c.op}: ${c.name}[${at}] = ${v} failed its check`);
      }
    }
    return values;
  }

  checkValues(s: Storage, length: number, rule: ValueRule, op: string, name: string): void {
    if (length <= 0) return;
    const id = this.pendingChecks.length;
    const b = Math.floor(id / SLOTS_PER_BUFFER);
    if (b === this.slotBuffers.length) {
      const slots = this.rt.alloc('int32', 2 * SLOTS_PER_BUFFER);
      this.rt.write(slots, new Int32Array(2 * SLOTS_PER_BUFFER).fill(-1));
      this.slotBuffers.push(slots);
    }
    const slots = this.slotBuffers[b];
    core.checkValues(this.rt, g(s), length, rule, slots, id % SLOTS_PER_BUFFER);
    this.pendingChecks.push({ rule, op, name, dtype: s.dtype, id });
  }

  // ---- core kernels (kernels/core.ts) ----

  fill(out: Storage, value: number, offset: number, length: number): void { core.fill(this.rt, g(out), value, offset, length); }
  copy(src: Storage, srcOffset: number, out: Storage, outOffset: number, length: number): void {
    core.copy(this.rt, g(src), srcOffset, g(out), outOffset, length);
  }
  cast(src: Storage, out: Storage, length: number): void { core.cast(this.rt, g(src), g(out), length); }
  stridedCopy(src: Storage, srcOffset: number, shape: readonly number[], srcStrides: readonly number[], out: Storage, outOffset: number): void {
    core.stridedCopy(this.rt, g(src), srcOffset, shape, srcStrides, g(out), outOffset);
  }
  unary(op: UnaryOp, x: Storage, out: Storage, length: number, scalar: number): void { core.unary(this.rt, op, g(x), g(out), length, scalar); }
  unaryBackward(op: UnaryOp, x: Storage, y: Storage, dy: Storage, dx: Storage, length: number, scalar: number): void {
    core.unaryBackward(this.rt, op, g(x), g(y), g(dy), g(dx), length, scalar);
  }
  binary(op: BinaryOp, a: Storage, aStrides: readonly number[], b: Storage, bStrides: readonly number[], out: Storage, shape: readonly number[]): void {
    core.binary(this.rt, op, g(a), aStrides, g(b), bStrides, g(out), shape);
  }
  where(cond: Storage, cStrides: readonly number[], a: Storage, aStrides: readonly number[], b: Storage, bStrides: readonly number[], out: Storage, shape: readonly number[]): void {
    core.where(this.rt, g(cond), cStrides, g(a), aStrides, g(b), bStrides, g(out), shape);
  }
  reduce(op: ReduceOp, x: Storage, out: Storage, outer: number, len: number, inner: number): void {
    core.reduce(this.rt, op, g(x), g(out), outer, len, inner);
  }
  // ---- matmul (kernels/matmul.ts) ----
  /** 'f16' opts in to f16 operands with f32 sums (subgroup matrices where offered); default from CUBIT_WEBGPU_MATMUL, else 'f32'. */
  matmulPrecision: mm.MatmulPrecision = mm.matmulPrecisionFromEnv();
  matmul(a: Storage, b: Storage, out: Storage, p: MatmulParams): void { mm.matmul(this.rt, this.adapter, g(a), g(b), g(out), p, this.matmulPrecision); }
  triangularSolve(l: Storage, b: Storage, out: Storage, batch: number, n: number, k: number, transpose: boolean): void {
    core.triangularSolve(this.rt, g(l), g(b), g(out), batch, n, k, transpose);
  }
  gather(table: Storage, ids: Storage, out: Storage, count: number, cols: number): void { core.gather(this.rt, g(table), g(ids), g(out), count, cols); }
  scatterAdd(dy: Storage, ids: Storage, dtable: Storage, count: number, cols: number): void {
    core.scatterAdd(this.rt, g(dy), g(ids), g(dtable), count, cols);
  }
  dropoutMask(out: Storage, length: number, p: number, seed: number): void { core.dropoutMask(this.rt, g(out), length, p, seed); }

  // ---- fused neural-network kernels (kernels/nn.ts) ----

  softmax(x: Storage, out: Storage, rows: number, cols: number, log: boolean): void { nn.softmax(this.rt, g(x), g(out), rows, cols, log); }
  softmaxBackward(y: Storage, dy: Storage, dx: Storage, rows: number, cols: number, log: boolean): void {
    nn.softmaxBackward(this.rt, g(y), g(dy), g(dx), rows, cols, log);
  }
  rmsNorm(x: Storage, w: Storage | null, out: Storage, rstd: Storage, rows: number, cols: number, eps: number): void {
    nn.rmsNorm(this.rt, g(x), w && g(w), g(out), g(rstd), rows, cols, eps);
  }
  rmsNormBackward(x: Storage, w: Storage | null, rstd: Storage, dy: Storage, dx: Storage, dw: Storage | null, rows: number, cols: number): void {
    nn.rmsNormBackward(this.rt, g(x), w && g(w), g(rstd), g(dy), g(dx), dw && g(dw), rows, cols);
  }
  layerNorm(x: Storage, w: Storage | null, b: Storage | null, out: Storage, mean: Storage, rstd: Storage, rows: number, cols: number, eps: number): void {
    nn.layerNorm(this.rt, g(x), w && g(w), b && g(b), g(out), g(mean), g(rstd), rows, cols, eps);
  }
  layerNormBackward(x: Storage, w: Storage | null, mean: Storage, rstd: Storage, dy: Storage, dx: Storage, dw: Storage | null, db: Storage | null, rows: number, cols: number): void {
    nn.layerNormBackward(this.rt, g(x), w && g(w), g(mean), g(rstd), g(dy), g(dx), dw && g(dw), db && g(db), rows, cols);
  }
  crossEntropy(logits: Storage, targets: Storage, losses: Storage, lse: Storage, rows: number, cols: number, ignoreIndex: number): void {
    nn.crossEntropy(this.rt, g(logits), g(targets), g(losses), g(lse), rows, cols, ignoreIndex);
  }
  crossEntropyBackward(logits: Storage, targets: Storage, lse: Storage, dloss: Storage, dlogits: Storage, rows: number, cols: number, ignoreIndex: number): void {
    nn.crossEntropyBackward(this.rt, g(logits), g(targets), g(lse), g(dloss), g(dlogits), rows, cols, ignoreIndex);
  }
  rotary(x: Storage, cos: Storage, sin: Storage, out: Storage, B: number, T: number, H: number, D: number,
    offset: number, inverse: boolean, xHeadsFirst: boolean, outHeadsFirst: boolean): void {
    nn.rotary(this.rt, g(x), g(cos), g(sin), g(out), B, T, H, D, offset, inverse, xHeadsFirst, outHeadsFirst);
  }
  swiglu(a: Storage, b: Storage, out: Storage, length: number): void { nn.swiglu(this.rt, g(a), g(b), g(out), length); }
  swigluBackward(a: Storage, b: Storage, dy: Storage, da: Storage, db: Storage, length: number): void {
    nn.swigluBackward(this.rt, g(a), g(b), g(dy), g(da), g(db), length);
  }
  splitHeads(y: Storage, outs: readonly Storage[], B: number, T: number, parts: readonly HeadsBlock[],
    cos: Storage | null, sin: Storage | null, offset: number): void {
    nn.splitHeads(this.rt, g(y), outs.map(g), B, T, parts, cos && g(cos), sin && g(sin), offset);
  }
  mergeHeads(xs: readonly (Storage | null)[], out: Storage, B: number, T: number, parts: readonly HeadsBlock[],
    cos: Storage | null, sin: Storage | null, offset: number): void {
    nn.mergeHeads(this.rt, xs.map((x) => x && g(x)), g(out), B, T, parts, cos && g(cos), sin && g(sin), offset);
  }
  adamw(param: Storage, grad: Storage, m: Storage, v: Storage, length: number, p: AdamWParams): void {
    nn.adamw(this.rt, g(param), g(grad), g(m), g(v), length, p);
  }
  normalizeReference(r: Storage, alpha: Storage, out: Storage, B: number, H: number, T: number, D: number, eps: number): void {
    nn.normalizeReference(this.rt, g(r), g(alpha), g(out), B, H, T, D, eps);
  }
  normalizeReferenceBackward(r: Storage, alpha: Storage, dy: Storage, dr: Storage | null, dAlpha: Storage | null,
    B: number, H: number, T: number, D: number, eps: number): void {
    nn.normalizeReferenceBackward(this.rt, g(r), g(alpha), g(dy), dr && g(dr), dAlpha && g(dAlpha), B, H, T, D, eps);
  }
  lrrValues(v: Storage, z: Storage, lower: Storage, range: Storage, out: Storage, B: number, H: number, T: number, D: number): void {
    nn.lrrValues(this.rt, g(v), g(z), g(lower), g(range), g(out), B, H, T, D);
  }
  lrrValuesBackward(v: Storage, z: Storage, lower: Storage, range: Storage, dy: Storage,
    dv: Storage | null, dz: Storage | null, dLower: Storage | null, dRange: Storage | null,
    B: number, H: number, T: number, D: number): void {
    nn.lrrValuesBackward(this.rt, g(v), g(z), g(lower), g(range), g(dy), dv && g(dv), dz && g(dz), dLower && g(dLower), dRange && g(dRange), B, H, T, D);
  }

  // ---- fused kernels ----

  cholesky(a: Storage, out: Storage, batch: number, n: number): void { cholesky(this.rt, g(a), g(out), batch, n); }

  // ---- softmax attention (kernels/attention.ts) ----

  attention(q: Storage, k: Storage, v: Storage, out: Storage, scale: number, d: MixerDims): SavedState {
    return attn.attention(this.rt, g(q), g(k), g(v), g(out), scale, d);
  }
  attentionBackward(q: Storage, k: Storage, v: Storage, out: Storage, saved: SavedState, dOut: Storage, scale: number,
    dq: Storage, dk: Storage, dv: Storage, d: MixerDims): void {
    attn.attentionBackward(this.rt, g(q), g(k), g(v), g(out), saved, g(dOut), scale, g(dq), g(dk), g(dv), d);
  }

  // ---- the streaming KRR / Cubit solve (kernels/cubit.ts) ----

  krrSolve(r: Storage, rHat: Storage, y: Storage, logLambda: Storage, x: Storage, d: MixerDims): SavedState {
    return cubit.krrSolve(this.rt, g(r), g(rHat), g(y), g(logLambda), g(x), d);
  }
  krrSolveBackward(r: Storage, rHat: Storage, logLambda: Storage, x: Storage, saved: SavedState, gx: Storage,
    dr: Storage, drHat: Storage, dy: Storage, dLambda: Storage, d: MixerDims): void {
    cubit.krrSolveBackward(this.rt, g(r), g(rHat), g(logLambda), g(x), saved, g(gx), g(dr), g(drHat), g(dy), g(dLambda), d);
  }
  cubitSolve(r: Storage, refScale: Storage, v: Storage, lrr: LrrStorages | null, logLambda: Storage, eps: number,
    x: Storage, d: MixerDims): SavedState {
    return cubit.cubitSolve(this.rt, g(r), g(refScale), g(v), lrr, g(logLambda), eps, g(x), d);
  }
  cubitSolveBackward(r: Storage, refScale: Storage, v: Storage, lrr: LrrStorages | null, logLambda: Storage, eps: number,
    x: Storage, saved: SavedState, gx: Storage, dr: Storage, dv: Storage, dRefScale: Storage, lrrGrads: LrrGradStorages | null,
    dLambda: Storage, d: MixerDims): void {
    cubit.cubitSolveBackward(this.rt, g(r), g(refScale), g(v), lrr, g(logLambda), eps, g(x), saved, g(gx), g(dr), g(dv),
      g(dRefScale), lrrGrads, g(dLambda), d);
  }
}
