// Global engine state: the registered backends and the active one, memory scopes, and grad mode.
import type { Backend } from './backend.ts';

/** What scopes need of a tensor (tensor.ts implements it; kept structural to avoid a cycle). */
export interface Disposable {
  readonly isTensor: true;
  dispose(): void;
  readonly isDisposed: boolean;
}

type Factory = () => Backend;
const factories = new Map<string, Factory>();
const preparers = new Map<string, () => Promise<void>>();
const instances = new Map<string, Backend>();
let active: Backend | null = null;
let defaultChooser: (() => Backend) | null = null;

/**
 * Makes a backend available by name to setBackend, withBackend, CUBIT_BACKEND, the CLI's --backend
 * and `cubit info`; `factory` runs on first use. A backend needs only the core kernels
 * (CoreBackend); docs/ARCHITECTURE.md says how to add one.
 *
 * @example
 * registerBackend('reference-2', () => new ReferenceBackend());
 * setBackend('reference-2');
 */
export function registerBackend(name: string, factory: Factory, prepare?: () => Promise<void>): void {
  factories.set(name, factory);
  if (prepare) preparers.set(name, prepare); else preparers.delete(name);
}

/**
 * Sets up the backend named `name` and returns it. A backend whose set-up is asynchronous (a GPU:
 * requesting the adapter and device) registers a `prepare` step, which must finish before its
 * first use; for the others this is backendByName.
 *
 * @example
 * await prepareBackend('webgpu');
 * setBackend('webgpu');
 */
export async function prepareBackend(name: string): Promise<Backend> {
  if (!factories.has(name)) throw new Error(`unknown backend '${name}' (known: ${backendNames().join(', ')})`);
  const prepare = preparers.get(name);
  if (prepare) await prepare();
  return backendByName(name);
}

/** The names of the registered backends ('reference', and 'native' when its addon loads). */
export function backendNames(): string[] {
  return [...factories.keys()];
}

/** Returns the backend named `name`, creating it on first use. */
export function backendByName(name: string): Backend {
  let b = instances.get(name);
  if (!b) {
    const f = factories.get(name);
    if (!f) throw new Error(`unknown backend '${name}' (known: ${backendNames().join(', ')})`);
    b = f();
    instances.set(name, b);
  }
  return b;
}

/** Sets how the first getBackend() call picks a backend (src/backends/index.ts installs it). */
export function setDefaultBackendChooser(choose: () => Backend): void {
  defaultChooser = choose;
}

/**
 * The active backend: the one set by setBackend, else the default (native when its addon loads,
 * else reference; `CUBIT_BACKEND` overrides).
 */
export function getBackend(): Backend {
  if (!active) {
    if (!defaultChooser) throw new Error('no backend registered: import the package root (src/index.ts)');
    active = defaultChooser();
  }
  return active;
}

/** Makes `name` the active backend. Tensors keep the backend that made them. */
export function setBackend(name: string): Backend {
  active = backendByName(name);
  return active;
}

/** Runs fn with `backend` (a name or an instance) as the active backend, then restores the previous one. */
export function withBackend<T>(backend: string | Backend, fn: () => T): T {
  const prev = active;
  active = typeof backend === 'string' ? backendByName(backend) : backend;
  try { return fn(); } finally { active = prev; }
}

// ---- grad mode ----

let gradEnabled = true;

/** Whether ops record gradients now (false inside {@link noGrad}). */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording gradients (evaluation, generation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try { return fn(); } finally { gradEnabled = prev; }
}

// ---- scopes ----
// Every tensor made inside tidy() is disposed when it returns, except what it returns (handed to
// the enclosing scope) and what was kept. Tensors made outside any scope (parameters) live until
// disposed by hand.

const scopes: Set<Disposable>[] = [];

export function track(t: Disposable): void {
  const top = scopes[scopes.length - 1];
  if (top) top.add(t);
}

/** Removes t from every scope: it lives until disposed by hand. */
export function keep<T extends Disposable>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collect(value: unknown, into: Set<Disposable>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 4) return;
  if ((value as Disposable).isTensor === true) { into.add(value as Disposable); return; }
  if (Array.isArray(value)) { for (const v of value) collect(v, into, depth + 1); return; }
  if (value instanceof Map) { for (const v of value.values()) collect(v, into, depth + 1); return; }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, into, depth + 1);
  }
}

/**
 * Runs fn in a memory scope. Tensors reachable from the result (a tensor, or arrays / plain objects
 * / Maps of them) survive into the enclosing scope; every other tensor made inside is disposed.
 * fn must be synchronous: tensors made after an await would escape the scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) throw new Error('tidy: fn must be synchronous (it returned a Promise)');
  const survivors = new Set<Disposable>();
  collect(result, survivors);
  for (const t of scope) {
    if (survivors.has(t)) track(t);
    else t.dispose();
  }
  return result;
}

/** Disposes a tensor or every tensor in an array / plain object. */
export function dispose(value: unknown): void {
  const all = new Set<Disposable>();
  collect(value, all);
  for (const t of all) t.dispose();
}
