import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BusError, Orchestrator, SqliteAuditLog } from '../src/index.js';
import { loadSqlite, NATIVE_MISSING_MESSAGE, oldNodeMessage, setSqliteLoader } from '../src/audit/native.js';

const everything = [{ from: '*', to: '*', allow: ['ask'] as const }];

// What Node throws when an install skipped better-sqlite3's build script.
const bindingsError = new Error(
  'Could not locate the bindings file. Tried:\n → /app/node_modules/better-sqlite3/build/better_sqlite3.node\n → /app/node_modules/better-sqlite3/build/Debug/better_sqlite3.node',
);
let loads = 0;
function failingLoader(): never {
  loads++;
  throw bindingsError;
}

afterEach(() => {
  setSqliteLoader();
  loads = 0;
});

function refusal(fn: () => unknown): BusError {
  try {
    fn();
  } catch (e) {
    return e as BusError;
  }
  throw new Error('expected a refusal');
}

describe('better-sqlite3 is loaded only for SQLite logs', () => {
  it('runs a bus with audit: false without loading the native module', async () => {
    setSqliteLoader(failingLoader);
    const bus = new Orchestrator({ audit: false, policies: everything, limits: { rate: false } });
    bus.register('calc', { handlers: { add: (p) => (p as { a: number }).a + (p as { b: number }).b } });
    await expect(bus.register('user').ask('calc', 'add', { a: 1, b: 2 })).resolves.toBe(3);
    await bus.close();
    expect(loads).toBe(0);
  });

  it('refuses the default :memory: log with one sentence that says what to run, keeping the loader error as cause', () => {
    setSqliteLoader(failingLoader);
    const error = refusal(() => new Orchestrator({ policies: everything }));
    expect(error).toBeInstanceOf(BusError);
    expect(error.code).toBe('AUDIT_UNAVAILABLE');
    expect(error.message).toBe(NATIVE_MISSING_MESSAGE);
    expect(error.message).toMatch(/run `npm rebuild better-sqlite3`/);
    expect(error.message).toMatch(/audit: false/);
    expect(error.message).not.toMatch(/better_sqlite3\.node|\n/);
    expect(error.cause).toBe(bindingsError);
  });

  it('refuses a file log the same way before starting its worker', () => {
    setSqliteLoader(failingLoader);
    const dir = mkdtempSync(join(tmpdir(), 'sb-native-'));
    try {
      const error = refusal(() => new Orchestrator({ audit: { path: join(dir, 'audit.db') }, policies: everything }));
      expect(error.code).toBe('AUDIT_UNAVAILABLE');
      expect(error.message).toBe(NATIVE_MISSING_MESSAGE);
      expect(error.cause).toBe(bindingsError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a SqliteAuditLog opened directly the same way', () => {
    setSqliteLoader(failingLoader);
    const error = refusal(() => new SqliteAuditLog());
    expect(error.code).toBe('AUDIT_UNAVAILABLE');
    expect(error.message).toBe(NATIVE_MISSING_MESSAGE);
  });

  it('tries the loader again after a failure, so a rebuilt module is picked up', () => {
    setSqliteLoader(failingLoader);
    refusal(() => new SqliteAuditLog());
    refusal(() => new SqliteAuditLog());
    expect(loads).toBe(2);
  });

  it('refuses a Node older than 22 before the loader runs (on Node 20 loading the module crashes the process)', () => {
    setSqliteLoader(failingLoader);
    const error = refusal(() => loadSqlite('20.20.2'));
    expect(error.code).toBe('AUDIT_UNAVAILABLE');
    expect(error.message).toBe(oldNodeMessage('20.20.2'));
    expect(error.message).toMatch(/needs Node >= 22; this is Node 20\.20\.2/);
    expect(loads).toBe(0);
  });
});
