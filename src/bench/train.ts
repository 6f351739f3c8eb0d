// `cubit bench train`: training tokens/s (forward, backward, clipping and AdamW) of byte-vocab
// decoders (d_model 128, 4 layers, 4 heads, SwiGLU 512, RMSNorm, rotary) at T=128 B=32 and T=512
// B=8, softmax and Cubit; and cached generation tokens/s at a 1024-token context.
import { getBackend, tidy } from '../core/engine.ts';
import { Rng } from '../core/random.ts';
import { tensor } from '../ops/creation.ts';
import { NativeBackend } from '../backends/native/backend.ts';
import { Decoder } from '../models/decoder.ts';
import type { MixerKind } from '../models/config.ts';
import { generate } from '../models/generate.ts';
import { clipGradNorm } from '../train/clip.ts';
import { AdamW } from '../train/optimizer.ts';
import { emit, median, medianMs, round } from './measure.ts';

export interface TrainBenchOptions {
  threads?: number[];
  filter?: string;
  mixers?: MixerKind[];
}

const model = (mixer: MixerKind) => ({ vocabSize: 256, dModel: 128, nLayers: 4, nHeads: 4, ffnHidden: 512, mixer });

function randomIds(n: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: n }, () => rng.int(256));
}

/**
 * Median wall ms of one full training step of `m` on a fixed (B, T) batch, and the median process
 * CPU ms of the same steps: on a shared machine the CPU time of a one-thread run is the steadier
 * figure (waiting for a core does not count); with more threads it sums them.
 */
function timeTrainStep(m: Decoder, B: number, T: number): { wall: number; cpu: number } {
  const ids = tensor(randomIds(B * T, 1), [B, T]).keep();
  const targets = tensor(randomIds(B * T, 2), [B, T]).keep();
  const params = m.parameters();
  const opt = new AdamW(m.namedParameters(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  const step = (): void => {
    tidy(() => { m.loss(ids, targets).backward(); });
    clipGradNorm(params, 1);
    opt.update(1e-3);
    for (const p of params) if (p.grad) p.backend.fill(p.grad.storage, 0, 0, p.grad.size);
  };
  const cpu: number[] = [];
  const timed = (): void => {
    const c0 = process.cpuUsage();
    step();
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  };
  const warmup = 2;
  const wall = medianMs(timed, { warmup, minRuns: 5, minMs: 2000, maxRuns: 20 });
  opt.dispose(); ids.dispose(); targets.dispose();
  return { wall, cpu: median(cpu.slice(warmup)) };
}

export async function benchTrain(opts: TrainBenchOptions = {}): Promise<void> {
  const b = getBackend();
  const threadList = b instanceof NativeBackend ? (opts.threads ?? [b.threads()]) : [1];
  const mixers = opts.mixers ?? ['softmax', 'cubit'];
  for (const t of threadList) {
    if (b instanceof NativeBackend) b.setThreads(t);
    for (const mixer of mixers) {
      const m = new Decoder(model(mixer), 0);
      for (const [T, B] of [[128, 32], [512, 8]]) {
        const name = `train ${mixer} T=${T} B=${B}`;
        if (opts.filter && !name.includes(opts.filter)) continue;
        const { wall, cpu } = timeTrainStep(m, B, T);
        emit({
          bench: 'train', mixer, T, B, dModel: 128, layers: 4, backend: b.name, threads: t, median_step_ms: round(wall, 1),
          tokens_per_s: Math.round((B * T) / (wall / 1000)), median_cpu_ms: round(cpu, 1),
        });
      }
      const name = `generate ${mixer} context=1024`;
      if (!opts.filter || name.includes(opts.filter)) {
        // A 960-token prompt, then 64 cached decoding steps: the last token reads 1023 positions.
        m.eval();
        const prompt = randomIds(960, 3);
        const r = await generate(m, prompt, { maxNewTokens: 64, temperature: 1, seed: 0 });
        const perToken = r.decodeSeconds / Math.max(1, r.tokens.length - 1);
        emit({ bench: 'generate', mixer, context: 1024, prompt: 960, new_tokens: r.tokens.length, backend: b.name, threads: t, prefill_s: round(r.prefillSeconds, 3), decode_tokens_per_s: round(1 / perToken, 1) });
      }
      m.dispose();
    }
  }
}
