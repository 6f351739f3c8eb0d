// Tokenizers: text ↔ int32 token ids. Byte-level (UTF-8 bytes, vocab 256) is the default: it needs
// no file, every text round-trips, and bits per byte is just the loss in bits. Any Hugging Face
// `tokenizer.json` works through @huggingface/tokenizers (pure JS, no dependencies, no downloads:
// it takes the parsed JSON, so nothing is fetched at run time).
//
// A checkpoint stores its tokenizer's identity(); loading it with a different tokenizer is an
// error (checkTokenizer), since token ids mean nothing under another vocabulary.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';

/** What a checkpoint records to recognise its tokenizer (JSON-serialisable). */
export type TokenizerIdentity =
  | { kind: 'byte'; vocabSize: 256 }
  | { kind: 'hf'; vocabSize: number; sha256: string; source?: string };

/**
 * Text ↔ token ids. {@link ByteTokenizer} (UTF-8 bytes) and {@link HfTokenizer} (a Hugging Face
 * tokenizer.json) implement it; {@link loadTokenizer} makes either.
 */
export interface Tokenizer {
  /** Short human name: 'byte', or 'hf:<file>'. */
  readonly name: string;
  /** Ids lie in [0, vocabSize). */
  readonly vocabSize: number;
  /** Begin/end-of-text ids, where the tokenizer has them (the byte tokenizer has none). */
  readonly bosId: number | null;
  readonly eosId: number | null;
  encode(text: string): Int32Array;
  /** Never throws on ids that split a UTF-8 sequence (they decode to U+FFFD); throws on ids outside the vocabulary. */
  decode(ids: ArrayLike<number>): string;
  /** Decoding one id at a time (generation): push returns the text that became complete. */
  streamDecoder(): StreamDecoder;
  identity(): TokenizerIdentity;
}

/**
 * Decodes ids one at a time (for streaming generated text): holds back an incomplete UTF-8
 * sequence until it is complete.
 */
export interface StreamDecoder {
  push(id: number): string;
  /** Whatever is still held back (an incomplete UTF-8 sequence decodes to U+FFFD). */
  flush(): string;
}

function checkIds(ids: ArrayLike<number>, vocab: number, who: string): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new Error(`${who}.decode: id ${id} at position ${i} is outside the vocabulary [0, ${vocab})`);
  }
}

const utf8 = new TextEncoder();

/** UTF-8 bytes as tokens. */
export class ByteTokenizer implements Tokenizer {
  readonly name = 'byte';
  readonly vocabSize = 256;
  readonly bosId = null;
  readonly eosId = null;

  encode(text: string): Int32Array {
    return Int32Array.from(utf8.encode(text));
  }

  decode(ids: ArrayLike<number>): string {
    checkIds(ids, 256, 'ByteTokenizer');
    // Non-fatal decoder: invalid or cut sequences become U+FFFD instead of throwing.
    return new TextDecoder('utf-8').decode(Uint8Array.from(ids as ArrayLike<number>));
  }

  streamDecoder(): StreamDecoder {
    const dec = new TextDecoder('utf-8');
    const one = new Uint8Array(1);
    return {
      push(id: number): string {
        checkIds([id], 256, 'ByteTokenizer');
        one[0] = id;
        return dec.decode(one, { stream: true });
      },
      flush: () => dec.decode(),
    };
  }

  identity(): TokenizerIdentity { return { kind: 'byte', vocabSize: 256 }; }

  /**
   * This tokenizer as a Hugging Face tokenizer.json that gives the same ids (test/interop.test.ts
   * checks it with @huggingface/tokenizers): a byte-level BPE without merges whose vocabulary maps
   * the byte-level alphabet's character for byte b to id b, and no regex split, added tokens or
   * normalisation. What `cubit export` writes for a byte-level model.
   */
  static hfJson(): string {
    const vocab: Record<string, number> = {};
    byteLevelAlphabet().forEach((ch, b) => { vocab[ch] = b; });
    return JSON.stringify({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
    }, null, 2) + '\n';
  }
}

/**
 * The byte-level alphabet of GPT-2 style tokenizers: byte b's printable stand-in character. The
 * printable Latin-1 bytes stand for themselves; the others map, in byte order, to U+0100 onwards.
 */
function byteLevelAlphabet(): string[] {
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 0x100;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : next++));
}

/** Options of {@link HfTokenizer}. */
export interface HfTokenizerOptions {
  /** Add the tokenizer's special tokens (e.g. BOS) when encoding (default false: raw text). */
  addSpecialTokens?: boolean;
  /** Name shown in messages (default: the file name). */
  source?: string;
}

function specialTokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

/** A Hugging Face tokenizer.json (BPE, WordPiece, Unigram, with their normalizers and decoders). */
export class HfTokenizer implements Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** The tokenizer.json text, so a checkpoint can carry a copy. */
  readonly json: string;
  readonly sha256: string;
  private readonly impl: HfTokenizerImpl;
  private readonly addSpecial: boolean;
  private readonly source: string | undefined;

  /** `json` is the text of tokenizer.json; `config` the parsed tokenizer_config.json, if any. */
  constructor(json: string, config: Record<string, unknown> = {}, opts: HfTokenizerOptions = {}) {
    const label = opts.source ?? 'tokenizer.json';
    let parsed: unknown;
    try { parsed = JSON.parse(json); } catch (e) { throw new Error(`${label}: not valid JSON (${(e as Error).message})`); }
    if (!parsed || typeof parsed !== 'object' || !('model' in parsed)) throw new Error(`${label}: not a Hugging Face tokenizer.json (no "model")`);
    try { this.impl = new HfTokenizerImpl(parsed, config); } catch (e) {
      throw new Error(`${label}: cannot build the tokenizer (${(e as Error).message})`);
    }
    this.json = json;
    this.sha256 = createHash('sha256').update(json).digest('hex');
    this.source = opts.source;
    this.name = `hf:${opts.source ? path.basename(path.dirname(opts.source)) + '/' + path.basename(opts.source) : this.sha256.slice(0, 12)}`;
    this.addSpecial = opts.addSpecialTokens ?? false;
    let maxId = -1;
    for (const id of this.impl.get_vocab(true).values()) if (id > maxId) maxId = id;
    if (maxId < 0) throw new Error(`${label}: the vocabulary is empty`);
    this.vocabSize = maxId + 1;
    const idOf = (key: string): number | null => {
      const text = specialTokenText(config[key]);
      return text === null ? null : this.impl.token_to_id(text) ?? null;
    };
    this.bosId = idOf('bos_token');
    this.eosId = idOf('eos_token');
  }

  /** Loads `file` (a tokenizer.json, or a folder holding one and maybe tokenizer_config.json). */
  static fromFile(file: string, opts: Omit<HfTokenizerOptions, 'source'> = {}): HfTokenizer {
    let jsonPath = file;
    let isDir = false;
    try { isDir = fs.statSync(file).isDirectory(); } catch {
      throw new Error(`tokenizer ${file}: no such file or folder`);
    }
    if (isDir) jsonPath = path.join(file, 'tokenizer.json');
    let text: string;
    try { text = fs.readFileSync(jsonPath, 'utf8'); } catch {
      throw new Error(`tokenizer ${jsonPath}: cannot read it (expected a Hugging Face tokenizer.json)`);
    }
    const configPath = path.join(path.dirname(jsonPath), 'tokenizer_config.json');
    let config: Record<string, unknown> = {};
    if (fs.existsSync(configPath)) {
      try { config = JSON.parse(fs.readFileSync(configPath, 'utf8')) as Record<string, unknown>; } catch (e) {
        throw new Error(`${configPath}: not valid JSON (${(e as Error).message})`);
      }
    }
    return new HfTokenizer(text, config, { ...opts, source: jsonPath });
  }

  encode(text: string): Int32Array {
    return Int32Array.from(this.impl.encode(text, { add_special_tokens: this.addSpecial }).ids);
  }

  decode(ids: ArrayLike<number>): string {
    checkIds(ids, this.vocabSize, 'HfTokenizer');
    if (ids.length === 0) return ''; // the library rejects an empty list
    // No "clean-up" of spaces before punctuation: it would alter the text (and break streaming).
    return this.impl.decode(Array.from(ids), { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  /**
   * Re-decodes the pending ids on each push and emits the new suffix once it no longer ends in an
   * incomplete character (byte-level BPE splits characters across tokens). Pending ids are
   * dropped at each clean boundary, so the cost stays small.
   */
  streamDecoder(): StreamDecoder {
    let pending: number[] = [];
    let emitted = '';
    return {
      push: (id: number): string => {
        pending.push(id);
        const text = this.decode(pending);
        if (text.endsWith('\uFFFD') || !text.startsWith(emitted)) return '';
        const out = text.slice(emitted.length);
        // Keep the last id as context: some decoders (Metaspace, WordPiece) treat a sequence's first token specially.
        if (pending.length > 8) { pending = pending.slice(-1); emitted = this.decode(pending); } else emitted = text;
        return out;
      },
      flush: (): string => {
        const text = this.decode(pending);
        const out = text.startsWith(emitted) ? text.slice(emitted.length) : '';
        pending = []; emitted = '';
        return out;
      },
    };
  }

  identity(): TokenizerIdentity {
    return { kind: 'hf', vocabSize: this.vocabSize, sha256: this.sha256, ...(this.source ? { source: this.source } : {}) };
  }
}

/** 'byte' (the default), or a path to a tokenizer.json or a folder holding one. */
export function loadTokenizer(spec: string = 'byte'): Tokenizer {
  if (spec === 'byte') return new ByteTokenizer();
  return HfTokenizer.fromFile(spec);
}

function describe(id: TokenizerIdentity): string {
  return id.kind === 'byte' ? `the byte tokenizer (vocab 256)` : `${id.source ?? 'a tokenizer.json'} (vocab ${id.vocabSize}, sha256 ${id.sha256.slice(0, 12)}…)`;
}

/**
 * Whether two tokenizer identities name the same tokenizer (kind, vocabulary size and, for
 * tokenizer.json, its sha256).
 */
export function sameTokenizer(a: TokenizerIdentity, b: TokenizerIdentity): boolean {
  if (a.kind !== b.kind || a.vocabSize !== b.vocabSize) return false;
  return a.kind === 'byte' || (b.kind === 'hf' && a.sha256 === b.sha256);
}

/** Throws one clear line when `actual` is not the tokenizer `expected` (from a checkpoint) describes. */
export function checkTokenizer(expected: TokenizerIdentity, actual: Tokenizer, where = 'the checkpoint'): void {
  const got = actual.identity();
  if (!sameTokenizer(expected, got)) {
    throw new Error(`tokenizer mismatch: ${where} was made with ${describe(expected)}, but ${describe(got)} was given`);
  }
}
