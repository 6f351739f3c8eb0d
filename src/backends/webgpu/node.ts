// WebGPU in Node: Dawn through the optional `webgpu` package, loaded only when the webgpu backend
// is first prepared (a CPU install never loads it). CUBIT_WEBGPU_ADAPTER picks Dawn's backend:
// 'vulkan' (default on Linux) or 'gles' (OpenGL ES, WebGPU compatibility mode: what a machine with
// only Mesa's llvmpipe offers). CUBIT_WEBGPU_UNSAFE=1 enables Dawn's experimental features (f16 on
// NVIDIA Vulkan, subgroup matrices), which the mixed-precision matmul needs.
import type { DeviceRequest } from './device.ts';

export interface NodeGpu { gpu: GPU; request: DeviceRequest; onDevice(device: GPUDevice): void }

export async function nodeGpu(): Promise<NodeGpu> {
  let mod: { create(flags: string[]): GPU };
  try {
    mod = (await import('webgpu')) as unknown as { create(flags: string[]): GPU };
  } catch (e) {
    throw new Error(`the webgpu backend needs the optional package 'webgpu' (Dawn), which did not load: ${(e as Error).message.split('\n')[0]} (install it with 'npm install webgpu')`);
  }
  const adapter = process.env.CUBIT_WEBGPU_ADAPTER ?? 'vulkan';
  if (adapter !== 'vulkan' && adapter !== 'gles') throw new Error(`CUBIT_WEBGPU_ADAPTER must be 'vulkan' or 'gles', got '${adapter}'`);
  const flags: string[] = [];
  if (adapter === 'gles') flags.push('backend=opengles');
  if (process.env.CUBIT_WEBGPU_UNSAFE === '1') flags.push('enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia');
  return {
    gpu: mod.create(flags),
    request: adapter === 'gles' ? { featureLevel: 'compatibility' } : {},
    // Dawn's teardown at process exit races the driver's threads (seen crashing on lavapipe):
    // destroying the device first ends its work in order.
    onDevice: (device) => { process.once('exit', () => device.destroy()); },
  };
}
