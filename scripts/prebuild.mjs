#!/usr/bin/env node
// Runs at `prepack` (npm pack, npm publish), after scripts/build.mjs: puts the native addon built
// from this checkout's sources (build/Release, by `npm ci` or `npm run build:native`) into
// prebuilds/<platform>/ so the package ships it and installs need no compiler. The addon uses
// N-API only, so one binary serves every Node version the package supports. Fails if there is no
// addon or it does not load: a package must not silently ship without its fast backend. It
// reports on stderr: stdout is `npm pack --json`'s.
import { copyFileSync, existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const built = path.join(root, 'build', 'Release', 'cubit_native.node');
if (!existsSync(built)) {
  console.error(`cubit: ${built} does not exist; build the native addon (npm run build:native) before packing`);
  process.exit(1);
}
const { prebuildPlatform } = await import('../dist/backends/native/addon.js');
const platform = prebuildPlatform();
const dir = path.join(root, 'prebuilds', platform);
rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const out = path.join(dir, 'cubit_native.node');
copyFileSync(built, out);
const addon = createRequire(import.meta.url)(out);
console.error(`cubit: prebuilt native addon for ${platform}: ${path.relative(root, out)} (${(statSync(out).size / 1024).toFixed(0)} KiB, ISAs ${addon.supportedIsas().join(', ')})`);
