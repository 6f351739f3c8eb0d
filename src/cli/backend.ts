// The --backend option of every command: any name in the backend registry (registerBackend;
// `cubit info` lists them).
import { backendNames, setBackend } from '../core/engine.ts';
import { UsageError } from './args.ts';

export const backendOption = {
  type: 'string', description: "a registered backend: 'cubit info' lists them (default: native when built)",
} as never;

/** Makes --backend's value the active backend when given; a usage error names the registered ones. */
export function useBackendOption(value: unknown): void {
  if (value === undefined || value === false) return;
  const name = String(value);
  if (!backendNames().includes(name)) throw new UsageError(`--backend must be one of ${backendNames().map((n) => `'${n}'`).join(', ')}, got '${name}'`);
  setBackend(name);
}
