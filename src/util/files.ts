// Reading and removing files a user hands us, treating every path as untrusted:
//
// - Reads open the path non-blocking and check with fstat that it is a regular file before reading
//   a byte: a FIFO, socket or device where a file is expected is one clear error, not a hang
//   (opening a FIFO for reading blocks until a writer comes; O_NONBLOCK returns at once).
//   Links to regular files are followed (a user may link a corpus or weights in).
// - Reads are bounded: a file larger than the caller's limit is refused before it is read.
// - Removal never follows a symbolic link: a link is removed itself, never what it points to, and
//   only entries the caller names are touched (run folders remove only what cubit created).
// - Error messages are one line: JSON parse errors keep their whole text with newlines escaped.
import * as fs from 'node:fs';
import * as path from 'node:path';

const O_NONBLOCK = fs.constants.O_NONBLOCK ?? 0;
const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;

/** Sizes of the files we read whole (bytes). */
export const FILE_LIMITS = {
  /** config.json, state.json, latest.json, training configs, tokenizer_config.json. */
  json: 64 * 1024 * 1024,
  /** tokenizer.json (the largest public ones are ~30 MB). */
  tokenizer: 512 * 1024 * 1024,
  /** One corpus file or prompt file. */
  text: 1024 * 1024 * 1024,
} as const;

/** One line saying what a file-system error means, naming the file (EACCES/EROFS name the permission). */
export function fsErrorMessage(file: string, e: unknown, doing = 'cannot read'): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT': return `${file}: no such file or folder`;
    case 'EACCES': case 'EPERM': return `${file}: ${doing}: permission denied (${code})`;
    case 'EROFS': return `${file}: ${doing}: the file system is read-only (EROFS)`;
    case 'ENOSPC': return `${file}: ${doing}: no space left on the device (ENOSPC)`;
    case 'ELOOP': return `${file}: a symbolic link cubit does not follow here, or a loop of links (ELOOP)`;
    case 'EISDIR': return `${file}: is a folder, expected a file`;
    case 'ENOTDIR': return `${file}: a part of the path is not a folder`;
    default: return `${file}: ${doing} (${oneLine((e as Error).message ?? String(e))})`;
  }
}

/** Newlines escaped, so a message stays one line whole. */
export function oneLine(s: string): string {
  return s.replace(/\r?\n/g, '\\n').replace(/\r/g, '\\r');
}

function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

export interface OpenOptions {
  /** Largest size accepted (bytes); larger is one error. */
  maxBytes?: number;
  /** Shown before the path in messages (e.g. 'tokenizer'). */
  label?: string;
}

/**
 * Opens `file` for reading, refusing anything but a regular file (links to one are followed)
 * without ever blocking. Returns the descriptor and the size; the caller closes it.
 */
export function openRegularFileSync(file: string, opts: OpenOptions = {}): { fd: number; size: number } {
  const name = opts.label ? `${opts.label} ${file}` : file;
  let fd: number;
  try { fd = fs.openSync(file, fs.constants.O_RDONLY | O_NONBLOCK); } catch (e) { throw new Error(fsErrorMessage(name, e)); }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error(`${name}: is ${kindOf(st)}, expected a regular file`);
    if (opts.maxBytes !== undefined && st.size > opts.maxBytes) {
      throw new Error(`${name}: is ${st.size} bytes, more than the ${opts.maxBytes} accepted`);
    }
    return { fd, size: st.size };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** A regular file's bytes (see openRegularFileSync). */
export function readRegularFileSync(file: string, opts: OpenOptions = {}): Buffer {
  const { fd, size } = openRegularFileSync(file, opts);
  try {
    const buf = Buffer.allocUnsafe(size);
    let done = 0;
    while (done < size) {
      const n = fs.readSync(fd, buf, done, size - done, done);
      if (n === 0) break; // shrank while open: what we have
      done += n;
    }
    return done === size ? buf : buf.subarray(0, done);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A regular file's text, which must be valid UTF-8: invalid bytes are one error naming the byte
 * offset (silently turning them into U+FFFD would train on text that was never there).
 */
export function readTextFileSync(file: string, opts: OpenOptions = {}): string {
  const bytes = readRegularFileSync(file, { maxBytes: FILE_LIMITS.text, ...opts });
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    const name = opts.label ? `${opts.label} ${file}` : file;
    throw new Error(`${name}: not valid UTF-8 (first bad byte at offset ${firstInvalidUtf8(bytes)}); convert it to UTF-8 first (e.g. iconv -f latin1 -t utf-8)`);
  }
}

/** The offset of the first byte that does not begin or continue a valid UTF-8 sequence. */
export function firstInvalidUtf8(b: Uint8Array): number {
  // Binary search on the longest valid prefix (a valid prefix may end inside a sequence).
  let lo = 0, hi = b.length;
  const ok = (n: number): boolean => {
    try { new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(0, n), { stream: true }); return true; } catch { return false; }
  };
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ok(mid)) lo = mid; else hi = mid - 1;
  }
  return lo;
}

/** Parses JSON text; a syntax error is one line naming the file, with the parser's whole message. */
export function parseJsonText<T = unknown>(text: string, file: string): T {
  try { return JSON.parse(text) as T; } catch (e) {
    throw new Error(`${file}: not valid JSON (${oneLine((e as Error).message)})`);
  }
}

/** Reads and parses a JSON file (a regular file of at most FILE_LIMITS.json bytes by default). */
export function readJsonFileSync<T = unknown>(file: string, opts: OpenOptions = {}): T {
  const text = readTextFileSync(file, { maxBytes: FILE_LIMITS.json, ...opts });
  return parseJsonText<T>(text, opts.label ? `${opts.label} ${file}` : file);
}

/** lstat, or null when nothing is there. */
export function lstatOrNull(p: string): fs.Stats | null {
  try { return fs.lstatSync(p); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(fsErrorMessage(p, e, 'cannot inspect'));
  }
}

/**
 * Throws when `p` exists and is a symbolic link or not `want` (a folder or a regular file): where
 * cubit writes, a link could aim the write outside the folder the user named.
 */
export function refuseLink(p: string, want: 'file' | 'folder'): void {
  const st = lstatOrNull(p);
  if (!st) return;
  if (st.isSymbolicLink()) throw new Error(`${p}: is a symbolic link; cubit writes only real ${want === 'file' ? 'files' : 'folders'} inside the run folder (remove the link, or move the whole run folder and link that instead)`);
  if (want === 'folder' ? !st.isDirectory() : !st.isFile()) throw new Error(`${p}: is ${kindOf(st)}, expected a ${want === 'file' ? 'regular file' : 'folder'}`);
}

/**
 * Removes the entry `name` of `dir` without following links: a link is unlinked itself, a folder
 * removed with what it holds (recursive removal never follows the links inside either), a file
 * unlinked. `dir` itself must be a real folder (checked by the caller with refuseLink).
 */
export function removeEntrySync(dir: string, name: string): void {
  if (name.includes('/') || name.includes('\\') || name === '..' || name === '.' || name === '') throw new Error(`removeEntrySync: '${name}' is not an entry name`);
  const p = path.join(dir, name);
  const st = lstatOrNull(p);
  if (!st) return;
  if (st.isDirectory()) fs.rmSync(p, { recursive: true, force: true });
  else fs.unlinkSync(p);
}

/**
 * Opens `file` for appending, refusing a link (O_NOFOLLOW) or anything but a regular file, so
 * that a planted link never redirects the writes.
 */
export function openAppendNoFollowSync(file: string): number {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0o644);
  } catch (e) { throw new Error(fsErrorMessage(file, e, 'cannot write')); }
  const st = fs.fstatSync(fd);
  if (!st.isFile()) { fs.closeSync(fd); throw new Error(`${file}: is ${kindOf(st)}, expected a regular file`); }
  return fd;
}

/**
 * mkdir -p that names the real reason on failure: Node's recursive mkdir reports ENOENT on a
 * read-only file system, so the first missing level is created on its own to get the true error.
 */
export function makeFolderSync(dir: string): void {
  try { fs.mkdirSync(dir, { recursive: true }); return; } catch (e) {
    let first = path.resolve(dir);
    while (!fs.existsSync(path.dirname(first)) && path.dirname(first) !== first) first = path.dirname(first);
    let real: unknown = e;
    try { fs.mkdirSync(first); } catch (e2) { real = e2; }
    throw new Error(fsErrorMessage(dir, real, 'cannot create the folder'));
  }
}
