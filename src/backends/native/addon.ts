// Loader for the native CPU addon (native/src, N-API, so one binary serves every Node version).
// It comes from one of two places, tried in order: build/Release/cubit_native.node, compiled
// from source (`npm run build:native`, or the install script when no prebuilt binary fits), and
// prebuilds/<platform>/cubit_native.node, the binary shipped inside the package. Other kernels
// add their functions to NativeAddon as they register them in native/src/addon.c.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { BinaryOp, ReduceOp, Storage, UnaryOp } from '../../core/backend.ts';
import type { ReferenceBackend } from '../reference/backend.ts';
import type { ForwardedKernel } from './backend.ts';

/** Name of a SIMD code path of the addon. */
export type NativeIsa = 'avx512' | 'avx2' | 'generic';

/** A Backend kernel argument as the addon takes it: a storage as its typed array, an op name as its code. */
type Marshalled<T> = T extends Storage ? Float32Array | Int32Array : T extends UnaryOp | BinaryOp | ReduceOp ? number : T;
type MarshalledArgs<A extends readonly unknown[]> = { [I in keyof A]: Marshalled<A[I]> };

/**
 * The non-GEMM float32 kernels (native/src/kernels_nn*.c, cholesky.c, one argument table each): the Backend
 * kernels of the same names with their arguments in order (op: the index of the op in
 * core/backend.ts's UnaryOp / BinaryOp / ReduceOp unions; null: an absent optional array; ids and
 * targets int32; strided views of rank at most 8). A view past the end of its array throws a
 * RangeError, a malformed argument a TypeError, an id outside the table a RangeError.
 */
export type ForwardedKernels = { [K in ForwardedKernel]: (...args: MarshalledArgs<Parameters<ReferenceBackend[K]>>) => void };

export interface NativeAddon extends ForwardedKernels {
  /**
   * Batched single-precision matrix multiply, row-major, all strides in elements:
   * for p < batch, C_p = op(A_p)·op(B_p) (+ C_p when `accumulate`), where
   * A_p = a[aOff + p*aBatchStride ...], op(A_p) is m×k (stored k×m with row stride lda when
   * transA), op(B_p) is k×n (stored n×k when transB), C_p is m×n with row stride ldc.
   * Batch strides of a and b may be 0 (broadcast). c must not overlap a or b. k = 0 gives
   * C = 0 (or C unchanged when accumulating). Throws RangeError if any access would fall
   * outside an array, TypeError for malformed arguments.
   */
  sgemm(
    batch: number, m: number, n: number, k: number, transA: boolean, transB: boolean,
    a: Float32Array, aOff: number, aBatchStride: number, lda: number,
    b: Float32Array, bOff: number, bBatchStride: number, ldb: number,
    c: Float32Array, cOff: number, cBatchStride: number, ldc: number,
    accumulate: boolean,
  ): void;
  /** Threads used by parallel kernels (counting the caller); 0 restores the default. */
  setThreads(n: number): void;
  /** Default: the number of CPUs available to the process (its affinity mask). */
  getThreads(): number;
  /** The SIMD path in use. */
  isa(): NativeIsa;
  /** Forces a path ('auto': the best the CPU has); throws an Error if the CPU lacks it. */
  setIsa(name: NativeIsa | 'auto'): void;
  /** The paths this CPU supports, best first. */
  supportedIsas(): NativeIsa[];

  /** The counter-hash mask of core/random.ts; seed as an int32 (seed | 0). */
  dropoutMask(out: Float32Array, length: number, p: number, seed: number): void;
  /** Backend.splitHeads / mergeHeads (native/src/kernels_heads.c), parts as parallel arrays (rotate 0/1); absent in an addon built before them. */
  splitHeads?(y: Float32Array, outs: Float32Array[], B: number, T: number, heads: number[], dims: number[], rotate: number[],
    cos: Float32Array | null, sin: Float32Array | null, offset: number): void;
  mergeHeads?(xs: (Float32Array | null)[], out: Float32Array, B: number, T: number, heads: number[], dims: number[], rotate: number[],
    cos: Float32Array | null, sin: Float32Array | null, offset: number): void;
  adamw(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, length: number,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, bc1: number, bc2: number): void;

  // Streaming sequence mixers (native/src/krr.c, attention.c; CUBIT.md §3), float32, with the
  // Backend kernels' arguments and MixerDims spelled out: tensors (B·H, T, D), lse (B·H, T),
  // logLambda (H), dLambda (B·H), docIds (B, T) or null; every output is overwritten. Throws a
  // RangeError for an array shorter than its shape, TypeError for malformed arguments.
  krrSolve(r: Float32Array, rHat: Float32Array, y: Float32Array, logLambda: Float32Array, x: Float32Array, lse: Float32Array,
    wxMinusX: Float32Array, B: number, H: number, T: number, D: number, window: number, docIds: Int32Array | null, blockSize: number): void;
  krrSolveBackward(r: Float32Array, rHat: Float32Array, logLambda: Float32Array, x: Float32Array, lse: Float32Array,
    wxMinusX: Float32Array, g: Float32Array,
    dr: Float32Array, drHat: Float32Array, dy: Float32Array, dLambda: Float32Array,
    B: number, H: number, T: number, D: number, window: number, docIds: Int32Array | null, blockSize: number): void;
  // Cubit's solve with its stages fused in (krr.c); per-head gradients come per (b, h) row (B·H).
  cubitSolve(r: Float32Array, refScale: Float32Array, v: Float32Array, lrrLogits: Float32Array | null,
    lrrLower: Float32Array | null, lrrRange: Float32Array | null, logLambda: Float32Array, eps: number,
    x: Float32Array, rHat: Float32Array, lse: Float32Array, wxMinusX: Float32Array,
    B: number, H: number, T: number, D: number, window: number, docIds: Int32Array | null, blockSize: number): void;
  cubitSolveBackward(r: Float32Array, refScale: Float32Array, v: Float32Array, lrrLogits: Float32Array | null,
    lrrLower: Float32Array | null, lrrRange: Float32Array | null, logLambda: Float32Array, eps: number,
    x: Float32Array, rHat: Float32Array, lse: Float32Array, wxMinusX: Float32Array, g: Float32Array,
    dr: Float32Array, dv: Float32Array, dRefScale: Float32Array, dLrrLogits: Float32Array | null,
    dLrrLower: Float32Array | null, dLrrRange: Float32Array | null, dLambda: Float32Array,
    B: number, H: number, T: number, D: number, window: number, docIds: Int32Array | null, blockSize: number): void;
  attention(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array, scale: number,
    B: number, H: number, T: number, D: number, window: number, docIds: Int32Array | null, blockSize: number): void;
  attentionBackward(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array, g: Float32Array, scale: number,
    dq: Float32Array, dk: Float32Array, dv: Float32Array,
    B: number, H: number, T: number, D: number, window: number, docIds: Int32Array | null, blockSize: number): void;
}

/** Where the loaded addon came from. */
export type NativeAddonSource = 'built from source' | 'prebuilt';

/**
 * The folder name of this platform's prebuilt binary under prebuilds/: `<platform>-<arch>`, and
 * on Linux the C library too (`linux-x64-glibc`, `linux-x64-musl`), as a glibc binary does not
 * load on musl.
 */
export function prebuildPlatform(): string {
  const base = `${process.platform}-${process.arch}`;
  if (process.platform !== 'linux') return base;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return `${base}-${header?.glibcVersionRuntime ? 'glibc' : 'musl'}`;
}

const packageRoot = new URL('../../../', import.meta.url);
const builtPath = fileURLToPath(new URL('build/Release/cubit_native.node', packageRoot));

let cached: NativeAddon | null | undefined;
let loadError: string | null = null;
let loadedFrom: { source: NativeAddonSource; path: string } | null = null;

/** Loads the addon once; null (see nativeLoadError) if no candidate exists or loads. */
export function loadNativeAddon(): NativeAddon | null {
  if (cached !== undefined) return cached;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  const tryLoad = (source: NativeAddonSource, path: string): NativeAddon | null => {
    if (!existsSync(path)) { tried.push(`${path} does not exist`); return null; }
    try {
      const addon = require(path) as NativeAddon;
      loadedFrom = { source, path };
      return addon;
    } catch (e) {
      tried.push(`cannot load ${path}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
      return null;
    }
  };
  // The prebuilt path is only worked out when needed: finding the C library takes a few ms.
  cached = tryLoad('built from source', builtPath)
    ?? tryLoad('prebuilt', fileURLToPath(new URL(`prebuilds/${prebuildPlatform()}/cubit_native.node`, packageRoot)));
  loadError = cached ? null : `no native addon for ${prebuildPlatform()} loaded (${tried.join('; ')})`;
  return cached;
}

/** Why loadNativeAddon returned null, or null if it loaded (or was not tried yet). */
export function nativeLoadError(): string | null {
  return loadError;
}

/** Which candidate loadNativeAddon loaded and from where, or null if none (or not tried yet). */
export function nativeAddonOrigin(): { source: NativeAddonSource; path: string } | null {
  return loadedFrom;
}
