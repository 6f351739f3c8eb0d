// Checks a parsed Hugging Face tokenizer.json before the tokenizer library sees it. A checkpoint
// carries its tokenizer, so a shared model hands us this file: it must not be able to stall or
// crash us. What is checked (each problem one line naming the field):
//
// - the structure the library relies on (model, vocab, merges, added_tokens, the type of each
//   normalizer / pre-tokenizer / decoder / post-processor), so a malformed file is a clear error
//   instead of a TypeError from inside the library;
// - every token id is an integer in [0, MODEL_LIMITS.vocabSize): the library sizes arrays by the
//   largest id, so an id of 1e9 would take minutes and gigabytes;
// - every regular expression ({"Regex": …} in Split pre-tokenizers, Replace normalizers, …) is in
//   a safe subset: at most MAX_PATTERN characters, no backreferences, and no repeated group (`*`,
//   `+`, `{n,}`, `{n,m}` with m > 1) that holds a quantifier or an alternation — the shapes of
//   exponential backtracking ("(a+)+", "(a|aa)*"). The patterns of the common tokenizers (GPT-2,
//   Llama 3, Qwen, GPT-4o style) pass. Repeated groups of plain atoms ("(?:ab)+") are allowed;
//   polynomial backtracking of adjacent quantifiers is not detected (its cost grows with a
//   document's length, not exponentially).
import { MODEL_LIMITS } from '../models/limits.ts';

/** Longest regular expression accepted (characters). */
export const MAX_PATTERN = 4096;

const MODEL_TYPES = ['BPE', 'WordPiece', 'WordLevel', 'Unigram'];

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function idProblem(id: unknown): string | null {
  if (typeof id !== 'number' || !Number.isInteger(id)) return `id ${JSON.stringify(id)} is not an integer`;
  if (id < 0 || id >= MODEL_LIMITS.vocabSize) return `id ${id} is outside [0, ${MODEL_LIMITS.vocabSize})`;
  return null;
}

/**
 * Why `pattern` is outside the safe subset described at the top of this file, or null when it is
 * inside. A syntax error is left to the RegExp constructor.
 */
export function unsafeRegexReason(pattern: string): string | null {
  if (pattern.length > MAX_PATTERN) return `it is ${pattern.length} characters long (at most ${MAX_PATTERN})`;
  interface Group { quantified: boolean; alternation: boolean }
  const stack: Group[] = [{ quantified: false, alternation: false }];
  // What the next quantifier applies to: a group (with what it held) or a plain atom.
  let last: Group | 'atom' | null = null;
  let i = 0;
  const n = pattern.length;
  while (i < n) {
    const c = pattern[i];
    if (c === '\\') {
      const d = pattern[i + 1] ?? '';
      if (/[1-9]/.test(d) || (d === 'k' && pattern[i + 2] === '<')) return 'it uses a backreference';
      // \p{…}, \u{…}, \x.. and the rest are one atom.
      if ((d === 'p' || d === 'P' || d === 'u') && pattern[i + 2] === '{') {
        const close = pattern.indexOf('}', i + 3);
        i = close < 0 ? n : close + 1;
      } else i += 2;
      last = 'atom';
      continue;
    }
    if (c === '[') {
      // A class is one atom: skip to its closing bracket (escapes and a leading ']' included).
      let j = i + 1;
      if (pattern[j] === '^') j++;
      if (pattern[j] === ']') j++;
      while (j < n && pattern[j] !== ']') j += pattern[j] === '\\' ? 2 : 1;
      i = j + 1;
      last = 'atom';
      continue;
    }
    if (c === '(') {
      stack.push({ quantified: false, alternation: false });
      i++;
      if (pattern[i] === '?') {
        // (?:  (?=  (?!  (?<=  (?<!  (?<name>  (?i:  — skip the prefix.
        i++;
        if (pattern[i] === '<' && pattern[i + 1] !== '=' && pattern[i + 1] !== '!') {
          const close = pattern.indexOf('>', i);
          i = close < 0 ? n : close + 1;
        } else {
          while (i < n && pattern[i] !== ':' && pattern[i] !== ')' && pattern[i] !== '=' && pattern[i] !== '!') i++;
          if (pattern[i] !== ')') i++;
        }
      }
      last = null;
      continue;
    }
    if (c === ')') {
      const g = stack.length > 1 ? stack.pop()! : { quantified: false, alternation: false };
      const parent = stack[stack.length - 1];
      parent.quantified ||= g.quantified;
      parent.alternation ||= g.alternation;
      last = g;
      i++;
      continue;
    }
    if (c === '|') { stack[stack.length - 1].alternation = true; last = null; i++; continue; }
    if (c === '*' || c === '+' || c === '?' || c === '{') {
      let repeats = c !== '?';
      let end = i + 1;
      if (c === '{') {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i));
        if (!m) { last = 'atom'; i++; continue; } // a literal '{'
        const max = m[2] === undefined ? Number(m[1]) : m[3] === '' ? Infinity : Number(m[3]);
        repeats = max > 1;
        end = i + m[0].length;
      }
      if (pattern[end] === '?' || pattern[end] === '+') end++; // lazy / possessive marker
      if (repeats && last !== null && last !== 'atom' && (last.quantified || last.alternation)) {
        return `a repeated group holds ${last.quantified ? 'a quantifier' : 'an alternation'} (catastrophic backtracking) near '${pattern.slice(Math.max(0, i - 20), end)}'`;
      }
      stack[stack.length - 1].quantified = true;
      last = null;
      i = end;
      continue;
    }
    last = 'atom';
    i++;
  }
  return null;
}

/** Throws one line naming the field when `json` (a parsed tokenizer.json) is outside what we accept. */
export function checkTokenizerJson(json: unknown, label: string): void {
  const fail = (field: string, problem: string): never => { throw new Error(`${label}: ${field}: ${problem}`); };
  if (!isObject(json)) fail('(top level)', 'expected a JSON object');
  const j = json as Record<string, unknown>;
  const model = j.model;
  if (!isObject(model)) return fail('model', 'missing or not an object (not a Hugging Face tokenizer.json)');
  const type = model.type;
  if (type !== undefined && !MODEL_TYPES.includes(type as string)) fail('model.type', `'${String(type)}' is not one of ${MODEL_TYPES.join(', ')}`);
  const vocab = model.vocab;
  if (type === 'Unigram') {
    if (!Array.isArray(vocab)) fail('model.vocab', 'a Unigram vocabulary must be an array of [piece, score] pairs');
    const pieces = vocab as unknown[];
    if (pieces.length > MODEL_LIMITS.vocabSize) fail('model.vocab', `${pieces.length} pieces, more than the ${MODEL_LIMITS.vocabSize} accepted`);
    pieces.forEach((p, k) => {
      if (!Array.isArray(p) || p.length < 2 || typeof p[0] !== 'string' || typeof p[1] !== 'number' || !Number.isFinite(p[1])) fail(`model.vocab[${k}]`, 'expected [piece (string), score (finite number)]');
    });
    if (model.unk_id !== undefined && model.unk_id !== null && (!Number.isInteger(model.unk_id) || (model.unk_id as number) < 0 || (model.unk_id as number) >= pieces.length)) {
      fail('model.unk_id', `${JSON.stringify(model.unk_id)} is not the index of a piece`);
    }
  } else {
    if (!isObject(vocab)) fail('model.vocab', 'expected an object mapping tokens to ids');
    for (const [tok, id] of Object.entries(vocab as Record<string, unknown>)) {
      const p = idProblem(id);
      if (p) fail(`model.vocab[${JSON.stringify(tok).slice(0, 40)}]`, p);
    }
  }
  if (type === 'BPE' || (type === undefined && model.merges !== undefined)) {
    if (!Array.isArray(model.merges)) fail('model.merges', 'expected an array');
    (model.merges as unknown[]).forEach((m, k) => {
      const ok = typeof m === 'string' || (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string');
      if (!ok) fail(`model.merges[${k}]`, "expected 'a b' or ['a', 'b']");
    });
  }
  for (const key of ['unk_token', 'continuing_subword_prefix', 'end_of_word_suffix']) {
    if (model[key] !== undefined && model[key] !== null && typeof model[key] !== 'string') fail(`model.${key}`, 'expected a string or null');
  }
  if (!Array.isArray(j.added_tokens)) fail('added_tokens', 'missing or not an array (it may be empty: [])');
  {
    (j.added_tokens as unknown[]).forEach((t, k) => {
      if (!isObject(t)) return fail(`added_tokens[${k}]`, 'expected an object');
      const p = idProblem(t.id);
      if (p) fail(`added_tokens[${k}].id`, p);
      if (typeof t.content !== 'string') fail(`added_tokens[${k}].content`, 'expected a string');
    });
  }
  const lists: Record<string, string> = { normalizer: 'normalizers', pre_tokenizer: 'pretokenizers', decoder: 'decoders', post_processor: 'processors' };
  for (const [key, listKey] of Object.entries(lists)) checkComponent(j[key], key, listKey, fail);
  checkPatterns(j, '', fail);
}

function checkComponent(v: unknown, field: string, listKey: string, fail: (f: string, p: string) => never): void {
  if (v === undefined || v === null) return;
  if (!isObject(v)) fail(field, 'expected an object or null');
  const c = v as Record<string, unknown>;
  if (typeof c.type !== 'string') fail(`${field}.type`, 'missing or not a string');
  if (c.type === 'Sequence') {
    const list = c[listKey];
    if (!Array.isArray(list)) fail(`${field}.${listKey}`, 'expected an array');
    (list as unknown[]).forEach((x, k) => checkComponent(x, `${field}.${listKey}[${k}]`, listKey, fail));
  }
  if ((c.type === 'Split' || c.type === 'Replace') && !isObject(c.pattern)) fail(`${field}.pattern`, 'expected {"Regex": …} or {"String": …}');
  if (isObject(c.pattern)) {
    const p = c.pattern;
    if (!(typeof p.Regex === 'string' || typeof p.String === 'string')) fail(`${field}.pattern`, 'expected {"Regex": …} or {"String": …} with a string');
  }
}

/** Every {"Regex": "…"} anywhere in the file must be in the safe subset. */
function checkPatterns(v: unknown, at: string, fail: (f: string, p: string) => never, depth = 0): void {
  if (depth > 64) fail(at || '(top level)', 'nested more than 64 levels deep');
  if (Array.isArray(v)) { v.forEach((x, k) => checkPatterns(x, `${at}[${k}]`, fail, depth + 1)); return; }
  if (!isObject(v)) return;
  for (const [k, x] of Object.entries(v)) {
    // The vocabulary and merges hold no patterns (and are large): skip them.
    if (at === 'model' && (k === 'vocab' || k === 'merges')) continue;
    const field = at ? `${at}.${k}` : k;
    if (k === 'Regex' && typeof x === 'string') {
      const why = unsafeRegexReason(x);
      if (why) fail(field, `the regular expression is refused: ${why}`);
    } else checkPatterns(x, field, fail, depth + 1);
  }
}
