// The public surface, entry by entry: every name each subpath of package.json `exports`
// offers, values and types apart. The list is a file under version control, so a change of
// the surface (a new export, a type moved to another subpath) shows as a diff in review.
// After an intended change: `npx vitest run test/public-surface.test.ts -u`.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** `./dist/web/index.js` → `src/web/index.ts`, for every subpath but package.json. */
function entries(): Array<{ subpath: string; source: string }> {
  const manifest = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, string | { import: string; default?: string }> };
  return Object.entries(manifest.exports)
    .filter(([subpath]) => subpath !== './package.json')
    .map(([subpath, target]) => {
      // The index, not a subpath's `import` entry: that one only checks the optional peers, then loads it.
      const dist = typeof target === 'string' ? target : (target.default ?? target.import);
      return { subpath, source: dist.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts') };
    });
}

/** Every name an entry file exports, from its text: `export { a, type B } from`, `export type {…}`, and declarations. */
export function exportedNames(text: string): { names: Set<string>; typeOnly: Set<string> } {
  const names = new Set<string>();
  const typeOnly = new Set<string>();
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  for (const m of code.matchAll(/export\s+(type\s+)?\{([^}]*)\}/g)) {
    for (const raw of m[2]!.split(',')) {
      const item = raw.trim();
      if (item === '') continue;
      const isType = m[1] !== undefined || item.startsWith('type ');
      const name = item.replace(/^type\s+/, '').split(/\s+as\s+/).pop()!.trim();
      names.add(name);
      if (isType) typeOnly.add(name);
    }
  }
  for (const m of code.matchAll(/export\s+(?:declare\s+)?(?:abstract\s+)?(function\*?|class|const|let|interface|type|enum)\s+([A-Za-z_$][\w$]*)/g)) {
    names.add(m[2]!);
    if (m[1] === 'interface' || m[1] === 'type') typeOnly.add(m[2]!);
  }
  return { names, typeOnly };
}

describe('the public surface', () => {
  it('is the list in test/surface/exports.txt, entry by entry', async () => {
    const sections: string[] = [];
    for (const { subpath, source } of entries()) {
      const { names, typeOnly } = exportedNames(readFileSync(resolve(ROOT, source), 'utf8'));
      const mod = (await import(resolve(ROOT, source))) as Record<string, unknown>;
      const values = Object.keys(mod).sort();
      // What runs and what the text says agree: no value the parser missed, no value it invented.
      expect([...names].filter((n) => !typeOnly.has(n)).sort(), `${subpath}: values by text vs at run time`).toEqual(values);
      const types = [...typeOnly].filter((n) => !(n in mod)).sort();
      sections.push(`${subpath} (${source})\n  values: ${values.join(', ') || '-'}\n  types:  ${types.join(', ') || '-'}`);
    }
    await expect(`${sections.join('\n\n')}\n`).toMatchFileSnapshot('./surface/exports.txt');
  });

  it('gives each name one home: no two entries export the same name', () => {
    const homes = new Map<string, string[]>();
    for (const { subpath, source } of entries()) {
      for (const name of exportedNames(readFileSync(resolve(ROOT, source), 'utf8')).names) homes.set(name, [...(homes.get(name) ?? []), subpath]);
    }
    expect([...homes].filter(([, where]) => where.length > 1)).toEqual([]);
  });
});
