// Token streams → batches. A TokenStream holds a split's documents tokenized and concatenated.
//
// Training batches (BatchSampler) are (B, T) int32 inputs, targets (inputs shifted by one) and
// docIds, sampled deterministically from a seed:
//   'packed' (default): the stream is cut into T-token chunks at an offset drawn per epoch, the
//     chunks are shuffled per epoch, and each row is one chunk (plus the next token as its last
//     target). A row may span documents: docIds[b, t] is the document of inputs[b, t], so a mixer
//     masks across documents, and a target in another document than its input (the first token
//     of a document) is ignoreIndex: nothing before it in the row may predict it.
//   'padded': each row is one T-token window of one document (documents longer than T give
//     several); the rest of the row is padId in inputs, ignoreIndex in targets and −1 in docIds.
// The sampler's state is {epoch, cursor} plus what identifies the data; it is JSON, and restoring
// it continues the exact same sequence of batches.
//
// Evaluation (EvalWindows) walks documents in order, each on its own (no context from another
// document), in windows of `contextLength` inputs moved by `stride` tokens: each target is scored
// exactly once, in the first window that holds it — the sliding-window evaluation of lengths
// beyond training, and plain disjoint windows when stride = contextLength.
import type { Backend } from '../core/backend.ts';
import { Rng, hash32 } from '../core/random.ts';
import type { Tensor } from '../core/tensor.ts';
import { tensor } from '../ops/creation.ts';
import type { Document } from './corpus.ts';
import type { Tokenizer } from './tokenizer.ts';

/** The target id that losses skip (padding, a document's first token): −100, as PyTorch. */
export const IGNORE_INDEX = -100;

/**
 * Tokenized documents, concatenated, with where each starts: what {@link evaluate} and the batch
 * samplers read. Made by {@link tokenizeDocuments}.
 */
export interface TokenStream {
  /** Every document's tokens, concatenated. */
  tokens: Int32Array;
  /** Document d is tokens[offsets[d], offsets[d + 1]). */
  offsets: Int32Array;
  /** Document ids (for messages). */
  ids: string[];
  /**
   * UTF-8 bytes each document's scored tokens stand for (all of its text, less its first token's
   * bytes when no BOS token precedes it: the first token is never a target). Bits per byte =
   * summed loss / ln 2 / summed scoredBytes.
   */
  scoredBytes: Float64Array;
  vocabSize: number;
}

/** Options of {@link tokenizeDocuments}. */
export interface TokenizeOptions {
  /** Prepended to every document (a BOS token), so its first real token is predicted too. */
  bosId?: number | null;
}

const utf8Length = (s: string): number => Buffer.byteLength(s, 'utf8');

/** Tokenizes documents into one {@link TokenStream} (each document after `bosId`, when given). */
export function tokenizeDocuments(docs: readonly Document[], tokenizer: Tokenizer, opts: TokenizeOptions = {}): TokenStream {
  const bos = opts.bosId ?? null;
  if (bos !== null && !(Number.isInteger(bos) && bos >= 0 && bos < tokenizer.vocabSize)) {
    throw new Error(`tokenizeDocuments: bosId ${bos} is outside the vocabulary [0, ${tokenizer.vocabSize})`);
  }
  const parts: Int32Array[] = [];
  const offsets = new Int32Array(docs.length + 1);
  const scoredBytes = new Float64Array(docs.length);
  let total = 0;
  docs.forEach((d, i) => {
    const ids = tokenizer.encode(d.text);
    let withBos = ids;
    if (bos !== null) { withBos = new Int32Array(ids.length + 1); withBos[0] = bos; withBos.set(ids, 1); }
    parts.push(withBos);
    total += withBos.length;
    if (total > 0x7fffffff) throw new Error('tokenizeDocuments: more than 2^31 tokens; split the corpus');
    offsets[i + 1] = total;
    let first = 0;
    if (bos === null && ids.length > 0) first = tokenizer.name === 'byte' ? 1 : utf8Length(tokenizer.decode([ids[0]]));
    scoredBytes[i] = Math.max(0, utf8Length(d.text) - first);
  });
  const tokens = new Int32Array(total);
  let at = 0;
  for (const p of parts) { tokens.set(p, at); at += p.length; }
  return { tokens, offsets, ids: docs.map((d) => d.id), scoredBytes, vocabSize: tokenizer.vocabSize };
}

/** A cheap content hash (FNV-1a over tokens and offsets): a resumed sampler must see the same data. */
export function streamFingerprint(s: TokenStream): string {
  let h = 0x811c9dc5;
  const mix = (v: number): void => { h = Math.imul(h ^ (v & 0xffff), 0x01000193); h = Math.imul(h ^ (v >>> 16), 0x01000193); };
  mix(s.tokens.length); mix(s.offsets.length);
  for (let i = 0; i < s.tokens.length; i++) mix(s.tokens[i]);
  for (let i = 0; i < s.offsets.length; i++) mix(s.offsets[i]);
  return `${s.tokens.length}:${s.offsets.length - 1}:${(h >>> 0).toString(16).padStart(8, '0')}`;
}

/** Index of the document holding token position p (binary search over offsets). */
function docAt(offsets: Int32Array, p: number): number {
  let lo = 0, hi = offsets.length - 2;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (offsets[mid] <= p) lo = mid; else hi = mid - 1;
  }
  return lo;
}

/** A batch as plain arrays, row-major (B, T). */
export interface BatchArrays {
  B: number;
  T: number;
  inputs: Int32Array;
  targets: Int32Array;
  docIds: Int32Array;
  /** Targets not equal to ignoreIndex (the loss's denominator). */
  targetCount: number;
}

/** The same as int32 Tensors of shape (B, T), made in the current scope (dispose them, or use tidy). */
export interface Batch {
  inputs: Tensor;
  targets: Tensor;
  docIds: Tensor;
  targetCount: number;
}

/** A batch's arrays as int32 (B, T) tensors on `backend` (default the active one). */
export function batchTensors(b: BatchArrays, backend?: Backend): Batch {
  const opts = { dtype: 'int32' as const, backend };
  return {
    inputs: tensor(b.inputs, [b.B, b.T], opts),
    targets: tensor(b.targets, [b.B, b.T], opts),
    docIds: tensor(b.docIds, [b.B, b.T], opts),
    targetCount: b.targetCount,
  };
}

/** Options of {@link BatchSampler}. */
export interface SamplerOptions {
  batchSize: number;
  seqLen: number;
  seed?: number;
  mode?: 'packed' | 'padded';
  ignoreIndex?: number;
  /** Input id at padded positions ('padded' mode; default 0). */
  padId?: number;
}

/** Everything needed to continue a sampler exactly (JSON). */
export interface SamplerState {
  mode: 'packed' | 'padded';
  seed: number;
  seqLen: number;
  /** streamFingerprint of the data it was sampling. */
  data: string;
  epoch: number;
  /** Rows already taken from this epoch. */
  cursor: number;
}

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`BatchSampler: ${name} must be a positive integer, got ${v}`);
}

/**
 * Training batches from a {@link TokenStream}: 'packed' (rows cut from the concatenated documents,
 * each document masked to itself) or 'padded' (one document per row); seeded, epoch by epoch,
 * resumable exactly (`state()` / `setState()`).
 */
export class BatchSampler {
  readonly B: number;
  readonly T: number;
  readonly seed: number;
  readonly mode: 'packed' | 'padded';
  readonly ignoreIndex: number;
  readonly padId: number;
  private epoch = 0;
  private cursor = 0;
  private fingerprint: string | null = null;
  // The current epoch's layout: chunk order (and offset) or window order.
  private layoutEpoch = -1;
  private order: Uint32Array = new Uint32Array(0);
  private shift = 0;
  // 'padded': every window as (document, start).
  private winDoc: Int32Array = new Int32Array(0);
  private winStart: Int32Array = new Int32Array(0);

  constructor(readonly stream: TokenStream, opts: SamplerOptions) {
    positiveInt('batchSize', opts.batchSize);
    positiveInt('seqLen', opts.seqLen);
    this.B = opts.batchSize;
    this.T = opts.seqLen;
    this.seed = (opts.seed ?? 0) >>> 0;
    this.mode = opts.mode ?? 'packed';
    if (this.mode !== 'packed' && this.mode !== 'padded') throw new Error(`BatchSampler: mode must be 'packed' or 'padded', got '${String(this.mode)}'`);
    this.ignoreIndex = opts.ignoreIndex ?? IGNORE_INDEX;
    this.padId = opts.padId ?? 0;
    const N = stream.tokens.length;
    if (this.mode === 'packed') {
      if (N < this.T + 1) throw new Error(`BatchSampler: the data has ${N} tokens, fewer than seqLen + 1 = ${this.T + 1}`);
    } else {
      const docs: number[] = [], starts: number[] = [];
      for (let d = 0; d + 1 < stream.offsets.length; d++) {
        const n = stream.offsets[d + 1] - stream.offsets[d];
        for (let s = 0; s < n - 1; s += this.T) { docs.push(d); starts.push(s); }
      }
      if (docs.length === 0) throw new Error('BatchSampler: no document has two tokens or more');
      this.winDoc = Int32Array.from(docs);
      this.winStart = Int32Array.from(starts);
    }
  }

  /** Rows in one epoch (chunks, or windows). */
  get rowsPerEpoch(): number {
    this.layout();
    return this.order.length;
  }

  private layout(): void {
    if (this.layoutEpoch === this.epoch) return;
    const e = this.epoch;
    let count: number;
    if (this.mode === 'packed') {
      const N = this.stream.tokens.length, T = this.T;
      // A fresh chunk offset each epoch, so chunk boundaries do not always fall on the same tokens.
      const maxShift = Math.min(T - 1, N - 1 - T);
      this.shift = new Rng(hash32(this.seed, 2 * e + 1)).int(maxShift + 1);
      count = Math.floor((N - 1 - this.shift) / T);
    } else {
      count = this.winDoc.length;
    }
    const order = new Uint32Array(count);
    for (let i = 0; i < count; i++) order[i] = i;
    const rng = new Rng(hash32(this.seed, 2 * e));
    for (let i = count - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = order[i]; order[i] = order[j]; order[j] = t;
    }
    this.order = order;
    this.layoutEpoch = e;
  }

  private fillPacked(row: number, chunk: number, out: BatchArrays): number {
    const { tokens, offsets } = this.stream;
    const T = this.T, base = row * T, start = this.shift + chunk * T;
    let d = docAt(offsets, start);
    let counted = 0;
    for (let i = 0; i < T; i++) {
      const p = start + i;
      while (p >= offsets[d + 1]) d++;
      out.inputs[base + i] = tokens[p];
      out.docIds[base + i] = d;
      if (p + 1 < offsets[d + 1]) { out.targets[base + i] = tokens[p + 1]; counted++; }
      else out.targets[base + i] = this.ignoreIndex;
    }
    return counted;
  }

  private fillPadded(row: number, win: number, out: BatchArrays): number {
    const { tokens, offsets } = this.stream;
    const T = this.T, base = row * T;
    const d = this.winDoc[win], off = offsets[d], n = offsets[d + 1] - off, s = this.winStart[win];
    const len = Math.min(T, n - 1 - s);
    for (let i = 0; i < T; i++) {
      if (i < len) {
        out.inputs[base + i] = tokens[off + s + i];
        out.targets[base + i] = tokens[off + s + i + 1];
        out.docIds[base + i] = d;
      } else {
        out.inputs[base + i] = this.padId;
        out.targets[base + i] = this.ignoreIndex;
        out.docIds[base + i] = -1;
      }
    }
    return len;
  }

  /** The next batch as arrays; pass the previous batch as `reuse` to fill its arrays instead of new ones. */
  nextArrays(reuse?: BatchArrays): BatchArrays {
    const B = this.B, T = this.T;
    const out: BatchArrays = reuse && reuse.B === B && reuse.T === T && reuse.inputs.length === B * T
      ? Object.assign(reuse, { targetCount: 0 })
      : { B, T, inputs: new Int32Array(B * T), targets: new Int32Array(B * T), docIds: new Int32Array(B * T), targetCount: 0 };
    for (let r = 0; r < B; r++) {
      this.layout();
      if (this.cursor >= this.order.length) { this.epoch++; this.cursor = 0; this.layout(); }
      const k = this.order[this.cursor++];
      out.targetCount += this.mode === 'packed' ? this.fillPacked(r, k, out) : this.fillPadded(r, k, out);
    }
    return out;
  }

  /** The next batch as int32 Tensors in the current scope. */
  next(backend?: Backend): Batch {
    return batchTensors(this.nextArrays(), backend);
  }

  /** Epochs completed, as a fraction (for logs). */
  get progress(): number {
    this.layout();
    return this.epoch + this.cursor / Math.max(1, this.order.length);
  }

  state(): SamplerState {
    this.fingerprint ??= streamFingerprint(this.stream);
    return { mode: this.mode, seed: this.seed, seqLen: this.T, data: this.fingerprint, epoch: this.epoch, cursor: this.cursor };
  }

  /** Continues from a saved state; it must come from a sampler over the same data, mode, seed and seqLen. */
  setState(s: SamplerState): void {
    if (!s || typeof s !== 'object') throw new Error('BatchSampler.setState: the state is not an object');
    const mine = this.state();
    for (const key of ['mode', 'seed', 'seqLen', 'data'] as const) {
      if (s[key] !== mine[key]) {
        const what = key === 'data' ? 'the data differ (different corpus, split or tokenizer)' : `${key} differs`;
        throw new Error(`BatchSampler.setState: cannot resume: ${what} (saved ${JSON.stringify(s[key])}, now ${JSON.stringify(mine[key])})`);
      }
    }
    if (!Number.isInteger(s.epoch) || s.epoch < 0 || !Number.isInteger(s.cursor) || s.cursor < 0) {
      throw new Error(`BatchSampler.setState: epoch and cursor must be non-negative integers, got ${s.epoch} and ${s.cursor}`);
    }
    this.epoch = s.epoch;
    this.cursor = s.cursor;
    this.layout();
    if (this.cursor > this.order.length) throw new Error(`BatchSampler.setState: cursor ${s.cursor} is past the epoch's ${this.order.length} rows`);
  }
}

// ---- evaluation ----

/** Options of {@link EvalWindows}. */
export interface EvalOptions {
  /** Input tokens per window (the context length evaluated). */
  contextLength: number;
  /** Tokens the window moves by (default contextLength: disjoint windows); 1 ≤ stride ≤ contextLength. */
  stride?: number;
  /** Windows per batch (default 8); the last batch may have fewer rows. */
  batchSize?: number;
  ignoreIndex?: number;
  padId?: number;
}

/** What a set of {@link EvalWindows} scores, in all. */
export interface EvalTotals {
  documents: number;
  windows: number;
  /** Targets scored over all windows (each document's tokens after its first). */
  scoredTokens: number;
  /** UTF-8 bytes those targets stand for (for bits per byte). */
  scoredBytes: number;
}

interface Window { doc: number; start: number; len: number; scoreFrom: number }

/**
 * Held-out evaluation windows. A document of n tokens has targets 1 … n−1; a window starting at
 * token a has inputs a … a+len−1 (len ≤ contextLength) and targets a+1 … a+len; it scores those
 * not scored by the window before, so with stride S every scored target after the first window
 * sees at least contextLength − S tokens of context.
 */
export class EvalWindows {
  readonly L: number;
  readonly S: number;
  readonly B: number;
  readonly ignoreIndex: number;
  readonly padId: number;
  private readonly windows: Window[] = [];
  readonly totals: EvalTotals;

  constructor(readonly stream: TokenStream, opts: EvalOptions) {
    const L = opts.contextLength, S = opts.stride ?? L, B = opts.batchSize ?? 8;
    if (!Number.isInteger(L) || L <= 0) throw new Error(`EvalWindows: contextLength must be a positive integer, got ${L}`);
    if (!Number.isInteger(S) || S <= 0 || S > L) throw new Error(`EvalWindows: stride must be an integer in [1, contextLength = ${L}], got ${S}`);
    if (!Number.isInteger(B) || B <= 0) throw new Error(`EvalWindows: batchSize must be a positive integer, got ${B}`);
    this.L = L; this.S = S; this.B = B;
    this.ignoreIndex = opts.ignoreIndex ?? IGNORE_INDEX;
    this.padId = opts.padId ?? 0;
    const { offsets } = stream;
    let scoredTokens = 0, scoredBytes = 0, documents = 0;
    for (let d = 0; d + 1 < offsets.length; d++) {
      const n = offsets[d + 1] - offsets[d];
      if (n < 2) continue;
      documents++;
      scoredTokens += n - 1;
      scoredBytes += stream.scoredBytes[d];
      let scoredUpTo = 0; // targets ≤ this index are scored already
      for (let a = 0; ; a += S) {
        const end = Math.min(a + L, n - 1); // last target index
        this.windows.push({ doc: d, start: a, len: end - a, scoreFrom: scoredUpTo + 1 });
        scoredUpTo = end;
        if (end === n - 1) break;
      }
    }
    this.totals = { documents, windows: this.windows.length, scoredTokens, scoredBytes };
  }

  get batchCount(): number { return Math.ceil(this.windows.length / this.B); }

  /** Batch k as arrays: rows of windows, padded to contextLength. */
  batchArrays(k: number): BatchArrays {
    if (!Number.isInteger(k) || k < 0 || k >= this.batchCount) throw new Error(`EvalWindows: batch ${k} is outside [0, ${this.batchCount})`);
    const rows = this.windows.slice(k * this.B, (k + 1) * this.B);
    const T = this.L, B = rows.length;
    const out: BatchArrays = { B, T, inputs: new Int32Array(B * T), targets: new Int32Array(B * T), docIds: new Int32Array(B * T), targetCount: 0 };
    const { tokens, offsets } = this.stream;
    rows.forEach((w, r) => {
      const off = offsets[w.doc], base = r * T;
      for (let i = 0; i < T; i++) {
        if (i < w.len) {
          out.inputs[base + i] = tokens[off + w.start + i];
          out.docIds[base + i] = w.doc;
          const target = w.start + i + 1;
          if (target >= w.scoreFrom) { out.targets[base + i] = tokens[off + target]; out.targetCount++; }
          else out.targets[base + i] = this.ignoreIndex;
        } else {
          out.inputs[base + i] = this.padId;
          out.targets[base + i] = this.ignoreIndex;
          out.docIds[base + i] = -1;
        }
      }
    });
    return out;
  }

  *arrays(): Generator<BatchArrays> {
    for (let k = 0; k < this.batchCount; k++) yield this.batchArrays(k);
  }

  /** Batches as Tensors; each is made in the current scope when the iterator reaches it. */
  *batches(backend?: Backend): Generator<Batch> {
    for (let k = 0; k < this.batchCount; k++) yield batchTensors(this.batchArrays(k), backend);
  }
}
