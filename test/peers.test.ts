// A missing optional peer dependency is one error naming every package the subpath needs
// (src/peers.ts), raised by each subpath's `import` entry before the subpath loads.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkPeers, MISSING_PEER, SUBPATH_PEERS } from '../src/peers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, Record<string, string>>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
};
const subpaths = Object.keys(SUBPATH_PEERS);

function thrown(fn: () => void): Error & { code?: string; missing?: string[] } {
  try {
    fn();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected an error');
}

describe('optional peers', () => {
  it('lists every optional peer of package.json under a subpath, with the same range', () => {
    const optional = Object.keys(manifest.peerDependenciesMeta).filter((name) => manifest.peerDependenciesMeta[name]?.optional === true);
    const listed = subpaths.flatMap((s) => Object.keys(SUBPATH_PEERS[s]!));
    expect(new Set(listed)).toEqual(new Set(optional));
    for (const s of subpaths) for (const [name, range] of Object.entries(SUBPATH_PEERS[s]!)) expect(`${name} ${range}`).toBe(`${name} ${manifest.peerDependencies[name]}`);
  });

  it.each(subpaths)('agent-switchboard/%s: imports go through its entry, require() and types to index', (s) => {
    expect(manifest.exports[`./${s}`]).toEqual({ types: `./dist/${s}/index.d.ts`, import: `./dist/${s}/entry.js`, default: `./dist/${s}/index.js` });
  });

  it.each(subpaths)('agent-switchboard/%s: the entry exports exactly what index.ts exports', async (s) => {
    const entry = (await import(`../src/${s}/entry.ts`)) as Record<string, unknown>;
    const index = (await import(`../src/${s}/index.ts`)) as Record<string, unknown>;
    expect(Object.keys(entry).sort()).toEqual(Object.keys(index).sort());
    for (const key of Object.keys(index)) expect(entry[key], key).toBe(index[key]);
  });

  it.each(subpaths)('agent-switchboard/%s: names every package to install when none is found', (s) => {
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-peers-'));
    try {
      const error = thrown(() => checkPeers(s, pathToFileURL(join(dir, 'app.js')).href));
      expect(error.code).toBe(MISSING_PEER);
      for (const [name, range] of Object.entries(SUBPATH_PEERS[s]!)) {
        expect(error.message).toContain(name);
        expect(error.message).toContain(`"${name}@${range}"`);
      }
      expect(error.message).toContain(`agent-switchboard/${s} needs`);
      expect(error.message).toContain('npm install ');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names all four NATS packages and which are missing, when only some are', () => {
    const error = thrown(() =>
      checkPeers('nats', import.meta.url, (name) => {
        if (name === '@nats-io/kv' || name === '@nats-io/nkeys') throw new Error('not found');
        return name;
      }),
    );
    expect(error.message).toMatch(/^agent-switchboard\/nats needs @nats-io\/transport-node, @nats-io\/jetstream, @nats-io\/kv and @nats-io\/nkeys .*not found: @nats-io\/kv, @nats-io\/nkeys\. Install them: npm install "@nats-io\/transport-node@\^3\.0\.0" "@nats-io\/jetstream@\^3\.0\.0" "@nats-io\/kv@\^3\.0\.0" "@nats-io\/nkeys@\^2\.0\.0"$/);
    expect(error.missing).toEqual(['@nats-io/kv', '@nats-io/nkeys']);
  });

  it('finds peers installed beside the package (this checkout has them all)', () => {
    for (const s of subpaths) expect(() => checkPeers(s, import.meta.url)).not.toThrow();
  });
});
