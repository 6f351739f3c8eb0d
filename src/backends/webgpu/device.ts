// Getting a device from a WebGPU implementation (navigator.gpu in a browser, Dawn in Node): the
// adapter's largest limits and the features the kernels can use, requested up front.
/** What `cubit info` and benchmarks report about the adapter in use. */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Features the device was created with (shader-f16, subgroups, …). */
  features: string[];
  limits: Record<string, number>;
  /** The adapter's subgroup sizes (0 where unknown); equal where the size is fixed (NVIDIA: 32). */
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  /** Subgroup-matrix shapes the adapter offers (Dawn's 'chromium-experimental-subgroup-matrix'). */
  subgroupMatrixConfigs?: SubgroupMatrixConfig[];
}

/** One subgroup-matrix configuration: M×K · K×N with componentType operands into resultComponentType. */
export interface SubgroupMatrixConfig { componentType: string; resultComponentType: string; M: number; N: number; K: number }

/** Features the kernels check before using (each has a plain fallback). */
const WANTED_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix'];
/** Limits raised to the adapter's maxima (the defaults are far below what GPUs offer). */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupsPerDimension',
] as const;

export interface DeviceRequest {
  powerPreference?: GPUPowerPreference;
  /** 'compatibility' for adapters that offer only WebGPU compatibility mode (OpenGL ES). */
  featureLevel?: 'core' | 'compatibility';
}

/** The adapter's device with its largest limits and wanted features; a clear error when there is none. */
export async function requestDevice(gpu: GPU, req: DeviceRequest = {}): Promise<{ device: GPUDevice; adapter: GPUAdapter; summary: AdapterSummary }> {
  const opts: GPURequestAdapterOptions & { featureLevel?: string } = { powerPreference: req.powerPreference ?? 'high-performance' };
  if (req.featureLevel) opts.featureLevel = req.featureLevel;
  const adapter = await gpu.requestAdapter(opts);
  if (!adapter) throw new Error('webgpu: no GPU adapter is available (navigator.gpu.requestAdapter returned null)');
  const features = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  const limits = adapter.limits as unknown as Record<string, number>;
  for (const name of WANTED_LIMITS) if (typeof limits[name] === 'number') requiredLimits[name] = limits[name];
  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  const info = (adapter.info ?? {}) as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number; subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[] };
  const got = device.limits as unknown as Record<string, number>;
  return {
    device,
    adapter,
    summary: {
      vendor: info.vendor ?? '', architecture: info.architecture ?? '', device: info.device ?? '', description: info.description ?? '',
      features: [...device.features].sort(),
      limits: Object.fromEntries(WANTED_LIMITS.map((n) => [n, got[n]])),
      subgroupMinSize: info.subgroupMinSize ?? 0,
      subgroupMaxSize: info.subgroupMaxSize ?? 0,
      subgroupMatrixConfigs: (info.subgroupMatrixConfigs ?? []).map((c) => ({
        componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K,
      })),
    },
  };
}
