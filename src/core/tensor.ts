// The Tensor: a shape, a dtype and a backend storage, plus what reverse-mode autodiff needs.
// Tensors are always contiguous and row-major; reshape-like views share the storage.
import type { Backend, SavedState, Storage } from './backend.ts';
import { dtypeOf, type DType, type TypedArray } from './dtype.ts';
import { getBackend, isGradEnabled, keep as keepInScope, noGrad, tidy, track } from './engine.ts';
import { checkShape, formatShape, sizeOf, type Shape } from './shape.ts';

/** Computes the gradients of an op's inputs from the gradient of its output (null: none needed). */
export type GradFn = (gradOut: Tensor) => (Tensor | null)[];

/**
 * One recorded op. A node lives while its output tensor lives or a live node downstream needs it
 * (`refs`); it holds the storages its gradient reads (`saved`), returned once it is released —
 * after backward() or when nothing can reach it any more.
 */
export class GradNode {
  refs = 1;
  released = false;
  constructor(
    readonly op: string,
    readonly inputs: readonly Tensor[],
    readonly backward: GradFn,
    private saved: Storage[],
    private readonly backend: Backend,
  ) {
    for (const s of saved) s.refs++;
    for (const t of inputs) if (t.node) t.node.refs++;
  }

  /** Drops the saved storages (the node can no longer run its gradient). */
  releaseSaved(): void {
    if (this.released) return;
    this.released = true;
    for (const s of this.saved) if (--s.refs === 0) this.backend.free(s);
    this.saved = [];
  }

  unref(): void {
    if (--this.refs > 0) return;
    this.releaseSaved();
    for (const t of this.inputs) t.node?.unref();
  }
}

let nextId = 0;

/**
 * An n-dimensional array on a backend, with reverse-mode autodiff (`requiresGrad`, `backward()`,
 * `grad`). Make one with {@link tensor}, {@link zeros}, {@link randn}, …; every op is also a
 * method (`a.matmul(b).softmax()`); read values with `await t.data()`, `t.dataSync()` or
 * `t.toArray()`; free it with `dispose()` or {@link tidy}.
 */
export class Tensor {
  readonly isTensor = true as const;
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly size: number;
  requiresGrad: boolean;
  /** Accumulated gradient of a leaf that requires grad (kept out of scopes). */
  grad: Tensor | null = null;
  /** The op that made this tensor, while gradients may still flow through it. */
  node: GradNode | null = null;
  /** Optional name (parameters; error messages). */
  name = '';
  private disposed = false;

  constructor(readonly storage: Storage, shape: Shape, readonly backend: Backend, requiresGrad = false) {
    checkShape(shape);
    this.shape = Object.freeze([...shape]);
    this.size = sizeOf(shape);
    if (this.size > storage.length) throw new Error(`tensor of shape ${formatShape(shape)} does not fit a storage of ${storage.length}`);
    this.requiresGrad = requiresGrad;
    track(this);
  }

  get dtype(): DType { return this.storage.dtype; }
  get rank(): number { return this.shape.length; }
  get isDisposed(): boolean { return this.disposed; }
  get isLeaf(): boolean { return this.node === null; }

  /** Copies the elements out (async: a GPU backend reads back later). */
  async data(): Promise<TypedArray> {
    this.assertLive('data');
    return this.backend.read(this.storage, 0, this.size);
  }

  /** Synchronous read, where the backend has one (the CPU backends do); elsewhere use `await data()`. */
  dataSync(): TypedArray {
    this.assertLive('dataSync');
    const b = this.backend;
    if (!b.readSync) throw new Error(`dataSync: backend '${b.name}' has no synchronous reads; use 'await tensor.data()'`);
    return b.readSync(this.storage, 0, this.size);
  }

  /** The single element of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new Error(`item: tensor of shape ${formatShape(this.shape)} has ${this.size} elements, not 1`);
    return this.dataSync()[0];
  }

  /** Nested arrays (small tensors, printing, tests). */
  toArray(): unknown {
    const flat = Array.from(this.dataSync());
    const build = (dim: number, off: number): unknown => {
      if (dim === this.shape.length) return flat[off];
      const step = sizeOf(this.shape.slice(dim + 1));
      return Array.from({ length: this.shape[dim] }, (_, i) => build(dim + 1, off + i * step));
    };
    return build(0, 0);
  }

  /**
   * Frees the storage (when no view or saved gradient still holds it) and drops this tensor's
   * reference to its node. `node` stays set: downstream nodes reach (and unref) their inputs'
   * nodes through it, so gradients still flow through an intermediate disposed by tidy().
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (--this.storage.refs === 0) this.backend.free(this.storage);
    this.node?.unref();
  }

  /** Removes this tensor from all scopes: it lives until disposed by hand. */
  keep(): this { keepInScope(this); return this; }

  assertLive(what: string): void {
    if (this.disposed && this.storage.refs === 0) throw new Error(`${what}: tensor ${this.describe()} was disposed`);
  }

  describe(): string {
    return `${this.name ? this.name + ' ' : ''}${this.dtype}${formatShape(this.shape)}`;
  }

  toString(): string {
    return `Tensor(${this.describe()})`;
  }

  /**
   * Reverse-mode autodiff from this tensor. `grad` defaults to ones for a one-element tensor.
   * Leaf gradients accumulate into `.grad`; the graph is released afterwards (as PyTorch does).
   */
  backward(grad?: Tensor): void {
    backward(this, grad);
  }
}

// ---- construction helpers used by ops and by the public API ----

/** A fresh tensor with undefined contents, for an op to fill. */
export function empty(shape: Shape, dtype: DType = 'float32', backend: Backend = getBackend()): Tensor {
  checkShape(shape);
  return new Tensor(backend.alloc(dtype, sizeOf(shape)), shape, backend);
}

/** A tensor viewing another's storage with a new shape of the same size (reshape). */
export function view(t: Tensor, shape: Shape): Tensor {
  t.assertLive('view');
  t.storage.refs++;
  return new Tensor(t.storage, shape, t.backend);
}

/**
 * Records `op` on `out` when grad mode is on and an input requires grad. `state` is a fused
 * kernel's saved state: the node takes its storages over (freed at once when nothing is recorded).
 */
export function record(out: Tensor, op: string, inputs: readonly Tensor[], saved: readonly Tensor[], grad: GradFn,
  state?: SavedState): Tensor {
  const recording = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  if (recording) {
    out.requiresGrad = true;
    out.node = new GradNode(op, inputs, grad, [...saved.map((t) => t.storage), ...(state?.storages ?? [])], out.backend);
  }
  for (const s of state?.storages ?? []) if (--s.refs === 0) out.backend.free(s);
  return out;
}

/** Makes a tensor from values (a typed array, or a flat/nested number array with `shape`). */
export function tensorFrom(values: ArrayLike<number> | TypedArray, shape: Shape, dtype?: DType, backend: Backend = getBackend()): Tensor {
  const dt = dtype ?? (ArrayBuffer.isView(values) ? dtypeOf(values as TypedArray) : 'float32');
  if (dt === 'float64' && !backend.supportsFloat64) throw new Error(`backend '${backend.name}' has no float64 tensors (use the reference backend)`);
  const n = sizeOf(shape);
  if (values.length !== n) throw new Error(`tensor: ${values.length} values do not fill shape ${formatShape(shape)} (${n} elements)`);
  const t = empty(shape, dt, backend);
  backend.write(t.storage, values);
  return t;
}


// ---- backward ----

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<GradNode>();
  // Iterative DFS: graphs of deep models overflow a recursive one.
  const stack: [Tensor, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const node = t.node!;
    if (i === 0) {
      if (seen.has(node)) { stack.pop(); continue; }
      seen.add(node);
    }
    if (i < node.inputs.length) {
      top[1]++;
      const child = node.inputs[i];
      if (child.node && !seen.has(child.node)) stack.push([child, 0]);
    } else {
      order.push(t);
      stack.pop();
    }
  }
  return order.reverse();
}

function backward(root: Tensor, seed?: Tensor): void {
  if (!root.requiresGrad) throw new Error(`backward: ${root.describe()} does not require grad`);
  if (!seed && root.size !== 1) throw new Error(`backward: ${root.describe()} is not a scalar; pass its gradient`);
  const b = root.backend;
  noGrad(() => {
    const first = seed ?? tensorFrom([1], root.shape, root.dtype, b);
    if (!root.node) { accumulateLeaf(root, first, !seed); if (!seed) first.dispose(); return; }
    const grads = new Map<Tensor, Tensor>([[root, first]]);
    const order = topoOrder(root);
    for (const t of order) {
      const node = t.node!;
      const g = grads.get(t);
      grads.delete(t);
      if (!g) continue;
      if (node.released) throw new Error(`backward: the graph through '${node.op}' was already released (backward runs once per forward)`);
      // A gradient may pass g itself through (add, clone) or return one tensor for two inputs:
      // give each such input its own view so that disposing g below, or one input's grad, or
      // accumulating in place later, cannot touch another's. A fresh view (reshape) is its own.
      const used = new Set<Tensor>();
      const inGrads = tidy(() => node.backward(g)).map((gi) => {
        if (gi === null) return null;
        const own = gi === g || used.has(gi) ? view(gi, gi.shape) : gi;
        used.add(gi);
        return own;
      });
      if (g !== seed) g.dispose();
      node.releaseSaved();
      node.inputs.forEach((input, i) => {
        const gi = inGrads[i];
        if (!gi || !input.requiresGrad) { gi?.dispose(); return; }
        if (!input.node) { accumulateLeaf(input, gi, true); gi.dispose(); return; }
        const prev = grads.get(input);
        if (!prev) grads.set(input, gi);
        else { grads.set(input, addInto(prev, gi)); gi.dispose(); }
      });
    }
    for (const g of grads.values()) g.dispose();
  });
}

/** prev += g in place when prev owns its storage alone, else a fresh sum. */
function addInto(prev: Tensor, g: Tensor): Tensor {
  const b = prev.backend;
  if (prev.storage.refs === 1 && prev.dtype === g.dtype) {
    b.binary('add', prev.storage, [1], g.storage, [1], prev.storage, [prev.size]);
    return prev;
  }
  const out = empty(prev.shape, prev.dtype, b);
  b.binary('add', prev.storage, [1], g.storage, [1], out.storage, [prev.size]);
  prev.dispose();
  return out;
}

/**
 * leaf.grad += g, or a first gradient. With `adopt` (g is backward's own, disposed right after) a
 * first gradient takes g's storage when nothing else holds it, instead of copying it.
 */
function accumulateLeaf(leaf: Tensor, g: Tensor, adopt: boolean): void {
  if (g.size !== leaf.size) throw new Error(`backward: gradient of ${leaf.describe()} has ${g.size} elements`);
  const b = leaf.backend;
  if (!leaf.grad || leaf.grad.isDisposed) {
    if (adopt && g.storage.refs === 1 && g.dtype === leaf.dtype) { leaf.grad = view(g, leaf.shape).keep(); return; }
    const grad = empty(leaf.shape, leaf.dtype, b).keep();
    b.copy(g.storage, 0, grad.storage, 0, g.size);
    leaf.grad = grad;
  } else {
    b.binary('add', leaf.grad.storage, [1], g.storage, [1], leaf.grad.storage, [g.size]);
  }
}
