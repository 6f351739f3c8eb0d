// The seeded fuzz cases of test/fuzz.test.ts, run in a child process per group so that the parent
// can watch them: `node --import tsx test/fuzz-runner.ts <group> <seed> <sandbox>`.
//
// Each case builds a mutated input (safetensors bytes, a model or training config, a run folder
// with a damaged pointer / config / state / weights / optimizer file or planted links, a
// tokenizer.json, a corpus, a command line) and runs the code that reads it. The only outcomes
// allowed: success, or an Error whose message is one non-empty line (never a raw TypeError /
// RangeError / SyntaxError from deep inside, never a non-Error throw). Besides, after each case:
// no input file changed, nothing outside the run folder was written (a canary folder that planted
// links point at stays byte-identical), and no case took more than CASE_SECONDS.
//
// Output, one JSON object per line: {"beat":n} after each case (the parent kills a child that
// stays silent for CASE_SECONDS), {"fail":…} for each failing case, and at the end
// {"done":group,"cases":n,"maxRssMiB":…}.
import * as fs from 'node:fs';
import * as path from 'node:path';
import '../src/index.ts';
import { Rng } from '../src/core/random.ts';
import { tokenizeDocuments } from '../src/data/batches.ts';
import { loadCorpus, splitCorpus } from '../src/data/corpus.ts';
import { HfTokenizer } from '../src/data/tokenizer.ts';
import { loadModel, summarizeCheckpoint } from '../src/eval/checkpoint.ts';
import { decodeSafetensors, encodeSafetensors, SafetensorsFile } from '../src/io/safetensors.ts';
import { parseModelConfig } from '../src/models/config.ts';
import { parameterCount } from '../src/models/limits.ts';
import { readCheckpointInfo, resolveCheckpoint, RUN_FILES } from '../src/train/checkpoint.ts';
import { parseTrainConfig } from '../src/train/config.ts';
import { exportModel, importRun } from '../src/train/interop.ts';
import { train } from '../src/train/trainer.ts';
import { cliInProcess } from './inference-fixtures.ts';
import { tinyBpeJson, tinyConfig, writeCorpus } from './train-fixtures.ts';

export const CASE_SECONDS = 10;

const [group, seedArg, sandbox] = process.argv.slice(2);
const rng = new Rng(Number(seedArg));
const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)];
const chance = (p: number): boolean => rng.next() < p;
let cases = 0, succeeded = 0;
/** Messages of JavaScript's own errors: a user should never see these, even wrapped in ours. */
const INTERNAL = /is not a function|Cannot read propert|is not iterable|Cannot convert undefined|Invalid typed array length|Invalid array length|Maximum call stack|is not defined|undefined \(reading/;
const emit = (o: unknown): void => { process.stdout.write(JSON.stringify(o) + '\n'); };

/** Runs one case: `fn` may succeed or throw a one-line Error; anything else is a failure. */
async function runCase(label: string, fn: () => unknown | Promise<unknown>, after?: () => string | null): Promise<void> {
  cases++;
  const t0 = performance.now();
  let problem: string | null = null;
  try { await fn(); succeeded++; } catch (e) {
    if (!(e instanceof Error)) problem = `threw a non-Error: ${String(e)}`;
    else if (e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError || e instanceof ReferenceError) problem = `raw ${e.constructor.name}: ${e.message}`;
    else if (!e.message || e.message.includes('\n')) problem = `error message is not one non-empty line: ${JSON.stringify(e.message)}`;
    else if (INTERNAL.test(e.message)) problem = `an internal error shows through: ${e.message}`;
  }
  const seconds = (performance.now() - t0) / 1000;
  if (!problem && seconds > CASE_SECONDS) problem = `took ${seconds.toFixed(1)} s`;
  if (!problem && after) problem = after();
  if (problem) emit({ fail: { group, case: cases, label, problem } });
  emit({ beat: cases });
}

// ---- random values ----

const STRINGS = ['', 'x', '../../etc/passwd', '/etc/passwd', 'checkpoints/../..', 'checkpoints', 'checkpoints/step-00000002', '.', '..', 'a'.repeat(300),
  '\u0000', '💥', 'F32', 'F16', 'BF16', 'I64', 'softmax', 'cubit', 'local_linear', 'byte', 'brown', '__metadata__', 'NaN', '1e309'];
const NUMBERS = [0, 1, 2, -1, 3, 7, 16, 0.5, -0.5, 1.5, 255, 256, 257, 1e3, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e9, 1e15, 1e300, -1e300, 1e-300, 5e-324];

function randomValue(depth = 0): unknown {
  const r = rng.int(depth > 2 ? 4 : 7);
  switch (r) {
    case 0: return pick(NUMBERS);
    case 1: return pick(STRINGS);
    case 2: return pick([true, false, null]);
    case 3: return rng.int(64);
    case 4: return Array.from({ length: rng.int(4) }, () => randomValue(depth + 1));
    case 5: return Object.fromEntries(Array.from({ length: rng.int(3) }, () => [pick(STRINGS.slice(0, 8)), randomValue(depth + 1)]));
    default: return rng.normal() * 10 ** rng.int(12);
  }
}

/** Every [parent, key] in a JSON tree (the root excluded). */
function slots(v: unknown, out: [Record<string, unknown> | unknown[], string | number][] = [], depth = 0): typeof out {
  if (depth > 6 || v === null || typeof v !== 'object') return out;
  const entries: [string | number, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
  // Large arrays/objects (a vocabulary, merges): sample a few entries.
  const chosen = entries.length > 24 ? Array.from({ length: 6 }, () => entries[rng.int(entries.length)]) : entries;
  for (const [k, x] of chosen) { out.push([v as Record<string, unknown>, k]); slots(x, out, depth + 1); }
  return out;
}

/** Applies 1–3 random edits (replace, delete, add an unknown key, change the type) to a JSON tree in place. */
function mutateJson<T>(root: T): T {
  const edits = 1 + rng.int(3);
  for (let e = 0; e < edits; e++) {
    const s = slots(root);
    if (s.length === 0) return root;
    const [parent, key] = pick(s);
    const op = rng.int(5);
    if (op === 0 && !Array.isArray(parent)) delete (parent as Record<string, unknown>)[key as string];
    else if (op === 1 && !Array.isArray(parent)) (parent as Record<string, unknown>)[pick(['zzz', 'dModel', 'step', 'shape', 'Regex'])] = randomValue();
    else if (op === 2 && typeof (parent as Record<string | number, unknown>)[key] === 'number') {
      (parent as Record<string | number, unknown>)[key] = pick(NUMBERS) * pick([1, -1, 1000]);
    } else (parent as Record<string | number, unknown>)[key] = randomValue();
  }
  return root;
}

// ---- sandbox checks ----

function hashTree(dir: string): string {
  const parts: string[] = [];
  const walk = (rel: string): void => {
    let ents: fs.Dirent[];
    try { ents = fs.readdirSync(path.join(dir, rel), { withFileTypes: true }); } catch { parts.push(`${rel}:?`); return; }
    for (const e of ents.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = path.join(rel, e.name), p = path.join(dir, r);
      if (e.isSymbolicLink()) parts.push(`${r}->${fs.readlinkSync(p)}`);
      else if (e.isDirectory()) { parts.push(`${r}/`); walk(r); } else if (e.isFile()) parts.push(`${r}:${fs.readFileSync(p).toString('base64')}`);
      else parts.push(`${r}:special`);
    }
  };
  walk('');
  return parts.join('\n');
}

const canary = path.join(sandbox, 'canary');
function makeCanary(): string {
  fs.mkdirSync(path.join(canary, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(canary, 'precious.txt'), 'do not touch\n');
  fs.writeFileSync(path.join(canary, 'latest.json'), JSON.stringify({ format: 'cubit-run', checkpoint: 'checkpoints/step-00000002', step: 2 }));
  fs.writeFileSync(path.join(canary, 'sub', 'data.bin'), Buffer.alloc(64, 7));
  return hashTree(canary);
}

// ---- groups ----

async function safetensorsCases(count: number): Promise<void> {
  const base = encodeSafetensors({
    a: { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
    b: { dtype: 'F64', shape: [2], data: Float64Array.from([7, 8]) },
    c: { dtype: 'I32', shape: [], data: Int32Array.from([9]) },
  }, { format: 'pt' });
  const headerLen = Number(new DataView(base.buffer, base.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(Buffer.from(base.subarray(8, 8 + headerLen)).toString('utf8'));
  const file = path.join(sandbox, 'fuzz.safetensors');
  for (let k = 0; k < count; k++) {
    let bytes: Uint8Array;
    const kind = rng.int(4);
    if (kind === 0) {
      bytes = Uint8Array.from(base);
      for (let f = 1 + rng.int(8); f > 0; f--) bytes[rng.int(bytes.length)] = rng.int(256);
    } else if (kind === 1) {
      bytes = base.subarray(0, rng.int(base.length + 1));
    } else {
      const h = Buffer.from(JSON.stringify(mutateJson(structuredClone(header))), 'utf8');
      const data = base.subarray(8 + headerLen);
      bytes = new Uint8Array(8 + h.length + data.length);
      const len = kind === 3 && chance(0.5) ? BigInt(pick([0, 1, 7, h.length - 1, h.length + 1, 2 ** 31, 2 ** 53])) : BigInt(h.length);
      new DataView(bytes.buffer).setBigUint64(0, len, true);
      bytes.set(h, 8);
      bytes.set(data, 8 + h.length);
    }
    const onDisk = chance(0.25);
    await runCase(`safetensors#${k} kind ${kind}${onDisk ? ' file' : ''}`, () => {
      if (!onDisk) {
        const c = decodeSafetensors(bytes, 'fuzz');
        for (const t of c.tensors.values()) void t.data.length;
        return;
      }
      fs.writeFileSync(file, bytes);
      const f = SafetensorsFile.open(file);
      try { for (const n of f.names) f.read(n); } finally { f.close(); }
    }, onDisk ? () => (Buffer.from(fs.readFileSync(file)).equals(Buffer.from(bytes)) ? null : 'the input file changed') : undefined);
  }
}

async function configCases(count: number): Promise<void> {
  const corpus = path.join(sandbox, 'corpus');
  const baseTrain = tinyConfig(corpus);
  const baseModel = { vocabSize: 256, dModel: 32, nLayers: 2, nHeads: 2, mixer: 'cubit', cubit: { lambda: 0.01 }, window: 8 };
  for (let k = 0; k < count; k++) {
    if (k % 2 === 0) {
      const c = mutateJson(structuredClone(baseModel) as Record<string, unknown>);
      await runCase(`model config#${k} ${JSON.stringify(c).slice(0, 200)}`, () => parameterCount(parseModelConfig(c, 'config.json')));
    } else {
      const c = mutateJson(structuredClone(baseTrain));
      await runCase(`training config#${k} ${JSON.stringify(c).slice(0, 200)}`, () => parseTrainConfig(c, 'run.json', chance(0.5) ? 256 : undefined));
    }
  }
}

/** A random regular expression from tokenizer-like pieces (some catastrophic). */
function randomRegex(): string {
  const atoms = ['a', '\\s', '\\S', '\\p{L}', '\\p{N}', '[^\\s\\p{L}]', ' ', "'s", '.', '\\w', '[a-z]', '(?!\\S)', '\\d'];
  const piece = (depth: number): string => {
    let s = '';
    for (let i = 1 + rng.int(3); i > 0; i--) {
      let a = depth < 2 && chance(0.3) ? `(${chance(0.5) ? '?:' : ''}${piece(depth + 1)}${chance(0.4) ? '|' + piece(depth + 1) : ''})` : pick(atoms);
      if (chance(0.5)) a += pick(['*', '+', '?', '{1,3}', '{2,}', '*?']);
      s += a;
    }
    return s;
  };
  return Array.from({ length: 1 + rng.int(3) }, () => piece(0)).join('|') + (chance(0.3) ? '$' : '');
}

async function tokenizerCases(count: number): Promise<void> {
  const base = JSON.parse(tinyBpeJson());
  const texts = ['the cat sat', 'a'.repeat(40) + '!', ' '.repeat(200) + 'x', 'ünïcödé 💥 \u0000', "it's the end\n\n"];
  const dir = path.join(sandbox, 'tok');
  fs.mkdirSync(dir, { recursive: true });
  for (let k = 0; k < count; k++) {
    const j = structuredClone(base);
    if (chance(0.35)) {
      const split = { type: 'Split', pattern: chance(0.9) ? { Regex: randomRegex() } : { String: pick(STRINGS) }, behavior: pick(['Isolated', 'Removed', 'MergedWithPrevious', 'Contiguous', 'x']), invert: chance(0.2) };
      if (chance(0.5)) j.pre_tokenizer = { type: 'Sequence', pretokenizers: [split, j.pre_tokenizer] };
      else j.normalizer = { type: 'Replace', pattern: split.pattern, content: pick(['', ' ', 'x']) };
    }
    if (chance(0.75)) mutateJson(j);
    const text = chance(0.05) ? JSON.stringify(j).slice(0, rng.int(2000)) : JSON.stringify(j);
    const config = chance(0.2) ? mutateJson({ bos_token: '<|endoftext|>', eos_token: { content: '<|endoftext|>' } } as Record<string, unknown>) : null;
    const onDisk = config !== null || chance(0.1);
    await runCase(`tokenizer#${k} ${text.length > 300 ? text.slice(0, 120) + '…' + JSON.stringify(j.pre_tokenizer ?? null).slice(0, 200) : text}`, () => {
      let t: HfTokenizer;
      if (onDisk) {
        fs.writeFileSync(path.join(dir, 'tokenizer.json'), text);
        if (config) fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
        else fs.rmSync(path.join(dir, 'tokenizer_config.json'), { force: true });
        t = HfTokenizer.fromFile(dir);
      } else t = new HfTokenizer(text, {}, { source: 'fuzz/tokenizer.json' });
      for (const s of texts) {
        const ids = t.encode(s);
        t.decode(ids);
        const sd = t.streamDecoder();
        for (const id of ids) sd.push(id);
        sd.flush();
      }
    });
  }
}

async function corpusCases(count: number): Promise<void> {
  const dir = path.join(sandbox, 'corpora');
  for (let k = 0; k < count; k++) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const kind = rng.int(3);
    const bytes = (): Buffer => {
      const parts: Buffer[] = [];
      for (let i = rng.int(6); i >= 0; i--) {
        const r = rng.int(5);
        parts.push(r === 0 ? Buffer.from(Array.from({ length: rng.int(40) }, () => rng.int(256)))
          : r === 1 ? Buffer.from('\r\n\n \n\t', 'utf8') : r === 2 ? Buffer.from(JSON.stringify({ text: randomValue(), id: randomValue() }) + '\n')
          : Buffer.from(pick(['hello world. ', 'ünï 💥 ', '\ufeff', 'x'.repeat(rng.int(3000)), '{"text": "a"}\n{"text":\n']), 'utf8'));
      }
      return Buffer.concat(parts);
    };
    let spec: string;
    if (kind === 0) { spec = path.join(dir, pick(['c.txt', 'c.md', 'c.bin'])); fs.writeFileSync(spec, bytes()); }
    else if (kind === 1) { spec = path.join(dir, pick(['c.jsonl', 'c.ndjson'])); fs.writeFileSync(spec, bytes()); }
    else {
      spec = dir;
      for (let i = rng.int(4); i >= 0; i--) {
        const name = path.join(dir, ...(chance(0.3) ? ['sub'] : []), `${pick(['a', 'b', '.hidden', 'Z'])}${i}${pick(['.txt', '.md', '.TXT', '.json', ''])}`);
        fs.mkdirSync(path.dirname(name), { recursive: true });
        fs.writeFileSync(name, bytes());
      }
      if (chance(0.2)) fs.symlinkSync(canary, path.join(dir, 'loop'));
      if (chance(0.2)) fs.symlinkSync(path.join(canary, 'precious.txt'), path.join(dir, 'linked.txt'));
    }
    const before = hashTree(dir);
    const opts = { split: chance(0.5) ? pick(['whole', 'blank-lines']) : undefined, field: chance(0.3) ? pick(['text', 'id', 'x']) : undefined } as Record<string, unknown>;
    const splitOpts = chance(0.5) ? { validation: pick([0, 0.05, 0.5, 0.99, -1, 2]), test: pick([0, 0.05, 0.3]), seed: rng.int(5), by: pick(['auto', 'document', 'position']) } : {};
    await runCase(`corpus#${k} kind ${kind}`, () => {
      const docs = loadCorpus(spec, opts);
      const s = splitCorpus(docs, splitOpts as never);
      tokenizeDocuments(s.train, new (class { name = 'byte'; vocabSize = 256; bosId = null; eosId = null; encode = (t: string) => Int32Array.from(Buffer.from(t, 'utf8')); decode = () => ''; streamDecoder = () => ({ push: () => '', flush: () => '' }); identity = () => ({ kind: 'byte' as const, vocabSize: 256 as const }); })());
    }, () => (hashTree(dir) === before ? null : 'a corpus file changed'));
  }
}

/** A real run folder to damage: a tiny model trained for two steps (checkpoint at step 2). */
async function makeRun(): Promise<string> {
  const corpus = writeCorpus(path.join(sandbox, 'corpus'), 8, 80);
  const out = path.join(sandbox, 'pristine');
  await train({ config: tinyConfig(corpus, { steps: 2, checkpointEvery: 2, evalEvery: 0, evalBatches: 0, logEvery: 1, model: { dModel: 16, nLayers: 1, nHeads: 2, ffnHidden: 32, mixer: 'cubit' } }), out, durable: false });
  return out;
}

/**
 * Damaged run folders (or, with `folder`, model folders made by `cubit export`) read by info, the
 * loaders, a resume, `export` and `import`.
 */
async function checkpointCases(count: number, pristine: string, canaryHash: string, folder = false): Promise<void> {
  const work = path.join(sandbox, 'runs');
  const run = path.join(work, 'run');
  const ckRel = folder ? '.' : path.join(RUN_FILES.checkpoints, 'step-00000002');
  for (let k = 0; k < count; k++) {
    fs.rmSync(work, { recursive: true, force: true });
    fs.mkdirSync(work, { recursive: true });
    fs.cpSync(pristine, run, { recursive: true });
    const ck = path.join(run, ckRel);
    const target = pick(folder ? ['config.json', 'model.safetensors', 'links'] : ['latest.json', 'config.json', 'state.json', 'model.safetensors', 'optimizer.safetensors', 'links']);
    let what = target;
    if (target.endsWith('.json')) {
      const file = target === 'latest.json' ? path.join(run, target) : path.join(ck, target);
      const j = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (chance(0.1)) { fs.writeFileSync(file, JSON.stringify(j).slice(0, rng.int(200))); what += ' cut'; }
      else if (target === 'config.json' && j.model && chance(0.5)) {
        // The sizes the model is built from, aimed at directly.
        j.model[pick(['vocabSize', 'dModel', 'nLayers', 'nHeads', 'ffnHidden', 'window', 'blockSize'])] = pick([...NUMBERS, 8192, 32768, 1 << 20]);
        fs.writeFileSync(file, JSON.stringify(j));
        what += ` model ${JSON.stringify(j.model)}`;
      }
      else { fs.writeFileSync(file, JSON.stringify(mutateJson(j))); what += ` ${fs.readFileSync(file, 'utf8').slice(0, 160)}`; }
    } else if (target.endsWith('.safetensors')) {
      const file = path.join(ck, target);
      const bytes = fs.readFileSync(file);
      const len = Number(bytes.readBigUInt64LE(0));
      const r = rng.int(4);
      if (r === 0) {
        const h = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8'));
        const names = Object.keys(h).filter((x) => x !== '__metadata__');
        const t = h[pick(names)];
        t.shape = pick([[t.shape[0] ?? 1], [...t.shape].reverse(), t.shape.map((d: number) => d * 2), [65536, 65536], [1e9], []]);
        const hb = Buffer.from(JSON.stringify(h));
        const head = Buffer.alloc(8); head.writeBigUInt64LE(BigInt(hb.length));
        fs.writeFileSync(file, Buffer.concat([head, hb, bytes.subarray(8 + len)]));
        what += ' shape';
      } else if (r === 1) {
        // A special float (NaN, ±Inf, a negative or huge value) at an aligned data position.
        const data = bytes.subarray(8 + len);
        const at = 4 * rng.int(data.length / 4);
        data.writeFloatLE(pick([NaN, Infinity, -Infinity, -1e-3, 3e38, -0]), at);
        fs.writeFileSync(file, bytes);
        what += ' value';
      } else if (r === 2) {
        for (let f = 1 + rng.int(4); f > 0; f--) bytes[rng.int(bytes.length)] = rng.int(256);
        fs.writeFileSync(file, bytes);
        what += ' bytes';
      } else { fs.truncateSync(file, rng.int(bytes.length)); what += ' truncated'; }
    } else if (folder) {
      const f = pick(['config.json', 'model.safetensors']);
      fs.rmSync(path.join(run, f));
      fs.symlinkSync(path.join(canary, f === 'config.json' ? 'latest.json' : 'sub/data.bin'), path.join(run, f));
      what += ` ${f}→canary`;
    } else {
      const r = rng.int(4);
      if (r === 0) { fs.rmSync(path.join(run, RUN_FILES.checkpoints), { recursive: true }); fs.symlinkSync(canary, path.join(run, RUN_FILES.checkpoints)); what += ' checkpoints→canary'; }
      else if (r === 1) { fs.symlinkSync(canary, path.join(run, RUN_FILES.checkpoints, 'step-00000001')); what += ' step-1→canary'; }
      else if (r === 2) { fs.rmSync(path.join(run, RUN_FILES.metrics)); fs.symlinkSync(path.join(canary, 'precious.txt'), path.join(run, RUN_FILES.metrics)); what += ' metrics→canary'; }
      else { fs.rmSync(path.join(run, RUN_FILES.pointer)); fs.symlinkSync(path.join(canary, 'latest.json'), path.join(run, RUN_FILES.pointer)); what += ' pointer→canary'; }
    }
    const before = hashTree(run);
    // Planted links are tried mostly against a resume (the one operation that writes).
    const op = target === 'links' && chance(0.5) ? 0 : rng.int(8);
    const writes = op === 0 && !folder;
    // What may appear beside the damaged folder: the outputs of export and import.
    const outputs = ['run', 'export', 'imported'];
    await runCase(`${folder ? 'model folder' : 'checkpoint'}#${k} ${what} op ${op}`, async () => {
      if (folder && op <= 1) { await (op === 0 ? importRun : exportModel)(run, path.join(work, op === 0 ? 'imported' : 'export'), { durable: false }); return; }
      if (op === 0) { await train({ out: run, resume: true, steps: 3, durable: false }); return; }
      if (op === 1 && chance(0.5)) { await exportModel(run, path.join(work, 'export'), { durable: false }); return; }
      if (op <= 2) { summarizeCheckpoint(run); return; }
      if (op === 3) { readCheckpointInfo(resolveCheckpoint(run)); return; }
      const ckpt = loadModel(run);
      ckpt.model.dispose();
    }, () => {
      if (hashTree(canary) !== canaryHash) return 'the canary folder outside the run changed';
      const beside = fs.readdirSync(work).filter((n) => !outputs.includes(n));
      if (beside.length > 0 || !fs.existsSync(run)) return `something was written beside the run folder: ${fs.readdirSync(work).join(', ')}`;
      if (!writes && hashTree(run) !== before) return 'a reader changed the run folder';
      return null;
    });
  }
}

async function cliCases(count: number, pristine: string, canaryHash: string): Promise<void> {
  const before = hashTree(pristine);
  const outs = path.join(sandbox, 'cli-out');
  const corpus = path.join(sandbox, 'corpus');
  const small = ['0', '1', '2', '-1', '1.5', 'abc', '', '1e300', '9007199254740993', 'NaN', '0x10', '2000000', ' 3'];
  const options: Record<string, string[][]> = {
    info: [['--brief'], ['--bogus']],
    eval: [['--context', pick(['8', '16,8', '100000', ...small])], ['--stride', pick(['0.5', '4', '1.0', ...small])], ['--split', pick(['validation', 'test', 'all', 'nope'])],
      ['--max-documents', pick(['1', '2', ...small])], ['--batch-size', pick(['4', ...small])], ['--tokenizer', pick(['byte', path.join(canary, 'precious.txt'), '/nonexistent'])],
      ['--corpus', pick([corpus, path.join(canary, 'sub'), '/nonexistent', 'brown-not'])], ['--split-seed', pick(small)], ['--out', path.join(outs, `r${rng.int(1e6)}.json`)]],
    generate: [['--prompt', pick(['the', '', '💥', 'x'.repeat(100)])], ['--prompt-file', pick([path.join(canary, 'precious.txt'), '/nonexistent', path.join(canary, 'sub')])],
      ['--max-new-tokens', pick(['0', '3', '8', ...small])], ['--temperature', pick(['0', '1', ...small])], ['--top-k', pick(['0', '5', ...small])],
      ['--top-p', pick(['0.9', '1', ...small])], ['--seed', pick(small)], ['--max-context', pick(['0', '8', '64', ...small])], ['--json'], ['--recompute'],
      ['--out', path.join(outs, `g${rng.int(1e6)}.json`)]],
    train: [['--steps', pick(['3', ...small])], ['--stop-at', pick(['3', ...small])], ['--threads', pick(['1', ...small])], ['--quiet']],
  };
  fs.mkdirSync(outs, { recursive: true });
  for (let k = 0; k < count; k++) {
    const cmd = pick(['info', 'eval', 'generate', 'train', 'train', 'nope']);
    let args: string[];
    const work = path.join(sandbox, 'cli-run');
    fs.rmSync(work, { recursive: true, force: true });
    if (cmd === 'train') {
      fs.cpSync(pristine, work, { recursive: true });
      args = ['train', '--resume', '--out', work, '--stop-at', '3'];
    } else args = [cmd, chance(0.9) ? pristine : pick(['/nonexistent', canary, path.join(pristine, 'checkpoints')])];
    for (const o of cmd in options ? options[cmd] : [['--x']]) if (chance(0.3)) args.push(...o);
    if (cmd === 'generate' && !args.includes('--prompt') && !args.includes('--prompt-file') && chance(0.8)) args.push('--prompt', 'the');
    await runCase(`cli#${k} ${JSON.stringify(args)}`, async () => {
      const r = await cliInProcess(args);
      if (r.code !== 0 && r.code !== 1 && r.code !== 2) throw new Error(`exit code ${r.code}`);
      if (r.code !== 0 && !/^cubit: error: [^\n]+\n$/.test(r.stderr)) throw new Error(`exit ${r.code} without a one-line message: ${JSON.stringify(r.stderr.slice(0, 300))}`);
    }, () => {
      if (hashTree(pristine) !== before) return 'the input run folder changed';
      if (hashTree(canary) !== canaryHash) return 'the canary folder changed';
      return null;
    });
  }
}

const counts = JSON.parse(process.env.CUBIT_FUZZ_COUNTS ?? '{}') as Record<string, number>;
const canaryHash = makeCanary();
if (group === 'formats') {
  await safetensorsCases(counts.safetensors ?? 4000);
  await configCases(counts.configs ?? 3000);
  fs.mkdirSync(path.join(sandbox, 'corpus'), { recursive: true });
  await corpusCases(counts.corpora ?? 800);
  await tokenizerCases(counts.tokenizers ?? 1200);
} else if (group === 'runs') {
  const pristine = await makeRun();
  await checkpointCases(counts.checkpoints ?? 1000, pristine, canaryHash);
  const modelFolder = path.join(sandbox, 'model-folder');
  exportModel(pristine, modelFolder, { durable: false });
  await checkpointCases(counts.modelFolders ?? 300, modelFolder, canaryHash, true);
  await cliCases(counts.cli ?? 300, pristine, canaryHash);
} else throw new Error(`unknown group '${group}'`);
if (hashTree(canary) !== canaryHash) emit({ fail: { group, case: cases, label: 'end', problem: 'the canary folder changed' } });
emit({ done: group, cases, succeeded, maxRssMiB: process.resourceUsage().maxRSS / 1024 });
