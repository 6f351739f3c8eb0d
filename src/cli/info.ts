// `cubit info`: the version, backends and machine; with a path, what a checkpoint holds.
import os from 'node:os';
import { backendNames, getBackend } from '../core/engine.ts';
import { NativeBackend } from '../backends/native/backend.ts';
import { nativeLoadError } from '../backends/native/addon.ts';
import type { Command } from './args.ts';
import { version } from './version.ts';

export const infoCommand: Command = {
  name: 'info',
  summary: 'Prints the version, the backends and the machine as JSON.',
  usage: 'info',
  options: {},
  run() {
    const b = getBackend();
    const info: Record<string, unknown> = {
      cubit: version(), node: process.version, backend: b.name, backends: backendNames(),
      cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, platform: `${process.platform}-${process.arch}`,
    };
    if (b instanceof NativeBackend) { info.threads = b.threads(); info.isa = b.addon.isa(); }
    else if (nativeLoadError()) info.nativeError = nativeLoadError();
    process.stdout.write(JSON.stringify(info, null, 2) + '\n');
    return 0;
  },
};
