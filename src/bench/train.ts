// `cubit bench train`: training tokens/s (forward, backward, clipping and AdamW) of byte-vocab
// decoders (default d_model 128, 4 layers, 4 heads, SwiGLU 512, RMSNorm, rotary) at T=128 B=32 and
// T=512 B=8, softmax and Cubit; and cached generation tokens/s at a 1024-token context.
import { getBackend, tidy } from '../core/engine.ts';
import { Rng } from '../core/random.ts';
import { tensor } from '../ops/creation.ts';
import { NativeBackend } from '../backends/native/backend.ts';
import { Decoder } from '../models/decoder.ts';
import type { MixerKind } from '../models/config.ts';
import { generate } from '../models/generate.ts';
import { clipGradNormOnDevice } from '../train/clip.ts';
import { AdamW } from '../train/optimizer.ts';
import { deviceFields, emit, emitFailure, median, medianMs, round, settled } from './measure.ts';

/** The decoder's size: byte vocabulary, these widths. */
export interface TrainBenchModel { dModel: number; nLayers: number; nHeads: number; ffnHidden: number }

export interface TrainBenchOptions {
  threads?: number[];
  filter?: string;
  mixers?: MixerKind[];
  /** Default d_model 128, 4 layers, 4 heads, SwiGLU 512. */
  model?: TrainBenchModel;
  /** (T, B) pairs: sequence length and batch size (default T=128 B=32 and T=512 B=8). */
  shapes?: [number, number][];
}

const defaultModel: TrainBenchModel = { dModel: 128, nLayers: 4, nHeads: 4, ffnHidden: 512 };

/** A model size written dModel×layers×heads×ffn ("512x8x8x2048"). */
export function parseTrainModel(text: string): TrainBenchModel {
  const n = text.split('x').map(Number);
  if (n.length !== 4 || !n.every((v) => Number.isInteger(v) && v >= 1)) throw new Error(`model size '${text}' is not dModel x layers x heads x ffn (four positive integers, e.g. 512x8x8x2048)`);
  return { dModel: n[0], nLayers: n[1], nHeads: n[2], ffnHidden: n[3] };
}

/** Training shapes written T×B, comma-separated ("1024x32,4096x8"). */
export function parseTrainShapes(text: string): [number, number][] {
  return text.split(',').map((part) => {
    const n = part.trim().split('x').map(Number);
    if (n.length !== 2 || !n.every((v) => Number.isInteger(v) && v >= 1)) throw new Error(`training shape '${part}' is not TxB (sequence length x batch size, e.g. 1024x32)`);
    return [n[0], n[1]];
  });
}

function randomIds(n: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: n }, () => rng.int(256));
}

/**
 * Median wall ms of one full training step of `m` on a fixed (B, T) batch, and the median process
 * CPU ms of the same steps: on a shared machine the CPU time of a one-thread run is the steadier
 * figure (waiting for a core does not count); with more threads it sums them.
 */
async function timeTrainStep(m: Decoder, B: number, T: number, settle: (() => Promise<void>) | undefined): Promise<{ wall: number; cpu: number }> {
  const ids = tensor(randomIds(B * T, 1), [B, T]).keep();
  const targets = tensor(randomIds(B * T, 2), [B, T]).keep();
  const params = m.parameters();
  const opt = new AdamW(m.namedParameters(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  const zeroGrads = (): void => { for (const p of params) if (p.grad) p.backend.fill(p.grad.storage, 0, 0, p.grad.size); };
  try {
    const step = (): void => {
      tidy(() => { m.loss(ids, targets).backward(); });
      clipGradNormOnDevice(params, 1)?.dispose(); // reads nothing: the step ends on the device
      opt.update(1e-3);
      zeroGrads();
    };
    const cpu: number[] = [];
    const timed = async (): Promise<void> => {
      const c0 = process.cpuUsage();
      step();
      await settle?.();
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000);
    };
    // The first step (compiling a GPU's kernels, growing the pool) is untimed; a slow second one
    // (large models on a slow backend) sets fewer timed steps, so a benchmark under a time limit
    // finishes.
    await timed();
    const t0 = performance.now();
    await timed();
    const slow = performance.now() - t0 > 3000;
    const warmup = cpu.length;
    const wall = await medianMs(timed, slow ? { warmup: 0, minRuns: 2, minMs: 0 } : { warmup: 0, minRuns: 5, minMs: 2000, maxRuns: 20 });
    return { wall, cpu: median(cpu.slice(warmup)) };
  } finally {
    zeroGrads(); // a failed step leaves partial gradients behind
    opt.dispose(); ids.dispose(); targets.dispose();
  }
}

export async function benchTrain(opts: TrainBenchOptions = {}): Promise<void> {
  const b = getBackend();
  const threadList = b instanceof NativeBackend ? (opts.threads ?? [b.threads()]) : [1];
  const mixers = opts.mixers ?? ['softmax', 'cubit'];
  const size = opts.model ?? defaultModel;
  const settle = settled(b);
  for (const t of threadList) {
    if (b instanceof NativeBackend) b.setThreads(t);
    for (const mixer of mixers) {
      const m = new Decoder({ vocabSize: 256, ...size, mixer }, 0);
      for (const [T, B] of opts.shapes ?? [[128, 32], [512, 8]]) {
        const name = `train ${mixer} T=${T} B=${B}`;
        if (opts.filter && !name.includes(opts.filter)) continue;
        const rec = { bench: 'train', mixer, T, B, dModel: size.dModel, layers: size.nLayers, heads: size.nHeads, ffn: size.ffnHidden, ...deviceFields(b), threads: t };
        try {
          const { wall, cpu } = await timeTrainStep(m, B, T, settle);
          emit({ ...rec, median_step_ms: round(wall, 1), tokens_per_s: Math.round((B * T) / (wall / 1000)), median_cpu_ms: round(cpu, 1) });
        } catch (e) {
          emitFailure(rec, e);
        }
      }
      const name = `generate ${mixer} context=1024`;
      if (!opts.filter || name.includes(opts.filter)) {
        // A 960-token prompt, then 64 cached decoding steps: the last token reads 1023 positions.
        m.eval();
        const prompt = randomIds(960, 3);
        const r = await generate(m, prompt, { maxNewTokens: 64, temperature: 1, seed: 0 });
        const perToken = r.decodeSeconds / Math.max(1, r.tokens.length - 1);
        emit({ bench: 'generate', mixer, context: 1024, prompt: 960, new_tokens: r.tokens.length, ...deviceFields(b), threads: t, prefill_s: round(r.prefillSeconds, 3), decode_tokens_per_s: round(1 / perToken, 1) });
      }
      m.dispose();
    }
  }
}
