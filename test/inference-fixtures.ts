// Fixtures of the evaluation, generation and format tests: tiny models with non-trivial weights,
// saved as real run folders by the trainer's checkpoint writer (src/train/checkpoint.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { noGrad, Rng } from '../src/index.ts';
import type { TokenizerIdentity } from '../src/data/tokenizer.ts';
import type { ModelConfigInput } from '../src/models/config.ts';
import { Decoder } from '../src/models/decoder.ts';
import { AdamW } from '../src/train/optimizer.ts';
import { CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, saveCheckpoint, softwareVersion } from '../src/train/checkpoint.ts';

export { tmpDir } from './helpers.ts';

/**
 * A model with weights drawn at unit gain instead of the training init: every matrix N(0, 1/in)
 * (so each residual branch is as large as the stream it adds to, and every mixer visibly shapes
 * the logits), embeddings N(0, embedStd²), RMSNorm weights around 1, and Cubit's per-head scalars
 * different per head (so a format that mixed up heads, or ignored a scalar, shows in the logits).
 */
export function perturbedModel(config: ModelConfigInput, seed = 1, embedStd = 1): Decoder {
  const model = new Decoder(config, seed);
  const rng = new Rng(seed + 1000);
  noGrad(() => {
    for (const [name, p] of model.namedParameters()) {
      const v = new Float64Array(p.size);
      const leaf = name.split('.').pop()!;
      const fanIn = p.rank >= 2 ? p.shape[p.rank - 2 + (name.endsWith('projection') ? 0 : 1)] : 1;
      // Per-head scalars get one value per head i.
      for (let i = 0; i < v.length; i++) {
        switch (leaf) {
          case 'refScale': v[i] = 1.5 + 0.7 * i + 0.1 * rng.normal(); break;
          case 'logLambda': v[i] = Math.log(0.01 * (i + 1)); break;
          case 'lrrLower': v[i] = 0.4 + 0.1 * i; break;
          case 'lrrRange': v[i] = 1.2 + 0.3 * i; break;
          default:
            if (name.endsWith('Norm.weight')) v[i] = 1 + 0.2 * rng.normal();
            else if (name.startsWith('embed')) v[i] = embedStd * rng.normal();
            else v[i] = rng.normal() / Math.sqrt(fanIn);
        }
      }
      p.backend.write(p.storage, v);
    }
  });
  return model.eval();
}

export interface FixtureOptions {
  seqLen?: number;
  step?: number;
  tokenizer?: TokenizerIdentity;
  data?: Record<string, unknown>;
}

/** Saves `model` as a run folder (latest.json → checkpoints/step-…) with the trainer's writer; returns the run folder. */
export async function saveRun(runDir: string, model: Decoder, opts: FixtureOptions = {}): Promise<string> {
  const step = opts.step ?? 7;
  const optimizer = new AdamW(model.namedParameters(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  try {
    await saveCheckpoint(runDir, {
      step,
      model,
      optimizer,
      durable: false,
      config: {
        format: CHECKPOINT_FORMAT,
        formatVersion: CHECKPOINT_FORMAT_VERSION,
        software: { name: 'cubit', version: softwareVersion() },
        step,
        parameters: model.numParameters(),
        model: model.config,
        training: { seqLen: opts.seqLen ?? 16, data: opts.data ?? { corpus: 'brown', tokenizer: 'byte', split: { seed: 0, validation: 0.05, test: 0.05, by: 'auto' } } },
        tokenizer: opts.tokenizer ?? { kind: 'byte', vocabSize: 256 },
      },
      state: {
        step, rng: { state: 1 }, sampler: { mode: 'packed', seed: 0, seqLen: opts.seqLen ?? 16, data: 'x', epoch: 0, cursor: 0 },
        skippedSteps: 0, nonFiniteInARow: 0, tokensSeen: 0, elapsedSeconds: 0,
      },
    });
  } finally {
    optimizer.dispose();
  }
  return runDir;
}

export interface CliResult { code: number | null; stdout: string; stderr: string }

/**
 * Runs `cubit <args>` in this process (src/cli/main.ts, as bin/cubit.mjs does), capturing what it
 * writes to stdout and stderr. Much faster than a child process; commands must not overlap.
 */
export async function cliInProcess(args: string[]): Promise<CliResult> {
  const { main } = await import('../src/cli/main.ts');
  let stdout = '', stderr = '';
  const out = process.stdout.write, err = process.stderr.write;
  process.stdout.write = ((chunk: string | Uint8Array) => { stdout += String(chunk); return true; }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => { stderr += String(chunk); return true; }) as typeof process.stderr.write;
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

const BIN = path.join(import.meta.dirname, '..', 'bin', 'cubit.mjs');

/** Runs the `cubit` command in a child process (the reference backend unless env says otherwise). */
export function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, NODE_NO_WARNINGS: '1', ...env } });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
