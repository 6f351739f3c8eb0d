// Packing an experiment's output folder into a few files of bounded size, and unpacking them, so
// that an experiment can run in pieces on a machine whose files come back only in small pieces
// (a remote GPU or CPU host): run for a while, pack, carry the parts to the next machine (or back
// here), unpack, and `cubit experiment` continues where it stopped.
//
// What goes in: the report (report.md, report.html, results.json, figures/), and every run folder.
// A finished run (its result.json is there) keeps only run.json and result.json by default — the
// result holds the loss curve and every number a report needs — or, with `weights`, also its final
// model without the optimizer state (for `cubit eval` / `cubit generate`). An unfinished run keeps
// everything, checkpoint and optimizer state included, so it resumes bit-identically. Left out:
// the lock file and .stale/.
//
// Format: a gzip stream, cut into parts <name>.000, <name>.001, … of at most maxPartBytes. The
// stream is a header line `cubit-experiment-pack 1`, then per file a JSON line {"path", "size"}
// followed by its bytes, then {"end": true, "files": n} so that a missing part is detected.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { writeFileAtomicSync } from '../util/atomic.ts';
import { readRegularFileSync, refuseLink } from '../util/files.ts';
import { LOCK_FILE, RESULT_FILE } from './runner.ts';

const MAGIC = 'cubit-experiment-pack 1';
export const DEFAULT_PART_BYTES = 16 * 1024 * 1024;

export interface PackOptions {
  /** Keep finished runs' final model weights (not their optimizer state). Default false. */
  weights?: boolean;
  /** Largest part in bytes (default 16 MiB). */
  maxPartBytes?: number;
}

/** The files of an output folder that a pack holds, relative to it (sorted). */
export function packList(out: string, opts: PackOptions = {}): string[] {
  const files: string[] = [];
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(out, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) files.push(r);
    }
  };
  for (const e of fs.readdirSync(out, { withFileTypes: true })) {
    if (e.name === LOCK_FILE || e.name === '.stale' || e.name.startsWith('.')) continue;
    if (e.isFile()) { files.push(e.name); continue; }
    if (!e.isDirectory()) continue;
    const finished = fs.existsSync(path.join(out, e.name, RESULT_FILE));
    if (!finished || e.name === 'figures') { walk(e.name); continue; }
    for (const f of fs.readdirSync(path.join(out, e.name))) if (f.endsWith('.json') && fs.statSync(path.join(out, e.name, f)).isFile()) files.push(`${e.name}/${f}`);
    if (opts.weights) {
      const trainDir = path.join(out, e.name, 'train');
      const pointer = path.join(trainDir, 'latest.json');
      if (fs.existsSync(pointer)) {
        const ck = (JSON.parse(fs.readFileSync(pointer, 'utf8')) as { checkpoint: string }).checkpoint;
        files.push(`${e.name}/train/latest.json`, `${e.name}/train/metrics.jsonl`);
        for (const f of fs.readdirSync(path.join(trainDir, ck))) if (f !== 'optimizer.safetensors') files.push(`${e.name}/train/${ck}/${f}`);
      }
    }
  }
  return files.filter((f) => fs.existsSync(path.join(out, f))).sort();
}

/** Packs `out` into parts <dest>/<name>.000 …; returns the part files. */
export function packExperiment(out: string, dest: string, name: string, opts: PackOptions = {}): string[] {
  if (!fs.existsSync(out)) throw new Error(`pack: ${out}: no such folder`);
  if (!/^[\w.-]+$/.test(name)) throw new Error(`pack: name '${name}' must be letters, digits, '.', '-' or '_'`);
  const chunks: Buffer[] = [Buffer.from(`${MAGIC}\n`)];
  const files = packList(out, opts);
  for (const f of files) {
    const data = fs.readFileSync(path.join(out, f));
    chunks.push(Buffer.from(`${JSON.stringify({ path: f, size: data.length })}\n`), data);
  }
  chunks.push(Buffer.from(`${JSON.stringify({ end: true, files: files.length })}\n`));
  const z = gzipSync(Buffer.concat(chunks), { level: 6 });
  const max = opts.maxPartBytes ?? DEFAULT_PART_BYTES;
  fs.mkdirSync(dest, { recursive: true });
  for (const old of fs.readdirSync(dest)) if (new RegExp(`^${name.replace(/\./g, '\\.')}\\.\\d{3}$`).test(old)) fs.rmSync(path.join(dest, old));
  const parts: string[] = [];
  for (let i = 0, k = 0; i < z.length || k === 0; i += max, k++) {
    const p = path.join(dest, `${name}.${String(k).padStart(3, '0')}`);
    writeFileAtomicSync(p, z.subarray(i, Math.min(z.length, i + max)), { durable: false });
    parts.push(p);
  }
  return parts;
}

/** A path from a pack: relative, plain names, nothing that climbs out of the folder. */
function checkPath(p: unknown, where: string): string {
  if (typeof p !== 'string' || !p || p.startsWith('/') || p.includes('\\') || p.split('/').some((s) => !/^[\w.-]+$/.test(s) || s === '.' || s === '..')) {
    throw new Error(`${where}: bad file path ${JSON.stringify(p)} in the pack`);
  }
  return p;
}

/**
 * Unpacks parts (all of one pack, any order: sorted by their .NNN suffix) into `out`, replacing
 * the files they hold and leaving others alone. Returns the number of files written.
 */
export function unpackExperiment(parts: string[], out: string): number {
  if (!parts.length) throw new Error('unpack: no part files given');
  const sorted = [...parts].sort();
  const base = sorted[0].replace(/\.\d{3}$/, '');
  sorted.forEach((p, i) => {
    if (!fs.existsSync(p)) throw new Error(`unpack: ${p}: no such file`);
    if (p !== `${base}.${String(i).padStart(3, '0')}`) throw new Error(`unpack: expected part ${base}.${String(i).padStart(3, '0')}, got ${p} (give every part of one pack)`);
  });
  let raw: Buffer;
  // A part is read only up to 256 MiB (packs default to 16 MiB parts), and what the parts unpack to
  // is capped at 64× their size (far above what checkpoints and JSON compress by), so a small
  // damaged or hostile part cannot claim gigabytes.
  const packed = Buffer.concat(sorted.map((p) => readRegularFileSync(p, { maxBytes: 256 * 1024 * 1024 })));
  try { raw = gunzipSync(packed, { maxOutputLength: Math.min(2 ** 31 - 1, 64 * packed.length + (1 << 20)) }); } catch (e) {
    throw new Error(`unpack: ${base}.*: not a complete pack (${(e as Error).message}); is a part missing?`);
  }
  let pos = 0;
  const line = (): string => {
    const nl = raw.indexOf(10, pos);
    if (nl < 0) throw new Error(`unpack: ${base}.*: the pack ends early`);
    const s = raw.subarray(pos, nl).toString('utf8');
    pos = nl + 1;
    return s;
  };
  if (line() !== MAGIC) throw new Error(`unpack: ${base}.*: not a cubit experiment pack`);
  let written = 0;
  for (;;) {
    let h: { path?: unknown; size?: unknown; end?: unknown; files?: unknown };
    try { h = JSON.parse(line()) as typeof h; } catch { throw new Error(`unpack: ${base}.*: a damaged entry header`); }
    if (h.end === true) {
      if (h.files !== written) throw new Error(`unpack: ${base}.*: ${written} files read but the pack lists ${String(h.files)}`);
      return written;
    }
    const rel = checkPath(h.path, `unpack: ${base}.*`);
    if (typeof h.size !== 'number' || !Number.isInteger(h.size) || h.size < 0 || pos + h.size > raw.length) throw new Error(`unpack: ${base}.*: bad size for ${rel}`);
    const target = path.join(out, rel);
    // Never write through a link that already stands inside `out` (it could lead anywhere).
    const parts = rel.split('/');
    for (let i = 1; i <= parts.length; i++) refuseLink(path.join(out, ...parts.slice(0, i)), i < parts.length ? 'folder' : 'file');
    fs.mkdirSync(path.dirname(target), { recursive: true });
    writeFileAtomicSync(target, raw.subarray(pos, pos + h.size), { durable: false });
    pos += h.size;
    written++;
  }
}
