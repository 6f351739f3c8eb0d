// safetensors: exact round trips, the byte layout the spec fixes, and one clear error per defect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tmpDir } from './helpers.ts';
import '../src/index.ts';
import { tensor } from '../src/ops/index.ts';
import {
  decodeSafetensors, encodeSafetensors, loadSafetensorsSync, openSafetensorsSync, readSafetensorsSync, writeSafetensorsSync,
  type TensorRecord,
} from '../src/io/safetensors.ts';
import type { TypedArray } from '../src/core/dtype.ts';

const tmpdir = (): string => tmpDir('st');

const bits = (a: TypedArray): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** A file laid out by hand from the spec: [u64 LE N][N header bytes][data]. */
function handMade(header: unknown, data: Uint8Array, pad = ''): Buffer {
  const json = Buffer.from(JSON.stringify(header) + pad, 'utf8');
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([n, json, data]);
}

function records(): Record<string, TensorRecord> {
  const f32 = new Float32Array([1.5, -0, NaN, Infinity, -Infinity, 1e-45, 3.4028234663852886e38, -7]);
  const f64 = new Float64Array([Math.PI, -0, 5e-324, Number.MAX_VALUE, NaN, -1 / 3]);
  const i32 = new Int32Array([0, -1, 2147483647, -2147483648, 42, 7]);
  return {
    'model.layers.0.w': { dtype: 'F32', shape: [2, 4], data: f32 },
    'b.f64': { dtype: 'float64', shape: [3, 2], data: f64 },
    'a.ids': { dtype: 'I32', shape: [6], data: i32 },
    'scalar': { dtype: 'F32', shape: [], data: new Float32Array([0.25]) },
    'empty': { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
  };
}

test('round trip is bit-exact for F32, F64, I32 (NaN, -0, subnormals, extremes), scalars and empty tensors', () => {
  const dir = tmpdir();
  const file = path.join(dir, 'm.safetensors');
  const recs = records();
  const meta = { format: 'pt', 'cubit.config': JSON.stringify({ d_model: 8, note: 'ünïcode ✓' }) };
  writeSafetensorsSync(file, recs, meta);
  const back = readSafetensorsSync(file);
  assert.deepEqual(back.metadata, meta);
  assert.deepEqual([...back.tensors.keys()].sort(), Object.keys(recs).sort());
  for (const [name, r] of Object.entries(recs)) {
    const t = back.tensors.get(name)!;
    assert.deepEqual(t.shape, r.shape, name);
    assert.equal(t.data.constructor, r.data.constructor, name);
    assert.ok(bits(t.data).equals(bits(r.data)), `${name} bits`);
  }
  // The same bytes decode from memory, and encode is deterministic.
  const bytes = fs.readFileSync(file);
  assert.ok(Buffer.from(encodeSafetensors(recs, meta)).equals(bytes));
  assert.deepEqual(decodeSafetensors(bytes).metadata, meta);
});

test('layout follows the spec: u64 LE header length, 8-byte aligned header padded with spaces, tensors tiling the buffer', () => {
  const bytes = Buffer.from(encodeSafetensors(records()));
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal((8 + n) % 8, 0, 'data starts 8-byte aligned');
  const headerText = bytes.subarray(8, 8 + n).toString('utf8');
  assert.equal(headerText[0], '{');
  assert.match(headerText, /^\{.*\} *$/s);
  const header = JSON.parse(headerText) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  assert.equal(header.__metadata__, undefined, 'no metadata key when there is no metadata');
  const entries = Object.entries(header).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  let at = 0;
  for (const [name, e] of entries) {
    assert.equal(e.data_offsets[0], at, `${name} starts where the previous one ended`);
    const size = e.dtype === 'F64' ? 8 : 4;
    assert.equal(e.data_offsets[0] % size, 0, `${name} is aligned to its element size`);
    assert.equal(e.data_offsets[1] - e.data_offsets[0], size * e.shape.reduce((p, d) => p * d, 1));
    at = e.data_offsets[1];
  }
  assert.equal(8 + n + at, bytes.length);
  // F64 first: the widest elements lead, so alignment holds without padding between tensors.
  assert.equal(entries[0][0], 'b.f64');
  // Little-endian data: the int32 -1 is ff ff ff ff, 42 is 2a 00 00 00.
  const ids = header['a.ids'].data_offsets[0] + 8 + n;
  assert.deepEqual([...bytes.subarray(ids + 16, ids + 20)], [0x2a, 0, 0, 0]);
});

test('reads a file laid out by hand (another writer: no padding, any key order, metadata last)', () => {
  const data = Buffer.concat([Buffer.from(new Int32Array([5, 6, 7]).buffer), Buffer.from(new Float32Array([0.5, 2]).buffer)]);
  const file = handMade({
    w: { dtype: 'F32', shape: [1, 2], data_offsets: [12, 20] },
    ids: { data_offsets: [0, 12], shape: [3], dtype: 'I32' },
    __metadata__: { k: 'v' },
  }, data);
  const out = decodeSafetensors(file, 'hand.safetensors');
  assert.deepEqual(out.metadata, { k: 'v' });
  assert.deepEqual([...out.tensors.get('ids')!.data], [5, 6, 7]);
  assert.deepEqual([...out.tensors.get('w')!.data], [0.5, 2]);
  // The F32 tensor starts at an offset that is 4-aligned in the buffer but the header length (no
  // padding) makes it unaligned in the file: the reader copies instead of viewing.
  assert.ok(out.tensors.get('w')!.data instanceof Float32Array);
});

test('Tensors write and load back as Tensors; the lazy reader reads one tensor at a time', () => {
  const dir = tmpdir();
  const file = path.join(dir, 't.safetensors');
  const w = tensor([[1, 2, 3], [4, 5, 6]]);
  const ids = tensor(new Int32Array([3, 1, 2]));
  writeSafetensorsSync(file, new Map([['w', w], ['ids', ids]]));
  const { tensors } = loadSafetensorsSync(file);
  assert.deepEqual(tensors.get('w')!.toArray(), [[1, 2, 3], [4, 5, 6]]);
  assert.equal(tensors.get('w')!.dtype, 'float32');
  assert.equal(tensors.get('ids')!.dtype, 'int32');
  assert.equal(tensors.get('w')!.name, 'w');
  const f = openSafetensorsSync(file);
  try {
    assert.deepEqual(f.names, ['ids', 'w']);
    assert.deepEqual(f.info('w').shape, [2, 3]);
    assert.deepEqual([...f.read('ids')], [3, 1, 2]);
    assert.throws(() => f.read('nope'), /no tensor named 'nope'/);
  } finally { f.close(); }
  assert.throws(() => f.read('w'), /closed/);
  for (const t of [w, ids, ...tensors.values()]) t.dispose();
});

test('writer rejects inconsistent records with the tensor named', () => {
  assert.throws(() => encodeSafetensors({ x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }), /'x'.*needs 3 elements, data has 2/);
  assert.throws(() => encodeSafetensors({ x: { dtype: 'F64', shape: [2], data: new Float32Array(2) } }), /'x': dtype F64 does not match its Float32Array/);
  assert.throws(() => encodeSafetensors({ x: { dtype: 'BF16' as 'F32', shape: [2], data: new Float32Array(2) } }), /unsupported dtype 'BF16'/);
  assert.throws(() => encodeSafetensors({ x: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } }), /non-negative integers/);
  assert.throws(() => encodeSafetensors({ __metadata__: { dtype: 'F32', shape: [0], data: new Float32Array(0) } }), /reserved/);
  assert.throws(() => encodeSafetensors({}, { n: 3 as unknown as string }), /metadata 'n' must be a string/);
});

/** Asserts that reading `bytes` from a file fails with one Error naming the file and matching `problem`. */
function rejects(bytes: Uint8Array, problem: RegExp): void {
  const dir = tmpdir();
  const file = path.join(dir, 'bad.safetensors');
  fs.writeFileSync(file, bytes);
  for (const read of [() => readSafetensorsSync(file), () => openSafetensorsSync(file).close()]) {
    assert.throws(read, (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.ok(e.message.startsWith(`safetensors ${file}: `), e.message);
      assert.match(e.message, problem);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    });
  }
}

test('truncated files give a clear error wherever they are cut', () => {
  const good = encodeSafetensors(records(), { a: 'b' });
  const n = Number(Buffer.from(good).readBigUInt64LE(0));
  rejects(good.subarray(0, 0), /too short for the 8-byte header length/);
  rejects(good.subarray(0, 5), /too short for the 8-byte header length/);
  rejects(good.subarray(0, 8), /header length \d+ runs past the end/);
  rejects(good.subarray(0, 8 + Math.floor(n / 2)), /header length \d+ runs past the end/);
  rejects(good.subarray(0, 8 + n), /run past the end of the data|truncated/);
  rejects(good.subarray(0, good.length - 1), /run past the end of the data \(\d+ bytes; file truncated\?\)/);
  // Every cut point fails (none is silently accepted).
  for (let cut = 0; cut < good.length; cut += 7) {
    assert.throws(() => decodeSafetensors(good.subarray(0, cut), 'cut'), /^Error: safetensors cut: /);
  }
});

test('corrupt headers give a clear error naming the problem', () => {
  const four = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
  const ok = { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } };
  assert.doesNotThrow(() => decodeSafetensors(handMade(ok, four)));
  const raw = (text: string | Buffer, data: Uint8Array = four): Buffer => {
    const head = Buffer.from(text);
    const n = Buffer.alloc(8); n.writeBigUInt64LE(BigInt(head.length));
    return Buffer.concat([n, head, data]);
  };
  rejects(raw('{"w": {"dtype": "F32", '), /header is not valid JSON/);
  rejects(raw('[1, 2, 3]'), /does not start with '\{'/);
  rejects(raw('{"w": 3}'), /tensor 'w': entry must be an object/);
  rejects(Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), four]), /header length \d+ is implausible/);
  rejects(handMade({ w: { dtype: 'F8_E4M3', shape: [16], data_offsets: [0, 16] } }, four), /tensor 'w': unknown or unsupported dtype 'F8_E4M3'/);
  rejects(handMade({ w: { dtype: 'BF16', shape: [4], data_offsets: [0, 16] } }, four), /shape \[4\] × BF16 needs 8 bytes, data_offsets \[0, 16\] hold 16/);
  rejects(handMade({ w: { shape: [4], data_offsets: [0, 16] } }, four), /tensor 'w': missing dtype/);
  rejects(handMade({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, four), /shape \[3\] × F32 needs 12 bytes, data_offsets \[0, 16\] hold 16/);
  rejects(handMade({ w: { dtype: 'F64', shape: [4], data_offsets: [0, 16] } }, four), /× F64 needs 32 bytes/);
  rejects(handMade({ w: { dtype: 'F32', shape: [2.5], data_offsets: [0, 16] } }, four), /non-negative integers/);
  rejects(handMade({ w: { dtype: 'F32', shape: [4], data_offsets: [0] } }, four), /data_offsets must be \[begin, end\]/);
  rejects(handMade({ w: { dtype: 'F32', shape: [0], data_offsets: [16, 8] } }, four), /end before they begin/);
  rejects(handMade({ w: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, four), /'w': data_offsets \[0, 32\] run past the end of the data \(16 bytes/);
  rejects(handMade({
    a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
    b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
  }, four), /tensors 'a' and 'b' overlap/);
  rejects(handMade({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, four), /bytes 0\.\.8 of the data belong to no tensor/);
  rejects(handMade({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, four), /8 bytes after the last tensor belong to no tensor/);
  rejects(handMade({ __metadata__: { n: 1 }, ...ok }, four), /__metadata__ 'n' must be a string/);
  rejects(handMade({ __metadata__: ['x'], ...ok }, four), /__metadata__ must be an object of strings/);
  rejects(raw(Buffer.concat([Buffer.from('{"'), Buffer.from([0xff]), Buffer.from('": 1}')])), /header is not valid UTF-8/);
});

test('a missing file is one clear error', () => {
  const file = path.join(tmpdir(), 'absent.safetensors');
  assert.throws(() => readSafetensorsSync(file), new RegExp(`safetensors ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: no such file`));
  assert.throws(() => openSafetensorsSync(file), /no such file/);
});

test('F16 and BF16 tensors load widened to float32, exactly, including subnormals, ±0, ±∞ and NaN', () => {
  // Half bit patterns and their exact values (IEEE 754 binary16).
  const half: [number, number][] = [
    [0x3c00, 1], [0xc000, -2], [0x3555, 0.333251953125], [0x7bff, 65504], [0x0400, 2 ** -14],
    [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24], [0x8001, -(2 ** -24)], [0x0000, 0], [0x8000, -0],
    [0x7c00, Infinity], [0xfc00, -Infinity], [0x7e00, NaN],
  ];
  // bfloat16 is the top half of a float32: pick float32 values whose low 16 bits are zero.
  // (1, -2.5, 3.140625, a subnormal, -0, ∞, NaN, the smallest subnormal)
  const bfBits = [0x3f80, 0xc020, 0x4049, 0x0011, 0x8000, 0x7f80, 0x7fc0, 0x0001];
  const bfValues = new Float32Array(new Uint32Array(bfBits.map((b) => b << 16)).buffer);
  assert.equal(bfValues[2], 3.140625);
  const data = Buffer.alloc(half.length * 2 + bfBits.length * 2);
  half.forEach(([h], i) => data.writeUInt16LE(h, 2 * i));
  bfBits.forEach((b, i) => data.writeUInt16LE(b, half.length * 2 + 2 * i));
  const file = handMade({
    h: { dtype: 'F16', shape: [half.length], data_offsets: [0, half.length * 2] },
    b: { dtype: 'BF16', shape: [2, 4], data_offsets: [half.length * 2, data.length] },
  }, data);
  const got = decodeSafetensors(file, 'halves');
  const h = got.tensors.get('h')!, b = got.tensors.get('b')!;
  assert.equal(h.dtype, 'float32');
  assert.ok(h.data instanceof Float32Array);
  half.forEach(([, v], i) => assert.ok(Object.is(h.data[i], v), `half 0x${half[i][0].toString(16)}: ${h.data[i]} ≠ ${v}`));
  assert.deepEqual(b.shape, [2, 4]);
  assert.deepEqual(bits(b.data), bits(bfValues));
  // The same through the lazy file reader, which also reports the stored dtype.
  const dir = tmpdir();
  fs.writeFileSync(path.join(dir, 'h.safetensors'), file);
  const f = openSafetensorsSync(path.join(dir, 'h.safetensors'));
  try {
    assert.equal(f.info('h').stored, 'F16');
    assert.equal(f.info('b').stored, 'BF16');
    assert.equal(f.info('b').dtype, 'float32');
    assert.deepEqual(bits(f.read('h')), bits(h.data));
  } finally { f.close(); }
  fs.rmSync(dir, { recursive: true, force: true });
});
