// The TypeScript examples of the README and the docs must run: each ```ts block is written to a
// temporary file in the repository (so that `import … from 'cubit'` resolves to this package) and
// run with tsx; it must exit 0 and print something.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

for (const doc of ['README.md', 'docs/MIXERS.md', 'docs/MODEL.md']) {
  const text = readFileSync(path.join(root, doc), 'utf8');
  const blocks = [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  test(`${doc} has runnable TypeScript examples`, () => assert.ok(blocks.length > 0));
  blocks.forEach((code, i) => {
    test(`${doc} example ${i + 1} runs`, () => {
      const dir = mkdtempSync(path.join(root, 'test', '.example-'));
      try {
        const file = path.join(dir, 'example.ts');
        writeFileSync(file, code);
        const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: root, encoding: 'utf8', timeout: 120_000 });
        assert.equal(r.status, 0, `example ${i + 1} failed:\n${r.stderr}`);
        assert.notEqual(r.stdout.trim(), '', `example ${i + 1} printed nothing`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
