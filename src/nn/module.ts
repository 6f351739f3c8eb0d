// Module: a named tree of parameters and sub-modules, as in PyTorch. Parameters are leaf tensors
// kept out of memory scopes; names are dotted paths ("layers.0.mixer.wq.weight"), which is also
// how checkpoints store them.
import type { Tensor } from '../core/tensor.ts';

/**
 * A named tree of parameters and sub-modules, as in PyTorch: `namedParameters()` gives the dotted
 * names checkpoints use, `train()`/`eval()` switch modes, `dispose()` frees the weights.
 */
export abstract class Module {
  private readonly ownParams = new Map<string, Tensor>();
  private readonly ownChildren = new Map<string, Module>();
  /** Training mode (dropout on). */
  training = true;

  /** Registers a parameter: it requires grad and lives until the module is disposed. */
  protected param(name: string, t: Tensor): Tensor {
    if (this.ownParams.has(name) || this.ownChildren.has(name)) throw new Error(`module: '${name}' is registered twice`);
    t.requiresGrad = true;
    t.keep();
    this.ownParams.set(name, t);
    return t;
  }

  protected child<M extends Module>(name: string, m: M): M {
    if (this.ownParams.has(name) || this.ownChildren.has(name)) throw new Error(`module: '${name}' is registered twice`);
    this.ownChildren.set(name, m);
    return m;
  }

  /** Every parameter under this module with its dotted name, in registration order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.ownParams) out.push([prefix + n, t]);
    for (const [n, m] of this.ownChildren) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  parameters(): Tensor[] { return this.namedParameters().map(([, t]) => t); }

  /** Number of scalar parameters. */
  numParameters(): number { return this.parameters().reduce((s, t) => s + t.size, 0); }

  train(on = true): this {
    this.training = on;
    for (const m of this.ownChildren.values()) m.train(on);
    return this;
  }

  eval(): this { return this.train(false); }

  /** Frees every parameter and gradient. */
  dispose(): void {
    for (const t of this.parameters()) { t.grad?.dispose(); t.dispose(); }
  }
}
