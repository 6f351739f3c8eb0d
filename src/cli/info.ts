// `cubit info`: the version, backends and machine; with a path, what a checkpoint holds.
import os from 'node:os';
import { backendNames, getBackend } from '../core/engine.ts';
import { NativeBackend } from '../backends/native/backend.ts';
import { WebGPUBackend } from '../backends/webgpu/index.ts';
import { loadNativeAddon, nativeAddonOrigin, nativeLoadError } from '../backends/native/addon.ts';
import { summarizeCheckpoint } from '../eval/checkpoint.ts';
import { type Command, UsageError } from './args.ts';
import { backendOption, useBackendOption } from './backend.ts';
import { version } from './version.ts';

export const infoCommand: Command = {
  name: 'info',
  summary: 'Prints the version, the backends and the machine as JSON (--backend webgpu: the GPU adapter too); with a path, what a checkpoint holds.',
  usage: 'info [<run-or-checkpoint>] [--brief] [--backend name]',
  options: {
    brief: { type: 'boolean', description: 'with a checkpoint: leave out the list of tensors' } as never,
    backend: backendOption,
  },
  async run(values, positionals) {
    if (positionals.length > 1) throw new UsageError(`info: give at most one run or checkpoint folder (see 'cubit info --help')`);
    if (positionals.length === 1) {
      // No model is built: headers are checked against config.json, then each tensor is read on its
      // own to look for non-finite values (memory: the largest tensor).
      const s = summarizeCheckpoint(positionals[0]);
      const out: Record<string, unknown> = { ...s };
      if (values.brief) delete out.tensors;
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      if (s.problems.length === 0) return 0;
      // A failing exit always says why on stderr, in one line (the full list is in the JSON).
      console.error(`cubit: error: ${s.checkpoint}: ${s.problems.length} problem${s.problems.length > 1 ? 's' : ''} (first: ${s.problems[0]})`);
      return 1;
    }
    // The GPU is looked at only when asked for (--backend webgpu or CUBIT_BACKEND=webgpu): loading
    // Dawn and requesting a device takes a second or more, and plain `cubit info` stays fast.
    let setupError: string | null = null;
    try {
      await useBackendOption(values.backend);
    } catch (e) {
      if (e instanceof UsageError) throw e;
      setupError = (e as Error).message.split('\n')[0];
    }
    const asked = values.backend !== undefined ? String(values.backend) : process.env.CUBIT_BACKEND;
    const b = setupError ? null : getBackend();
    const info: Record<string, unknown> = {
      cubit: version(), node: process.version, backend: b ? b.name : null, backends: backendNames(),
      cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, platform: `${process.platform}-${process.arch}`,
    };
    // native: where the addon came from ('prebuilt' | 'built from source'), or 'unavailable' (the
    // default is then the reference backend; nativeError says why). Tried even when
    // CUBIT_BACKEND=reference chose the backend, to show what the machine has.
    const origin = loadNativeAddon() ? nativeAddonOrigin() : null;
    info.native = origin ? origin.source : 'unavailable';
    if (origin) info.nativePath = origin.path;
    if (b instanceof NativeBackend) { info.threads = b.threads(); info.isa = b.addon.isa(); }
    if (!origin) info.nativeError = nativeLoadError();
    // webgpu: the adapter (vendor, architecture, description), its features and limits, or why the
    // backend could not be set up.
    if (b instanceof WebGPUBackend) info.webgpu = { available: true, ...b.adapter };
    else if (setupError) info[asked === 'webgpu' ? 'webgpu' : 'backendError'] = { available: false, error: setupError };
    process.stdout.write(JSON.stringify(info, null, 2) + '\n');
    if (!setupError) return 0;
    console.error(`cubit: error: ${setupError.startsWith(`${asked}`) ? '' : `${asked}: `}${setupError}`);
    return 1;
  },
};
