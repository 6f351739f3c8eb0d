// The decoder-only language model: token embedding, N pre-norm blocks
//   h = h + mixer(rmsnorm(h));  h = h + swiglu(rmsnorm(h))
// a final RMSNorm, and the output projection (tied to the embedding by default).
// Initialisation (docs/MODEL.md): N(0, 0.02) everywhere, the residual branches' output projections
// N(0, 0.02/√(2·layers)) as GPT-2, RMSNorm weights 1, Cubit's per-head scalars at their config values.
import type { Tensor } from '../core/tensor.ts';
import { Rng } from '../core/random.ts';
import { add } from '../ops/elementwise.ts';
import { matmul } from '../ops/matmul.ts';
import { crossEntropy } from '../ops/nn.ts';
import { Embedding, Linear, RMSNorm, SwiGLU } from '../nn/layers.ts';
import { Module } from '../nn/module.ts';
import { CubitMixer, LocalLinearMixer, SoftmaxMixer, type MixerForwardOptions, type MixerState, type TokenMixer } from '../mixers/modules.ts';
import { layerMixers, parseModelConfig, type MixerKind, type ModelConfig, type ModelConfigInput } from './config.ts';

export class Block extends Module {
  readonly mixerNorm: RMSNorm;
  readonly mixer: TokenMixer;
  readonly ffnNorm: RMSNorm;
  readonly ffn: SwiGLU;

  constructor(cfg: ModelConfig, kind: MixerKind, rng: Rng) {
    super();
    const outStd = 0.02 / Math.sqrt(2 * cfg.nLayers);
    const base = { dModel: cfg.dModel, nHeads: cfg.nHeads, rotaryBase: cfg.rotaryBase, window: cfg.window, outStd };
    this.mixerNorm = this.child('mixerNorm', new RMSNorm(cfg.dModel, cfg.normEps));
    this.mixer = this.child('mixer', makeMixer(kind, cfg, base, rng));
    this.ffnNorm = this.child('ffnNorm', new RMSNorm(cfg.dModel, cfg.normEps));
    this.ffn = this.child('ffn', new SwiGLU(cfg.dModel, cfg.ffnHidden, rng, outStd));
  }

  forward(h: Tensor, opts: MixerForwardOptions): Tensor {
    h = add(h, this.mixer.forward(this.mixerNorm.forward(h), opts));
    return add(h, this.ffn.forward(this.ffnNorm.forward(h)));
  }

  step(h: Tensor, state: MixerState): Tensor {
    h = add(h, this.mixer.step(this.mixerNorm.forward(h), state));
    return add(h, this.ffn.forward(this.ffnNorm.forward(h)));
  }
}

function makeMixer(kind: MixerKind, cfg: ModelConfig, base: ConstructorParameters<typeof SoftmaxMixer>[0], rng: Rng): TokenMixer {
  switch (kind) {
    case 'softmax': return new SoftmaxMixer(base, rng);
    case 'cubit': return new CubitMixer({ ...base, ...cfg.cubit }, rng);
    case 'local_linear': return new LocalLinearMixer({ ...base, ...cfg.localLinear }, rng);
  }
}

/**
 * The decoder-only language model: token embedding, pre-norm blocks (token mixer + SwiGLU
 * feed-forward), a final RMSNorm and the output projection. `forward(ids)` gives logits;
 * `loss(inputs, targets)` the cross-entropy; `initStates()`/`step()` decode token by token with
 * O(context) caches. Build it from a {@link ModelConfigInput}, or get a trained one from {@link
 * loadModel}.
 */
export class Decoder extends Module {
  readonly config: ModelConfig;
  readonly embed: Embedding;
  readonly blocks: Block[];
  readonly finalNorm: RMSNorm;
  readonly head: Linear | null;

  /** Builds the model from a config (validated) with parameters drawn from `seed`. */
  constructor(config: ModelConfigInput | ModelConfig, seed = 0) {
    super();
    const cfg = (this.config = parseModelConfig(config));
    const rng = new Rng(seed);
    this.embed = this.child('embed', new Embedding(cfg.vocabSize, cfg.dModel, rng));
    this.blocks = layerMixers(cfg).map((kind, i) => this.child(`blocks.${i}`, new Block(cfg, kind, rng)));
    this.finalNorm = this.child('finalNorm', new RMSNorm(cfg.dModel, cfg.normEps));
    this.head = cfg.tieEmbeddings ? null : this.child('head', new Linear(cfg.dModel, cfg.vocabSize, rng));
  }

  /** Logits (B, T, vocab) of int32 ids (B, T). docIds (B, T) keeps packed documents apart. */
  forward(ids: Tensor, opts: MixerForwardOptions = {}): Tensor {
    let h = this.embed.forward(ids);
    for (const block of this.blocks) h = block.forward(h, opts);
    return this.logits(h);
  }

  /** Mean cross-entropy (nats) of the next-token targets (B, T); −100 targets are ignored. */
  loss(ids: Tensor, targets: Tensor, opts: MixerForwardOptions = {}): Tensor {
    return crossEntropy(this.forward(ids, opts), targets);
  }

  /** Fresh decode states, one per layer (see generate.ts). */
  initStates(): MixerState[] {
    return this.blocks.map((b) => b.mixer.initState());
  }

  /** Logits (B, n, vocab) of the tokens that follow those already in `states`. */
  step(ids: Tensor, states: MixerState[]): Tensor {
    let h = this.embed.forward(ids);
    this.blocks.forEach((block, i) => { h = block.step(h, states[i]); });
    return this.logits(h);
  }

  private logits(h: Tensor): Tensor {
    h = this.finalNorm.forward(h);
    return this.head ? this.head.forward(h) : matmul(h, this.embed.weight, { transB: true });
  }
}
