// The --backend option of every command: any name in the backend registry (registerBackend;
// `cubit info` lists them).
import { backendNames, prepareBackend, setBackend } from '../core/engine.ts';
import { UsageError } from './args.ts';

export const backendOption = {
  type: 'string', description: "a registered backend: 'cubit info' lists them (default: native when built)",
} as never;

/**
 * Makes --backend's value (else CUBIT_BACKEND's) the active backend, after its set-up (a GPU's is
 * asynchronous); a usage error names the registered ones.
 */
export async function useBackendOption(value: unknown): Promise<void> {
  const given = value !== undefined && value !== false;
  const name = given ? String(value) : process.env.CUBIT_BACKEND;
  if (!name) return;
  if (!backendNames().includes(name)) {
    const known = backendNames().map((n) => `'${n}'`).join(', ');
    if (given) throw new UsageError(`--backend must be one of ${known}, got '${name}'`);
    throw new UsageError(`CUBIT_BACKEND must name a registered backend (${known}), got '${name}'`);
  }
  await prepareBackend(name);
  setBackend(name);
}
