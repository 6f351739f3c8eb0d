// Every symbol the package root exports has a doc comment (the API reference in docs/api is built
// from them by `npm run docs`). The exports are found by following src/index.ts's export
// statements through the sources; a check against the runtime module keeps that walk honest.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as api from '../src/index.ts';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

interface Declaration { file: string; line: number; documented: boolean }

const DECLARATION = /^export\s+(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?(?:function\*?|class|interface|type|const|let|enum)\s+([A-Za-z_$][\w$]*)/;
const STAR = /^export\s+\*\s+from\s+'([^']+)'/;
const NAMED = /^export\s+(?:type\s+)?\{([^}]*)\}(?:\s+from\s+'([^']+)')?/;
const IMPORT = /^import\s+(?:type\s+)?\{([^}]*)\}\s+from\s+'([^']+)'/;

/** Statements joined onto one line where braces span several (export { a,\n b } from '…'). */
function statements(text: string): { text: string; line: number }[] {
  const lines = text.split('\n');
  const out: { text: string; line: number }[] = [];
  for (let i = 0; i < lines.length; i++) {
    let s = lines[i];
    const start = i;
    if (/^(export|import)\s+(type\s+)?\{/.test(s)) while (!s.includes('}') && i + 1 < lines.length) s += ' ' + lines[++i].trim();
    out.push({ text: s, line: start });
  }
  return out;
}

function hasDocComment(lines: string[], line: number): boolean {
  const prev = (lines[line - 1] ?? '').trim();
  if (!prev.endsWith('*/')) return false;
  for (let i = line - 1; i >= 0; i--) if (lines[i].trim().startsWith('/**')) return true; else if (!lines[i].trim().startsWith('*') && i !== line - 1) return false;
  return false;
}

const specifiers = (list: string): { from: string; as: string }[] => list.split(',').map((s) => s.trim().replace(/^type\s+/, '')).filter(Boolean)
  .map((s) => { const [from, as] = s.split(/\s+as\s+/); return { from, as: as ?? from }; });

const cache = new Map<string, Map<string, Declaration>>();

/** The names a module exports, each with where it is declared. */
function exportsOf(file: string): Map<string, Declaration> {
  const hit = cache.get(file);
  if (hit) return hit;
  const out = new Map<string, Declaration>();
  cache.set(file, out);
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const resolve = (spec: string): string => path.resolve(path.dirname(file), spec);
  const imports = new Map<string, { from: string; file: string }>();
  for (const s of statements(text)) {
    const m = IMPORT.exec(s.text);
    if (m) for (const sp of specifiers(m[1])) imports.set(sp.as, { from: sp.from, file: resolve(m[2]) });
  }
  const local = (name: string): Declaration | undefined => {
    const imp = imports.get(name);
    if (imp) return exportsOf(imp.file).get(imp.from);
    const i = lines.findIndex((l) => DECLARATION.exec(l)?.[1] === name);
    return i < 0 ? undefined : { file, line: i, documented: hasDocComment(lines, i) };
  };
  for (const s of statements(text)) {
    let m = DECLARATION.exec(s.text);
    if (m) { out.set(m[1], { file, line: s.line, documented: hasDocComment(lines, s.line) }); continue; }
    m = STAR.exec(s.text);
    if (m) { for (const [k, v] of exportsOf(resolve(m[1]))) out.set(k, v); continue; }
    m = NAMED.exec(s.text);
    if (m) {
      for (const sp of specifiers(m[1])) {
        const d = m[2] ? exportsOf(resolve(m[2])).get(sp.from) : local(sp.from);
        assert.ok(d, `${path.relative(root, file)}: cannot find the declaration of '${sp.from}'`);
        out.set(sp.as, d);
      }
    }
  }
  return out;
}

const exported = exportsOf(path.join(root, 'src', 'index.ts'));

test('the export walk finds every runtime export of the package root', () => {
  const missing = Object.keys(api).filter((k) => !exported.has(k));
  assert.deepEqual(missing, []);
  assert.ok(exported.size > Object.keys(api).length, 'type-only exports are found too');
});

test('every export of the package root has a doc comment', () => {
  const undocumented = [...exported].filter(([, d]) => !d.documented).map(([name, d]) => `${name} (${path.relative(root, d.file)}:${d.line + 1})`);
  assert.deepEqual(undocumented, [], `exports without a /** doc comment */ right above their declaration:\n${undocumented.join('\n')}`);
});

test('the API reference (docs/api) has a section for every export: regenerate it with `npm run docs`', () => {
  const reference = readFileSync(path.join(root, 'docs', 'api', 'README.md'), 'utf8');
  // Headings: '### Name', '### name()' for functions, '### `abstract` Name', '### MIXER\_KINDS' (markdown escapes).
  const sections = new Set([...reference.matchAll(/^### (?:`\w+` )?([\w$\\]+)(?:\(\))?$/gm)].map((m) => m[1].replaceAll('\\', '')));
  const missing = [...exported.keys()].filter((name) => !sections.has(name));
  assert.deepEqual(missing, [], 'exports missing from docs/api/README.md: run `npm run docs` and commit docs/api');
  const stale = [...sections].filter((name) => !exported.has(name));
  assert.deepEqual(stale, [], 'docs/api/README.md describes what the package no longer exports: run `npm run docs`');
});
