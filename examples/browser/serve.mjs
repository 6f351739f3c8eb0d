#!/usr/bin/env node
// Builds the browser example (main.ts bundled by esbuild from src/browser.ts) in memory and serves
// it with index.html on http://127.0.0.1 (a secure context, which WebGPU needs).
//   npm run example:browser [-- --port 8080]     then open the printed address
// test/browser.test.ts imports serveExample() to drive the page in headless Chromium.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The page's two files: index.html and main.js (bundled, with an inline source map). */
export async function buildExample() {
  const out = await build({
    entryPoints: [path.join(here, 'main.ts')], bundle: true, platform: 'browser', format: 'iife',
    target: 'es2022', sourcemap: 'inline', write: false, logLevel: 'silent',
  });
  return new Map([
    ['/', { type: 'text/html; charset=utf-8', body: readFileSync(path.join(here, 'index.html')) }],
    ['/main.js', { type: 'text/javascript; charset=utf-8', body: Buffer.from(out.outputFiles[0].contents) }],
  ]);
}

/** Serves the built page on host:port (port 0: any free one); resolves to its address and a close(). */
export async function serveExample({ host = '127.0.0.1', port = 0 } = {}) {
  const files = await buildExample();
  const server = http.createServer((req, res) => {
    const file = files.get(new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/index\.html$/, '/'));
    if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) { res.writeHead(404).end('not found'); return; }
    res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : file.body);
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(port, host, () => resolve(undefined)); });
  const address = server.address();
  return { url: `http://${host}:${address.port}/`, close: () => new Promise((resolve) => server.close(() => resolve(undefined))) };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : 8080;
  if (!(Number.isInteger(port) && port >= 0 && port < 65536)) {
    console.error(`serve.mjs: --port must be an integer in [0, 65535], got '${process.argv[i + 1]}'`);
    process.exit(2);
  }
  try {
    const { url } = await serveExample({ port });
    console.log(`cubit browser example: ${url}  (self-check: ${url}?selfcheck; Ctrl-C stops)`);
  } catch (e) {
    console.error(`serve.mjs: ${e.message}`);
    process.exit(1);
  }
}
