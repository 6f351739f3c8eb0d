// Data: tokenizers, corpora, splits, the batch sampler (determinism, coverage, resume) and
// evaluation windows (every target scored once).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tmpDir } from './helpers.ts';
import '../src/index.ts';
import {
  BatchSampler, ByteTokenizer, EvalWindows, HfTokenizer, IGNORE_INDEX, batchTensors, checkTokenizer, detagBrown, loadBrown,
  loadCorpus, loadFolder, loadJsonl, loadTextFile, loadTokenizer, splitCorpus, streamFingerprint, tokenizeDocuments,
  type BatchArrays, type Document, type SamplerState, type TokenStream,
} from '../src/data/index.ts';
import { tinyBpeJson } from './train-fixtures.ts';

const tmpdir = (): string => tmpDir('data');

// ---- tokenizers ----

test('ByteTokenizer: UTF-8 bytes, exact round trip, never throws on broken sequences', () => {
  const tok = new ByteTokenizer();
  assert.equal(tok.vocabSize, 256);
  const text = 'Hé 🎉\n\tend';
  const ids = tok.encode(text);
  assert.ok(ids instanceof Int32Array);
  assert.deepEqual([...ids], [...Buffer.from(text, 'utf8')]);
  assert.equal(tok.decode(ids), text);
  // A cut emoji, a lone continuation byte, an overlong encoding: replacement characters, no throw.
  assert.equal(tok.decode([0xf0, 0x9f]), '\uFFFD');
  assert.equal(tok.decode([0x61, 0x80, 0x62]), 'a\uFFFDb');
  assert.ok(tok.decode([0xc0, 0xaf]).includes('\uFFFD'));
  assert.throws(() => tok.decode([65, 256]), /id 256 at position 1 is outside the vocabulary \[0, 256\)/);
  assert.throws(() => tok.decode([-1]), /outside the vocabulary/);
  // Streaming holds back an incomplete character and releases it whole.
  const sd = tok.streamDecoder();
  const pieces = [...Buffer.from(text, 'utf8')].map((b) => sd.push(b));
  assert.equal(pieces.join('') + sd.flush(), text);
  assert.equal(pieces[4], '', 'the first byte of é gives nothing yet');
  assert.deepEqual(tok.identity(), { kind: 'byte', vocabSize: 256 });
  assert.equal(loadTokenizer('byte').name, 'byte');
  assert.equal(loadTokenizer().vocabSize, 256);
});


test('HfTokenizer: loads a tokenizer.json (file or folder), applies its merges, round-trips text', () => {
  const dir = tmpdir();
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), tinyBpeJson());
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>', bos_token: { content: '<|endoftext|>' } }));
  const byFolder = loadTokenizer(dir);
  const byFile = loadTokenizer(path.join(dir, 'tokenizer.json'));
  assert.ok(byFolder instanceof HfTokenizer);
  assert.equal(byFolder.vocabSize, 260);
  assert.equal(byFolder.eosId, 259);
  assert.equal(byFolder.bosId, 259);
  const text = 'the theme of the day: ünï 🎉 ok';
  const ids = byFolder.encode(text);
  assert.ok(ids instanceof Int32Array);
  assert.deepEqual([...ids.slice(0, 3)], [257, 258, 109], '"the" and " the" merge, then "m"');
  assert.deepEqual([...byFile.encode(text)], [...ids]);
  assert.equal(byFolder.decode(ids), text);
  // No clean-up of spaces: text comes back exactly.
  assert.equal(byFolder.decode(byFolder.encode('a , b .')), 'a , b .');
  assert.equal(byFolder.decode([240, 159]), '\uFFFD', 'a cut character does not throw');
  assert.throws(() => byFolder.decode([260]), /id 260 at position 0 is outside the vocabulary \[0, 260\)/);
  const sd = byFolder.streamDecoder();
  let streamed = '';
  for (const id of ids) streamed += sd.push(id);
  assert.equal(streamed + sd.flush(), text);
  // Identity: the same file is the same tokenizer; another tokenizer is a clear mismatch.
  const idn = byFolder.identity();
  assert.equal(idn.kind, 'hf');
  checkTokenizer(idn, byFile);
  assert.throws(() => checkTokenizer(idn, new ByteTokenizer(), 'checkpoint runs/x'),
    /^Error: tokenizer mismatch: checkpoint runs\/x was made with .*tokenizer\.json \(vocab 260, sha256 [0-9a-f]{12}…\), but the byte tokenizer \(vocab 256\) was given$/);
  assert.throws(() => checkTokenizer({ kind: 'byte', vocabSize: 256 }, byFile), /tokenizer mismatch/);
  assert.throws(() => loadTokenizer(path.join(dir, 'absent.json')), /no such file or folder/);
  fs.writeFileSync(path.join(dir, 'bad.json'), '{"model": ');
  assert.throws(() => loadTokenizer(path.join(dir, 'bad.json')), /bad\.json: not valid JSON/);
  fs.writeFileSync(path.join(dir, 'other.json'), '{"a": 1}');
  assert.throws(() => loadTokenizer(path.join(dir, 'other.json')), /not a Hugging Face tokenizer\.json/);
});

// ---- corpora ----

test('detagBrown strips tags and rejoins punctuation, quotes, headlines and paragraphs', () => {
  assert.equal(detagBrown('\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ./.\n'), 'The Fulton County said.\n');
  const raw = [
    '', '',
    "\t``/`` Only/rb a/at handful/nn ''/'' ,/, the/at jury/nn said/vbd ;/. ;/. it/pps was/bedz (/( 1/cd )/) won/vbn by/in Allen/np Jr./np ./.",
    'He/pps said/vbd ,/, \'/\' You\'re/ppss+ber my/pp$ man/nn \'/\' ?/.',
    '', '',
    'Merger/nn-hl proposed/vbn-hl ',
    'It/pps cost/vbd 1-1/2/cd cents/nns !/.',
    '',
  ].join('\n');
  assert.equal(detagBrown(raw), [
    '"Only a handful", the jury said; it was (1) won by Allen Jr. He said, \'You\'re my man\'?',
    'Merger proposed',
    'It cost 1-1/2 cents!',
    '',
  ].join('\n'));
});

test('Brown: 500 documents of plain text, cached, about a million words', () => {
  const docs = loadBrown();
  assert.equal(docs.length, 500);
  assert.equal(docs[0].id, 'ca01');
  assert.equal(docs[499].id, 'cr09');
  assert.equal(docs[0].category, 'news');
  assert.equal(new Set(docs.map((d) => d.category)).size, 15);
  assert.ok(docs[0].text.startsWith('The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence" that any irregularities took place.\n'));
  assert.strictEqual(loadBrown(), docs, 'parsed once, then cached');
  assert.strictEqual(loadCorpus('brown'), docs);
  let words = 0;
  const tagLeft = /[A-Za-z]\/(at|nn|np|vbd|in|jj|cc|rb)(-tl|-hl)?\b/;
  for (const d of docs) {
    assert.ok(!tagLeft.test(d.text), `${d.id} still holds a tag: ${d.text.match(tagLeft)?.[0]}`);
    // (Inch marks like 10'' are text; the quote tokens `` and '' are not.)
    assert.ok(!/(^|\s)(``|'')(\s|$)/.test(d.text) && !d.text.includes(';;'), d.id);
    words += d.text.split(/\s+/).filter((w) => /[A-Za-z0-9]/.test(w)).length;
  }
  assert.ok(words > 950_000 && words < 1_050_000, `${words} words`);
});

test('text files: one document, or one per blank-line section; CRLF normalised', () => {
  const dir = tmpdir();
  const f = path.join(dir, 'book.txt');
  fs.writeFileSync(f, 'Chapter 1\r\nIt was a dark night.\r\n\r\n\r\nChapter 2\nMorning.\n  \nEnd\n');
  const whole = loadTextFile(f);
  assert.equal(whole.length, 1);
  assert.equal(whole[0].id, 'book.txt');
  assert.equal(whole[0].text, 'Chapter 1\nIt was a dark night.\n\n\nChapter 2\nMorning.\n  \nEnd\n');
  const sections = loadTextFile(f, { split: 'blank-lines' });
  assert.deepEqual(sections.map((d) => d.text), ['Chapter 1\nIt was a dark night.\n', 'Chapter 2\nMorning.\n', 'End\n']);
  assert.deepEqual(sections.map((d) => d.id), ['book.txt#0', 'book.txt#1', 'book.txt#2']);
  assert.deepEqual(loadCorpus(f), whole);
  assert.throws(() => loadCorpus(path.join(dir, 'nope.txt')), /corpus '.*nope\.txt': no such file or folder/);
  fs.writeFileSync(path.join(dir, 'empty.txt'), '\n  \n');
  assert.throws(() => loadCorpus(path.join(dir, 'empty.txt')), /no documents/);
});

test('folders: every .txt/.md file below it, hidden ones skipped, in code-unit path order', () => {
  const dir = tmpdir();
  fs.mkdirSync(path.join(dir, 'b'));
  fs.mkdirSync(path.join(dir, '.git'));
  fs.symlinkSync(path.join(dir, 'b'), path.join(dir, 'loop'));       // a link to a folder: skipped
  fs.symlinkSync(path.join(dir, 'a.txt'), path.join(dir, 'link.txt')); // a link to a file: read
  for (const [p, t] of [['b/z.md', 'zz'], ['B.txt', 'upper'], ['a.txt', 'aa'], ['b/a.TXT', 'ba'], ['note.json', '{}'], ['.hidden.txt', 'h'], ['.git/x.txt', 'g'], ['blank.txt', ' \n']]) {
    fs.writeFileSync(path.join(dir, p), t);
  }
  const docs = loadFolder(dir);
  assert.deepEqual(docs.map((d) => d.id), ['B.txt', 'a.txt', 'b/a.TXT', 'b/z.md', 'link.txt']);
  assert.deepEqual(docs.map((d) => d.text), ['upper', 'aa', 'ba', 'zz', 'aa']);
  assert.deepEqual(loadCorpus(dir), docs);
  assert.deepEqual(loadFolder(dir, { extensions: ['.json'] }).map((d) => d.id), ['note.json']);
  assert.throws(() => loadFolder(dir, { extensions: ['.rst'] }), /no \.rst files found/);
});

test('JSONL: a document per line, configurable field, errors name the line', () => {
  const dir = tmpdir();
  const f = path.join(dir, 'docs.jsonl');
  fs.writeFileSync(f, '{"text": "first", "id": 7}\n\n{"text": "second\\nline", "body": "b"}\n');
  assert.deepEqual(loadJsonl(f), [{ id: 'docs.jsonl:1', text: 'first' }, { id: 'docs.jsonl:3', text: 'second\nline' }]);
  assert.deepEqual(loadCorpus(f).map((d) => d.text), ['first', 'second\nline']);
  assert.deepEqual(loadJsonl(f, { idField: 'id' })[0].id, '7');
  assert.throws(() => loadJsonl(f, { field: 'body' }), /docs\.jsonl:1: field "body" is missing or not a string/);
  fs.writeFileSync(f, '{"text": "ok"}\n{"text": \n');
  assert.throws(() => loadJsonl(f), /docs\.jsonl:2: not valid JSON/);
  fs.writeFileSync(f, '[1]\n');
  assert.throws(() => loadJsonl(f), /docs\.jsonl:1: expected a JSON object/);
});

test('split by document: seeded, disjoint, complete, order kept; Brown gives 450/25/25', () => {
  const docs = loadBrown();
  const a = splitCorpus(docs, { seed: 1 });
  assert.equal(a.by, 'document');
  assert.deepEqual([a.train.length, a.validation.length, a.test.length], [450, 25, 25]);
  const ids = [...a.train, ...a.validation, ...a.test].map((d) => d.id).sort();
  assert.deepEqual(ids, docs.map((d) => d.id));
  const pos = new Map(docs.map((d, i) => [d.id, i]));
  for (const part of [a.train, a.validation, a.test]) {
    for (let i = 1; i < part.length; i++) assert.ok(pos.get(part[i].id)! > pos.get(part[i - 1].id)!, 'corpus order kept');
  }
  const again = splitCorpus(docs, { seed: 1 });
  assert.deepEqual(again.validation.map((d) => d.id), a.validation.map((d) => d.id));
  const other = splitCorpus(docs, { seed: 2 });
  assert.notDeepEqual(other.validation.map((d) => d.id), a.validation.map((d) => d.id));
  const custom = splitCorpus(docs, { seed: 1, validation: 0.1, test: 0 });
  assert.deepEqual([custom.train.length, custom.validation.length, custom.test.length], [450, 50, 0]);
  assert.throws(() => splitCorpus(docs, { validation: 0.6, test: 0.5 }), /must leave documents to train on/);
  assert.throws(() => splitCorpus(docs, { validation: -0.1 }), /validation must be a fraction/);
  assert.throws(() => splitCorpus(docs.slice(0, 2), { by: 'document' }), /too few/);
});

test('split by position (a single document): contiguous pieces at line breaks that rebuild the text', () => {
  const lines = Array.from({ length: 400 }, (_, i) => `line ${i} ${'x'.repeat(i % 13)}`);
  const doc: Document = { id: 'book.txt', text: lines.join('\n') + '\n' };
  const s = splitCorpus([doc]);
  assert.equal(s.by, 'position');
  assert.deepEqual([s.train.length, s.validation.length, s.test.length], [1, 1, 1]);
  assert.equal(s.train[0].text + s.validation[0].text + s.test[0].text, doc.text);
  assert.equal(s.validation[0].id, 'book.txt#validation');
  for (const p of [s.validation[0], s.test[0]]) assert.match(p.text, /^line \d+/, 'pieces start at a line');
  const frac = s.train[0].text.length / doc.text.length;
  assert.ok(frac > 0.88 && frac < 0.92, `train fraction ${frac}`);
});

// ---- batches ----

function docsOf(lengths: number[]): Document[] {
  // Distinct byte values per document make positions recognisable: doc d uses bytes 'a' + d.
  return lengths.map((n, d) => ({ id: `d${d}`, text: String.fromCharCode(97 + d).repeat(n) }));
}

test('tokenizeDocuments concatenates documents with offsets, optional BOS and scored bytes', () => {
  const tok = new ByteTokenizer();
  const s = tokenizeDocuments([{ id: 'a', text: 'héllo' }, { id: 'b', text: '' }, { id: 'c', text: 'xy' }], tok);
  assert.deepEqual([...s.offsets], [0, 6, 6, 8]);
  assert.equal(tok.decode(s.tokens), 'héllox' + 'y');
  assert.deepEqual([...s.scoredBytes], [5, 0, 1], 'each document less its first byte');
  assert.equal(s.vocabSize, 256);
  const withBos = tokenizeDocuments([{ id: 'a', text: 'ab' }], tok, { bosId: 0 });
  assert.deepEqual([...withBos.tokens], [0, 97, 98]);
  assert.deepEqual([...withBos.scoredBytes], [2]);
  assert.throws(() => tokenizeDocuments([], tok, { bosId: 300 }), /bosId 300 is outside the vocabulary/);
});

function collect(sampler: BatchSampler, n: number): BatchArrays[] {
  return Array.from({ length: n }, () => sampler.nextArrays());
}

test('packed batches: shifted targets, document ids per position, no target across a document boundary', () => {
  const stream = tokenizeDocuments(docsOf([5, 40, 1, 0, 23, 64]), new ByteTokenizer());
  const T = 8, B = 3;
  const sampler = new BatchSampler(stream, { batchSize: B, seqLen: T, seed: 3 });
  for (const b of collect(sampler, 20)) {
    assert.equal(b.inputs.length, B * T);
    let counted = 0;
    for (let r = 0; r < B; r++) {
      for (let i = 0; i < T; i++) {
        const k = r * T + i;
        const doc = b.docIds[k];
        assert.equal(b.inputs[k], 97 + doc, 'docIds name the document of each input');
        if (b.targets[k] === IGNORE_INDEX) {
          // Only where the next token starts another document.
          if (i + 1 < T) assert.notEqual(b.docIds[k + 1], doc);
        } else {
          counted++;
          assert.equal(b.targets[k], 97 + doc, 'a target is the next token of the same document');
          if (i + 1 < T) assert.equal(b.targets[k], b.inputs[k + 1]);
        }
      }
    }
    assert.equal(b.targetCount, counted);
  }
});

test('packed sampler: one epoch covers every chunk once; the seed decides the order', () => {
  const tokens = Int32Array.from({ length: 1001 }, (_, i) => i % 256);
  const stream: TokenStream = { tokens, offsets: Int32Array.of(0, 1001), ids: ['x'], scoredBytes: Float64Array.of(1000), vocabSize: 256 };
  // Check through positions: map each row back to its start via a unique-valued stream.
  const uniq: TokenStream = { ...stream, tokens: Int32Array.from({ length: 1001 }, (_, i) => i) };
  const T = 10, B = 4;
  const s = new BatchSampler(uniq, { batchSize: B, seqLen: T, seed: 11 });
  const perEpoch = s.rowsPerEpoch;
  assert.ok(perEpoch >= 99 && perEpoch <= 100);
  const starts: number[] = [];
  while (starts.length < perEpoch) {
    const b = s.nextArrays();
    for (let r = 0; r < B && starts.length < perEpoch; r++) starts.push(b.inputs[r * T]);
  }
  const sorted = [...starts].sort((x, y) => x - y);
  for (let i = 0; i < sorted.length; i++) assert.equal(sorted[i], sorted[0] + i * T, 'chunks tile the stream, each once');
  assert.ok(starts.some((v, i) => i > 0 && v < starts[i - 1]), 'shuffled');
  const same = new BatchSampler(uniq, { batchSize: B, seqLen: T, seed: 11 });
  const other = new BatchSampler(uniq, { batchSize: B, seqLen: T, seed: 12 });
  const x = same.nextArrays(), y = other.nextArrays();
  assert.deepEqual([...x.inputs.slice(0, T)], [...starts.slice(0, 1).flatMap((v) => Array.from({ length: T }, (_, i) => v + i))]);
  assert.notDeepEqual([...y.inputs], [...x.inputs]);
  assert.throws(() => new BatchSampler(stream, { batchSize: 1, seqLen: 1001 }), /1001 tokens, fewer than seqLen \+ 1 = 1002/);
  assert.throws(() => new BatchSampler(stream, { batchSize: 0, seqLen: 4 }), /batchSize must be a positive integer, got 0/);
});

test('padded batches: one document per row, padding with ignore targets and docId −1', () => {
  const stream = tokenizeDocuments(docsOf([3, 12, 1, 7]), new ByteTokenizer());
  const T = 5, B = 2;
  const s = new BatchSampler(stream, { batchSize: B, seqLen: T, seed: 0, mode: 'padded', padId: 0 });
  // Windows: doc0 1 (2 targets), doc1 3 (4+4+3), doc2 none, doc3 2 (5+1) → 6 per epoch.
  assert.equal(s.rowsPerEpoch, 6);
  let targets = 0;
  for (const b of collect(s, 3)) {
    for (let r = 0; r < B; r++) {
      const row = [...b.docIds.slice(r * T, r * T + T)];
      const real = row.filter((d) => d >= 0);
      assert.ok(real.length > 0 && new Set(real).size === 1, 'one document per row');
      assert.deepEqual(row.slice(real.length), Array(T - real.length).fill(-1), 'padding at the end');
      for (let i = real.length; i < T; i++) {
        assert.equal(b.inputs[r * T + i], 0);
        assert.equal(b.targets[r * T + i], IGNORE_INDEX);
      }
    }
    targets += b.targetCount;
  }
  assert.equal(targets, 2 + 11 + 6, 'one epoch scores every target of every document once');
});

test('sampler state is small JSON and resuming gives identical batches, across epochs', () => {
  const stream = tokenizeDocuments(loadBrown().slice(0, 3), new ByteTokenizer());
  for (const mode of ['packed', 'padded'] as const) {
    const opts = { batchSize: 8, seqLen: 256, seed: 42, mode };
    const straight = new BatchSampler(stream, opts);
    const epochRows = straight.rowsPerEpoch;
    const total = Math.ceil((2.5 * epochRows) / 8); // crosses two epoch boundaries
    const all = collect(straight, total);
    for (const cut of [0, 1, Math.floor(total / 2), total - 1]) {
      const first = new BatchSampler(stream, opts);
      collect(first, cut);
      const saved = JSON.stringify(first.state());
      assert.ok(saved.length < 200, `state is small: ${saved}`);
      const resumed = new BatchSampler(stream, opts);
      resumed.setState(JSON.parse(saved) as SamplerState);
      const rest = collect(resumed, total - cut);
      rest.forEach((b, i) => {
        const ref = all[cut + i];
        assert.deepEqual([...b.inputs], [...ref.inputs], `${mode} batch ${cut + i} inputs`);
        assert.deepEqual([...b.targets], [...ref.targets]);
        assert.deepEqual([...b.docIds], [...ref.docIds]);
      });
    }
    assert.ok(straight.progress > 2, 'went past two epochs');
    // Reusing a batch's arrays gives the same batches.
    const reusing = new BatchSampler(stream, opts);
    let buf = reusing.nextArrays();
    assert.deepEqual([...buf.inputs], [...all[0].inputs]);
    buf = reusing.nextArrays(buf);
    assert.deepEqual([...buf.targets], [...all[1].targets]);
    assert.equal(buf.targetCount, all[1].targetCount);
  }
});

test('resuming on other data or settings is refused with a clear reason', () => {
  const tok = new ByteTokenizer();
  const a = tokenizeDocuments(docsOf([50, 60]), tok);
  const b = tokenizeDocuments(docsOf([50, 61]), tok);
  assert.notEqual(streamFingerprint(a), streamFingerprint(b));
  const state = new BatchSampler(a, { batchSize: 2, seqLen: 8, seed: 1 }).state();
  assert.throws(() => new BatchSampler(b, { batchSize: 2, seqLen: 8, seed: 1 }).setState(state), /cannot resume: the data differ/);
  assert.throws(() => new BatchSampler(a, { batchSize: 2, seqLen: 8, seed: 2 }).setState(state), /cannot resume: seed differs \(saved 1, now 2\)/);
  assert.throws(() => new BatchSampler(a, { batchSize: 2, seqLen: 16, seed: 1 }).setState(state), /seqLen differs/);
  assert.throws(() => new BatchSampler(a, { batchSize: 2, seqLen: 8, seed: 1 }).setState({ ...state, cursor: -1 }), /non-negative integers/);
});

test('batchTensors gives int32 (B, T) tensors', () => {
  const stream = tokenizeDocuments(docsOf([30]), new ByteTokenizer());
  const b = new BatchSampler(stream, { batchSize: 2, seqLen: 4 }).next();
  for (const t of [b.inputs, b.targets, b.docIds]) {
    assert.equal(t.dtype, 'int32');
    assert.deepEqual(t.shape, [2, 4]);
    t.dispose();
  }
  const arr: BatchArrays = { B: 1, T: 2, inputs: Int32Array.of(1, 2), targets: Int32Array.of(2, 3), docIds: Int32Array.of(0, 0), targetCount: 2 };
  const t = batchTensors(arr);
  assert.deepEqual(t.targets.toArray(), [[2, 3]]);
  for (const x of [t.inputs, t.targets, t.docIds]) x.dispose();
});

// ---- evaluation ----

test('evaluation windows score every target exactly once, with at least L − S tokens of context after the first window', () => {
  const lengths = [1, 2, 9, 10, 11, 37, 64];
  const stream = tokenizeDocuments(docsOf(lengths), new ByteTokenizer());
  // Replace tokens by their in-document position so targets can be located.
  for (let d = 0; d < lengths.length; d++) for (let p = stream.offsets[d]; p < stream.offsets[d + 1]; p++) stream.tokens[p] = p - stream.offsets[d];
  for (const [L, S] of [[8, 8], [8, 3], [8, 1], [16, 5], [100, 100]]) {
    const ev = new EvalWindows(stream, { contextLength: L, stride: S, batchSize: 3 });
    const seen = lengths.map((n) => new Array<number>(Math.max(n, 0)).fill(0));
    let scored = 0;
    for (const b of ev.arrays()) {
      // Rows are padded to the batch's longest window, never beyond L.
      assert.ok(b.T <= L, `T ${b.T} ≤ L ${L}`);
      const T = b.T;
      for (let r = 0; r < b.B; r++) {
        for (let i = 0; i < T; i++) {
          const k = r * T + i, t = b.targets[k];
          if (t === IGNORE_INDEX) continue;
          const d = b.docIds[k];
          assert.equal(t, b.inputs[k] + 1, 'target follows its input within the document');
          seen[d][t]++;
          scored++;
          // Context: the row's inputs up to i all come from this document, from its window start.
          const firstWindow = b.inputs[r * T] === 0;
          if (!firstWindow) assert.ok(i + 1 >= L - S, `context ${i + 1} < ${L - S}`);
        }
      }
    }
    for (let d = 0; d < lengths.length; d++) for (let t = 1; t < lengths[d]; t++) assert.equal(seen[d][t], 1, `L=${L} S=${S} doc ${d} target ${t}`);
    assert.equal(scored, ev.totals.scoredTokens);
    assert.equal(ev.totals.scoredTokens, lengths.reduce((a, n) => a + Math.max(0, n - 1), 0));
    assert.equal(ev.totals.scoredBytes, ev.totals.scoredTokens, 'bytes = targets for the byte tokenizer');
    assert.equal(ev.totals.documents, lengths.filter((n) => n >= 2).length);
  }
  assert.throws(() => new EvalWindows(stream, { contextLength: 8, stride: 9 }), /stride must be an integer in \[1, contextLength = 8\], got 9/);
  const tensors = [...new EvalWindows(stream, { contextLength: 8, batchSize: 2 }).batches()];
  assert.deepEqual(tensors[0].inputs.shape, [2, 8]);
  for (const b of tensors) for (const x of [b.inputs, b.targets, b.docIds]) x.dispose();
});
