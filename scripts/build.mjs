#!/usr/bin/env node
// Compiles src/ to dist/ (tsconfig.build.json): ESM JavaScript, declarations and source maps.
// Runs at `prepare` (npm ci / npm install in a checkout, npm pack, npm publish).
// The declarations' relative imports keep the sources' .ts extensions (TypeScript rewrites them
// in JavaScript only); they are turned into .js here so that every TypeScript version resolving
// NodeNext packages reads them, whatever its allowImportingTsExtensions.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const dist = path.join(root, 'dist');
const tsc = path.join(path.dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');

rmSync(dist, { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error('cubit: the TypeScript build failed (see above)');
  process.exit(1);
}

// from '../x.ts', import './x.ts', import('./x.ts'), declare module './x.ts' → .js; relative only.
const tsImport = /((?:\bfrom|\bimport|\bdeclare module)\s*\(?\s*["'])(\.{1,2}\/[^"']*?)\.ts(["'])/g;
let declarations = 0;
for (const entry of readdirSync(dist, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue;
  const file = path.join(entry.parentPath, entry.name);
  const text = readFileSync(file, 'utf8');
  const fixed = text.replace(tsImport, '$1$2.js$3');
  if (fixed !== text) writeFileSync(file, fixed);
  declarations++;
}
if (declarations === 0) {
  console.error('cubit: the build wrote no declarations to dist/');
  process.exit(1);
}
