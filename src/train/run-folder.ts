// What keeps a run folder safe, apart from the checkpoint format itself (checkpoint.ts): removing
// old checkpoints without ever following a link or touching what cubit did not write, checking a
// checkpoint's tensors against its config before anything is allocated, refusing non-finite
// values, and the crash test hook. Internal to the trainer and the checkpoint loaders (not part of
// the package's API).
import * as os from 'node:os';
import * as fs from 'node:fs';
import { SafetensorsFile } from '../io/safetensors.ts';
import type { ModelConfig } from '../models/config.ts';
import { parameterShapes } from '../models/limits.ts';
import { lstatOrNull, refuseLink, removeEntrySync } from '../util/files.ts';

const crashCounts = new Map<string, number>();

/**
 * The test hook of checkpoint.ts: CUBIT_TEST_CRASH="<point>[@<n>]" SIGKILLs this process the n-th
 * time (default 1) it reaches `point`.
 */
export function crashPoint(point: string): void {
  const spec = process.env.CUBIT_TEST_CRASH;
  if (!spec) return;
  const [name, nth] = spec.split('@');
  if (name !== point) return;
  const n = (crashCounts.get(point) ?? 0) + 1;
  crashCounts.set(point, n);
  if (n === Number(nth ?? 1)) process.kill(process.pid, 'SIGKILL');
}

/** Names cubit gives what it writes under <run>/checkpoints: step folders and their temporaries. */
const OWN_CHECKPOINT_ENTRY = /^(step-\d{8,}|\.step-\d{8,}\.tmp-\d+-[0-9a-f]+)$/;

/**
 * Removes the checkpoints (and temporaries of killed saves) in `root` other than `keep`. Only
 * entries with the names cubit gives are touched, and never through a link (removeEntrySync):
 * whatever else a user put there stays. `root` itself must be a real folder.
 */
export function pruneCheckpoints(root: string, keep: string | null): void {
  refuseLink(root, 'folder');
  if (!lstatOrNull(root)) return;
  for (const name of fs.readdirSync(root)) {
    if (name === keep || !OWN_CHECKPOINT_ENTRY.test(name)) continue;
    removeEntrySync(root, name);
  }
}

/**
 * Checks a checkpoint's safetensors headers against what its model config implies (names,
 * shapes, dtypes; the optimizer's m./v. moments too when `files.optimizer` is given), reading no
 * tensor data and building nothing, and that the model fits in memory: run before any model is
 * allocated. Throws one line naming the file.
 */
export function checkCheckpointTensors(config: ModelConfig, files: { model: string; optimizer?: string }, where: string): void {
  const expected = parameterShapes(config);
  const bytes = expected.reduce((s, p) => s + 4 * p.shape.reduce((a, b) => a * b, 1), 0);
  // Weights, the copy read from disk, and for training gradients and two moments.
  checkMemory(bytes * (files.optimizer ? 5 : 2), `the model of ${where} (${bytes / 4} parameters)`);
  const check = (file: string, want: { name: string; shape: number[] }[]): void => {
    const f = SafetensorsFile.open(file);
    try {
      const names = new Set(want.map((w) => w.name));
      for (const w of want) {
        if (!f.has(w.name)) throw new Error(`checkpoint ${file}: no tensor '${w.name}' (config.json implies [${w.shape.join(', ')}])`);
        const t = f.info(w.name);
        if (t.dtype !== 'float32') throw new Error(`checkpoint ${file}: '${w.name}' is ${t.dtype}, expected float32`);
        if (t.shape.length !== w.shape.length || t.shape.some((d, i) => d !== w.shape[i])) {
          throw new Error(`checkpoint ${file}: '${w.name}' has shape [${t.shape.join(', ')}], config.json implies [${w.shape.join(', ')}]`);
        }
      }
      for (const n of f.names) if (!names.has(n)) throw new Error(`checkpoint ${file}: unexpected tensor '${n}' (config.json implies no such parameter)`);
    } finally {
      f.close();
    }
  };
  check(files.model, expected);
  if (files.optimizer) check(files.optimizer, expected.flatMap((p) => [{ name: `m.${p.name}`, shape: p.shape }, { name: `v.${p.name}`, shape: p.shape }]));
}

/** The first element of `data` that is NaN or ±Inf (or negative, with `nonNegative`), or -1. */
function firstBadValue(data: ArrayLike<number>, nonNegative = false): number {
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    if (!Number.isFinite(x) || (nonNegative && x < 0)) return i;
  }
  return -1;
}

/** Throws one line naming the tensor when `data` holds a non-finite value (or a negative one, with `nonNegative`). */
export function checkFiniteTensor(file: string, name: string, data: ArrayLike<number>, nonNegative = false): void {
  const i = firstBadValue(data, nonNegative);
  if (i >= 0) {
    const problem = Number.isFinite(data[i]) ? `a negative value (${data[i]}) where only values ≥ 0 are possible` : `a non-finite value (${data[i]})`;
    throw new Error(`checkpoint ${file}: tensor '${name}' holds ${problem} at element ${i}; the checkpoint is damaged or from a diverged run`);
  }
}

/**
 * Throws one line when `bytes` (an estimate of what an operation will allocate) exceed this
 * machine's memory: better a clear refusal than an out-of-memory kill halfway.
 */
export function checkMemory(bytes: number, what: string): void {
  const total = os.totalmem();
  if (bytes > total) {
    const gib = (x: number): string => (x / 2 ** 30).toFixed(1);
    throw new Error(`${what} needs about ${gib(bytes)} GiB of memory, more than this machine's ${gib(total)} GiB`);
  }
}
