#!/usr/bin/env node
// The `cubit` command. The package ships TypeScript sources; tsx compiles them on load.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
