// Setting up the webgpu backend for tests: prepared once per file, or the reason it is missing.
// Without an adapter (most CPU machines) the WebGPU tests skip saying why; CUBIT_REQUIRE_WEBGPU=1
// (CI, which installs software adapters) turns a missing adapter into a failure.
import { prepareBackend } from '../src/index.ts';

let prepared: Promise<string | null> | null = null;

/** null when 'webgpu' is ready, else why not (and a failure under CUBIT_REQUIRE_WEBGPU=1). */
export function webgpuUnavailable(): Promise<string | null> {
  prepared ??= prepareBackend('webgpu').then(() => null, (e: Error) => {
    if (process.env.CUBIT_REQUIRE_WEBGPU === '1') throw new Error(`CUBIT_REQUIRE_WEBGPU=1 but the webgpu backend could not be set up: ${e.message}`);
    return `no WebGPU adapter: ${e.message.split('\n')[0]}`;
  });
  return prepared;
}
