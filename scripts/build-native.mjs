#!/usr/bin/env node
// The package's install script: makes sure a native CPU backend is there.
// - An installed package whose prebuilt binary (prebuilds/<platform>/, shipped inside it) loads
//   needs nothing more: done, quietly.
// - Otherwise (no prebuilt for this platform, one that does not load, or a source checkout, which
//   always compiles so the addon matches its C sources) it builds build/Release/cubit_native.node
//   with node-gyp, which npm ships.
// A failed build is not fatal: the library then falls back to the reference backend, about 100×
// slower, and says so loudly, here and once in every process that uses it.
// `--force` (npm run build:native) always builds and fails on error.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const force = process.argv.includes('--force');
const target = path.join(root, 'build', 'Release', 'cubit_native.node');
if (!force && process.env.CUBIT_SKIP_NATIVE_BUILD) process.exit(0);

const checkout = existsSync(path.join(root, 'src', 'cli', 'main.ts'));
if (!force && !checkout) {
  const loader = await import('../dist/backends/native/addon.js');
  if (loader.loadNativeAddon() && loader.nativeAddonOrigin()?.source === 'prebuilt') process.exit(0);
  console.warn(`cubit: no prebuilt native backend loads here (${loader.nativeLoadError()}); compiling it from source (30-60 s)`);
}

/** Prints the fallback warning of the library (dist/backends/index.js, or its words here in a checkout) and exits. */
async function giveUp(why) {
  const { fallbackWarning } = checkout ? { fallbackWarning: (r) => `cubit: ${r}; the reference backend (about 100× slower) will be used until \`npm run build:native\` succeeds.` }
    : await import('../dist/backends/index.js');
  console.warn(`\n${fallbackWarning(why)}\n`);
  process.exit(force ? 1 : 0);
}

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
if (!gyp) await giveUp('node-gyp was not found, so the native backend could not be compiled');
// Build against the headers of the running Node when they are installed beside it (as on Debian's
// and the official builds): node-gyp would otherwise try to download them, which fails offline.
const args = [gyp, 'rebuild', '--release'];
const prefix = path.dirname(path.dirname(process.execPath));
if (!process.env.npm_config_nodedir && existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0 || !existsSync(target)) await giveUp('compiling the native backend from source failed (see the compiler output above)');
