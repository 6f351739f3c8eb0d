// Leaving cubit and coming back (src/train/interop.ts, python/): model folders, the byte tokenizer
// as a Hugging Face tokenizer.json, F16/BF16 weights, `cubit export` and `cubit import`; and, where
// Python has PyTorch, the exported modeling_cubit.py (logits of every mixer configuration, the
// streamed solve against the dense one, cached generation against `cubit generate`), the LLaMA
// layout against a forward written from the public LLaMA definition, and train_torch.py (the
// losses cubit itself gets when resuming, one process = two under torchrun, round trips that are
// bit-identical). The PyTorch tests are skipped, with the reason, where no interpreter has torch
// (CI installs Debian's python3-torch for /usr/bin/python3; CUBIT_TORCH_PYTHON picks another).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { noGrad, tensor, tidy } from '../src/index.ts';
import { ByteTokenizer, HfTokenizer } from '../src/data/tokenizer.ts';
import { loadModel } from '../src/eval/checkpoint.ts';
import { SafetensorsFile, readSafetensorsSync } from '../src/io/safetensors.ts';
import type { ModelConfigInput } from '../src/models/config.ts';
import type { Decoder } from '../src/models/decoder.ts';
import { exportModel, importRun, llamaName } from '../src/train/interop.ts';
import { resolveCheckpoint, train } from '../src/train/index.ts';
import { cliInProcess, perturbedModel, saveRun, tmpDir } from './inference-fixtures.ts';
import { relErr } from './helpers.ts';

const HELPER = path.join(import.meta.dirname, 'interop_helper.py');
const TRAIN_TORCH = path.join(import.meta.dirname, '..', 'python', 'train_torch.py');

/** The first interpreter that imports torch: $CUBIT_TORCH_PYTHON, Debian's /usr/bin/python3, python3 on PATH. */
function findTorchPython(): { python: string | null; why: string } {
  const tried: string[] = [];
  for (const py of [process.env.CUBIT_TORCH_PYTHON, '/usr/bin/python3', 'python3'].filter((p): p is string => !!p)) {
    const r = spawnSync(py, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return { python: py, why: '' };
    tried.push(`${py}: ${r.error ? (r.error as NodeJS.ErrnoException).code : 'no torch'}`);
  }
  return { python: null, why: `no Python with PyTorch (${tried.join('; ')}); install python3-torch (apt) or set CUBIT_TORCH_PYTHON` };
}
const { python, why } = findTorchPython();
const torchOpts = python ? {} : { skip: why };

function py(args: string[], env: Record<string, string> = {}): string {
  const r = spawnSync(python!, args, { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1', ...env } });
  if (r.status !== 0) throw new Error(`${python} ${args.join(' ')} failed (${r.status}):\n${r.stderr.slice(-3000)}`);
  return r.stdout;
}
const helper = (...args: string[]): Record<string, unknown> => JSON.parse(py([HELPER, ...args]).trim().split('\n').pop()!);

function readF64(file: string): Float64Array {
  const b = fs.readFileSync(file);
  return new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8).slice();
}

const B = 2, T = 13;
const base: ModelConfigInput = { vocabSize: 256, dModel: 24, nLayers: 2, nHeads: 3, ffnHidden: 40, blockSize: 4 };
const ids = Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % 61);
const docIds = Array.from({ length: B * T }, (_, i) => (i < T ? (i < 6 ? 0 : 1) : 2));
const rows = (a: number[]): string => Array.from({ length: B }, (_, b) => a.slice(b * T, (b + 1) * T).join(',')).join(';');

// Every mixer and every option that changes the tensors or the maths (as test/format.test.ts).
const cases: { name: string; config: ModelConfigInput; negativeRefScale?: boolean }[] = [
  { name: 'softmax', config: { mixer: 'softmax' } },
  { name: 'cubit', config: { mixer: 'cubit' } },
  { name: 'cubit, head 1\'s refScale negative (α = |refScale|)', config: { mixer: 'cubit' }, negativeRefScale: true },
  { name: 'cubit, shared key, LRR off, untied head', config: { mixer: 'cubit', cubit: { sharedKey: true, lrr: false }, tieEmbeddings: false } },
  { name: 'local_linear, full rank', config: { mixer: 'local_linear', localLinear: { ridge: 2 } } },
  { name: 'local_linear, rank 4', config: { mixer: 'local_linear', localLinear: { rank: 4, ridge: 0.5 } } },
  { name: 'cubit on layer 1 of 3 (cubitLayers), window 5', config: { mixer: 'cubit', nLayers: 3, cubitLayers: [1, 2], window: 5 } },
  { name: 'per-layer mixers, window 6, rotaryBase 500, normEps 1e-5', config: { mixer: ['local_linear', 'cubit', 'softmax'], nLayers: 3, window: 6, rotaryBase: 500, normEps: 1e-5 } },
];

function tsLogits(model: Decoder, withDocs = true): Float64Array {
  return noGrad(() => tidy(() => {
    const x = tensor(Int32Array.from(ids), [B, T], { dtype: 'int32' });
    const d = tensor(Int32Array.from(docIds), [B, T], { dtype: 'int32' });
    return Float64Array.from(model.forward(x, withDocs ? { docIds: d } : {}).dataSync());
  }));
}

/** Runs fn on a saved run of a perturbed model, then removes everything (after fn's promise settles). */
async function withRun(config: ModelConfigInput, fn: (run: string, model: Decoder, dir: string) => unknown, negativeRefScale = false): Promise<void> {
  const dir = tmpDir('interop');
  const model = perturbedModel({ ...base, ...config }, 3);
  try {
    if (negativeRefScale) {
      for (const [name, p] of model.namedParameters()) {
        if (name.endsWith('refScale')) p.backend.write(p.storage, Float64Array.from(p.dataSync(), (v, h) => (h === 1 ? -v : v)));
      }
    }
    const run = path.join(dir, 'run');
    await saveRun(run, model);
    await fn(run, model, dir);
  } finally {
    model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function tensorBytes(file: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [name, t] of readSafetensorsSync(file).tensors) out.set(name, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return out;
}

function assertSameTensors(a: string, b: string): void {
  const x = tensorBytes(a), y = tensorBytes(b);
  assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort(), `${a} and ${b} hold different tensors`);
  for (const [name, bytes] of x) assert.ok(bytes.equals(y.get(name)!), `${name} differs between ${a} and ${b}`);
}

describe('model folders', () => {
  test('the byte tokenizer as tokenizer.json gives exactly the byte ids, and decodes them back', () => {
    const hf = new HfTokenizer(ByteTokenizer.hfJson());
    const bt = new ByteTokenizer();
    const latin = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join('');
    const texts = ['Hello, world!', '  two  spaces\n\ttab\r\n', 'héllo wörld 日本語 🎉 Ω', latin, '\u0000\u0001\u007f', "don't 're 've 'll", 'a'.repeat(500) + ' b'];
    for (const t of texts) {
      const want = Array.from(bt.encode(t));
      assert.deepEqual(Array.from(hf.encode(t)), want, JSON.stringify(t.slice(0, 20)));
      assert.equal(hf.decode(want), t);
    }
    assert.equal(hf.vocabSize, 256);
    for (let b = 0; b < 256; b++) assert.equal(hf.decode([b]), bt.decode([b]), `byte ${b} alone`);
  });

  test('export writes model.safetensors, config.json and tokenizer.json only; eval, generate, info and loading accept the folder', async () => {
    await withRun({ mixer: ['cubit', 'softmax'], window: 6 }, async (run, model, dir) => {
      const folder = path.join(dir, 'folder');
      const r = await cliInProcess(['export', run, folder]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(fs.readdirSync(folder).sort(), ['config.json', 'model.safetensors', 'tokenizer.json']);
      const cfg = JSON.parse(fs.readFileSync(path.join(folder, 'config.json'), 'utf8'));
      assert.equal(cfg.format, 'cubit-model');
      assert.equal(cfg.model_type, 'cubit');
      assert.deepEqual(cfg.model, model.config);
      assertSameTensors(path.join(resolveCheckpoint(run), 'model.safetensors'), path.join(folder, 'model.safetensors'));
      const tok = HfTokenizer.fromFile(folder);
      assert.deepEqual(Array.from(tok.encode('ok ü')), [111, 107, 32, 195, 188]);

      const ck = loadModel(folder);
      try {
        assert.equal(ck.dir, folder);
        assert.equal(ck.tokenizer.name, 'byte');
        assert.equal(ck.trainSeqLen, 16);
        assert.deepEqual(tsLogits(ck.model), tsLogits(model));
      } finally { ck.model.dispose(); }
      const gen = async (p: string): Promise<unknown> => {
        const g = await cliInProcess(['generate', p, '--prompt', 'abc', '-n', '5', '--temperature', '0', '--json']);
        assert.equal(g.code, 0, g.stderr);
        return JSON.parse(g.stdout).tokens;
      };
      assert.deepEqual(await gen(folder), await gen(run));
      const corpus = path.join(dir, 'corpus.txt');
      fs.writeFileSync(corpus, 'the quick brown fox jumps over the lazy dog\n'.repeat(4));
      const ev = async (p: string): Promise<unknown> => {
        const e = await cliInProcess(['eval', p, '--corpus', corpus, '--split', 'all', '--context', '16']);
        assert.equal(e.code, 0, e.stderr);
        return (JSON.parse(e.stdout) as { results: Record<string, unknown>[] }).results.map(({ seconds: _s, tokensPerSecond: _t, ...r }) => r);
      };
      assert.deepEqual(await ev(folder), await ev(run));
      const info = await cliInProcess(['info', folder, '--brief']);
      assert.equal(info.code, 0, info.stderr);
      const summary = JSON.parse(info.stdout);
      assert.deepEqual(summary.problems, []);
      assert.equal(summary.state, null, 'a model folder has no trainer state');
      // A model folder exports again, to the same bytes.
      const again = path.join(dir, 'nested', 'again'); // parents are made
      exportModel(folder, again);
      for (const f of ['model.safetensors', 'config.json', 'tokenizer.json']) assert.ok(fs.readFileSync(path.join(folder, f)).equals(fs.readFileSync(path.join(again, f))), f);
    });
  });

  test('a folder with BF16 or F16 weights loads, widened to float32', async () => {
    await withRun({ mixer: 'cubit' }, (run, model, dir) => {
      const folder = path.join(dir, 'folder');
      exportModel(run, folder);
      const file = path.join(folder, 'model.safetensors');
      const src = readSafetensorsSync(file);
      // Rewrite every tensor as BF16 (round to nearest even) or F16 (alternating), by hand.
      const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
      const blobs: Buffer[] = [];
      let off = 0;
      const rounded = new Map<string, Float32Array>();
      [...src.tensors.entries()].forEach(([name, t], k) => {
        const f32 = t.data as Float32Array;
        const out = Buffer.alloc(f32.length * 2);
        const back = new Float32Array(f32.length);
        const bitsIn = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
        for (let i = 0; i < f32.length; i++) {
          if (k % 2 === 0) {
            const u = bitsIn[i], r = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
            out.writeUInt16LE(r, 2 * i);
            back[i] = new Float32Array(new Uint32Array([r << 16]).buffer)[0];
          } else {
            const h = f32ToF16(f32[i]);
            out.writeUInt16LE(h, 2 * i);
            back[i] = f16ToF32(h);
          }
        }
        rounded.set(name, back);
        header[name] = { dtype: k % 2 === 0 ? 'BF16' : 'F16', shape: t.shape, data_offsets: [off, off + out.length] };
        blobs.push(out);
        off += out.length;
      });
      const json = Buffer.from(JSON.stringify(header));
      const n = Buffer.alloc(8); n.writeBigUInt64LE(BigInt(json.length));
      fs.writeFileSync(file, Buffer.concat([n, json, ...blobs]));
      const f = SafetensorsFile.open(file);
      try { assert.deepEqual(new Set(f.names.map((x) => f.info(x).stored)), new Set(['BF16', 'F16'])); } finally { f.close(); }
      const ck = loadModel(folder);
      try {
        for (const [name, p] of ck.model.namedParameters()) assert.deepEqual(p.dataSync(), rounded.get(name), name);
        const e = relErr(tsLogits(ck.model), tsLogits(model));
        assert.ok(e > 0 && e < 0.05, `16-bit weights moved the logits by ${e}`);
      } finally { ck.model.dispose(); }
    });
  });

  test('export and import refuse what they cannot do, in one line naming the problem', async () => {
    await withRun({ mixer: 'cubit' }, async (run, _model, dir) => {
      const busy = path.join(dir, 'busy');
      fs.mkdirSync(busy);
      fs.writeFileSync(path.join(busy, 'x'), '');
      assert.throws(() => exportModel(run, busy), /busy: the folder is not empty/);
      assert.throws(() => exportModel(run, path.join(dir, 'l'), { to: 'llama' }), /--to llama needs softmax attention in every layer; layer 0 is cubit/);
      const r = await cliInProcess(['export', run, path.join(dir, 'x'), '--to', 'onnx']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--to must be one of cubit, pytorch, llama/);
      const folder = path.join(dir, 'folder');
      exportModel(run, folder);
      await assert.rejects(importRun(folder, path.join(dir, 'back')), /optimizer\.safetensors: missing/);
      fs.rmSync(path.join(folder, 'model.safetensors'));
      assert.throws(() => loadModel(folder), /model\.safetensors: missing \(incomplete model folder\)/);
      assert.ok(!fs.existsSync(path.join(dir, 'back')), 'a failed import leaves no run folder');
    });
  });

  test('import writes a run folder whose weights and optimizer moments are the source\'s, bit for bit', async () => {
    await withRun({ mixer: 'cubit' }, async (run, _model, dir) => {
      const back = path.join(dir, 'back');
      const ck = await importRun(run, back);
      for (const f of ['model.safetensors', 'optimizer.safetensors']) assertSameTensors(path.join(resolveCheckpoint(run), f), path.join(ck, f));
      assert.equal(resolveCheckpoint(back), ck);
    });
  });

  test('a Hugging Face tokenizer travels with the folder (tokenizer.json and tokenizer_config.json), and the folder loads with it', async () => {
    const dir = tmpDir('interop');
    try {
      const tokDir = path.join(dir, 'hf');
      fs.mkdirSync(tokDir);
      fs.writeFileSync(path.join(tokDir, 'tokenizer.json'), JSON.stringify({
        version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null,
        pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null,
        model: { type: 'WordLevel', vocab: { '[UNK]': 0, '<s>': 1, '</s>': 2, the: 3, fox: 4 }, unk_token: '[UNK]' },
      }));
      fs.writeFileSync(path.join(tokDir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>' }));
      const tok = HfTokenizer.fromFile(tokDir);
      const model = perturbedModel({ ...base, vocabSize: 5, mixer: 'cubit' }, 2);
      const run = path.join(dir, 'run');
      try { await saveRun(run, model, { tokenizer: tok.identity(), data: { corpus: 'brown', tokenizer: tokDir } }); } finally { model.dispose(); }
      const folder = path.join(dir, 'folder');
      assert.deepEqual(exportModel(run, folder), ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
      assert.equal(fs.readFileSync(path.join(folder, 'tokenizer.json'), 'utf8'), tok.json);
      const cfg = JSON.parse(fs.readFileSync(path.join(folder, 'config.json'), 'utf8'));
      assert.equal(cfg.tokenizer.sha256, tok.sha256);
      assert.equal(cfg.tokenizer.source, undefined, 'no path of this machine in a shared folder');
      fs.rmSync(tokDir, { recursive: true }); // the folder stands alone
      const ck = loadModel(folder);
      try {
        assert.equal(ck.tokenizer.bosId, 1);
        assert.equal(ck.tokenizer.eosId, 2);
        assert.deepEqual(Array.from(ck.tokenizer.encode('the fox')), [3, 4]);
      } finally { ck.model.dispose(); }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('LLaMA names cover every tensor of an all-softmax model', async () => {
    await withRun({ mixer: 'softmax', tieEmbeddings: false }, (_run, model) => {
      for (const [name] of model.namedParameters()) assert.ok(llamaName(name), name);
    });
  });
});

describe('PyTorch: the exported modeling_cubit.py', () => {
  for (const c of cases) {
    test(`logits = cubit's within 1e-4; streamed = dense solve: ${c.name}`, torchOpts, async () => {
      await withRun(c.config, (run, model, dir) => {
        const folder = path.join(dir, 'pt');
        exportModel(run, folder, { to: 'pytorch' });
        assert.deepEqual(fs.readdirSync(folder).sort(), ['config.json', 'model.safetensors', 'modeling_cubit.py', 'tokenizer.json', 'train_torch.py']);
        const out = path.join(dir, 'logits.f64');
        const r = helper('logits', folder, rows(ids), rows(docIds), out);
        const both = readF64(out), n = both.length / 2;
        const want = tsLogits(model);
        assert.equal(n, want.length);
        const streamed = both.subarray(0, n), dense = both.subarray(n);
        const e = relErr(streamed, want), ed = relErr(dense, want);
        assert.ok(e < 1e-4, `streamed logits relErr ${e.toExponential(2)}`);
        assert.ok(ed < 1e-4, `dense logits relErr ${ed.toExponential(2)}`);
        assert.ok((r.streamedVsDense as number) < 1e-5, `streamed vs dense ${r.streamedVsDense}`);
      }, c.negativeRefScale);
    });
  }

  test('the streamed solve\'s backward = autograd through the dense solve (float64; blocks of 4 across windows and documents)', torchOpts, async () => {
    for (const config of [
      { mixer: 'cubit', window: 6 },
      { mixer: 'cubit', cubit: { sharedKey: true, lrr: false } },
    ] as ModelConfigInput[]) {
      await withRun(config, (run, _model, dir) => {
        const folder = path.join(dir, 'pt');
        exportModel(run, folder, { to: 'pytorch' });
        const r = helper('grads', folder, rows(ids), rows(docIds));
        assert.ok(Math.abs((r.streamLoss as number) - (r.denseLoss as number)) < 1e-10 * Math.abs(r.denseLoss as number));
        assert.ok((r.gradRelGap as number) < 1e-9, `gradient gap ${r.gradRelGap}`);
        assert.ok((r.names as number) >= 20);
      });
    }
  });

  test('the streamed solve keeps no T×T matrix per head for its backward; the dense one does', torchOpts, () => {
    const T = 512, D = 8;
    const r = helper('saved', path.join(import.meta.dirname, '..', 'python'), String(T), '64');
    assert.ok((r.stream as number) <= T * D, `streamed: a saved tensor of ${r.stream} elements per head (T·D = ${T * D})`);
    assert.equal(r.dense, T * T);
  });

  test('cached generate() gives the greedy tokens of `cubit generate`', torchOpts, async () => {
    for (const config of [
      { mixer: 'cubit', window: 7, vocabSize: 256 },
      { mixer: ['local_linear', 'softmax'], vocabSize: 256, localLinear: { rank: 4 } },
    ] as ModelConfigInput[]) {
      const dir = tmpDir('interop');
      const model = perturbedModel({ ...base, ...config }, 5, 0.3);
      try {
        const run = path.join(dir, 'run');
        await saveRun(run, model);
        const folder = path.join(dir, 'pt');
        exportModel(run, folder, { to: 'pytorch' });
        const g = await cliInProcess(['generate', run, '--prompt', 'Hello there', '-n', '24', '--temperature', '0', '--max-context', '0', '--json']);
        assert.equal(g.code, 0, g.stderr);
        const want = JSON.parse(g.stdout).tokens as number[];
        assert.ok(new Set(want).size > 2, `the fixture should generate varied tokens, got ${want}`);
        const r = helper('generate', folder, Array.from(Buffer.from('Hello there')).join(','), String(want.length));
        assert.deepEqual(r.cached, want);
        assert.deepEqual(r.recomputed, want);
      } finally {
        model.dispose();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  test('the Python example of docs/INTEROP.md runs on an exported byte model', torchOpts, async () => {
    const doc = fs.readFileSync(path.join(import.meta.dirname, '..', 'docs', 'INTEROP.md'), 'utf8');
    const code = /```python\n([\s\S]*?)```/.exec(doc)![1];
    await withRun({ mixer: 'cubit', vocabSize: 256 }, (run, _model, dir) => {
      const folder = path.join(dir, 'models', 'mine-pt');
      exportModel(run, folder, { to: 'pytorch' });
      fs.writeFileSync(path.join(dir, 'example.py'), code);
      const r = spawnSync(python!, ['example.py'], { cwd: dir, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.ok(r.stdout.startsWith('The jury said'), r.stdout);
    });
  });
});

describe('PyTorch: the LLaMA layout', () => {
  test('a forward written from the public LLaMA definition reads the exported folder and gives cubit\'s logits', torchOpts, async () => {
    for (const tie of [true, false]) {
      await withRun({ mixer: 'softmax', tieEmbeddings: tie, rotaryBase: 700 }, (run, model, dir) => {
        const folder = path.join(dir, 'llama');
        exportModel(run, folder, { to: 'llama' });
        const cfg = JSON.parse(fs.readFileSync(path.join(folder, 'config.json'), 'utf8'));
        assert.equal(cfg.model_type, 'llama');
        assert.equal(cfg.tie_word_embeddings, tie);
        const names = SafetensorsFile.open(path.join(folder, 'model.safetensors'));
        try { assert.equal(names.has('lm_head.weight'), !tie); } finally { names.close(); }
        const out = path.join(dir, 'llama.f64');
        helper('llama', folder, rows(ids), out);
        const e = relErr(readF64(out), tsLogits(model, false));
        assert.throws(() => loadModel(folder), /config\.json: a Hugging Face model \(model_type "llama"\), not a cubit checkpoint or model folder/);
        assert.ok(e < 1e-4, `LLaMA forward relErr ${e.toExponential(2)}`);
      });
    }
  });
});

describe('PyTorch: train_torch.py', () => {
  const corpusText = (): string => {
    const words = 'the cat sat on a mat and then ran off to see the dog who was happy with it'.split(' ');
    let s = '', k = 7;
    for (let d = 0; d < 30; d++) {
      const n = 20 + (d * 37) % 90;
      for (let i = 0; i < n; i++) { k = (k * 1103515245 + 12345) % 2147483648; s += words[k % words.length] + (i + 1 < n ? ' ' : '\n\n'); }
    }
    return s;
  };
  const trainConfig = (corpus: string): Record<string, unknown> => ({
    model: { dModel: 24, nLayers: 2, nHeads: 2, ffnHidden: 48, mixer: ['cubit', 'softmax'], window: 20, blockSize: 8 },
    data: { corpus, fileSplit: 'blank-lines' },
    steps: 7, batchSize: 4, seqLen: 24, gradAccum: 2, lr: 0.003, warmupSteps: 2,
    evalEvery: 0, evalBatches: 0, checkpointEvery: 0, logEvery: 1, seed: 3,
  });
  const losses = (file: string): number[] => fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
  const cubitLosses = (run: string): number[] => fs.readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l) as { kind: string; loss: number }).filter((r) => r.kind === 'train').map((r) => r.loss);
  const close = (a: number[], b: number[], tol: number, what: string): void => {
    assert.equal(a.length, b.length, `${what}: ${a.length} vs ${b.length} steps`);
    a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) <= tol * Math.abs(b[i]), `${what}, step ${i}: ${x} vs ${b[i]}`));
  };

  test('continues a cubit run with cubit\'s losses (data, schedule, AdamW state); torchrun ×2 = one process; cubit resumes the import', torchOpts, async () => {
    const dir = tmpDir('interop-train');
    try {
      const corpus = path.join(dir, 'corpus.txt');
      fs.writeFileSync(corpus, corpusText());
      const run = path.join(dir, 'run');
      await train({ config: trainConfig(corpus), out: run, stopAt: 3, durable: false });
      // cubit's own continuation, for reference.
      const cubitRun = path.join(dir, 'cubit-run');
      fs.cpSync(run, cubitRun, { recursive: true });
      await train({ out: cubitRun, resume: true, durable: false });
      const want = cubitLosses(cubitRun).slice(3);
      assert.equal(want.length, 4);

      const one = path.join(dir, 'torch1'), two = path.join(dir, 'torch2');
      py([TRAIN_TORCH, '--from', run, '--out', one, '--device', 'cpu', '--losses', path.join(dir, 'one.jsonl')]);
      // torch 1.13's launcher on Python 3.11 cannot parse its default "--redirects 0 --tee 0"
      // (IntFlag iteration skips 0); 1 (stdout) is parsed and changes nothing we read.
      py(['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '--redirects', '1', '--tee', '1', '--log_dir', path.join(dir, 'logs'),
        TRAIN_TORCH, '--from', run, '--out', two, '--device', 'cpu', '--losses', path.join(dir, 'two.jsonl')],
      { GLOO_SOCKET_IFNAME: 'lo' }); // both processes on this machine: gloo over loopback, whatever the host name resolves to
      const l1 = losses(path.join(dir, 'one.jsonl')), l2 = losses(path.join(dir, 'two.jsonl'));
      close(l1, want, 1e-4, 'PyTorch vs cubit');
      close(l2, l1, 1e-5, 'torchrun ×2 vs one process');

      // Back into cubit: bit-identical tensors, and training resumes from them.
      const back = path.join(dir, 'back');
      const ck = await importRun(one, back);
      for (const f of ['model.safetensors', 'optimizer.safetensors']) assertSameTensors(path.join(resolveCheckpoint(one), f), path.join(ck, f));
      const s = await train({ out: back, resume: true, steps: 9, durable: false });
      assert.equal(s.step, 9);
      assert.ok(Number.isFinite(s.loss));
      const g = await cliInProcess(['generate', back, '--prompt', 'the', '-n', '4', '--temperature', '0']);
      assert.equal(g.code, 0, g.stderr);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('cubit → PyTorch → cubit without a step is bit-identical for weights and optimizer moments', torchOpts, async () => {
    const dir = tmpDir('interop-train');
    try {
      const corpus = path.join(dir, 'corpus.txt');
      fs.writeFileSync(corpus, corpusText());
      const run = path.join(dir, 'run');
      await train({ config: trainConfig(corpus), out: run, stopAt: 2, durable: false });
      const torchRun = path.join(dir, 'torch');
      py([TRAIN_TORCH, '--from', run, '--out', torchRun, '--device', 'cpu', '--stop-at', '2']);
      const back = path.join(dir, 'back');
      const ck = await importRun(torchRun, back);
      for (const f of ['model.safetensors', 'optimizer.safetensors']) assertSameTensors(path.join(resolveCheckpoint(run), f), path.join(ck, f));
      const meta = (f: string): Record<string, string> => { const s = SafetensorsFile.open(f); try { return s.metadata; } finally { s.close(); } };
      assert.deepEqual(meta(path.join(ck, 'optimizer.safetensors')), meta(path.join(resolveCheckpoint(run), 'optimizer.safetensors')));
      const state = (d: string): unknown => { const s = JSON.parse(fs.readFileSync(path.join(d, 'state.json'), 'utf8')); delete s.elapsedSeconds; return s; };
      assert.deepEqual(state(ck), state(resolveCheckpoint(run)), 'the data position and generator travel unchanged');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a run started in PyTorch from a training config continues in cubit at its data position (the ported pipeline\'s data fingerprint is cubit\'s)', torchOpts, async () => {
    const dir = tmpDir('interop-train');
    try {
      const corpus = path.join(dir, 'corpus.txt');
      fs.writeFileSync(corpus, corpusText());
      const cfg = path.join(dir, 'run.json');
      fs.writeFileSync(cfg, JSON.stringify(trainConfig(corpus)));
      const torchRun = path.join(dir, 'torch');
      py([TRAIN_TORCH, '--from', cfg, '--out', torchRun, '--device', 'cpu', '--stop-at', '2', '--block', '4']);
      const back = path.join(dir, 'back');
      const ck = await importRun(torchRun, back);
      const rec = JSON.parse(fs.readFileSync(path.join(ck, 'config.json'), 'utf8'));
      assert.equal(rec.model.blockSize, undefined, '--block is a kernel setting: blockSize is no part of the recorded model config');
      // cubit checks the sampler state's data fingerprint, seed and seqLen before it continues.
      const s = await train({ out: back, resume: true, durable: false });
      assert.equal(s.startStep, 2);
      assert.equal(s.step, 7);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a fresh model from config.json alone (random init) trains on synthetic tokens', torchOpts, () => {
    const dir = tmpDir('interop-train');
    try {
      const cfg = path.join(dir, 'config.json');
      fs.writeFileSync(cfg, JSON.stringify({ model: { dModel: 16, nLayers: 1, nHeads: 2, mixer: 'cubit' } }));
      const out = py([TRAIN_TORCH, '--from', cfg, '--synthetic', '--steps', '3', '--batch-size', '2', '--seq-len', '16', '--device', 'cpu', '--bench']);
      const rep = JSON.parse(out.trim().split('\n').pop()!);
      assert.equal(rep.T, 16);
      assert.ok(rep.tok_per_s > 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- IEEE half conversions for the F16 fixture (round to nearest even) ----

function f32ToF16(x: number): number {
  const f = new Float32Array([x]), u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000, exp = ((u >>> 23) & 0xff) - 127 + 15, mant = u & 0x7fffff;
  if (exp >= 0x1f) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    const m = (mant | 0x800000) >>> (1 - exp + 13), rest = (mant | 0x800000) & ((1 << (1 - exp + 13)) - 1), half = 1 << (1 - exp + 12);
    return sign | (m + (rest > half || (rest === half && (m & 1)) ? 1 : 0));
  }
  let h = sign | (exp << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return h;
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >>> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
