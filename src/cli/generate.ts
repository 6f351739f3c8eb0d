// `cubit generate <run-or-checkpoint> --prompt TEXT`: continues a prompt, streaming the text to
// stdout (or, with --json, one JSON object); --out also writes that object to a file.
import * as fs from 'node:fs';
import { loadModel } from '../eval/checkpoint.ts';
import { generateText, promptIds } from '../eval/generate-text.ts';
import { MAX_CONTEXT } from '../models/limits.ts';
import { writeJsonAtomicSync } from '../util/atomic.ts';
import { readTextFileSync } from '../util/files.ts';
import { type Command, intOption, numberOption, UsageError } from './args.ts';
import { backendOption, useBackendOption } from './backend.ts';

export const generateCommand: Command = {
  name: 'generate',
  summary: 'Continues a prompt with a checkpoint (temperature, top-k, top-p, seed), streaming the text.',
  usage: 'generate <run-or-checkpoint> (--prompt TEXT | --prompt-file FILE) [--max-new-tokens 200] [--temperature 0.8] [--top-k 40] [--top-p 0.95] [--seed 0]',
  options: {
    prompt: { type: 'string', short: 'p', description: 'the text to continue' } as never,
    'prompt-file': { type: 'string', description: 'read the prompt from this file' } as never,
    'max-new-tokens': { type: 'string', short: 'n', description: 'tokens to generate at most (default 200)' } as never,
    temperature: { type: 'string', short: 't', description: 'sampling temperature, 0 for greedy (default 1)' } as never,
    'top-k': { type: 'string', description: 'sample among the k most likely tokens (default 0: all)' } as never,
    'top-p': { type: 'string', description: 'nucleus sampling mass in (0, 1] (default 1: all)' } as never,
    seed: { type: 'string', description: 'seed of the sampler (default 0)' } as never,
    'max-context': { type: 'string', description: 'most tokens the model may read, prompt included (default 4 × the training length; 0: no limit)' } as never,
    recompute: { type: 'boolean', description: 'rerun the whole forward each token instead of decode caches (slow; testing)' } as never,
    tokenizer: { type: 'string', description: "'byte' or a tokenizer.json (default: the checkpoint's own; must match it)" } as never,
    backend: backendOption,
    json: { type: 'boolean', description: 'print one JSON object (text, tokens, timings) instead of streaming the text' } as never,
    out: { type: 'string', description: 'also write that JSON object to this file (atomically)' } as never,
  },
  async run(values, positionals) {
    if (positionals.length !== 1) throw new UsageError(`generate: give one run or checkpoint folder (see 'cubit generate --help')`);
    if (values.prompt !== undefined && values['prompt-file'] !== undefined) throw new UsageError('generate: give --prompt or --prompt-file, not both');
    let prompt: string;
    if (values['prompt-file'] !== undefined) {
      // A regular file of valid UTF-8 (a FIFO is refused, never waited on).
      try { prompt = readTextFileSync(String(values['prompt-file']), { label: '--prompt-file' }); } catch (e) { throw new UsageError((e as Error).message); }
    } else if (values.prompt !== undefined) prompt = String(values.prompt);
    else throw new UsageError(`generate: give a --prompt (or --prompt-file)`);
    const maxNewTokens = intOption(values, 'max-new-tokens', 200, 0, MAX_CONTEXT);
    const temperature = numberOption(values, 'temperature', 1);
    if (temperature < 0) throw new UsageError(`--temperature must be ≥ 0, got '${values.temperature}'`);
    const topK = intOption(values, 'top-k', 0, 0);
    const topP = numberOption(values, 'top-p', 1);
    if (!(topP > 0 && topP <= 1)) throw new UsageError(`--top-p must be in (0, 1], got '${values['top-p']}'`);
    const seed = intOption(values, 'seed', 0, 0);
    const maxContextOpt = values['max-context'] === undefined ? undefined : intOption(values, 'max-context', 0, 0, MAX_CONTEXT);
    await useBackendOption(values.backend);

    const ck = loadModel(positionals[0], { tokenizer: values.tokenizer as string | undefined });
    try {
      let ids: number[];
      try { ids = promptIds(ck.tokenizer, prompt); } catch (e) { throw new UsageError(`generate: ${(e as Error).message}`); }
      const maxContext = maxContextOpt === undefined ? (ck.trainSeqLen ? 4 * ck.trainSeqLen : null) : maxContextOpt === 0 ? null : maxContextOpt;
      if (maxContext !== null && ids.length > maxContext) {
        throw new UsageError(`generate: the prompt is ${ids.length} tokens, more than the ${maxContext} allowed (--max-context${maxContextOpt === undefined ? ', default 4 × the training length' : ''})`);
      }
      const json = values.json === true;
      const result = await generateText(ck, prompt, {
        maxNewTokens, temperature, topK, topP, seed, maxContext,
        mode: values.recompute ? 'recompute' : 'cached',
        onText: json ? undefined : (s) => process.stdout.write(s),
      });
      if (!json) process.stdout.write('\n');
      const text = result.text;
      const report = {
        checkpoint: ck.dir,
        step: ck.step,
        prompt,
        text,
        promptTokens: result.promptTokens,
        newTokens: result.tokens.length,
        tokens: result.tokens,
        stopReason: result.stopReason,
        sampling: { temperature, topK, topP, seed },
        mode: values.recompute ? 'recompute' : 'cached',
        maxContext,
        prefillSeconds: result.prefillSeconds,
        decodeSeconds: result.decodeSeconds,
        tokensPerSecond: result.tokens.length > 1 ? (result.tokens.length - 1) / Math.max(result.decodeSeconds, 1e-9) : null,
      };
      if (json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      if (values.out !== undefined) writeJsonAtomicSync(String(values.out), report);
      return 0;
    } finally {
      ck.model.dispose();
    }
  },
};
