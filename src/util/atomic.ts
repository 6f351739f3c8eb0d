// Crash-safe file writes. A write goes to a temporary file in the target's folder (same file
// system, so the rename is atomic), is fsynced, renamed over the target, and the folder is fsynced
// so the rename itself survives a power cut. A process killed at any moment leaves either the old
// file or the new one, never a mix; at worst a stale temporary file `.<name>.tmp-<pid>-<rand>`
// stays behind (removeStaleTemps clears those of dead processes).
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { readJsonFileSync } from './files.ts';

/** What can be written: bytes, a string (UTF-8), or a sequence of either (streamed, not joined). */
export type FileContent = string | Uint8Array | Iterable<string | Uint8Array>;

export interface AtomicWriteOptions {
  /** File mode of the new file (default 0o644, before the umask). */
  mode?: number;
  /** fsync the file and its folder (default true; off only for scratch files in tests). */
  durable?: boolean;
}

const TEMP_MARK = '.tmp-';

function tempPathFor(target: string): string {
  const dir = path.dirname(target), base = path.basename(target);
  return path.join(dir, `.${base}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`);
}

function chunksOf(content: FileContent): Iterable<string | Uint8Array> {
  return typeof content === 'string' || content instanceof Uint8Array ? [content] : content;
}

function writeAllSync(fd: number, chunk: string | Uint8Array): void {
  const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
  let done = 0;
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
}

/** fsyncs a folder so that a rename or unlink inside it is on disk. */
export function fsyncDirSync(dir: string): void {
  let fd: number;
  try { fd = fs.openSync(dir, 'r'); } catch (e) { if (ignorableDirSyncError(e)) return; throw e; }
  try { fs.fsyncSync(fd); } catch (e) { if (!ignorableDirSyncError(e)) throw e; } finally { fs.closeSync(fd); }
}

// Some platforms (Windows, some network file systems) cannot open or fsync a folder: the rename
// is still atomic there, only its durability across a power cut is the file system's business.
function ignorableDirSyncError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EISDIR' || code === 'EPERM' || code === 'EINVAL' || code === 'ENOTSUP' || code === 'EACCES';
}

/**
 * Replaces `target` with `content` atomically. The folder must exist. Throws (leaving the old
 * file untouched and no temporary file) when anything fails.
 */
export function writeFileAtomicSync(target: string, content: FileContent, opts: AtomicWriteOptions = {}): void {
  const durable = opts.durable ?? true;
  const tmp = tempPathFor(target);
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'wx', opts.mode ?? 0o644);
    for (const chunk of chunksOf(content)) writeAllSync(fd, chunk);
    if (durable) fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, target);
  } catch (e) {
    if (fd !== null) { try { fs.closeSync(fd); } catch { /* already failing */ } }
    try { fs.unlinkSync(tmp); } catch { /* never created, or already renamed */ }
    throw e;
  }
  if (durable) fsyncDirSync(path.dirname(target));
}

/** Async twin of writeFileAtomicSync (same guarantees); chunks may also come from an async iterable. */
export async function writeFileAtomic(
  target: string,
  content: FileContent | AsyncIterable<string | Uint8Array>,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const durable = opts.durable ?? true;
  const tmp = tempPathFor(target);
  let fh: fsp.FileHandle | null = null;
  try {
    fh = await fsp.open(tmp, 'wx', opts.mode ?? 0o644);
    const chunks = typeof content === 'string' || content instanceof Uint8Array ? [content] : content;
    for await (const chunk of chunks as AsyncIterable<string | Uint8Array>) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      let done = 0;
      while (done < bytes.length) done += (await fh.write(bytes, done, bytes.length - done)).bytesWritten;
    }
    if (durable) await fh.sync();
    await fh.close();
    fh = null;
    await fsp.rename(tmp, target);
  } catch (e) {
    if (fh !== null) await fh.close().catch(() => undefined);
    await fsp.unlink(tmp).catch(() => undefined);
    throw e;
  }
  if (durable) fsyncDirSync(path.dirname(target));
}

/** JSON with a trailing newline, written atomically (2-space indent by default). */
export function writeJsonAtomicSync(target: string, value: unknown, opts: AtomicWriteOptions & { indent?: number } = {}): void {
  const text = JSON.stringify(value, null, opts.indent ?? 2);
  if (text === undefined) throw new Error(`writeJsonAtomicSync: ${target}: value is not JSON-serialisable`);
  writeFileAtomicSync(target, text + '\n', opts);
}

export async function writeJsonAtomic(target: string, value: unknown, opts: AtomicWriteOptions & { indent?: number } = {}): Promise<void> {
  const text = JSON.stringify(value, null, opts.indent ?? 2);
  if (text === undefined) throw new Error(`writeJsonAtomic: ${target}: value is not JSON-serialisable`);
  await writeFileAtomic(target, text + '\n', opts);
}

/**
 * Reads a JSON file; a missing file, a non-regular file (a FIFO never blocks), an oversized one
 * or bad JSON is one Error line naming the file.
 */
export function readJsonSync<T = unknown>(file: string): T {
  return readJsonFileSync<T>(file);
}

/**
 * Makes a whole folder appear at `target` at once: `fill(tmpDir)` writes the files into a fresh
 * temporary sibling folder, the files directly inside it are fsynced (write subfolders' files with
 * writeFileAtomicSync), then the folder is renamed to `target`. `target`
 * must not exist (checkpoints use a new name per step and point to the newest with an atomically
 * written file), so an existing checkpoint is never half-replaced.
 */
export function writeDirAtomicSync(target: string, fill: (tmpDir: string) => void, opts: { durable?: boolean } = {}): void {
  const durable = opts.durable ?? true;
  if (fs.existsSync(target)) throw new Error(`writeDirAtomicSync: ${target} already exists`);
  const tmp = tempPathFor(target);
  fs.mkdirSync(tmp);
  try {
    fill(tmp);
    if (durable) {
      for (const name of fs.readdirSync(tmp)) {
        const p = path.join(tmp, name);
        if (!fs.statSync(p).isFile()) continue;
        const fd = fs.openSync(p, 'r');
        try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
      }
      fsyncDirSync(tmp);
    }
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  if (durable) fsyncDirSync(path.dirname(target));
}

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/**
 * Removes temporary files (and folders) left next to `target` by writers that died mid-write.
 * Temporaries of live processes (another writer at work) are left alone. Returns what was removed.
 */
export function removeStaleTemps(target: string): string[] {
  const dir = path.dirname(target), prefix = `.${path.basename(target)}${TEMP_MARK}`;
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return []; }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    // Ours (an async write in progress) or a live process's: not stale.
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || pidAlive(pid)) continue;
    const p = path.join(dir, name);
    fs.rmSync(p, { recursive: true, force: true });
    removed.push(p);
  }
  return removed;
}
