import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteAuditLog } from '../src/audit/index.js';
import type { MessageLogEntry, MessageLogQuery } from '../src/audit/index.js';

const fixture = new URL('./fixtures/audit-v2.db', import.meta.url).pathname;
const expected = JSON.parse(readFileSync(new URL('./fixtures/audit-v2.expected.json', import.meta.url), 'utf8')) as {
  head: { seq: number; hash: string };
  queries: { filter: MessageLogQuery; entries: Omit<MessageLogEntry, 'seq'>[] }[];
};
const withoutSeq = (entries: MessageLogEntry[]) => entries.map(({ seq: _seq, ...rest }) => rest);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-v3-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('schema v3 migration', () => {
  it('migrates a v2 file written by the v2 code: the chain still verifies and every query answers as before', () => {
    const path = join(dir, 'audit.db');
    copyFileSync(fixture, path);
    const log = new SqliteAuditLog({ path });
    expect(log.verify()).toEqual({ ok: true, checked: expected.head.seq });
    expect(log.head()).toEqual(expected.head);
    expect(log.verify({ head: expected.head }).ok).toBe(true);
    for (const q of expected.queries) expect(withoutSeq(log.query(q.filter)), JSON.stringify(q.filter)).toEqual(q.entries);
    log.close();
    const db = new Database(path, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(3);
    expect(db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'audit'").pluck().get()).toBe(0);
    expect(db.prepare('SELECT count(*) FROM audit_records').pluck().get()).toBe(expected.head.seq);
    expect(db.prepare('SELECT hash FROM audit_records WHERE seq = ?').pluck().get(expected.head.seq)).toBe(expected.head.hash);
    db.close();
  });
});
