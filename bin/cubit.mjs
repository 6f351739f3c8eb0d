#!/usr/bin/env node
// The `cubit` command. An installed package runs the compiled dist/; a source checkout (src/ is
// not in the package) runs the TypeScript sources through tsx, a devDependency, so that the CLI
// always matches the code being edited and tested.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
let main;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import(source.href));
} else {
  ({ main } = await import('../dist/cli/main.js'));
}
process.exitCode = await main(process.argv.slice(2));
