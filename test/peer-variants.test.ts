// The peer versions our users run, each against the packed package in a fresh app: the
// OpenTelemetry api 1.9 with SDK 2 and api 1.10 with SDK 3, the oldest and the newest `ai`
// major, the current MCP SDK and @a2a-js/sdk 1. Each variant is installed in its own folder (.ci/peer-variants.json; .ci/run installs
// them under /opt/peers/<name>, as it installs Node versions), so the dev dependencies
// need not pin one. Under CI=true a missing folder fails; locally it is skipped, saying how
// to install it.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const PEERS = process.env['SWITCHBOARD_PEERS'] ?? '/opt/peers';
const variants = JSON.parse(readFileSync(join(root, '.ci/peer-variants.json'), 'utf8')) as Record<string, Record<string, string>>;
const installLine = (name: string) => `npm install --prefix ${join(PEERS, name)} --no-save ${Object.entries(variants[name]!).map(([p, r]) => `"${p}@${r}"`).join(' ')}`;
const present = (name: string) => existsSync(join(PEERS, name, 'node_modules'));
const ci = process.env['CI'] === 'true';
const runnable = Object.keys(variants).filter((name) => present(name) || ci);
for (const name of Object.keys(variants)) if (!present(name) && !ci) console.warn(`test/peer-variants.test.ts: variant ${name} skipped (not installed): ${installLine(name)}`);

const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
let work = '';
let base = '';

function sh(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' } });
}

beforeAll(() => {
  if (runnable.length === 0) return;
  work = mkdtempSync(join(tmpdir(), 'switchboard-peers-'));
  const src = join(work, 'src-copy');
  mkdirSync(src);
  for (const f of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'LICENSE', 'src', 'docs']) cpSync(join(root, f), join(src, f), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(src, 'node_modules'), 'dir');
  sh('npm', ['pack', '--pack-destination', work], src);
  // The package installed once, without optional peers; each variant's app copies it.
  base = join(work, 'base');
  mkdirSync(base);
  writeFileSync(join(base, 'package.json'), JSON.stringify({ name: 'app', private: true, version: '1.0.0', type: 'module' }));
  sh('npm', ['install', '--prefer-offline', '--no-package-lock', join(work, `agent-switchboard-${version}.tgz`)], base);
}, 180_000);

afterAll(() => {
  if (work !== '') rmSync(work, { recursive: true, force: true });
});

/** A fresh app: the installed package, plus the variant's packages linked from its folder. */
function appWith(name: string): string {
  const app = join(work, name);
  cpSync(base, app, { recursive: true });
  for (const pkg of Object.keys(variants[name]!)) {
    const target = join(app, 'node_modules', pkg);
    // The package's own dependencies (zod) stay the app's; a variant links only what it adds.
    if (existsSync(target)) continue;
    mkdirSync(join(target, '..'), { recursive: true });
    symlinkSync(join(PEERS, name, 'node_modules', pkg), target, 'dir');
  }
  return app;
}

function probe(name: string, file: string): Record<string, unknown> {
  const app = appWith(name);
  cpSync(join(root, 'test/fixtures/peer-probes', file), join(app, file));
  const out = execFileSync(process.execPath, [file], { cwd: app, encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

const otel = runnable.filter((n) => n.startsWith('otel-'));
const ai = runnable.filter((n) => n.startsWith('ai-'));

describe.skipIf(otel.length === 0)('agent-switchboard/otel with each OpenTelemetry variant', () => {
  it.each(otel)('%s: spans and metrics of an ask and a refusal reach the SDK', (name) => {
    expect(present(name), `variant ${name} is not installed: ${installLine(name)}`).toBe(true);
    const result = probe(name, 'otel.mjs');
    expect(result['api']).toMatch(new RegExp(`^${variants[name]!['@opentelemetry/api']!.replace('~', '').replace(/\.0$/, '').replaceAll('.', '\\.')}\\.`));
    expect(result['sum']).toBe(5);
    expect(result['refused']).toBe('POLICY_DENIED');
    expect(result['spans']).toEqual(['ask calc', 'ask calc', 'process calc']);
    expect((result['metrics'] as string[]).length).toBeGreaterThan(0);
  });
});

describe.skipIf(ai.length === 0)('agent-switchboard/ai with the oldest and the newest ai major', () => {
  it.each(ai)('%s: the mock model calls a tool through the bus and reads a failure as CODE: reason', (name) => {
    expect(present(name), `variant ${name} is not installed: ${installLine(name)}`).toBe(true);
    const result = probe(name, 'ai.mjs');
    expect(String(result['ai']).split('.')[0]).toBe(name.split('-')[1]);
    expect(result['tools']).toEqual(['ask_calculator_calculate']);
    expect(JSON.parse(String(result['allowed']))).toMatchObject({ value: { sum: 5 } });
    expect(JSON.parse(String(result['failed']))).toMatchObject({ type: 'error-text', value: expect.stringMatching(/^HANDLER_FAILED: .*no zeros/) });
  });
});

describe.skipIf(runnable.length === 0)('npm resolution', () => {
  it.each(runnable)('%s: npm installs the package beside the variant without a peer conflict', (name) => {
    expect(present(name), `variant ${name} is not installed: ${installLine(name)}`).toBe(true);
    const app = join(work, `resolve-${name}`);
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, version: '1.0.0' }));
    const specs = Object.entries(variants[name]!).map(([p, r]) => `${p}@${r}`);
    // ERESOLVE (a peer conflict) makes npm exit non-zero, which throws here with its output.
    sh('npm', ['install', '--dry-run', '--prefer-offline', '--no-package-lock', join(work, `agent-switchboard-${version}.tgz`), ...specs], app);
  });
});

describe.skipIf(!runnable.includes('mcp-current'))('agent-switchboard/mcp with the current MCP SDK', () => {
  it('lists and calls an agent\'s permitted send with the SDK\'s own client', () => {
    expect(present('mcp-current'), `variant mcp-current is not installed: ${installLine('mcp-current')}`).toBe(true);
    const result = probe('mcp-current', 'mcp.mjs');
    expect(result['tools']).toEqual(['ask_inventory_lookup']);
    expect(result['result']).toEqual({ stock: 5 });
  });
});

describe.skipIf(!runnable.includes('a2a-1'))('agent-switchboard/a2a with @a2a-js/sdk 1', () => {
  it('serves an agent on one bus and calls it from another, from the packed package', () => {
    expect(present('a2a-1'), `variant a2a-1 is not installed: ${installLine('a2a-1')}`).toBe(true);
    const result = probe('a2a-1', 'a2a.mjs');
    expect(String(result['sdk']).split('.')[0]).toBe('1');
    expect(result).toMatchObject({ quote: { eur: 4 }, from: 'shop', outcome: 'replied' });
  });
});
