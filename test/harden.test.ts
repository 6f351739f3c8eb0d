// Regression tests of issue 15: each failure found by probing cubit as an attacker and a clumsy
// user would (links in run folders, oversized configs, non-finite checkpoints, FIFOs, hostile
// tokenizer files, unbounded sizes, and the smaller items) is one test here. The seeded fuzz
// suite is test/fuzz.test.ts; the SIGKILL crash loop test/crash-loop.test.ts.
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { getBackend } from '../src/index.ts';
import { ByteTokenizer, HfTokenizer } from '../src/data/tokenizer.ts';
import { unsafeRegexReason } from '../src/data/tokenizer-check.ts';
import { loadCorpus } from '../src/data/corpus.ts';
import { tokenizeDocuments } from '../src/data/batches.ts';
import { loadModel, summarizeCheckpoint } from '../src/eval/checkpoint.ts';
import { evaluate } from '../src/eval/evaluate.ts';
import { readSafetensorsSync, writeSafetensorsSync } from '../src/io/safetensors.ts';
import { parseModelConfig } from '../src/models/config.ts';
import { Decoder } from '../src/models/decoder.ts';
import { MAX_CONTEXT, parameterShapes } from '../src/models/limits.ts';
import { parseTrainConfig } from '../src/train/config.ts';
import {
  CHECKPOINT_FILES, readCheckpointInfo, readRunPointer, resolveCheckpoint, RUN_FILES, train, Trainer, type TrainSummary,
} from '../src/train/index.ts';
import { NonFiniteError } from '../src/train/trainer.ts';
import { cli, cliInProcess } from './inference-fixtures.ts';
import { tinyBpeJson, tinyConfig, tmpDir, writeCorpus } from './train-fixtures.ts';

const root = tmpDir('harden');
const corpus = writeCorpus(path.join(root, 'corpus'), 12, 120);
let n = 0;
const fresh = (tag: string): string => path.join(root, `${tag}-${n++}`);
const config = tinyConfig(corpus, { steps: 4, checkpointEvery: 2, evalEvery: 0, evalBatches: 0, logEvery: 1 });

let straight: Promise<TrainSummary> | null = null;
/** A four-step run with checkpoints at steps 2 and 4 (shared; tests work on copies). */
function straightRun(): Promise<TrainSummary> {
  straight ??= train({ config, out: fresh('straight'), durable: false });
  return straight;
}
async function copyRun(tag: string): Promise<string> {
  const s = await straightRun();
  const out = fresh(tag);
  fs.cpSync(s.out, out, { recursive: true });
  return out;
}
const resume = (out: string, steps = 6): Promise<TrainSummary> => train({ out, resume: true, steps, durable: false });

function oneLine(re: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof Error, String(e));
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    return true;
  };
}

/** Every file under `dir` with its bytes (links as their target text), for before/after comparison. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name), p = path.join(dir, r);
      if (e.isSymbolicLink()) out.set(r, `link:${fs.readlinkSync(p)}`);
      else if (e.isDirectory()) { out.set(r, 'dir'); walk(r); } else out.set(r, fs.readFileSync(p).toString('base64'));
    }
  };
  walk('');
  return out;
}

/** A folder outside every run, holding a user's files. */
function usersFolder(tag: string): string {
  const dir = fresh(tag);
  fs.mkdirSync(path.join(dir, 'photos'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'thesis.txt'), 'five years of work\n');
  fs.writeFileSync(path.join(dir, 'photos', 'a.jpg'), 'jpeg');
  return dir;
}

/** Rewrites one tensor of a safetensors file with `edit` applied to its data. */
function editTensor(file: string, name: string, edit: (d: Float32Array) => void): void {
  const f = readSafetensorsSync(file);
  const t = f.tensors.get(name)!;
  edit(t.data as Float32Array);
  writeSafetensorsSync(file, f.tensors, f.metadata, { durable: false });
}

function editJson(file: string, edit: (j: Record<string, any>) => void): void {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(j);
  fs.writeFileSync(file, JSON.stringify(j));
}

describe('1. checkpoint pruning never deletes outside the run folder', () => {
  test('a checkpoints/ folder that is a link (moved to another disk) is refused; the folder it names is untouched', async () => {
    const out = await copyRun('linked-root');
    const elsewhere = usersFolder('other-disk');
    // The user's move: the checkpoints go next to their files, and a link takes their place.
    fs.cpSync(path.join(out, RUN_FILES.checkpoints), elsewhere, { recursive: true });
    fs.rmSync(path.join(out, RUN_FILES.checkpoints), { recursive: true });
    fs.symlinkSync(elsewhere, path.join(out, RUN_FILES.checkpoints));
    const before = snapshot(elsewhere);
    await assert.rejects(resume(out), oneLine(/checkpoints: is a symbolic link/));
    assert.deepEqual(snapshot(elsewhere), before, 'nothing in the linked folder changed');
  });

  test('inside checkpoints/, a link is removed itself (never followed) and foreign entries stay', async () => {
    const out = await copyRun('linked-entry');
    const victim = usersFolder('victim');
    const before = snapshot(victim);
    const ck = path.join(out, RUN_FILES.checkpoints);
    fs.symlinkSync(victim, path.join(ck, 'step-00000001'));
    fs.writeFileSync(path.join(ck, 'notes.txt'), 'mine');
    const s = await resume(out);
    assert.equal(s.step, 6);
    assert.deepEqual(snapshot(victim), before, 'the link target is untouched');
    assert.deepEqual(fs.readdirSync(ck).sort(), ['notes.txt', 'step-00000006'], 'the link and the old checkpoint are gone, the foreign file stays');
  });
});

describe('2. never truncating or writing through a link', () => {
  test('a new run into a folder holding only a metrics.jsonl link is refused; the target keeps its bytes', async () => {
    const out = fresh('metrics-link');
    fs.mkdirSync(out);
    const victim = path.join(usersFolder('metrics-victim'), 'thesis.txt');
    fs.symlinkSync(victim, path.join(out, RUN_FILES.metrics));
    await assert.rejects(train({ config, out, durable: false }), oneLine(/metrics\.jsonl: is a symbolic link/));
    assert.equal(fs.readFileSync(victim, 'utf8'), 'five years of work\n');
  });

  test('resuming a run whose metrics.jsonl became a link is refused too', async () => {
    const out = await copyRun('metrics-link-resume');
    const victim = path.join(usersFolder('metrics-victim2'), 'thesis.txt');
    fs.rmSync(path.join(out, RUN_FILES.metrics));
    fs.symlinkSync(victim, path.join(out, RUN_FILES.metrics));
    await assert.rejects(resume(out), oneLine(/metrics\.jsonl: is a symbolic link/));
    assert.equal(fs.readFileSync(victim, 'utf8'), 'five years of work\n');
  });
});

describe('3. config.json is checked against limits and the safetensors headers before anything is allocated', () => {
  const bigConfig = async (tag: string, model: Record<string, unknown>): Promise<string> => {
    const out = await copyRun(tag);
    editJson(path.join(resolveCheckpoint(out), CHECKPOINT_FILES.config), (j) => { Object.assign(j.model, model); });
    return out;
  };

  test('`info` on a config of dModel 8192 reads headers only: quick, no model built, the mismatch reported', async () => {
    const out = await bigConfig('info-8192', { dModel: 8192, ffnHidden: 32 });
    const mem0 = getBackend().memory().bytesInUse;
    const t0 = performance.now();
    const s = summarizeCheckpoint(out);
    assert.ok(performance.now() - t0 < 2000, 'headers only: well under the 16 s a model build took');
    assert.equal(getBackend().memory().bytesInUse, mem0, 'no tensor was allocated');
    assert.ok(s.problems.some((p) => /'embed\.weight' is \[256, 16\], config\.json implies \[256, 8192\]/.test(p)), s.problems.join('; '));
  });

  test('eval, generate and train --resume refuse mismatched headers before building the model', async () => {
    const out = await bigConfig('load-8192', { dModel: 8192, ffnHidden: 32 });
    const mem0 = getBackend().memory().bytesInUse;
    assert.throws(() => loadModel(out), oneLine(/model\.safetensors: 'embed\.weight' has shape \[256, 16\], config\.json implies \[256, 8192\]/));
    await assert.rejects(resume(out), oneLine(/cannot resume .*'embed\.weight' has shape \[256, 16\], config\.json implies \[256, 8192\]/));
    assert.equal(getBackend().memory().bytesInUse, mem0, 'nothing was left allocated');
  });

  for (const [field, value, re] of [
    ['dModel', 32768, /parameter 'blocks\.0\.ffn\.\w+\.weight' .* over the limit/],
    ['nLayers', 1e9, /nLayers 1000000000 exceeds the limit 1024/],
    ['vocabSize', 1e9, /vocabSize 1000000000 exceeds the limit 16777216/],
  ] as const) {
    test(`${field} ${value}: one line naming the file and the field, in every reader`, async () => {
      const out = await bigConfig(`limit-${field}`, field === 'dModel' ? { dModel: value, ffnHidden: undefined } : { [field]: value });
      const full = new RegExp(`config\\.json: model config: .*(?:${re.source})`);
      assert.throws(() => readCheckpointInfo(resolveCheckpoint(out)), oneLine(full));
      assert.throws(() => summarizeCheckpoint(out), oneLine(full));
      assert.throws(() => loadModel(out), oneLine(full));
      await assert.rejects(resume(out), oneLine(full));
    });
  }

  test('the CLI says it in one line (exit 1), for info, eval, generate and train --resume', async () => {
    const out = await bigConfig('limit-cli', { nLayers: 1e9 });
    const runs = await Promise.all([
      ['info', out], ['eval', out, '--context', '8'], ['generate', out, '--prompt', 'a'], ['train', '--resume', '--out', out],
    ].map((args) => cli(args)));
    for (const r of runs) {
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^cubit: error: .*nLayers 1000000000 exceeds the limit 1024\n$/);
    }
  });

  test('parameterShapes matches the model the Decoder builds, for every mixer and option', () => {
    const configs = [{}, { mixer: 'cubit' }, { mixer: 'cubit', cubit: { sharedKey: true, lrr: false } }, { mixer: 'cubit', cubitLayers: [1, 2] },
      { mixer: 'local_linear', localLinear: { rank: 4 } }, { mixer: 'local_linear', localLinear: { rank: 64 } }, { tieEmbeddings: false },
      { mixer: ['softmax', 'cubit', 'local_linear'], nLayers: 3 }];
    for (const c of configs) {
      const cfg = parseModelConfig({ dModel: 32, nHeads: 2, nLayers: 2, vocabSize: 40, ffnHidden: 24, ...c });
      const m = new Decoder(cfg);
      try {
        assert.deepEqual(parameterShapes(cfg), m.namedParameters().map(([name, t]) => ({ name, shape: [...t.shape] })), JSON.stringify(c));
      } finally { m.dispose(); }
    }
  });
});

describe('4. non-finite weights and moments are refused at load, naming the tensor', () => {
  const poisoned = async (tag: string, file: string, name: string, value: number): Promise<string> => {
    const out = await copyRun(tag);
    editTensor(path.join(resolveCheckpoint(out), file), name, (d) => { d[3] = value; });
    return out;
  };

  test('NaN in a weight: info reports it (exit 1), eval/generate and resume refuse it', async () => {
    const out = await poisoned('nan-weight', CHECKPOINT_FILES.model, 'blocks.0.ffn.up.weight', NaN);
    assert.ok(summarizeCheckpoint(out).problems.some((p) => /tensor 'blocks\.0\.ffn\.up\.weight' holds a non-finite value \(NaN\) at element 3/.test(p)));
    assert.throws(() => loadModel(out), oneLine(/model\.safetensors: tensor 'blocks\.0\.ffn\.up\.weight' holds a non-finite value \(NaN\)/));
    // Never "the last good checkpoint": the NaN checkpoint is not loaded at all.
    await assert.rejects(resume(out), (e: Error) => oneLine(/cannot resume .*'blocks\.0\.ffn\.up\.weight' holds a non-finite value/)(e) && !/last good/.test(e.message));
    const r = await cliInProcess(['info', out, '--brief']);
    assert.equal(r.code, 1);
  });

  test('Inf in a weight, NaN in a first moment, a negative second moment: each refused on resume', async () => {
    for (const [file, name, value, re] of [
      [CHECKPOINT_FILES.model, 'embed.weight', Infinity, /'embed\.weight' holds a non-finite value \(Infinity\)/],
      [CHECKPOINT_FILES.optimizer, 'm.embed.weight', NaN, /'m\.embed\.weight' holds a non-finite value \(NaN\)/],
      [CHECKPOINT_FILES.optimizer, 'v.blocks.0.ffn.down.weight', -1e-3, /'v\.blocks\.0\.ffn\.down\.weight' holds a negative value/],
    ] as const) {
      const out = await poisoned(`bad-${name}`, file, name, value);
      await assert.rejects(resume(out), oneLine(re));
    }
  });

  test('a trainer never saves non-finite weights: the latest checkpoint stays the good one', async () => {
    const out = await copyRun('nan-save');
    const t = new Trainer({ out, resume: true, steps: 6, durable: false });
    try {
      const [, p] = t.model.namedParameters()[0];
      const d = Float32Array.from(p.dataSync());
      d[0] = NaN;
      p.backend.write(p.storage, d);
      await assert.rejects(t.save(), (e: unknown) => e instanceof NonFiniteError && /no checkpoint was written; the last good checkpoint is .*step-00000004/.test(e.message));
      assert.equal(readRunPointer(out)!.step, 4);
    } finally { t.dispose(); }
  });
});

describe('5. no hangs', () => {
  test('a FIFO where a file is expected (weights, corpus, prompt file, tokenizer, config) is refused at once', async () => {
    const dir = fresh('fifo');
    fs.mkdirSync(dir);
    const fifo = path.join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const run = await copyRun('fifo-run');
    const ck = resolveCheckpoint(run);
    // The library calls run in a child with a deadline: were one to block, it could not block this process.
    const script = `
      import '../src/index.ts';
      import * as fs from 'node:fs';
      import { SafetensorsFile } from '../src/io/safetensors.ts';
      import { loadCorpus } from '../src/data/corpus.ts';
      import { HfTokenizer } from '../src/data/tokenizer.ts';
      import { readCheckpointInfo } from '../src/train/checkpoint.ts';
      import { loadModel } from '../src/eval/checkpoint.ts';
      const fifo = ${JSON.stringify(fifo)}, ck = ${JSON.stringify(ck)};
      const out = {};
      const probe = (name, fn) => { try { fn(); out[name] = 'ok'; } catch (e) { out[name] = e.message; } };
      probe('weights', () => SafetensorsFile.open(fifo));
      probe('corpus', () => loadCorpus(fifo));
      probe('tokenizer', () => HfTokenizer.fromFile(fifo));
      fs.rmSync(ck + '/model.safetensors'); fs.symlinkSync(fifo, ck + '/model.safetensors');
      probe('checkpoint weights', () => loadModel(ck));
      fs.rmSync(ck + '/state.json'); fs.symlinkSync(fifo, ck + '/state.json');
      probe('state', () => readCheckpointInfo(ck));
      console.log(JSON.stringify(out));`;
    const file = path.join(import.meta.dirname, `.fifo-probe-${process.pid}.ts`);
    fs.writeFileSync(file, script);
    let r;
    try { r = spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', timeout: 60_000 }); } finally { fs.rmSync(file, { force: true }); }
    assert.equal(r.signal, null, `the probe hung (killed by the deadline); stderr: ${r.stderr}`);
    const got = JSON.parse(r.stdout) as Record<string, string>;
    for (const [name, msg] of Object.entries(got)) assert.match(msg, /is a FIFO \(named pipe\), expected a regular file/, name);
    const g = await cli(['generate', run, '--prompt-file', fifo]);
    assert.equal(g.code, 2);
    assert.match(g.stderr, /^cubit: error: --prompt-file .*pipe: is a FIFO \(named pipe\), expected a regular file\n$/);
  });

  test('a tokenizer.json with a vocabulary id of 1e9 is refused at once', () => {
    const j = JSON.parse(tinyBpeJson());
    j.model.vocab.zzz = 1e9;
    const t0 = performance.now();
    assert.throws(() => new HfTokenizer(JSON.stringify(j), {}, { source: 't.json' }), oneLine(/t\.json: model\.vocab\["zzz"\]: id 1000000000 is outside \[0, 16777216\)/));
    assert.ok(performance.now() - t0 < 1000);
  });

  test('a catastrophic Split regex is refused; the common tokenizers\' patterns pass', () => {
    const j = JSON.parse(tinyBpeJson());
    j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false }, j.pre_tokenizer] };
    assert.throws(() => new HfTokenizer(JSON.stringify(j), {}, { source: 't.json' }),
      oneLine(/t\.json: pre_tokenizer\.pretokenizers\[0\]\.pattern\.Regex: the regular expression is refused: a repeated group holds a quantifier/));
    for (const bad of ['(a+)+', '(a*)*b', '(?:a|aa)*c', '(\\w+\\s?)*$', '(a|b){2,}', '(x+x+)+y', '(a)\\1', '(?<n>a)\\k<n>', 'x'.repeat(5000)]) {
      assert.notEqual(unsafeRegexReason(bad), null, bad);
    }
    const common = [
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", // GPT-2
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", // Llama 3
      "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}", // GPT-4o
      '(?:ab)+', '[(a+)+]', '\\(a+\\)+',
    ];
    for (const ok of common) assert.equal(unsafeRegexReason(ok), null, ok);
    // A safe Split tokenizer loads and encodes.
    j.pre_tokenizer = { type: 'Split', pattern: { Regex: common[0] }, behavior: 'Isolated', invert: false };
    assert.ok(new HfTokenizer(JSON.stringify(j), {}, { source: 't.json' }).encode('the cat').length > 0);
  });
});

describe('6. limits with clear messages for every size', () => {
  test('eval --context 100000 pads to the documents, not to the context: same result as the longest document\'s length', async () => {
    const s = await straightRun();
    const ck = loadModel(s.out);
    try {
      const stream = tokenizeDocuments(loadCorpus(corpus).slice(0, 3), new ByteTokenizer());
      const longest = Math.max(...Array.from({ length: 3 }, (_, d) => stream.offsets[d + 1] - stream.offsets[d]));
      const t0 = performance.now();
      const [huge] = await evaluate(ck.model, stream, { contextLengths: [100000], stride: 100000 });
      assert.ok(performance.now() - t0 < 5000);
      assert.ok(huge.positions <= stream.tokens.length, `ran ${huge.positions} positions for ${stream.tokens.length} tokens`);
      const [exact] = await evaluate(ck.model, stream, { contextLengths: [longest], stride: longest });
      assert.equal(huge.loss, exact.loss);
      await assert.rejects(evaluate(ck.model, stream, { contextLengths: [MAX_CONTEXT + 1] }), /context length 1048577 is over the limit 1048576/);
    } finally { ck.model.dispose(); }
  });

  test('training sizes beyond the limits are one line naming the field', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ seqLen: 1e9 }, /seqLen: Too big: expected number to be <=1048576/],
      [{ batchSize: 1e7 }, /batchSize: Too big/],
      [{ gradAccum: 1e9 }, /gradAccum: Too big/],
      [{ steps: 1e300 }, /steps: Too big/],
      [{ batchSize: 65536, seqLen: 65536 }, /batchSize × seqLen = 4294967296 tokens per micro-batch exceeds the limit 16777216/],
      [{ batchSize: 4096, seqLen: 4096, model: { vocabSize: 1 << 20, dModel: 16, nHeads: 2 } }, /the logits of one micro-batch .* exceed the tensor limit/],
      [{ model: { dModel: 1 << 20 } }, /model: dModel 1048576 exceeds the limit 65536/],
      [{ model: { ffnHidden: 1e7 } }, /model: ffnHidden 10000000 exceeds the limit 1048576/],
    ];
    for (const [over, re] of cases) assert.throws(() => parseTrainConfig({ ...config, ...over }, 'run.json'), oneLine(new RegExp(`^run\\.json: .*${re.source}`)));
  });

  test('CLI sizes: --context, --max-new-tokens and --max-context are bounded', async () => {
    const s = await straightRun();
    for (const [args, re] of [
      [['eval', s.out, '--context', '2000000'], /--context: 2000000 is over the limit 1048576/],
      [['generate', s.out, '--prompt', 'a', '--max-new-tokens', '1e300'], /--max-new-tokens must be at most 1048576, got '1e300'/],
      [['generate', s.out, '--prompt', 'a', '--max-context', '99999999'], /--max-context must be at most 1048576, got '99999999'/],
    ] as const) {
      const r = await cliInProcess([...args]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, new RegExp(`^cubit: error: ${re.source}\\n$`));
    }
  });
});

describe('7. the smaller items', () => {
  test('invalid UTF-8 in a corpus is refused with the offset of the first bad byte', () => {
    const f = path.join(fresh('utf8'), 'bad.txt');
    fs.mkdirSync(path.dirname(f));
    fs.writeFileSync(f, Buffer.from([0x68, 0x69, 0x20, 0xe2, 0x82, 0xac, 0xff, 0x21]));
    assert.throws(() => loadCorpus(f), oneLine(/bad\.txt: not valid UTF-8 \(first bad byte at offset 6\)/));
  });

  test('malformed tokenizer files are one line naming the field, never a raw TypeError', () => {
    const base = JSON.parse(tinyBpeJson());
    const cases: [(j: Record<string, any>) => void, RegExp][] = [
      [(j) => { j.model.vocab = null; }, /model\.vocab: expected an object/],
      [(j) => { j.model.merges = 5; }, /model\.merges: expected an array/],
      [(j) => { j.model.merges = [5]; }, /model\.merges\[0\]/],
      [(j) => { j.added_tokens = null; }, /added_tokens: missing or not an array/],
      [(j) => { j.added_tokens = [null]; }, /added_tokens\[0\]: expected an object/],
      [(j) => { j.added_tokens[0].id = 'x'; }, /added_tokens\[0\]\.id: id "x" is not an integer/],
      [(j) => { j.model = 'BPE'; }, /model: missing or not an object/],
      [(j) => { j.model.type = 'Magic'; }, /model\.type: 'Magic' is not one of/],
      [(j) => { j.pre_tokenizer = { type: 'Sequence', pretokenizers: 5 }; }, /pre_tokenizer\.pretokenizers: expected an array/],
      [(j) => { j.normalizer = { type: 'Replace' }; }, /normalizer\.pattern: expected/],
      [(j) => { j.decoder = 7; }, /decoder: expected an object or null/],
      [(j) => { j.model = { type: 'Unigram', vocab: [['a', 'x']] }; }, /model\.vocab\[0\]: expected \[piece/],
    ];
    for (const [mutate, re] of cases) {
      const j = structuredClone(base);
      mutate(j);
      assert.throws(() => new HfTokenizer(JSON.stringify(j), {}, { source: 't.json' }), (e: unknown) => {
        oneLine(new RegExp(`^t\\.json: ${re.source}`))(e);
        assert.doesNotMatch((e as Error).message, /TypeError|is not a function|Cannot read properties|not iterable/);
        return true;
      });
    }
  });

  test('a JSON parse error is shown whole on one line', async () => {
    const f = path.join(fresh('json'), 'run.json');
    fs.mkdirSync(path.dirname(f));
    fs.writeFileSync(f, '{"steps":\n x}');
    const r = await cliInProcess(['train', '--config', f, '--out', fresh('json-out')]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.split('\n').length, 2, r.stderr);
    // The parser's message quotes the text: its newline is escaped rather than cutting the message.
    assert.match(r.stderr, /run\.json: not valid JSON \(.*\\n.*\)\n$/);
  });

  test("latest.json's step is checked against its checkpoint", async () => {
    const out = await copyRun('pointer-step');
    editJson(path.join(out, RUN_FILES.pointer), (j) => { j.step = 3; });
    assert.throws(() => readCheckpointInfo(resolveCheckpoint(out)), oneLine(/latest\.json: step 3 differs from its checkpoint's \(4 in .*config\.json\)/));
    await assert.rejects(resume(out), oneLine(/latest\.json: step 3 differs/));
  });

  test('stale .latest.json.tmp-* files of a killed save are cleaned by the next save', async () => {
    const out = await copyRun('stale-tmp');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const stale = path.join(out, `.${RUN_FILES.pointer}.tmp-${dead}-0a1b2c3d`);
    fs.writeFileSync(stale, '{"half":');
    await resume(out);
    assert.ok(!fs.existsSync(stale), 'the stale temporary is gone');
  });

  test('a save killed after moving its pointer is finished by the next sitting, even one with no step left to take (found by the crash loop)', async () => {
    const out = await copyRun('cleanup-at-end');
    fs.mkdirSync(path.join(out, RUN_FILES.checkpoints, 'step-00000002'));
    fs.writeFileSync(path.join(out, RUN_FILES.checkpoints, 'step-00000002', 'model.safetensors'), 'old');
    const s = await resume(out, 4);
    assert.equal(s.step, s.startStep, 'nothing left to do');
    assert.deepEqual(fs.readdirSync(path.join(out, RUN_FILES.checkpoints)), ['step-00000004']);
  });

  test('a new run on a read-only file system names EROFS, not ENOENT', async (t) => {
    const mnt = fresh('ro');
    fs.mkdirSync(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro', 'tmpfs', mnt], { encoding: 'utf8' });
    if (m.status !== 0) { t.skip('cannot mount a read-only tmpfs here (needs root)'); return; }
    try {
      await assert.rejects(train({ config, out: path.join(mnt, 'run'), durable: false }), oneLine(/run: cannot create the folder: the file system is read-only \(EROFS\)/));
      await assert.rejects(train({ config, out: path.join(mnt, 'a', 'b'), durable: false }), oneLine(/EROFS/));
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});
