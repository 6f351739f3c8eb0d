// The browser example (examples/browser/) in headless Chromium: its self-check trains a small
// Cubit model on WebGPU (SwiftShader, Chromium's software adapter) and generates from it; with
// WebGPU off, the page says so. Skipped, saying why, where Chromium is absent (CUBIT_CHROMIUM
// names another binary) or gives no WebGPU adapter, unless CUBIT_REQUIRE_WEBGPU=1 (CI) makes
// that a failure.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { serveExample } from '../examples/browser/serve.mjs';

const chromium = process.env.CUBIT_CHROMIUM ?? '/usr/bin/chromium';
const required = process.env.CUBIT_REQUIRE_WEBGPU === '1';
const missing = existsSync(chromium) ? null : `no Chromium at ${chromium} (set CUBIT_CHROMIUM, or install Debian's chromium: .ci/webgpu-sw-setup.sh)`;
if (missing && required) throw new Error(`CUBIT_REQUIRE_WEBGPU=1 but ${missing}`);
const options = missing ? { skip: missing } : {};

const headless = ['--headless=new', '--no-sandbox', '--disable-gpu-sandbox', '--disable-dev-shm-usage'];
const webgpuOn = [...headless, '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'];

let server: { url: string; close(): Promise<void> };
before(async () => { if (!missing) server = await serveExample(); });
after(async () => { await server?.close(); });

/** The value of a JavaScript expression in the page (strings keep DOM types out of the Node type check). */
async function read<T>(page: Page, expression: string): Promise<T> {
  return page.evaluate(expression) as Promise<T>;
}

async function withPage<T>(args: string[], fn: (page: Page, log: string[]) => Promise<T>, beforeLoad?: (page: Page) => Promise<void>): Promise<T> {
  const browser: Browser = await puppeteer.launch({ executablePath: chromium, args, headless: true });
  try {
    const page = await browser.newPage();
    const log: string[] = [];
    page.on('console', (m) => log.push(m.text()));
    page.on('pageerror', (e) => log.push(`pageerror: ${(e as Error).message}`));
    await beforeLoad?.(page);
    return await fn(page, log);
  } finally {
    await browser.close();
  }
}

describe('browser example (headless Chromium)', options, () => {
  test('?selfcheck trains on WebGPU (SwiftShader): the loss falls and generation gives tokens', { timeout: 180_000 }, async (t) => {
    await withPage(webgpuOn, async (page, log) => {
      await page.goto(`${server.url}?selfcheck`);
      try {
        await page.waitForFunction("document.title.startsWith('cubit selfcheck:')", { timeout: 170_000 });
      } catch (e) {
        const status = await read<string>(page, "document.getElementById('status').textContent");
        throw new Error(`${(e as Error).message}; the page says: ${status}\n${log.join('\n')}`);
      }
      // A Chromium without SwiftShader's WebGPU: the page says so; only CI insists.
      if (!required && await read(page, "document.getElementById('status').dataset.state") === 'unavailable') {
        t.skip(`${chromium} gives no WebGPU adapter: ${await read<string>(page, "document.getElementById('status').textContent")}`);
        return;
      }
      const line = log.find((l) => l.startsWith('cubit-selfcheck '));
      assert.ok(line, `no self-check line in the console:\n${log.join('\n')}`);
      const [, verdict, json] = /^cubit-selfcheck (PASS|FAIL) (.*)$/s.exec(line)!;
      const detail = JSON.parse(json) as { backend: string; steps: number; firstLoss: number; lastLoss: number; tokens: number; tokensAsked: number; seconds: number };
      assert.equal(verdict, 'PASS', `self-check failed: ${json}\n${log.join('\n')}`);
      assert.equal(await page.title(), 'cubit selfcheck: PASS');
      assert.equal(detail.backend, 'webgpu');
      assert.ok(detail.lastLoss < 0.85 * detail.firstLoss, `loss ${detail.firstLoss} → ${detail.lastLoss}`);
      assert.ok(detail.tokens > 0 && detail.tokens === detail.tokensAsked, `${detail.tokens} tokens generated of ${detail.tokensAsked}`);
      assert.equal(await read(page, "document.getElementById('status').dataset.state"), 'done');
      assert.ok((await read<string>(page, "document.getElementById('sample').textContent")).length > detail.tokens, 'the prompt and the generated text are on the page');
      t.diagnostic(`browser self-check: ${detail.steps} steps in ${detail.seconds.toFixed(1)} s, loss ${detail.firstLoss.toFixed(3)} → ${detail.lastLoss.toFixed(3)}`);
    });
  });

  test('without an adapter (WebGPU not enabled) the page says WebGPU is unavailable, and the self-check fails', { timeout: 60_000 }, async () => {
    await withPage(headless, async (page) => {
      await page.goto(`${server.url}?selfcheck`);
      await page.waitForFunction("document.title.startsWith('cubit selfcheck:')", { timeout: 50_000 });
      assert.equal(await page.title(), 'cubit selfcheck: FAIL');
      assert.equal(await read(page, "document.getElementById('status').dataset.state"), 'unavailable');
      assert.match(await read<string>(page, "document.getElementById('status').textContent"), /^WebGPU is unavailable: the browser found no GPU adapter/);
      assert.equal(await read(page, "document.getElementById('train').disabled"), true);
    });
  });

  test('without navigator.gpu the page says WebGPU is unavailable', { timeout: 60_000 }, async () => {
    await withPage(webgpuOn, async (page) => {
      await page.goto(server.url);
      await page.waitForFunction("document.getElementById('status')?.dataset.state === 'unavailable'", { timeout: 50_000 });
      assert.match(await read<string>(page, "document.getElementById('status').textContent"), /^WebGPU is unavailable: this browser has no navigator\.gpu/);
    }, (page) => page.evaluateOnNewDocument('delete Navigator.prototype.gpu').then(() => undefined));
  });
});
