// The webgpu backend's entry: a backend from a WebGPU implementation (navigator.gpu, or Dawn from
// ./node.ts), and the registration shared by the Node and browser entries.
import { registerBackend } from '../../core/engine.ts';
import { WebGPUBackend } from './backend.ts';
import { requestDevice, type DeviceRequest } from './device.ts';

export { WebGPUBackend };
export type { AdapterSummary } from './device.ts';

/** A webgpu backend on `gpu`'s adapter (its largest limits and the features the kernels use). */
export async function createWebGPUBackend(gpu: GPU, request: DeviceRequest = {}): Promise<WebGPUBackend> {
  const { device, adapter, summary } = await requestDevice(gpu, request);
  // The backend holds the GPU and adapter objects: Dawn frees its instance when they are
  // garbage-collected, which crashes a device still in use.
  return new WebGPUBackend(device, summary, [gpu, adapter]);
}

/**
 * Registers 'webgpu' with an asynchronous set-up (`await prepareBackend('webgpu')`) that gets the
 * GPU from `source` once. Used before set-up, it says what to call.
 */
export function registerWebGPU(source: () => Promise<{ gpu: GPU; request?: DeviceRequest; onDevice?(device: GPUDevice): void }>): void {
  let backend: WebGPUBackend | null = null;
  let preparing: Promise<void> | null = null;
  registerBackend('webgpu', () => {
    if (!backend) throw new Error("the webgpu backend is not set up yet: call 'await prepareBackend(\"webgpu\")' before its first use (the CLI does this for --backend webgpu and CUBIT_BACKEND=webgpu)");
    return backend;
  }, () => (preparing ??= (async () => {
    const { gpu, request, onDevice } = await source();
    backend = await createWebGPUBackend(gpu, request);
    onDevice?.(backend.rt.device);
  })().catch((e) => { preparing = null; throw e; })));
}
