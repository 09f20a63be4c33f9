import { tamper } from './support/audit-tamper.js';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION, SqliteAuditLog } from '../src/audit/index.js';
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
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'audit'").pluck().get()).toBe(0);
    expect(db.prepare('SELECT count(*) FROM audit_records').pluck().get()).toBe(expected.head.seq);
    expect(db.prepare('SELECT hash FROM audit_records WHERE seq = ?').pluck().get(expected.head.seq)).toBe(expected.head.hash);
    db.close();
  });
});

import { renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { Orchestrator } from '../src/index.js';
import { STRING_CAP } from '../src/audit/index.js';
import type { AttemptRecord } from '../src/audit/index.js';

let n = 0;
const attempt = (over: Partial<AttemptRecord> = {}): AttemptRecord => ({
  kind: 'attempt',
  ts: 1_700_000_000_000,
  messageId: `m${++n}`,
  from: 'a',
  to: 'b',
  type: 'notify',
  intent: 'ping',
  payloadHash: '00'.repeat(32),
  payloadBytes: 2,
  decision: 'allowed',
  policyVersion: 1,
  outcome: 'delivered',
  conversationId: `c${n}`,
  ...over,
});

describe('lossless paging by seq', () => {
  it('reaches every one of 300 entries written in the same millisecond, newest first with beforeSeq and oldest first with afterSeq', () => {
    const log = new SqliteAuditLog();
    for (let i = 0; i < 3; i++) log.append(Array.from({ length: 100 }, () => attempt()));
    const down: number[] = [];
    for (let page = log.query({ limit: 7 }); page.length > 0; page = log.query({ limit: 7, beforeSeq: page.at(-1)!.seq })) down.push(...page.map((e) => e.seq));
    expect(down).toEqual(Array.from({ length: 300 }, (_, i) => 300 - i));
    const up: number[] = [];
    for (let page = log.query({ limit: 11, afterSeq: 0 }); page.length > 0; page = log.query({ limit: 11, afterSeq: page.at(-1)!.seq })) up.push(...page.map((e) => e.seq));
    expect(up).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(log.query({ agentId: 'a', afterSeq: 295 }).map((e) => e.seq)).toEqual([296, 297, 298, 299, 300]);
  });
});

describe('retention (maxRows)', () => {
  it('drops the oldest records beyond maxRows and verifies from the kept anchor', () => {
    const log = new SqliteAuditLog({ maxRows: 50 });
    for (let i = 0; i < 20; i++) log.append(Array.from({ length: 10 }, () => attempt()));
    const result = log.verify();
    expect(result.ok).toBe(true);
    expect(result.checked).toBeLessThanOrEqual(50);
    expect(result.anchor?.seq).toBe(200 - result.checked);
    expect(log.query({ limit: 10_000 })).toHaveLength(result.checked);
    expect(log.head().seq).toBe(200);
  });

  it('notices the oldest kept records deleted past the anchor', () => {
    const path = join(dir, 'r.db');
    const log = new SqliteAuditLog({ path, maxRows: 20 });
    for (let i = 0; i < 5; i++) log.append(Array.from({ length: 10 }, () => attempt()));
    const db = new Database(path);
    db.prepare('DELETE FROM audit_batch WHERE first_seq = (SELECT min(first_seq) FROM audit_batch)').run();
    db.close();
    expect(log.verify()).toMatchObject({ ok: false, reason: expect.stringMatching(/rows were removed from its start/) });
    log.close();
  });
});

describe('capped strings', () => {
  it('stores at most STRING_CAP characters of any string and records the original length', () => {
    const log = new SqliteAuditLog();
    const huge = 'x'.repeat(1_000_000);
    log.append([attempt({ decision: 'denied', reason: huge, causationId: huge, inReplyTo: huge, outcome: undefined as never, code: 'INVALID_ARGUMENT' })]);
    const [e] = log.query();
    expect(e?.reason).toHaveLength(STRING_CAP);
    expect(e?.inReplyTo).toHaveLength(STRING_CAP);
    expect(e?.truncated).toEqual({ reason: 1_000_000, causationId: 1_000_000, inReplyTo: 1_000_000 });
    expect(log.verify().ok).toBe(true);
  });
});

describe('anchors through the bus', () => {
  it('auditHead() names the last record and verifyAuditLog({ head }) fails once the tail is cut', async () => {
    const path = join(dir, 'bus.db');
    const heads: { seq: number; hash: string }[] = [];
    const bus = new Orchestrator({ audit: { path, worker: false, onCommit: (h) => heads.push(h) }, policies: [{ from: '*', to: '*', allow: ['notify'] }] });
    bus.register('b', { handlers: { ping: () => undefined } });
    const a = bus.register('a');
    await a.notify('b', 'ping', {});
    await a.notify('b', 'ping', {});
    const head = bus.auditHead();
    expect(head.seq).toBeGreaterThanOrEqual(2);
    expect(heads.at(-1)).toEqual(head);
    expect(bus.verifyAuditLog({ head }).ok).toBe(true);
    await bus.close();
    tamper(path, (r) => r.splice(-1));
    const reopened = new SqliteAuditLog({ path, readonly: true });
    expect(reopened.verify()).toMatchObject({ ok: true });
    expect(reopened.verify({ head })).toMatchObject({ ok: false, reason: expect.stringMatching(/rows were removed from its end/) });
    reopened.close();
  });
});

describe('anchors through the worker log', () => {
  it('calls onCommit on the main thread with the head the worker committed', async () => {
    const path = join(dir, 'worker.db');
    const heads: { seq: number; hash: string }[] = [];
    const bus = new Orchestrator({ audit: { path, onCommit: (h) => heads.push(h) }, policies: [{ from: '*', to: '*', allow: ['notify'] }] });
    bus.register('b', { handlers: { ping: () => undefined } });
    const a = bus.register('a');
    await a.notify('b', 'ping', {});
    const head = bus.auditHead();
    expect(head.seq).toBeGreaterThan(0);
    expect(heads.at(-1)).toEqual(head);
    expect(bus.verifyAuditLog({ head })).toMatchObject({ ok: true });
    expect(bus.verifyAuditLog({ head: { seq: head.seq + 5, hash: head.hash } })).toMatchObject({ ok: false });
    await bus.close();
  });
});

describe('storage identity', () => {
  for (const how of ['deleted', 'renamed over'] as const) {
    it(`fails closed with AUDIT_UNAVAILABLE and audit:error when the file is ${how}, then writes the file at the path with the break recorded`, async () => {
      const path = join(dir, `id-${how.replace(' ', '-')}.db`);
      const bus = new Orchestrator({ audit: { path, worker: false }, policies: [{ from: '*', to: '*', allow: ['notify'] }] });
      const errors: Error[] = [];
      bus.events.on('audit:error', ({ error }) => errors.push(error));
      bus.register('b', { handlers: { ping: () => undefined } });
      const a = bus.register('a');
      await a.notify('b', 'ping', {});
      const lost = bus.auditHead();
      if (how === 'deleted') {
        unlinkSync(path);
      } else {
        const other = join(dir, 'other.db');
        writeFileSync(other, '');
        renameSync(other, path);
      }
      await expect(a.notify('b', 'ping', {})).rejects.toMatchObject({ code: 'AUDIT_UNAVAILABLE' });
      expect(errors[0]?.message).toMatch(/was (deleted|replaced)/);
      await a.notify('b', 'ping', {});
      expect(bus.auditHead().seq).toBe(lost.seq + 1);
      expect(bus.verifyAuditLog()).toMatchObject({ ok: true, checked: 1, anchor: lost });
      await bus.close();
      const db = new Database(path, { readonly: true });
      const breaks = JSON.parse(db.prepare("SELECT value FROM audit_meta WHERE key = 'breaks'").pluck().get() as string);
      expect(breaks).toMatchObject([{ lostSeq: lost.seq, lostHash: lost.hash }]);
      db.close();
    });
  }
});

describe('the audit_records view', () => {
  it('shows one row per record with the v2 column names and the stored hash', () => {
    const path = join(dir, 'view.db');
    const log = new SqliteAuditLog({ path });
    log.append([attempt({ messageId: 'v1' }), { kind: 'outcome', ts: 1, messageId: 'v1', to: 'b', from: 'a', conversationId: 'c', outcome: 'failed', code: 'HANDLER_FAILED' }]);
    const head = log.head();
    log.close();
    const db = new Database(path, { readonly: true });
    const rows = db.prepare('SELECT seq, kind, message_id, sender, recipient, outcome, code, hash FROM audit_records ORDER BY seq').all();
    expect(rows).toEqual([
      { seq: 1, kind: 'attempt', message_id: 'v1', sender: 'a', recipient: 'b', outcome: 'delivered', code: null, hash: expect.stringMatching(/^[0-9a-f]{64}$/) },
      { seq: 2, kind: 'outcome', message_id: 'v1', sender: 'a', recipient: 'b', outcome: 'failed', code: 'HANDLER_FAILED', hash: head.hash },
    ]);
    db.close();
  });
});

describe('opening a file that cannot be written', () => {
  it('throws AUDIT_UNAVAILABLE at construction, saying the file is read-only', async () => {
    const { chmodSync } = await import('node:fs');
    const { execFileSync } = await import('node:child_process');
    const path = join(dir, 'ro.db');
    new SqliteAuditLog({ path }).close();
    // chmod binds everyone but root; root needs the immutable attribute.
    let undo = () => chmodSync(path, 0o644);
    if (process.getuid?.() === 0) {
      execFileSync('chattr', ['+i', path]);
      undo = () => execFileSync('chattr', ['-i', path]);
    } else {
      chmodSync(path, 0o444);
    }
    try {
      expect(() => new SqliteAuditLog({ path })).toThrow(expect.objectContaining({ code: 'AUDIT_UNAVAILABLE', message: expect.stringMatching(/cannot be written \(read-only\)/) }));
      expect(() => new Orchestrator({ audit: { path } })).toThrow(expect.objectContaining({ code: 'AUDIT_UNAVAILABLE' }));
    } finally {
      undo();
    }
  });
});

describe('schema v3 migration of a larger v2 file', () => {
  it('moves more rows than one batch holds (built with raw SQL mirroring v2), still verifying, follow-ups folded', async () => {
    const { MIGRATIONS } = await import('../src/audit/migrations.js');
    const { createDigest, encodeRow, GENESIS } = await import('../src/audit/hash-chain.js');
    const path = join(dir, 'v2-big.db');
    const db = new Database(path);
    for (const m of MIGRATIONS.slice(0, 2)) m.up(db);
    db.pragma('user_version = 2');
    db.prepare("INSERT INTO audit_meta (key, value) VALUES ('chain', 'sha256')").run();
    const cols = 'seq, kind, ts, message_id, recipient, sender, type, intent, payload_hash, payload_bytes, decision, reason, rule, policy_version, code, outcome, approval, decided_by, note, conversation_id, causation_id, in_reply_to';
    const insert = db.prepare(`INSERT INTO audit (${cols}, hash) VALUES (${cols.split(',').map(() => '?').join(', ')}, ?)`);
    const digest = createDigest();
    let prev = GENESIS;
    let seq = 0;
    db.transaction(() => {
      for (let i = 0; i < 700; i++) {
        const a = [++seq, 'attempt', i, `m${i}`, 'b', 'a', 'ask', 'x', 'ab'.repeat(32), 1, 'allowed', null, null, 1, null, 'delivered', null, null, null, `c${i}`, null, null];
        prev = digest(prev, encodeRow(a));
        insert.run([...a, prev]);
        if (i % 2 === 0) {
          const o = [++seq, 'outcome', i, `m${i}`, 'b', null, null, null, null, null, null, 'boom', null, null, 'HANDLER_FAILED', 'failed', null, null, null, null, null, null];
          prev = digest(prev, encodeRow(o));
          insert.run([...o, prev]);
        }
      }
    })();
    db.close();
    const log = new SqliteAuditLog({ path });
    expect(log.verify()).toEqual({ ok: true, checked: seq });
    expect(log.head()).toEqual({ seq, hash: prev });
    expect(log.query({ conversationId: 'c2' })[0]).toMatchObject({ messageId: 'm2', outcome: 'failed', code: 'HANDLER_FAILED' });
    expect(log.query({ conversationId: 'c3' })[0]).toMatchObject({ messageId: 'm3', outcome: 'delivered' });
    expect(log.query({ limit: 10_000 })).toHaveLength(700);
    log.close();
  });
});
