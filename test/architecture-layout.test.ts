// docs/architecture.md's layout lists every file of src/ with its one line, as the import
// graph is checked by test/import-cycles.test.ts: a file added, moved or deleted without
// the layout following fails here.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    return e.isDirectory() ? files(path) : [relative(ROOT, path)];
  });
}

/**
 * The paths of the first fenced block under `## Layout`: one entry per line, nested by
 * indentation; a name ending in `/` is a folder whose entries are indented below it.
 * Returns the files, and the lines that have no description.
 */
export function layoutPaths(markdown: string): { paths: string[]; undescribed: string[] } {
  const section = markdown.split(/^## Layout\s*$/m)[1];
  if (section === undefined) throw new Error('docs/architecture.md has no "## Layout" section');
  const block = /```[^\n]*\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  const stack: Array<{ indent: number; name: string }> = [];
  const paths: string[] = [];
  const undescribed: string[] = [];
  for (const line of block.split('\n')) {
    const m = /^( *)(\S+)(\s+\S.*)?$/.exec(line);
    if (m === null) continue;
    const indent = m[1]!.length;
    const name = m[2]!;
    while (stack.length > 0 && stack.at(-1)!.indent >= indent) stack.pop();
    const path = [...stack.map((s) => s.name), name].join('');
    if (name.endsWith('/')) stack.push({ indent, name });
    else {
      paths.push(path);
      if (m[3] === undefined) undescribed.push(path);
    }
  }
  return { paths, undescribed };
}

describe('docs/architecture.md', () => {
  const { paths, undescribed } = layoutPaths(readFileSync(resolve(ROOT, 'docs/architecture.md'), 'utf8'));
  const actual = files(resolve(ROOT, 'src')).sort();

  it('lists every file of src/ in its layout', () => {
    expect(actual.filter((f) => !paths.includes(f))).toEqual([]);
  });

  it('lists no file that src/ does not have', () => {
    expect(paths.filter((p) => !actual.includes(p))).toEqual([]);
  });

  it('gives each file its one line', () => {
    expect(undescribed).toEqual([]);
  });
});
