// Fixtures of the training and checkpoint tests: a small seeded text corpus on disk, tiny configs,
// and bitwise comparison of two checkpoints.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng } from '../src/index.ts';
import { readSafetensorsSync } from '../src/io/safetensors.ts';
import { CHECKPOINT_FILES } from '../src/train/checkpoint.ts';

export { tmpDir } from './helpers.ts';

const WORDS = ('the of and to a in is was that for it with as his on be at by had this not are but from or have an they which one you '
  + 'were her all she there would their we him been has when who will more no if out so said what up its about into than them can only '
  + 'river stone garden winter letter morning window silver engine market harbour lantern').split(' ');

/** A folder of `docs` .txt documents of seeded pseudo-English (about `words` words each). */
export function writeCorpus(dir: string, docs = 24, words = 300, seed = 7): string {
  fs.mkdirSync(dir, { recursive: true });
  const rng = new Rng(seed);
  for (let d = 0; d < docs; d++) {
    const out: string[] = [];
    for (let w = 0; w < words; w++) {
      // A little structure to learn: frequent words, sentence breaks, a repeated phrase.
      const word = rng.next() < 0.6 ? WORDS[rng.int(12)] : WORDS[rng.int(WORDS.length)];
      out.push(w % 17 === 16 ? word + '.\n' : word);
    }
    fs.writeFileSync(path.join(dir, `doc${String(d).padStart(3, '0')}.txt`), out.join(' ').replace(/\n /g, '\n') + '\n');
  }
  return dir;
}

/** A small GPT-2-style byte-level BPE tokenizer.json: 256 byte tokens, 3 merges, one special token (shared by the data, training and inference tests). */
export function tinyBpeJson(): string {
  const bs: number[] = [];
  for (let i = 33; i <= 126; i++) bs.push(i);
  for (let i = 161; i <= 172; i++) bs.push(i);
  for (let i = 174; i <= 255; i++) bs.push(i);
  const cs = [...bs];
  let k = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + k++); }
  const vocab: Record<string, number> = {};
  bs.forEach((b, i) => { vocab[String.fromCodePoint(cs[i])] = b; });
  const merges = ['t h', 'th e', 'Ġ the'];
  let id = 256;
  for (const m of merges) vocab[m.replace(' ', '')] = id++;
  vocab['<|endoftext|>'] = id;
  return JSON.stringify({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  });
}

/** A tiny run config over `corpus` (overrides merged on top). */
export function tinyConfig(corpus: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model: { dModel: 16, nLayers: 1, nHeads: 2, ffnHidden: 32, mixer: 'softmax' },
    data: { corpus, split: { validation: 0.1, test: 0.1 } },
    steps: 8, batchSize: 4, seqLen: 16, lr: 3e-3, warmupSteps: 2,
    evalEvery: 4, evalBatches: 2, checkpointEvery: 4, logEvery: 2,
    ...over,
  };
}

/** Asserts two checkpoints hold bitwise-identical weights and optimizer moments (and the same optimizer step). */
export function assertSameCheckpoint(a: string, b: string): void {
  for (const f of [CHECKPOINT_FILES.model, CHECKPOINT_FILES.optimizer]) {
    const x = readSafetensorsSync(path.join(a, f)), y = readSafetensorsSync(path.join(b, f));
    assert.deepEqual([...y.tensors.keys()], [...x.tensors.keys()], `${f}: tensor names`);
    assert.deepEqual(y.metadata, x.metadata, `${f}: metadata`);
    for (const [name, t] of x.tensors) {
      const u = y.tensors.get(name)!;
      const xb = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      const yb = Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength);
      if (!xb.equals(yb)) {
        let n = 0, first = -1;
        for (let i = 0; i < t.data.length; i++) if (!Object.is(t.data[i], u.data[i])) { n++; if (first < 0) first = i; }
        assert.fail(`${f}: '${name}' differs in ${n} of ${t.data.length} elements (first at ${first}: ${t.data[first]} vs ${u.data[first]})`);
      }
    }
  }
}

/** metrics.jsonl records without the timing fields (which differ between sittings). */
export function metricsWithoutTimes(runDir: string): Record<string, unknown>[] {
  return fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => {
    const r = JSON.parse(l) as Record<string, unknown>;
    delete r.time; delete r.tokensPerSec;
    return r;
  });
}
