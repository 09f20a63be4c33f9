// The public surface, as a reader of the docs meets it: every value an entry exports is named
// somewhere in README.md or docs/, and every entry has its row in the reference's table of
// entry points. test/surface/exports.txt is the surface (public-surface.test.ts keeps it equal
// to the code), so a new export without a word of documentation fails here. Likewise every
// key of the Orchestrator's options has its row in the reference's options table, every event
// its row in the events table, and every error code its row there and its section in errors.md.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../src/errors.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const docs = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
  .map((f) => readFileSync(join(root, f), 'utf8'))
  .join('\n');

/** Each entry of exports.txt (`.`, `./testing`, …) with the values it exports. */
function surface(): Array<{ entry: string; values: string[] }> {
  const text = readFileSync(join(root, 'test/surface/exports.txt'), 'utf8');
  return text
    .split(/\n\n+/)
    .filter((section) => section.trim() !== '')
    .map((section) => {
      const entry = section.split(' ')[0]!;
      const values = /^\s+values: (.*)$/m.exec(section)?.[1]?.split(', ') ?? [];
      return { entry, values };
    });
}

describe('the docs name the public surface', () => {
  it('reads every entry of test/surface/exports.txt', () => {
    const entries = surface().map((s) => s.entry);
    expect(entries).toContain('.');
    expect(entries).toContain('./testing');
    expect(entries.length).toBeGreaterThan(5);
  });

  it.each(surface())('$entry: every exported value is named in README.md or docs/', ({ values }) => {
    expect(values.filter((name) => !new RegExp(`\\b${name.replace(/\$/g, '\\$')}\\b`).test(docs))).toEqual([]);
  });

  it('every subpath has a row in the entry points table of docs/reference.md', () => {
    const reference = readFileSync(join(root, 'docs/reference.md'), 'utf8');
    const missing = surface()
      .map((s) => s.entry)
      .filter((entry) => entry !== '.')
      .filter((entry) => !reference.includes(`| \`agent-switchboard/${entry.slice(2)}\` |`));
    expect(missing).toEqual([]);
  });
});

/** Every option key of `new Orchestrator()`, dotted (`limits.maxDepth`, `audit.key`), read from the interfaces in src/options.ts. */
function optionKeys(): string[] {
  const source = readFileSync(join(root, 'src/options.ts'), 'utf8');
  const body = (name: string) => {
    const start = source.indexOf(`export interface ${name}`);
    return source.slice(start, source.indexOf('\n}\n', start));
  };
  const keys: string[] = [];
  let parent: string | undefined;
  for (const line of body('OrchestratorOptions').split('\n')) {
    const top = /^ {2}(\w+)\?: \{$/.exec(line);
    if (top !== null) parent = top[1];
    else if (/^ {2}\};?$/.test(line)) parent = undefined;
    const key = /^ {2}( {2})?(\w+)\?:/.exec(line);
    if (key === null || /\?: \{$/.test(line)) continue;
    keys.push(key[1] !== undefined && parent !== undefined ? `${parent}.${key[2]}` : key[2]!);
  }
  for (const line of body('AuditOptions').split('\n')) {
    const key = /^ {2}(\w+)\?:/.exec(line);
    if (key !== null && key[1] !== 'path') keys.push(`audit.${key[1]}`);
  }
  return keys;
}

describe('the options table of docs/reference.md', () => {
  it('reads the keys of src/options.ts, nested ones dotted', () => {
    expect(optionKeys()).toEqual(expect.arrayContaining(['policies', 'limits.maxDepth', 'timeouts.closeMs', 'audit', 'audit.key', 'approvals.ttlMs', 'telemetry']));
  });

  it('has a row for every option key', () => {
    const reference = readFileSync(join(root, 'docs/reference.md'), 'utf8');
    expect(optionKeys().filter((key) => !reference.includes(`\n| \`${key}\` |`))).toEqual([]);
  });
});

/** The event names of `BusEvents` in src/events.ts. */
function eventNames(): string[] {
  const source = readFileSync(join(root, 'src/events.ts'), 'utf8');
  const start = source.indexOf('export interface BusEvents');
  return [...source.slice(start, source.indexOf('\n}\n', start)).matchAll(/^ {2}'([a-z]+:[a-z]+)':/gm)].map((m) => m[1]!);
}

describe('the events and errors tables', () => {
  const reference = readFileSync(join(root, 'docs/reference.md'), 'utf8');

  it('docs/reference.md has a row for every event of BusEvents', () => {
    expect(eventNames()).toEqual(expect.arrayContaining(['message:sent', 'audit:error', 'agent:lost']));
    expect(eventNames().filter((name) => !reference.includes(`\n| \`${name}\` |`))).toEqual([]);
  });

  it('docs/reference.md has a row, and docs/errors.md a section, for every error code', () => {
    const errors = readFileSync(join(root, 'docs/errors.md'), 'utf8');
    const codes = Object.values(ErrorCode);
    expect(codes.filter((code) => !reference.includes(`\n| \`${code}\` |`))).toEqual([]);
    expect(codes.filter((code) => !errors.includes(`\n### \`${code}\`\n`))).toEqual([]);
  });
});
