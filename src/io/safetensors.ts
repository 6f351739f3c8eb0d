// The safetensors format (https://github.com/huggingface/safetensors, "Format"):
//
//   [8 bytes: N, unsigned little-endian u64] [N bytes: JSON header, UTF-8] [byte buffer]
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}, offsets
// relative to the byte buffer, end exclusive, data row-major little-endian; an optional
// "__metadata__" maps strings to strings. The header starts with '{' and may end in spaces; we pad
// it so the buffer starts on an 8-byte boundary. Tensors tile the buffer exactly: no overlaps, no
// holes, nothing after the last one (what the reference implementation checks). We write F64
// tensors first, then the 4-byte ones, each group by name, so every tensor starts aligned to its
// element size. Supported dtypes: F32, F64 and I32 (what cubit's tensors hold); the reader also
// accepts F16 and BF16 (what PyTorch and Hugging Face models are often shared in), widened exactly
// to float32 on load (every half and bfloat16 value is a float32 value).
import * as fs from 'node:fs';
import { endianness } from 'node:os';
import type { DType, TypedArray } from '../core/dtype.ts';
import { tensorFrom, type Tensor } from '../core/tensor.ts';
import type { Backend } from '../core/backend.ts';
import { writeFileAtomicSync, type AtomicWriteOptions } from '../util/atomic.ts';

/** A safetensors dtype name this reader and writer handle. */
export type SafeDType = 'F32' | 'F64' | 'I32';
/** What the reader accepts: the written dtypes plus the 16-bit floats, which load as float32. */
export type StoredDType = SafeDType | 'F16' | 'BF16';

const SAFE_OF: Record<DType, SafeDType> = { float32: 'F32', float64: 'F64', int32: 'I32' };
const DTYPE_OF: Record<SafeDType, DType> = { F32: 'float32', F64: 'float64', I32: 'int32' };
const BYTES: Record<StoredDType, number> = { F32: 4, F64: 8, I32: 4, F16: 2, BF16: 2 };
/** The dtype each stored dtype loads as. */
const LOADED_AS: Record<StoredDType, DType> = { ...DTYPE_OF, F16: 'float32', BF16: 'float32' };
/** The reference implementation refuses larger headers; so do we (a corrupt length reads as huge). */
const MAX_HEADER = 100_000_000;

/** A tensor as plain data: what the reader returns and what the writer accepts besides Tensors. */
export interface TensorRecord {
  dtype: DType | SafeDType;
  shape: readonly number[];
  data: TypedArray;
}

/** Where one tensor lies in a file. begin/end are absolute byte offsets in the file. */
export interface TensorInfo {
  name: string;
  /** The dtype it loads as (F16 and BF16 load as float32). */
  dtype: DType;
  /** The dtype in the file. */
  stored: StoredDType;
  shape: number[];
  begin: number;
  end: number;
}

/** Tensors to write, by name: Tensors or plain {@link TensorRecord}s, in a Map or an object. */
export type TensorSource = Map<string, Tensor | TensorRecord> | Record<string, Tensor | TensorRecord>;

/** A whole safetensors file read into memory: its metadata and its tensors as typed arrays. */
export interface SafetensorsContents {
  metadata: Record<string, string>;
  tensors: Map<string, { dtype: DType; shape: number[]; data: TypedArray }>;
}

function fail(label: string, problem: string): never {
  throw new Error(`safetensors ${label}: ${problem}`);
}

function requireLittleEndian(): void {
  if (endianness() !== 'LE') throw new Error('safetensors: this machine is big-endian; only little-endian hosts are supported');
}

function isTensor(v: Tensor | TensorRecord): v is Tensor {
  return (v as Tensor).isTensor === true;
}

function toSafeDType(d: string, label: string, name: string): SafeDType {
  if (d in SAFE_OF) return SAFE_OF[d as DType];
  if (d in DTYPE_OF) return d as SafeDType;
  return fail(label, `tensor '${name}': unsupported dtype '${d}' (supported: F32, F64, I32)`);
}

function arrayMatches(a: TypedArray, d: SafeDType): boolean {
  return d === 'F32' ? a instanceof Float32Array : d === 'F64' ? a instanceof Float64Array : a instanceof Int32Array;
}

function countOf(shape: readonly number[], label: string, name: string): number {
  if (!Array.isArray(shape)) fail(label, `tensor '${name}': shape must be an array of non-negative integers`);
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) fail(label, `tensor '${name}': shape [${shape.join(', ')}] must hold non-negative integers`);
    n *= d;
    if (!Number.isSafeInteger(n)) fail(label, `tensor '${name}': shape [${shape.join(', ')}] has too many elements`);
  }
  return n;
}

interface Entry { name: string; dtype: SafeDType; shape: number[]; data: TypedArray }

function entriesOf(tensors: TensorSource, label: string): Entry[] {
  const pairs = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const out: Entry[] = [];
  for (const [name, v] of pairs) {
    if (name === '__metadata__') fail(label, `'__metadata__' is reserved and cannot name a tensor`);
    if (isTensor(v)) {
      out.push({ name, dtype: SAFE_OF[v.dtype], shape: [...v.shape], data: v.dataSync() });
      continue;
    }
    if (!v || typeof v !== 'object' || !ArrayBuffer.isView(v.data)) fail(label, `tensor '${name}': expected a Tensor or {dtype, shape, data}`);
    const dtype = toSafeDType(v.dtype, label, name);
    if (!arrayMatches(v.data, dtype)) fail(label, `tensor '${name}': dtype ${dtype} does not match its ${v.data.constructor.name} data`);
    const n = countOf(v.shape, label, name);
    if (v.data.length !== n) fail(label, `tensor '${name}': shape [${v.shape.join(', ')}] needs ${n} elements, data has ${v.data.length}`);
    out.push({ name, dtype, shape: [...v.shape], data: v.data });
  }
  // Wider elements first keeps every tensor aligned to its element size; then by name.
  out.sort((a, b) => BYTES[b.dtype] - BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return out;
}

function bytesOf(a: TypedArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * The file's bytes as a sequence of chunks (header, then each tensor's data as a view, not a copy),
 * for streaming to disk. `metadata` becomes "__metadata__" (string values only).
 */
export function serializeSafetensors(tensors: TensorSource, metadata?: Record<string, string>, label = '<memory>'): Uint8Array[] {
  requireLittleEndian();
  const entries = entriesOf(tensors, label);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') fail(label, `metadata '${k}' must be a string, got ${typeof v}`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const e of entries) {
    const size = e.data.length * BYTES[e.dtype];
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return [head, ...entries.map((e) => bytesOf(e.data))];
}

/** The whole file as one buffer. */
export function encodeSafetensors(tensors: TensorSource, metadata?: Record<string, string>): Uint8Array {
  return Buffer.concat(serializeSafetensors(tensors, metadata));
}

/** Writes a safetensors file atomically (a crash leaves any previous file intact). */
export function writeSafetensorsSync(file: string, tensors: TensorSource, metadata?: Record<string, string>, opts: AtomicWriteOptions = {}): void {
  writeFileAtomicSync(file, serializeSafetensors(tensors, metadata, file), opts);
}

// ---- reading ----

interface Header { metadata: Record<string, string>; infos: TensorInfo[]; dataStart: number }

/** Validates the header against the file's total size; infos come back in name order. */
function parseHeader(headBytes: Uint8Array, dataStart: number, fileSize: number, label: string): Header {
  let text: string;
  try { text = new TextDecoder('utf-8', { fatal: true }).decode(headBytes); } catch {
    return fail(label, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) fail(label, `header does not start with '{' (not a safetensors file, or corrupt)`);
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (e) { return fail(label, `header is not valid JSON (${(e as Error).message})`); }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) fail(label, 'header is not a JSON object');
  const metadata: Record<string, string> = {};
  const infos: TensorInfo[] = [];
  const bufferSize = fileSize - dataStart;
  for (const [name, v] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!v || typeof v !== 'object' || Array.isArray(v)) fail(label, '__metadata__ must be an object of strings');
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        if (typeof s !== 'string') fail(label, `__metadata__ '${k}' must be a string, got ${JSON.stringify(s)}`);
        metadata[k] = s;
      }
      continue;
    }
    if (!v || typeof v !== 'object' || Array.isArray(v)) fail(label, `tensor '${name}': entry must be an object`);
    const { dtype, shape, data_offsets: offs } = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string') fail(label, `tensor '${name}': missing dtype`);
    if (!(dtype in LOADED_AS)) fail(label, `tensor '${name}': unknown or unsupported dtype '${dtype}' (supported: F32, F64, I32, F16, BF16)`);
    if (!Array.isArray(shape)) fail(label, `tensor '${name}': missing shape`);
    const n = countOf(shape as number[], label, name);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)) {
      fail(label, `tensor '${name}': data_offsets must be [begin, end] with non-negative integers`);
    }
    const [b, e] = offs as number[];
    if (e < b) fail(label, `tensor '${name}': data_offsets [${b}, ${e}] end before they begin`);
    const sd = dtype as StoredDType;
    if (e - b !== n * BYTES[sd]) {
      fail(label, `tensor '${name}': shape [${(shape as number[]).join(', ')}] × ${sd} needs ${n * BYTES[sd]} bytes, data_offsets [${b}, ${e}] hold ${e - b}`);
    }
    if (e > bufferSize) {
      fail(label, `tensor '${name}': data_offsets [${b}, ${e}] run past the end of the data (${bufferSize} bytes; file truncated?)`);
    }
    infos.push({ name, dtype: LOADED_AS[sd], stored: sd, shape: shape as number[], begin: dataStart + b, end: dataStart + e });
  }
  const byOffset = [...infos].sort((x, y) => x.begin - y.begin || x.end - y.end);
  let at = dataStart;
  for (const t of byOffset) {
    if (t.begin < at) {
      const prev = byOffset[byOffset.indexOf(t) - 1];
      fail(label, `tensors '${prev.name}' and '${t.name}' overlap`);
    }
    if (t.begin > at) fail(label, `bytes ${at - dataStart}..${t.begin - dataStart} of the data belong to no tensor (corrupt header)`);
    at = t.end;
  }
  if (at !== fileSize) fail(label, `${fileSize - at} bytes after the last tensor belong to no tensor (corrupt header or trailing garbage)`);
  infos.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  return { metadata, infos, dataStart };
}

function headerLength(first8: Uint8Array, fileSize: number, label: string): number {
  if (fileSize < 8) fail(label, `file is ${fileSize} bytes, too short for the 8-byte header length (truncated?)`);
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER)) fail(label, `header length ${n} is implausible (over ${MAX_HEADER} bytes; not a safetensors file, or corrupt)`);
  const len = Number(n);
  if (8 + len > fileSize) fail(label, `header length ${len} runs past the end of the ${fileSize}-byte file (truncated?)`);
  return len;
}

/** float32 bits of an IEEE half: exact (normals, subnormals, ±0, ±∞, NaN with its payload). */
function halfToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0x1f) return sign | 0x7f800000 | (frac << 13);
  if (exp !== 0) return sign | ((exp + 112) << 23) | (frac << 13);
  if (frac === 0) return sign;
  // Subnormal half: normalise the fraction into float32's implicit-one form.
  let e = 113, f = frac;
  while ((f & 0x400) === 0) { f <<= 1; e--; }
  return sign | (e << 23) | ((f & 0x3ff) << 13);
}

/** F16 or BF16 little-endian bytes widened to float32 (exact). */
function widen16(stored: 'F16' | 'BF16', bytes: Uint8Array): Float32Array {
  const n = bytes.length >> 1;
  const out = new Float32Array(n);
  const bitsOut = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) {
    const h = bytes[2 * i] | (bytes[2 * i + 1] << 8);
    bitsOut[i] = stored === 'BF16' ? (h << 16) >>> 0 : halfToFloatBits(h) >>> 0;
  }
  return out;
}

function typedFrom(dtype: DType, bytes: Uint8Array, stored?: StoredDType): TypedArray {
  if (stored === 'F16' || stored === 'BF16') return widen16(stored, bytes);
  // View the bytes when they are a whole, fresh buffer (what readExact returns); otherwise copy
  // into an aligned one (the source may be unaligned, or part of a bigger buffer to be freed).
  let own = bytes;
  if (bytes.byteOffset !== 0 || bytes.byteLength !== bytes.buffer.byteLength) { own = new Uint8Array(bytes.length); own.set(bytes); }
  switch (dtype) {
    case 'float32': return new Float32Array(own.buffer);
    case 'float64': return new Float64Array(own.buffer);
    case 'int32': return new Int32Array(own.buffer);
  }
}

/** Parses and validates a whole safetensors file held in memory. */
export function decodeSafetensors(bytes: Uint8Array, label = '<buffer>'): SafetensorsContents {
  requireLittleEndian();
  const len = headerLength(bytes.subarray(0, 8), bytes.length, label);
  const h = parseHeader(bytes.subarray(8, 8 + len), 8 + len, bytes.length, label);
  const tensors = new Map<string, { dtype: DType; shape: number[]; data: TypedArray }>();
  for (const t of h.infos) tensors.set(t.name, { dtype: t.dtype, shape: t.shape, data: typedFrom(t.dtype, bytes.subarray(t.begin, t.end), t.stored) });
  return { metadata: h.metadata, tensors };
}

/** Reads and validates a whole file into typed arrays (each tensor read straight into its own buffer). */
export function readSafetensorsSync(file: string): SafetensorsContents {
  const f = SafetensorsFile.open(file);
  try {
    const tensors = new Map<string, { dtype: DType; shape: number[]; data: TypedArray }>();
    for (const name of f.names) {
      const t = f.info(name);
      tensors.set(name, { dtype: t.dtype, shape: t.shape, data: f.read(name) });
    }
    return { metadata: f.metadata, tensors };
  } finally {
    f.close();
  }
}

/**
 * A file opened lazily: the header is read and validated up front (against the file's size), a
 * tensor's bytes only when asked for. close() when done.
 */
export class SafetensorsFile {
  private fd: number | null;
  readonly metadata: Record<string, string>;
  private readonly byName: Map<string, TensorInfo>;

  private constructor(readonly path: string, fd: number, header: Header) {
    this.fd = fd;
    this.metadata = header.metadata;
    this.byName = new Map(header.infos.map((t) => [t.name, t]));
  }

  static open(file: string): SafetensorsFile {
    requireLittleEndian();
    let fd: number;
    try { fd = fs.openSync(file, 'r'); } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return fail(file, code === 'ENOENT' ? 'no such file' : `cannot open (${(e as Error).message})`);
    }
    try {
      const size = fs.fstatSync(fd).size;
      const first = readExact(fd, 0, Math.min(8, size));
      const len = headerLength(first, size, file);
      const header = parseHeader(readExact(fd, 8, len), 8 + len, size, file);
      return new SafetensorsFile(file, fd, header);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** Tensor names, sorted. */
  get names(): string[] { return [...this.byName.keys()]; }

  has(name: string): boolean { return this.byName.has(name); }

  info(name: string): TensorInfo {
    const t = this.byName.get(name);
    if (!t) fail(this.path, `no tensor named '${name}'`);
    return t;
  }

  /** Reads one tensor's data (a fresh typed array). */
  read(name: string): TypedArray {
    const t = this.info(name);
    if (this.fd === null) fail(this.path, 'file is closed');
    return typedFrom(t.dtype, readExact(this.fd, t.begin, t.end - t.begin, this.path), t.stored);
  }

  /** Reads one tensor into a Tensor on `backend` (the active one by default). */
  tensor(name: string, backend?: Backend): Tensor {
    const t = this.info(name);
    const out = tensorFrom(this.read(name), t.shape, t.dtype, backend);
    out.name = name;
    return out;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

function readExact(fd: number, position: number, length: number, label = '<file>'): Uint8Array {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) fail(label, `file ended early while reading bytes ${position}..${position + length} (truncated while open?)`);
    done += n;
  }
  return buf;
}

export function openSafetensorsSync(file: string): SafetensorsFile {
  return SafetensorsFile.open(file);
}

/** Reads every tensor of a file as Tensors (named after their keys) on `backend`. */
export function loadSafetensorsSync(file: string, backend?: Backend): { metadata: Record<string, string>; tensors: Map<string, Tensor> } {
  const f = SafetensorsFile.open(file);
  try {
    const tensors = new Map<string, Tensor>();
    try {
      for (const name of f.names) tensors.set(name, f.tensor(name, backend));
    } catch (e) {
      for (const t of tensors.values()) t.dispose();
      throw e;
    }
    return { metadata: f.metadata, tensors };
  } finally {
    f.close();
  }
}
