// Registers the backends and picks the default: CUBIT_BACKEND=<any registered name>, else native
// when the addon loads, else reference with one warning saying why.
import type { Backend } from '../core/backend.ts';
import { backendByName, backendNames, registerBackend, setDefaultBackendChooser } from '../core/engine.ts';
import { loadNativeAddon, nativeLoadError } from './native/addon.ts';
import { NativeBackend } from './native/backend.ts';
import { ReferenceBackend } from './reference/backend.ts';
import { registerWebGPU } from './webgpu/index.ts';
import { nodeGpu } from './webgpu/node.ts';

registerBackend('reference', () => new ReferenceBackend());
registerBackend('native', () => {
  const addon = loadNativeAddon();
  if (!addon) throw new Error(`the native backend is unavailable: ${nativeLoadError()} (run 'npm run build:native')`);
  return new NativeBackend(addon);
});

// The GPU backend: Dawn (the optional 'webgpu' package) is loaded by `await prepareBackend('webgpu')`.
registerWebGPU(nodeGpu);

let warned = false;

/**
 * The once-per-process warning when the default falls back to the reference backend. Loud on
 * purpose: everything still works, only about 100 times slower, which is easy to miss.
 */
export function fallbackWarning(reason: string): string {
  return [
    'cubit: the native backend is unavailable, so the reference backend is used: about 100× slower',
    '  (training the tiny models runs at ≈410 tokens/s instead of 35,000–44,000).',
    `  why: ${reason}`,
    '  fix: install a C compiler, make and Python 3 (Debian/Ubuntu: apt-get install build-essential python3),',
    '  then rebuild the addon: `npm rebuild cubit` (pnpm: `pnpm rebuild cubit`; in a checkout: `npm run build:native`).',
    '  `cubit info` shows which backend is in use; CUBIT_BACKEND=reference chooses the reference backend without this warning.',
  ].join('\n');
}

function chooseDefault(): Backend {
  const env = process.env.CUBIT_BACKEND;
  if (env) {
    if (!backendNames().includes(env)) throw new Error(`CUBIT_BACKEND must name a registered backend (${backendNames().map((n) => `'${n}'`).join(', ')}), got '${env}'`);
    // A backend with an asynchronous set-up (webgpu) must have been prepared: its factory says so,
    // and the message names the variable that asked for it.
    try { return backendByName(env); } catch (e) { throw new Error(`CUBIT_BACKEND=${env}: ${(e as Error).message}`); }
  }
  if (loadNativeAddon()) return backendByName('native');
  if (!warned) {
    warned = true;
    process.emitWarning(fallbackWarning(nativeLoadError() ?? 'unknown reason'));
  }
  return backendByName('reference');
}

setDefaultBackendChooser(chooseDefault);

export { NativeBackend, ReferenceBackend };
