#!/usr/bin/env node
// Builds the native CPU backend (build/Release/cubit_native.node) with node-gyp, which npm ships.
// Runs as the package's install script. A failed build is not fatal: the library then falls back
// to the reference backend and says so once when it loads.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const force = process.argv.includes('--force');
const target = path.join(root, 'build', 'Release', 'cubit_native.node');
if (!force && process.env.CUBIT_SKIP_NATIVE_BUILD) process.exit(0);

function findNodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  const require = createRequire(import.meta.url);
  for (const base of [root, path.dirname(process.execPath) + '/../lib/node_modules/npm']) {
    try { return require.resolve('node-gyp/bin/node-gyp.js', { paths: [base] }); } catch { /* try next */ }
  }
  const guess = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  return existsSync(guess) ? guess : null;
}

const gyp = findNodeGyp();
if (!gyp) {
  console.warn('cubit: node-gyp not found; the native backend was not built (the reference backend will be used).');
  process.exit(0);
}
// Build against the headers of the running Node when they are installed beside it (as on Debian's
// and the official builds): node-gyp would otherwise try to download them, which fails offline.
const args = [gyp, 'rebuild', '--release'];
const prefix = path.dirname(path.dirname(process.execPath));
if (!process.env.npm_config_nodedir && existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0 || !existsSync(target)) {
  console.warn('cubit: building the native backend failed; the reference backend will be used.');
  process.exit(force ? 1 : 0);
}
