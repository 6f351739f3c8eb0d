// Reads a training run's metrics.jsonl (records documented in src/train/trainer.ts). A non-finite
// loss is written by JSON.stringify as null; it reads back as NaN here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RUN_FILES } from '../train/checkpoint.ts';

export interface TrainRecord { step: number; loss: number; gradNorm: number; lr: number }

export interface RunMetrics {
  train: TrainRecord[];
  /** Skipped (non-finite) steps. */
  skipped: number;
  /** The last step any record mentions. */
  lastStep: number;
}

const num = (v: unknown): number => (typeof v === 'number' ? v : NaN);

export function readMetrics(runDir: string): RunMetrics {
  const file = path.join(runDir, RUN_FILES.metrics);
  const out: RunMetrics = { train: [], skipped: 0, lastStep: 0 };
  if (!fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let r: Record<string, unknown>;
    try { r = JSON.parse(line) as Record<string, unknown>; } catch { continue; } // a torn last line of a killed sitting
    const step = num(r.step);
    if (Number.isFinite(step)) out.lastStep = Math.max(out.lastStep, step);
    if (r.kind === 'train') out.train.push({ step, loss: num(r.loss), gradNorm: num(r.gradNorm), lr: num(r.lr) });
    else if (r.kind === 'skip') out.skipped = Math.max(out.skipped, num(r.skippedSteps) || 0);
  }
  return out;
}
