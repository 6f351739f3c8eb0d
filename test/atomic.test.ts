// Atomic writes: content replaced whole or not at all, even when the writer is SIGKILLed mid-write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tmpDir } from './helpers.ts';
import {
  readJsonSync, removeStaleTemps, writeDirAtomicSync, writeFileAtomic, writeFileAtomicSync, writeJsonAtomic, writeJsonAtomicSync,
} from '../src/util/atomic.ts';

const atomicUrl = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '../src/util/atomic.ts')).href;

const tmpdir = (): string => tmpDir('atomic');

function temps(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.includes('.tmp-'));
}

test('writeFileAtomicSync writes, replaces, streams chunks and leaves no temporary file', () => {
  const dir = tmpdir();
  const f = path.join(dir, 'a.bin');
  writeFileAtomicSync(f, 'first');
  assert.equal(fs.readFileSync(f, 'utf8'), 'first');
  writeFileAtomicSync(f, [new Uint8Array([1, 2, 3]), 'xy', new Uint8Array(0)]);
  assert.deepEqual([...fs.readFileSync(f)], [1, 2, 3, 120, 121]);
  const big = new Uint8Array(3_000_000).map((_, i) => (i * 7) & 255);
  writeFileAtomicSync(f, big);
  assert.ok(Buffer.from(big).equals(fs.readFileSync(f)));
  assert.deepEqual(temps(dir), []);
});

test('a failing write leaves the old file and no temporary file', () => {
  const dir = tmpdir();
  const f = path.join(dir, 'a.txt');
  writeFileAtomicSync(f, 'old');
  function* chunks(): Generator<string> { yield 'new, half'; throw new Error('disk on fire'); }
  assert.throws(() => writeFileAtomicSync(f, chunks()), /disk on fire/);
  assert.equal(fs.readFileSync(f, 'utf8'), 'old');
  assert.deepEqual(temps(dir), []);
  assert.throws(() => writeFileAtomicSync(path.join(dir, 'missing-folder', 'x'), 'x'), /ENOENT/);
});

test('the async writer has the same guarantees', async () => {
  const dir = tmpdir();
  const f = path.join(dir, 'a.txt');
  await writeFileAtomic(f, 'old');
  async function* chunks(): AsyncGenerator<string> { yield 'partial'; throw new Error('boom'); }
  await assert.rejects(writeFileAtomic(f, chunks()), /boom/);
  assert.equal(fs.readFileSync(f, 'utf8'), 'old');
  await writeJsonAtomic(f, { a: [1, 2] });
  assert.deepEqual(readJsonSync(f), { a: [1, 2] });
  assert.deepEqual(temps(dir), []);
});

test('JSON variant round-trips and reports bad files by name', () => {
  const dir = tmpdir();
  const f = path.join(dir, 'state.json');
  const value = { step: 12, rng: 123456789, nested: { s: 'ü', xs: [0.1, -0] } };
  writeJsonAtomicSync(f, value);
  assert.deepEqual(readJsonSync(f), JSON.parse(JSON.stringify(value)));
  assert.ok(fs.readFileSync(f, 'utf8').endsWith('\n'));
  assert.throws(() => writeJsonAtomicSync(f, undefined), /not JSON-serialisable/);
  fs.writeFileSync(f, '{"step": 1');
  assert.throws(() => readJsonSync(f), (e: Error) => e.message.includes(f) && /not valid JSON/.test(e.message));
  assert.throws(() => readJsonSync(path.join(dir, 'nope.json')), /nope\.json: no such file/);
});

// The child writes the target through the public API with a chunk generator that SIGKILLs its
// own process after `killAfter` chunks: in the middle of the data, or after all of it (before
// fsync and rename).
function killedWriter(target: string, killAfter: number, chunks: number, asyncWriter: boolean): ReturnType<typeof spawnSync> {
  const script = `
    const { writeFileAtomicSync, writeFileAtomic } = await import(${JSON.stringify(atomicUrl)});
    const chunk = new Uint8Array(256 * 1024).fill(66);
    function* gen() {
      for (let i = 0; i < ${chunks}; i++) {
        if (i === ${killAfter}) process.kill(process.pid, 'SIGKILL');
        yield chunk;
      }
      process.kill(process.pid, 'SIGKILL');
    }
    if (${asyncWriter}) await writeFileAtomic(${JSON.stringify(target)}, gen());
    else writeFileAtomicSync(${JSON.stringify(target)}, gen());
    console.log('not killed');
  `;
  const dir = path.dirname(target);
  const child = path.join(dir, 'child.mjs');
  fs.writeFileSync(child, script);
  return spawnSync(process.execPath, ['--import', 'tsx', child], { encoding: 'utf8', cwd: process.cwd() });
}

for (const asyncWriter of [false, true]) {
  test(`a writer SIGKILLed mid-write leaves the previous file intact (${asyncWriter ? 'async' : 'sync'})`, () => {
    const dir = tmpdir();
    const f = path.join(dir, 'weights.bin');
    const old = new Uint8Array(1024 * 1024).fill(65);
    writeFileAtomicSync(f, old);
    for (const killAfter of [0, 2, 4]) { // before any data, halfway, after all 4 chunks
      const r = killedWriter(f, killAfter, 4, asyncWriter);
      assert.equal(r.signal, 'SIGKILL', `child should have been killed: ${r.stderr}`);
      assert.ok(!String(r.stdout).includes('not killed'));
      assert.ok(Buffer.from(old).equals(fs.readFileSync(f)), `old content intact after a kill at chunk ${killAfter}`);
      const left = temps(dir);
      assert.equal(left.length, 1, 'the dead writer leaves its temporary file behind');
      // The kill really came mid-write: the temporary file holds part of the new data (async
      // writes may still be queued when the kill comes, so only the sync writer is exact).
      const partial = fs.statSync(path.join(dir, left[0])).size;
      if (!asyncWriter) assert.equal(partial, killAfter * 256 * 1024);
      const removed = removeStaleTemps(f);
      assert.equal(removed.length, 1);
      assert.deepEqual(temps(dir), []);
    }
    // And a writer that is not killed replaces it.
    writeFileAtomicSync(f, 'new');
    assert.equal(fs.readFileSync(f, 'utf8'), 'new');
  });
}

test('removeStaleTemps leaves temporaries of live processes alone', () => {
  const dir = tmpdir();
  const f = path.join(dir, 'x.json');
  const mine = path.join(dir, `.x.json.tmp-${process.pid}-abcd`);
  const parentPid = process.ppid;
  const live = path.join(dir, `.x.json.tmp-${parentPid}-abcd`);
  fs.writeFileSync(mine, '');
  fs.writeFileSync(live, '');
  assert.deepEqual(removeStaleTemps(f), []);
  assert.ok(fs.existsSync(mine) && fs.existsSync(live));
});

test('writeDirAtomicSync makes a folder appear whole, or not at all', () => {
  const dir = tmpdir();
  const target = path.join(dir, 'ckpt-000010');
  writeDirAtomicSync(target, (tmp) => {
    assert.ok(!fs.existsSync(target), 'the target does not exist while it is being filled');
    fs.writeFileSync(path.join(tmp, 'a.txt'), 'A');
    writeJsonAtomicSync(path.join(tmp, 'b.json'), { b: 1 });
  });
  assert.deepEqual(fs.readdirSync(target).sort(), ['a.txt', 'b.json']);
  assert.throws(() => writeDirAtomicSync(target, () => undefined), /already exists/);
  const other = path.join(dir, 'ckpt-000020');
  assert.throws(() => writeDirAtomicSync(other, (tmp) => { fs.writeFileSync(path.join(tmp, 'a'), 'x'); throw new Error('fail in fill'); }), /fail in fill/);
  assert.ok(!fs.existsSync(other));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['ckpt-000010']);
});
