// `cubit eval`, `cubit generate` and `cubit info <checkpoint>` end to end (in this process through
// the CLI's main(), a few in child processes as bin/cubit.mjs runs them): JSON
// results (stdout or --out), generation equal to the library's, and every user mistake — missing,
// corrupt or truncated checkpoint, another tokenizer, a prompt over the limit, bad option values —
// one line on stderr and a non-zero exit, never a stack trace.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generate } from '../src/models/generate.ts';
import { ByteTokenizer, loadTokenizer } from '../src/data/tokenizer.ts';
import { Decoder } from '../src/models/decoder.ts';
import { loadModel } from '../src/eval/checkpoint.ts';
import { cli, cliInProcess, perturbedModel, saveRun, tmpDir, type CliResult } from './inference-fixtures.ts';

let dir = '';
let run = '';
let corpus = '';

/** A user error: exit 1 or 2, nothing on stdout, one line on stderr saying `pattern`, no stack frames. */
function assertUserError(r: CliResult, pattern: RegExp, what: string): void {
  assert.ok(r.code === 1 || r.code === 2, `${what}: exit code ${r.code}\n${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `${what}: stderr should be one line, got:\n${r.stderr}`);
  assert.match(lines[0], /^cubit: error: /, what);
  assert.match(lines[0], pattern, what);
  assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: stack trace`);
  assert.equal(r.stdout, '', `${what}: stdout should be empty`);
}

before(async () => {
  dir = tmpDir('cli');
  run = path.join(dir, 'run');
  const model = perturbedModel({ vocabSize: 256, dModel: 16, nLayers: 2, nHeads: 2, ffnHidden: 24, mixer: 'cubit', window: 8 }, 3, 0.3);
  try { await saveRun(run, model, { seqLen: 16, step: 42 }); } finally { model.dispose(); }
  corpus = path.join(dir, 'held-out.txt');
  fs.writeFileSync(corpus, 'The quick brown fox jumps over the lazy dog.\n\nPack my box with five dozen liquor jugs!\n\nSphinx of black quartz, judge my vow.\n');
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('cubit info <checkpoint>', () => {
  test('prints config, step, parameter count and every tensor with its shape', async () => {
    const r = await cli(['info', run]); // a child process: bin/cubit.mjs as users run it
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.step, 42);
    assert.equal(s.trainSeqLen, 16);
    assert.deepEqual(s.mixers, ['cubit', 'cubit']);
    assert.deepEqual(s.problems, []);
    assert.equal(s.model.window, 8);
    assert.deepEqual(s.tokenizer, { kind: 'byte', vocabSize: 256 });
    const wq = s.tensors.find((t: { name: string }) => t.name === 'blocks.0.mixer.wq.weight');
    assert.deepEqual(wq, { name: 'blocks.0.mixer.wq.weight', dtype: 'F32', shape: [16, 16] });
    assert.equal(s.parameters, s.tensors.reduce((n: number, t: { shape: number[] }) => n + t.shape.reduce((a, b) => a * b, 1), 0));
    assert.ok(s.files.some((f: { name: string }) => f.name === 'optimizer.safetensors'));
    const brief = JSON.parse((await cliInProcess(['info', run, '--brief'])).stdout);
    assert.equal(brief.tensors, undefined);
  });
});

describe('cubit eval', () => {
  test('JSON results per context length on stdout, or atomically in --out', async () => {
    const args = ['eval', run, '--corpus', corpus, '--split', 'all', '--context', '8,16,32', '--stride', '0.5'];
    const r = await cliInProcess(args);
    const o = await cliInProcess([...args, '--out', path.join(dir, 'eval.json')]);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.equal(rep.step, 42);
    assert.equal(rep.data.documents, 1);
    assert.deepEqual(rep.results.map((x: { contextLength: number }) => x.contextLength), [8, 16, 32]);
    assert.deepEqual(rep.results.map((x: { beyondTraining: boolean }) => x.beyondTraining), [false, false, true]);
    assert.deepEqual(rep.results.map((x: { stride: number }) => x.stride), [4, 8, 16]);
    for (const x of rep.results) {
      assert.ok(x.loss > 0 && Number.isFinite(x.bitsPerByte));
      assert.equal(x.tokens, Buffer.byteLength(fs.readFileSync(corpus, 'utf8')) - 1);
    }
    assert.equal(o.code, 0, o.stderr);
    assert.equal(o.stdout, '');
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'eval.json'), 'utf8')).results.map((x: { loss: number }) => x.loss), rep.results.map((x: { loss: number }) => x.loss));
  });

  test('defaults: lengths 1, 2 and 4 × the training length', async () => {
    const r = await cliInProcess(['eval', run, '--corpus', corpus, '--split', 'all']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).results.map((x: { contextLength: number }) => x.contextLength), [16, 32, 64]);
  });
});

describe('cubit generate', () => {
  test('--json: the same tokens as the library with the loaded model, cached or --recompute', async () => {
    const args = ['generate', run, '--prompt', 'The quick', '-n', '12', '--temperature', '0.8', '--top-k', '20', '--seed', '4', '--json'];
    const a = await cli(args); // a child process: bin/cubit.mjs as users run it
    const b = await cliInProcess([...args, '--recompute']);
    assert.equal(a.code, 0, a.stderr);
    const ra = JSON.parse(a.stdout), rb = JSON.parse(b.stdout);
    assert.equal(ra.newTokens, 12);
    assert.equal(ra.stopReason, 'length');
    assert.deepEqual(rb.tokens, ra.tokens);
    assert.equal(rb.mode, 'recompute');
    const ck = loadModel(run);
    try {
      const want = await generate(ck.model, new ByteTokenizer().encode('The quick'), { maxNewTokens: 12, temperature: 0.8, topK: 20, seed: 4 });
      assert.deepEqual(ra.tokens, want.tokens);
      assert.equal(ra.text, ck.tokenizer.decode(want.tokens));
    } finally {
      ck.model.dispose();
    }
  });

  test('streams the text to stdout; --out writes the JSON', async () => {
    const out = path.join(dir, 'gen.json');
    const r = await cliInProcess(['generate', run, '--prompt', 'ab', '-n', '6', '--temperature', '0', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(rep.newTokens, 6);
    assert.equal(r.stdout, rep.text + '\n');
  });

  test('the prompt may fill the context: generation stops at --max-context', async () => {
    const r = await cliInProcess(['generate', run, '--prompt', 'abcd', '-n', '50', '--max-context', '6', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.equal(rep.stopReason, 'context');
    assert.equal(rep.newTokens, 3);
  });
});

describe('a Hugging Face tokenizer', () => {
  test('found from the checkpoint record; the prompt starts with BOS; generation stops at EOS', async () => {
    const tokDir = path.join(dir, 'hf');
    fs.mkdirSync(tokDir, { recursive: true });
    const vocab = { '[UNK]': 0, '<s>': 1, '</s>': 2, the: 3, fox: 4, jumps: 5, '.': 6 };
    fs.writeFileSync(path.join(tokDir, 'tokenizer.json'), JSON.stringify({
      version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null,
      pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null,
      model: { type: 'WordLevel', vocab, unk_token: '[UNK]' },
    }));
    fs.writeFileSync(path.join(tokDir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>' }));
    const tok = loadTokenizer(tokDir);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    assert.equal(tok.decode([]), '');
    // A model that always predicts '</s>': every token embeds to u, the blocks add nothing, and
    // only the head row of '</s>' is u (untied head).
    const model = new Decoder({ vocabSize: 7, dModel: 8, nLayers: 1, nHeads: 2, tieEmbeddings: false }, 1);
    const u = Array.from({ length: 8 }, (_, i) => (i % 2 ? 1 : -1) * (1 + i / 8));
    for (const [name, p] of model.namedParameters()) {
      const v = new Float32Array(p.size);
      if (name === 'embed.weight') for (let i = 0; i < v.length; i++) v[i] = u[i % 8];
      else if (name === 'head.weight') u.forEach((x, j) => { v[2 * 8 + j] = x; });
      else if (name.endsWith('Norm.weight')) v.fill(1);
      p.backend.write(p.storage, v);
    }
    const hfRun = path.join(dir, 'hf-run');
    try { await saveRun(hfRun, model, { tokenizer: tok.identity(), data: { corpus: 'brown', tokenizer: tokDir } }); } finally { model.dispose(); }
    const r = await cliInProcess(['generate', hfRun, '--prompt', 'the fox', '--temperature', '0', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.equal(rep.promptTokens, 3, 'BOS + 2 words');
    assert.deepEqual(rep.tokens, [2]);
    assert.equal(rep.stopReason, 'stop');
    assert.equal(rep.text, '');
    // Moved away from its recorded source and the training config's path, it must be named.
    const moved = path.join(dir, 'hf-moved');
    fs.renameSync(tokDir, moved);
    try {
      assertUserError(await cliInProcess(['generate', hfRun, '--prompt', 'the']), /its tokenizer \(.*tokenizer\.json, sha256 [0-9a-f]{12}…\) was not found; pass it with --tokenizer/, 'moved tokenizer');
      const ok = await cliInProcess(['generate', hfRun, '--prompt', 'the', '--tokenizer', moved, '--temperature', '0', '--json']);
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      fs.renameSync(moved, tokDir);
    }
  });
});

describe('user errors: one line, non-zero exit, no stack trace', () => {
  test('missing, corrupt and truncated checkpoints', async () => {
    const bad = (name: string, edit: (ck: string) => void): string => {
      const copy = path.join(dir, name);
      fs.cpSync(run, copy, { recursive: true });
      const pointer = JSON.parse(fs.readFileSync(path.join(copy, 'latest.json'), 'utf8'));
      edit(path.join(copy, pointer.checkpoint));
      return copy;
    };
    const truncated = bad('truncated', (ck) => {
      const f = path.join(ck, 'model.safetensors');
      fs.truncateSync(f, fs.statSync(f).size - 100);
    });
    const corruptConfig = bad('corrupt-config', (ck) => fs.writeFileSync(path.join(ck, 'config.json'), '{"format": "cubit-checkpoint", '));
    const noModel = bad('no-model', (ck) => fs.rmSync(path.join(ck, 'model.safetensors')));
    const wrongShape = bad('wrong-shape', (ck) => {
      const c = JSON.parse(fs.readFileSync(path.join(ck, 'config.json'), 'utf8'));
      c.model.ffnHidden = 32;
      fs.writeFileSync(path.join(ck, 'config.json'), JSON.stringify(c));
    });
    const cases: [string[], RegExp][] = [
      [['eval', path.join(dir, 'nope'), '--context', '8'], /nope: no such run or checkpoint folder/],
      [['generate', path.join(dir, 'nope'), '--prompt', 'a'], /nope: no such run or checkpoint folder/],
      [['info', path.join(dir, 'nope')], /nope: no such run or checkpoint folder/],
      [['eval', truncated, '--context', '8', '--corpus', corpus], /model\.safetensors: .*(truncated|past the end)/],
      [['generate', truncated, '--prompt', 'a'], /model\.safetensors: .*(truncated|past the end)/],
      [['info', truncated], /model\.safetensors: .*(truncated|past the end)/],
      [['generate', corruptConfig, '--prompt', 'a'], /config\.json: not valid JSON/],
      [['generate', noModel, '--prompt', 'a'], /model\.safetensors: missing \(incomplete checkpoint\)/],
      [['generate', wrongShape, '--prompt', 'a'], /'blocks\.0\.ffn\.gate\.weight' has shape \[24, 16\], config\.json implies \[32, 16\]/],
    ];
    for (const [args, pattern] of cases) assertUserError(await cliInProcess(args), pattern, args.join(' '));
  });

  test('another tokenizer, a prompt over the limit, an empty prompt, bad option values', async () => {
    const tokDir = path.join(dir, 'tok');
    fs.mkdirSync(tokDir, { recursive: true });
    // A WordLevel tokenizer.json: a different vocabulary than the checkpoint's byte tokenizer.
    fs.writeFileSync(path.join(tokDir, 'tokenizer.json'), JSON.stringify({
      version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null,
      pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null,
      model: { type: 'WordLevel', vocab: { '[UNK]': 0, the: 1, fox: 2 }, unk_token: '[UNK]' },
    }));
    const cases: [string[], RegExp][] = [
      [['generate', run, '--prompt', 'a', '--tokenizer', tokDir], /tokenizer mismatch: the checkpoint .* was made with the byte tokenizer \(vocab 256\), but .*tokenizer\.json \(vocab 3/],
      [['eval', run, '--context', '8', '--tokenizer', tokDir], /tokenizer mismatch/],
      [['generate', run, '--prompt', 'hello world', '--max-context', '4'], /the prompt is 11 tokens, more than the 4 allowed \(--max-context\)/],
      [['generate', run, '--prompt', 'x'.repeat(70)], /the prompt is 70 tokens, more than the 64 allowed \(--max-context, default 4 × the training length\)/],
      [['generate', run, '--prompt', ''], /the prompt is empty and byte has no begin-of-text token/],
      [['generate', run], /give a --prompt/],
      [['generate', run, '--prompt', 'a', '--prompt-file', corpus], /--prompt or --prompt-file, not both/],
      [['generate', run, '--prompt-file', path.join(dir, 'missing.txt')], /--prompt-file .*missing\.txt: no such file/],
      [['generate', run, '--prompt', 'a', '--temperature=-1'], /--temperature must be ≥ 0/],
      [['generate', run, '--prompt', 'a', '--temperature', 'hot'], /--temperature must be a number, got 'hot'/],
      [['generate', run, '--prompt', 'a', '--top-p', '0'], /--top-p must be in \(0, 1\], got '0'/],
      [['generate', run, '--prompt', 'a', '--top-k', '2.5'], /--top-k must be an integer ≥ 0, got '2.5'/],
      [['generate', run, '--prompt', 'a', '-n', 'many'], /--max-new-tokens must be an integer ≥ 0, got 'many'/],
      [['generate', run, '--prompt', 'a', '--bogus'], /generate: unknown option '--bogus'; see 'cubit generate --help'$/],
      [['generate', run, '--prompt', 'a', '--temprature', '1'], /unknown option '--temprature' \(did you mean --temperature\?\)/],
      [['generate', run, '--prompt'], /generate: --prompt needs a value/],
      [['generate', run, '--prompt', 'a', '--json=yes'], /generate: --json takes no value/],
      [['eval', run, '--context', '8,x'], /--context: 'x' is not a positive integer/],
      [['eval', run, '--context', '8', '--stride', '0'], /--stride must be a positive integer number of tokens, got '0'/],
      [['eval', run, '--context', '8', '--stride', '1.5'], /--stride as a fraction must be in \(0, 1\], got '1.5'/],
      [['eval', run, '--context', '8', '--split', 'dev'], /--split must be one of validation, test, train, all, got 'dev'/],
      [['eval', run, '--context', '8', '--corpus', path.join(dir, 'nothing')], /corpus '.*nothing': no such file or folder/],
      [['eval'], /eval: give one run or checkpoint folder/],
    ];
    for (const [args, pattern] of cases) assertUserError(await cliInProcess(args), pattern, args.join(' '));
    // The same through bin/cubit.mjs in a child process: the exit code and stderr a user sees.
    const [a, b] = await Promise.all([cli(cases[2][0]), cli(cases[8][0])]);
    assertUserError(a, cases[2][1], 'child process: ' + cases[2][0].join(' '));
    assertUserError(b, cases[8][1], 'child process: ' + cases[8][0].join(' '));
  });

  test('--help describes every option and exits 0', async () => {
    for (const [cmd, opts] of [['eval', ['--context', '--stride', '--corpus', '--split', '--out']], ['generate', ['--prompt', '--temperature', '--top-k', '--top-p', '--seed', '--max-new-tokens', '--recompute']], ['info', ['--brief']]] as const) {
      const r = await cliInProcess([cmd, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`^usage: cubit ${cmd}`));
      for (const o of opts) assert.ok(r.stdout.includes(o), `${cmd} --help lacks ${o}`);
    }
  });
});
