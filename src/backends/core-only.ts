// A backend with its fused kernels hidden: every op then runs its composite of core kernels. The
// conformance suite runs the CPU backends through it to test the composites; it also shows what a
// new backend (WebGPU) gets before it writes its first fused kernel.
import { FUSED_KERNELS, type Backend } from '../core/backend.ts';

/** `inner` seen through its core kernels only, under `name` (default '<inner>-core'). */
export function coreOnly(inner: Backend, name = `${inner.name}-core`): Backend {
  const hidden = new Set<string | symbol>(FUSED_KERNELS);
  return new Proxy(inner, {
    get(target, prop) {
      if (hidden.has(prop)) return undefined;
      if (prop === 'name') return name;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
    has(target, prop) { return !hidden.has(prop) && Reflect.has(target, prop); },
  });
}
