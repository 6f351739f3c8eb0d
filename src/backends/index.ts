// Registers the backends and picks the default: CUBIT_BACKEND=<any registered name>, else native
// when the addon loads, else reference with one warning saying why.
import type { Backend } from '../core/backend.ts';
import { backendByName, backendNames, registerBackend, setDefaultBackendChooser } from '../core/engine.ts';
import { loadNativeAddon, nativeLoadError } from './native/addon.ts';
import { NativeBackend } from './native/backend.ts';
import { ReferenceBackend } from './reference/backend.ts';

registerBackend('reference', () => new ReferenceBackend());
registerBackend('native', () => {
  const addon = loadNativeAddon();
  if (!addon) throw new Error(`the native backend is unavailable: ${nativeLoadError()} (run 'npm run build:native')`);
  return new NativeBackend(addon);
});

let warned = false;

function chooseDefault(): Backend {
  const env = process.env.CUBIT_BACKEND;
  if (env) {
    if (!backendNames().includes(env)) throw new Error(`CUBIT_BACKEND must name a registered backend (${backendNames().map((n) => `'${n}'`).join(', ')}), got '${env}'`);
    return backendByName(env);
  }
  if (loadNativeAddon()) return backendByName('native');
  if (!warned) {
    warned = true;
    process.emitWarning(`cubit: native backend unavailable (${nativeLoadError()}); using the slower reference backend`);
  }
  return backendByName('reference');
}

setDefaultBackendChooser(chooseDefault);

export { NativeBackend, ReferenceBackend };
