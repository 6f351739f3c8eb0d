// The conformance suite (conformance.ts) on the webgpu backend, and again with its fused kernels
// hidden (the composites over its core kernels). Runs where a WebGPU adapter exists: a GPU, or the
// software adapters CI installs (scripts/webgpu-env.sh); skips elsewhere, saying why.
import { test } from 'node:test';
import { registerBackend } from '../src/core/engine.ts';
import { coreOnly } from '../src/backends/core-only.ts';
import { backendByName } from '../src/index.ts';
import { conformance } from './conformance.ts';
import { webgpuUnavailable } from './webgpu-helpers.ts';

const why = await webgpuUnavailable();
if (why) {
  test('webgpu conformance', { skip: why }, () => {});
} else {
  registerBackend('webgpu-core', () => coreOnly(backendByName('webgpu')));
  conformance('webgpu', { float32Only: true });
  conformance('webgpu-core', { composites: true, float32Only: true });
}
