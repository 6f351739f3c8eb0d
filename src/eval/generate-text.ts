// From a prompt to text and back: the tokenizer's side of generation (BOS, EOS, UTF-8 pieces) around
// models/generate.ts, which works on ids. The CLI's `generate` and `demo` print through it.
import type { Tokenizer } from '../data/tokenizer.ts';
import type { Decoder } from '../models/decoder.ts';
import { generate, type GenerateOptions, type GenerateResult } from '../models/generate.ts';

/** Options of {@link generateText}: those of {@link generate} but `stopIds` and `onToken`. */
export interface GenerateTextOptions extends Omit<GenerateOptions, 'stopIds' | 'onToken'> {
  /** Called with each piece of text as it becomes complete (streaming output); the pieces join to `text`. */
  onText?: (piece: string) => void;
}

/** What {@link generateText} returns: the text, and the ids and timings of {@link generate}. */
export interface GenerateTextResult extends GenerateResult {
  /** The generated text (the prompt excluded; the end-of-text token, when hit, is not part of it). */
  text: string;
  /** The ids the prompt became (the tokenizer's begin-of-text id first, when it has one). */
  promptIds: number[];
}

/**
 * The ids {@link generateText} feeds the model for `prompt`: the tokenizer's begin-of-text id (when
 * it has one: training documents start with it too), then the prompt's. Throws one line when that
 * is no id at all (an empty prompt and no begin-of-text id).
 */
export function promptIds(tokenizer: Tokenizer, prompt: string): number[] {
  const ids = [...(tokenizer.bosId === null ? [] : [tokenizer.bosId]), ...tokenizer.encode(prompt)];
  if (ids.length === 0) throw new Error(`the prompt is empty and ${tokenizer.name} has no begin-of-text token to start from; give some text`);
  return ids;
}

/**
 * Continues the text `prompt` with a model and its tokenizer (as {@link loadModel} returns them).
 * The prompt is encoded by {@link promptIds}; generation stops at the tokenizer's end-of-text id,
 * when it has one. Runs without gradients and frees every tensor it makes. Asynchronous, as
 * {@link generate}: each step awaits the read of its logits.
 *
 * @example
 * const { text } = await generateText(loadModel('runs/tiny-cubit'), 'The jury said', { maxNewTokens: 40, temperature: 0.8, topK: 40 });
 */
export async function generateText(
  { model, tokenizer }: { model: Decoder; tokenizer: Tokenizer },
  prompt: string,
  options: GenerateTextOptions,
): Promise<GenerateTextResult> {
  const eos = tokenizer.eosId;
  const ids = promptIds(tokenizer, prompt);
  const { onText, ...rest } = options;
  const stream = onText ? tokenizer.streamDecoder() : null;
  const result = await generate(model, ids, {
    ...rest,
    stopIds: eos === null ? [] : [eos],
    onToken: stream ? (id) => { if (id !== eos) { const s = stream.push(id); if (s) onText!(s); } } : undefined,
  });
  if (stream) { const s = stream.flush(); if (s) onText!(s); }
  return { ...result, text: tokenizer.decode(result.tokens.filter((id) => id !== eos)), promptIds: ids };
}
