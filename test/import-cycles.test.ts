// src/ has no import cycles: data flows one way (handle → pipeline → journal/ledger/delivery → leaves).
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return /\.tsx?$/.test(e.name) && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Relative imports of one file (type-only ones too: a type cycle is still a knot), as absolute .ts paths. */
export function importsOf(file: string, text: string): string[] {
  const found: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;
  for (const m of text.matchAll(re)) {
    const spec = (m[1] ?? m[2])!;
    found.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')).replace(/\.jsx$/, '.tsx'));
  }
  return found;
}

/** Every cycle found by a depth-first walk, each as a list of paths relative to src/. */
export function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const walk = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next].map((p) => relative(SRC, p)));
      else if (state.get(next) === undefined) walk(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) walk(node);
  return cycles;
}

describe('src/ imports', () => {
  it('has no import cycles', () => {
    const graph = new Map<string, string[]>();
    for (const file of sources(SRC)) graph.set(file, importsOf(file, readFileSync(file, 'utf8')));
    expect(graph.size).toBeGreaterThan(20);
    expect(findCycles(graph)).toEqual([]);
  });

  it('the cycle finder finds a cycle when there is one', () => {
    const a = join(SRC, 'a.ts');
    const b = join(SRC, 'b.ts');
    expect(findCycles(new Map([[a, [b]], [b, [a]]]))).toEqual([['a.ts', 'b.ts', 'a.ts']]);
    expect(importsOf(a, "import type { X } from './b.js';\nexport { Y } from '../c/d.js';")).toEqual([b, resolve(SRC, '../c/d.ts')]);
  });

  it('nothing under src/pipeline imports the orchestrator, the handle or the public index', () => {
    for (const file of sources(join(SRC, 'pipeline'))) {
      const bad = importsOf(file, readFileSync(file, 'utf8')).filter((p) => ['orchestrator.ts', 'agent.ts', 'index.ts'].includes(relative(SRC, p)));
      expect({ file: relative(SRC, file), bad }).toEqual({ file: relative(SRC, file), bad: [] });
    }
  });
});
