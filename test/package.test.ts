// The package as a user installs it: `npm pack` (which builds dist through prepack), the
// tarball installed into a fresh project, both entry points imported with `import` and
// `require`, one ask, and the CLI through npx. Nothing is written to this checkout: the pack
// runs in a temporary copy of the sources, and the install prefers npm's cache.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

let work: string;
let app: string;
let tarball: string;
let packageJsonBefore: string;

function sh(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' } });
}
const node = (args: string[]) => sh(process.execPath, args, app).trim();

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'switchboard-pack-'));
  const src = join(work, 'src-copy');
  mkdirSync(src);
  for (const f of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'LICENSE', 'src', 'docs']) {
    cpSync(join(root, f), join(src, f), { recursive: true });
  }
  symlinkSync(join(root, 'node_modules'), join(src, 'node_modules'), 'dir');
  packageJsonBefore = readFileSync(join(src, 'package.json'), 'utf8');
  sh('npm', ['pack', '--pack-destination', work], src);
  tarball = join(work, `agent-switchboard-${version}.tgz`);

  app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, version: '1.0.0' }));
  sh('npm', ['install', '--prefer-offline', '--no-package-lock', tarball], app);
}, 120_000);

afterAll(() => {
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  it('ships dist, the docs, README and LICENSE, with no source maps and a prepare script that builds only beside the sources', () => {
    const files = sh('tar', ['tzf', tarball], work).split('\n').filter(Boolean);
    expect(files).toContain('package/LICENSE');
    expect(files).toContain('package/dist/index.js');
    expect(files).toContain('package/dist/index.d.ts');
    expect(files).toContain('package/dist/testing/index.js');
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
    expect(files.filter((f) => f.startsWith('package/src/') || f.startsWith('package/test/'))).toEqual([]);
    // The packed manifest is the clone's, unchanged: its prepare script is a no-op without src/.
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules/agent-switchboard/package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(manifest.scripts.prepare).toMatch(/existsSync\('src'\) && /);
    expect(sh('npm', ['run', 'prepare'], join(app, 'node_modules/agent-switchboard'))).not.toContain('tsc');
  });

  it('leaves package.json of the folder it packs byte for byte as it was', () => {
    expect(readFileSync(join(work, 'src-copy/package.json'), 'utf8')).toBe(packageJsonBefore);
  });

  it('imports both entry points with import', () => {
    const out = node([
      '--input-type=module',
      '-e',
      "const m = await import('agent-switchboard'); const t = await import('agent-switchboard/testing'); console.log(typeof m.Orchestrator, typeof m.defineContracts, typeof t.createTestBus)",
    ]);
    expect(out).toBe('function function function');
  });

  it('imports the subpaths without peer dependencies, each name from its one home', () => {
    const out = node([
      '--input-type=module',
      '-e',
      "const m = await import('agent-switchboard'); const t = await import('agent-switchboard/transport'); const o = await import('agent-switchboard/operator'); const l = await import('agent-switchboard/tools'); console.log(typeof t.InProcessTransport, typeof o.ApprovalDesk, typeof l.contractJsonSchema, 'InProcessTransport' in m, 'NOOP_TELEMETRY' in m)",
    ]);
    expect(out).toBe('function function function false false');
  });

  it('requires both entry points with require() on this Node', () => {
    const out = node([
      '--no-warnings',
      '-e',
      "const m = require('agent-switchboard'); const t = require('agent-switchboard/testing'); console.log(typeof m.Orchestrator, typeof m.BusError, typeof t.createTestBus)",
    ]);
    expect(out).toBe('function function function');
  });

  it('runs a one-ask app against the installed package, audit log included', () => {
    writeFileSync(
      join(app, 'ask.mjs'),
      `import { Orchestrator } from 'agent-switchboard';
const bus = new Orchestrator({ policies: [{ from: 'user', to: 'calc', allow: ['ask'] }] });
bus.register('calc', { handlers: { add: ({ a, b }) => a + b } });
const sum = await bus.register('user').ask('calc', 'add', { a: 2, b: 3 });
console.log(JSON.stringify({ sum, verified: bus.verifyAuditLog().ok }));
await bus.close();
`,
    );
    expect(JSON.parse(node(['ask.mjs']))).toEqual({ sum: 5, verified: true });
  });

  it('names every package to install when a subpath with optional peers is imported without them', () => {
    // The fresh app installed none of the optional peers (npm leaves optional peers out).
    const out = node([
      '--input-type=module',
      '-e',
      `const report = {};
for (const s of ['console', 'nats', 'mcp', 'otel', 'ai', 'a2a']) {
  try { await import('agent-switchboard/' + s); report[s] = 'loaded'; } catch (e) { report[s] = e.code + ' ' + e.message; }
}
console.log(JSON.stringify(report));`,
    ]);
    const report = JSON.parse(out) as Record<string, string>;
    const needs: Record<string, string[]> = {
      console: ['ink', 'react'],
      nats: ['@nats-io/transport-node', '@nats-io/jetstream', '@nats-io/kv', '@nats-io/nkeys'],
      mcp: ['@modelcontextprotocol/sdk'],
      otel: ['@opentelemetry/api'],
      ai: ['ai'],
      a2a: ['@a2a-js/sdk'],
    };
    for (const [s, packages] of Object.entries(needs)) {
      expect(report[s]).toMatch(new RegExp(`^ERR_SWITCHBOARD_MISSING_PEER agent-switchboard/${s} needs `));
      for (const p of packages) expect(report[s]).toContain(`"${p}@`);
    }
  });

  it('runs the switchboard CLI through npx', () => {
    expect(sh('npx', ['--no-install', 'switchboard', '--version'], app).trim()).toBe(version);
  });
});
