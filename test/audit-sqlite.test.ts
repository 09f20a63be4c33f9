import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NullAuditLog, SCHEMA_VERSION, SqliteAuditLog } from '../src/audit/index.js';
import { createDigest } from '../src/audit/hash-chain.js';
import { tamper } from './support/audit-tamper.js';
import type { ApprovalRecord, AttemptRecord, AuditRecord, OutcomeRecord } from '../src/audit/index.js';
import { isBusError } from '../src/errors.js';

const sha256Hex = (bytes: string) => createHash('sha256').update(bytes, 'utf8').digest('hex');

let n = 0;
function attempt(over: Partial<AttemptRecord> = {}): AttemptRecord {
  n++;
  return {
    kind: 'attempt',
    ts: 1_700_000_000_000 + n,
    messageId: `m${n}`,
    from: 'research',
    to: 'writer',
    type: 'delegate',
    intent: 'summarize',
    payloadHash: sha256Hex(`{"n":${n}}`),
    payloadBytes: 7,
    decision: 'allowed',
    rule: 'research->writer',
    policyVersion: 1,
    outcome: 'delivered',
    conversationId: 'conv-1',
    ...over,
  };
}
const outcome = (a: AttemptRecord, over: Partial<OutcomeRecord> = {}): OutcomeRecord => ({
  kind: 'outcome',
  ts: a.ts + 10,
  messageId: a.messageId,
  to: a.to,
  outcome: 'replied',
  ...over,
});
const approval = (a: AttemptRecord, over: Partial<ApprovalRecord> = {}): ApprovalRecord => ({
  kind: 'approval',
  ts: a.ts + 5,
  messageId: a.messageId,
  to: a.to,
  approval: 'approved',
  decidedBy: 'alice',
  policyVersion: 1,
  ...over,
});

/** The log's own connection (faults that are per connection, like max_page_count). */
const connectionOf = (log: SqliteAuditLog) => (log as unknown as { db: Database.Database }).db;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isBusError(e) ? e.code : `not a BusError: ${String(e)}`;
  }
  return undefined;
}
function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

let dir: string;
const opened: SqliteAuditLog[] = [];
const others: Database.Database[] = [];
function open(options: ConstructorParameters<typeof SqliteAuditLog>[0] = {}): SqliteAuditLog {
  const log = new SqliteAuditLog(options);
  opened.push(log);
  return log;
}
function other(path: string): Database.Database {
  const db = new Database(path);
  others.push(db);
  return db;
}
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-audit-'));
});
afterEach(() => {
  for (const db of others.splice(0)) if (db.open) db.close();
  for (const log of opened.splice(0)) log.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('SqliteAuditLog#append() and #query()', () => {
  it('round-trips every field of an attempt into its entry', () => {
    const log = open();
    const payload = JSON.stringify({ task: 'summarize the report', pages: [1, 2, 3] });
    const a = attempt({
      ts: 1_712_345_678_901,
      messageId: 'msg_01',
      from: 'purchase',
      to: 'payment',
      type: 'ask',
      intent: 'charge',
      payloadHash: sha256Hex(payload),
      payloadBytes: Buffer.byteLength(payload),
      decision: 'denied',
      reason: 'no rule allows purchase -> payment',
      rule: 'deny-all',
      policyVersion: 7,
      code: 'POLICY_DENIED',
      conversationId: 'conv-42',
      causationId: 'msg_00',
      inReplyTo: 'msg_prev',
    });
    const { outcome: _initial, ...denied } = a;
    log.append([denied]);
    expect(log.query()).toEqual([
      {
        seq: 1,
        messageId: 'msg_01',
        ts: 1_712_345_678_901,
        from: 'purchase',
        to: 'payment',
        type: 'ask',
        intent: 'charge',
        payloadHash: sha256Hex(payload),
        payloadBytes: Buffer.byteLength(payload),
        decision: 'denied',
        reason: 'no rule allows purchase -> payment',
        rule: 'deny-all',
        policyVersion: 7,
        code: 'POLICY_DENIED',
        conversationId: 'conv-42',
        causationId: 'msg_00',
        inReplyTo: 'msg_prev',
      },
    ]);
    expect(log.query()[0]?.payloadHash).toBe(createHash('sha256').update(Buffer.from(payload)).digest('hex'));
  });

  it('leaves out the optional fields an attempt does not have', () => {
    const log = open();
    const { rule: _r, outcome: _o, ...bare } = attempt({ messageId: 'bare' });
    log.append([bare]);
    expect(Object.keys(log.query()[0] ?? {}).sort()).toEqual(
      ['seq', 'conversationId', 'decision', 'from', 'intent', 'messageId', 'payloadBytes', 'payloadHash', 'policyVersion', 'to', 'ts', 'type'].sort(),
    );
  });

  it('folds outcome rows into their entry: the latest outcome and its code win', () => {
    const log = open();
    const a = attempt({ type: 'ask' });
    log.append([a]);
    expect(log.query()[0]?.outcome).toBe('delivered');
    log.append([outcome(a, { outcome: 'failed', code: 'HANDLER_FAILED', reason: 'boom' })]);
    expect(log.query()[0]).toMatchObject({ outcome: 'failed', code: 'HANDLER_FAILED' });
    log.append([outcome(a, { outcome: 'late-reply' })]);
    const entry = log.query()[0];
    expect(entry?.outcome).toBe('late-reply');
    expect(entry?.code).toBeUndefined(); // the latest outcome carries none, and the attempt none
  });

  it("falls back to the attempt's code when the latest outcome has none", () => {
    const log = open();
    const a = attempt({ decision: 'denied', code: 'RATE_LIMITED' });
    log.append([a, outcome(a, { outcome: 'cancelled' })]);
    expect(log.query()[0]).toMatchObject({ outcome: 'cancelled', code: 'RATE_LIMITED' });
  });

  it("folds follow-ups into the admitted attempt, not into a refused repeat of its id written before them", () => {
    const log = open();
    const original = attempt({ messageId: 'replayed', outcome: 'delivered' });
    const repeat = { ...original, decision: 'denied' as const, reason: 'repeated message id', ts: original.ts + 1 };
    delete (repeat as { outcome?: unknown }).outcome;
    log.append([original, repeat, outcome(original, { outcome: 'failed', code: 'HANDLER_FAILED' })]);
    const [newest, oldest] = log.query({ conversationId: original.conversationId });
    expect(newest).toMatchObject({ decision: 'denied', reason: 'repeated message id' });
    expect(newest?.outcome).toBeUndefined();
    expect(newest?.code).toBeUndefined();
    expect(oldest).toMatchObject({ decision: 'allowed', outcome: 'failed', code: 'HANDLER_FAILED' });
  });

  it('keeps the outcomes of one message apart per recipient', () => {
    const log = open();
    const toB = attempt({ messageId: 'notify-1', type: 'notify', to: 'b' });
    const toC = attempt({ messageId: 'notify-1', type: 'notify', to: 'c' });
    log.append([toB, toC, outcome(toC, { outcome: 'failed', code: 'NO_HANDLER' })]);
    const byTo = Object.fromEntries(log.query().map((e) => [e.to, e]));
    expect(byTo.b).toMatchObject({ outcome: 'delivered' });
    expect(byTo.b?.code).toBeUndefined();
    expect(byTo.c).toMatchObject({ outcome: 'failed', code: 'NO_HANDLER' });
  });

  it('folds the approval decision and who made it into the entry', () => {
    const log = open();
    const { outcome: _o, ...held } = attempt({ decision: 'pending', from: 'purchase', to: 'payment' });
    log.append([held]);
    const before = log.query()[0];
    expect(before?.approval).toBeUndefined();
    expect(before?.outcome).toBeUndefined();
    log.append([approval(held, { approval: 'rejected', decidedBy: 'bob', note: 'too expensive' }), outcome(held, { outcome: 'failed', code: 'APPROVAL_REJECTED' })]);
    expect(log.query()[0]).toMatchObject({ decision: 'pending', approval: 'rejected', decidedBy: 'bob', outcome: 'failed', code: 'APPROVAL_REJECTED' });
  });

  it('lists entries newest first by insertion order, even when ts ties or goes backwards', () => {
    const log = open();
    log.append([attempt({ messageId: 'first', ts: 500 }), attempt({ messageId: 'second', ts: 500 })]);
    log.append([attempt({ messageId: 'third', ts: 100 })]);
    expect(log.query().map((e) => e.messageId)).toEqual(['third', 'second', 'first']);
  });

  it('filters by agentId as sender or recipient, newest first', () => {
    const log = open();
    log.append([
      attempt({ messageId: '1', from: 'a', to: 'b' }),
      attempt({ messageId: '2', from: 'b', to: 'c' }),
      attempt({ messageId: '3', from: 'c', to: 'a' }),
      attempt({ messageId: '4', from: 'c', to: 'd' }),
    ]);
    expect(log.query({ agentId: 'a' }).map((e) => e.messageId)).toEqual(['3', '1']);
    expect(log.query({ agentId: 'c' }).map((e) => e.messageId)).toEqual(['4', '3', '2']);
    expect(log.query({ agentId: 'c', limit: 2 }).map((e) => e.messageId)).toEqual(['4', '3']);
    expect(log.query({ agentId: 'nobody' })).toEqual([]);
  });

  it('filters by before (exclusive) and since (inclusive)', () => {
    const log = open();
    log.append([10, 20, 30, 40].map((ts) => attempt({ messageId: `t${ts}`, ts })));
    expect(log.query({ before: 30 }).map((e) => e.ts)).toEqual([20, 10]);
    expect(log.query({ since: 30 }).map((e) => e.ts)).toEqual([40, 30]);
    expect(log.query({ since: 20, before: 40 }).map((e) => e.ts)).toEqual([30, 20]);
    expect(log.query({ agentId: 'writer', since: 20, before: 40 }).map((e) => e.ts)).toEqual([30, 20]);
  });

  it('filters by type, decision and conversationId, alone and combined with agentId', () => {
    const log = open();
    log.append([
      attempt({ messageId: '1', type: 'ask', decision: 'allowed', conversationId: 'x' }),
      attempt({ messageId: '2', type: 'notify', decision: 'denied', conversationId: 'x' }),
      attempt({ messageId: '3', type: 'ask', decision: 'pending', conversationId: 'y', from: 'other', to: 'else' }),
      attempt({ messageId: '4', type: 'reply', decision: 'allowed', conversationId: 'y' }),
    ]);
    const ids = (q: Parameters<SqliteAuditLog['query']>[0]) => log.query(q).map((e) => e.messageId);
    expect(ids({ type: 'ask' })).toEqual(['3', '1']);
    expect(ids({ decision: 'denied' })).toEqual(['2']);
    expect(ids({ decision: 'pending' })).toEqual(['3']);
    expect(ids({ conversationId: 'y' })).toEqual(['4', '3']);
    expect(ids({ conversationId: 'y', agentId: 'writer' })).toEqual(['4']);
    expect(ids({ type: 'ask', agentId: 'research' })).toEqual(['1']);
    expect(ids({ type: 'ask', decision: 'allowed', conversationId: 'x' })).toEqual(['1']);
  });

  it('returns 50 entries by default and clamps limit to 1..10000', () => {
    const log = open();
    const batch: AuditRecord[] = [];
    for (let i = 0; i < 10_050; i++) batch.push(attempt());
    log.append(batch);
    expect(log.query()).toHaveLength(50);
    expect(log.query({ limit: 3 })).toHaveLength(3);
    expect(log.query({ limit: 0 })).toHaveLength(1);
    expect(log.query({ limit: -5 })).toHaveLength(1);
    expect(log.query({ limit: 20_000 })).toHaveLength(10_000);
    expect(log.query({ limit: 20_000, agentId: 'writer' })).toHaveLength(10_000);
  });

  it('rejects invalid filters with INVALID_ARGUMENT naming the key', () => {
    const log = open();
    const bad = (filter: unknown) => errorOf(() => log.query(filter as never));
    expect(codeOf(() => log.query({ limit: 2.5 }))).toBe('INVALID_ARGUMENT');
    expect(bad({ limit: '10' }).message).toMatch(/"limit"/);
    expect(bad({ before: Number.NaN }).message).toMatch(/"before"/);
    expect(bad({ since: 'yesterday' }).message).toMatch(/"since"/);
    expect(bad({ type: 'shout' }).message).toMatch(/"type"/);
    expect(bad({ decision: 'maybe' }).message).toMatch(/"decision"/);
    expect(bad({ agentId: '' }).message).toMatch(/"agentId"/);
    expect(bad({ conversationId: 3 }).message).toMatch(/"conversationId"/);
    expect(bad({ agent: 'writer' }).message).toMatch(/unknown query filter "agent"/);
    expect(codeOf(() => log.query({ agent: 'writer' } as never))).toBe('INVALID_ARGUMENT');
  });

  it('writes nothing of a batch when one record is invalid, and the next append works', () => {
    const log = open();
    log.append([attempt({ messageId: 'kept' })]);
    const head = log.head();
    const invalid: unknown[] = [
      { ...attempt(), decision: 'maybe' },
      { ...attempt(), intent: undefined },
      { ...attempt(), kind: 'gossip' },
      { ...outcome(attempt()), outcome: undefined },
      { ...attempt(), payloadBytes: { big: true } },
      null,
    ];
    for (const record of invalid) {
      const batch = [attempt({ messageId: 'lost-1' }), record, attempt({ messageId: 'lost-2' })] as AuditRecord[];
      const e = errorOf(() => log.append(batch));
      expect(isBusError(e) && e.code).toBe('AUDIT_UNAVAILABLE');
      expect(e.message).toMatch(/record 1 of the batch is invalid.*none of the 3 records were written/);
      expect(log.query().map((x) => x.messageId)).toEqual(['kept']);
      expect(log.head()).toEqual(head);
    }
    log.append([attempt({ messageId: 'after' })]);
    expect(log.query().map((x) => x.messageId)).toEqual(['after', 'kept']);
    expect(log.verify()).toEqual({ ok: true, checked: 2 });
  });

  it('accepts an empty batch as a no-op', () => {
    const log = open();
    log.append([]);
    expect(log.head()).toEqual({ seq: 0, hash: '0'.repeat(64) });
    expect(log.verify()).toEqual({ ok: true, checked: 0 });
  });

  it('stores strings with lone surrogates in a form that still verifies', () => {
    const log = open();
    log.append([attempt({ intent: 'bad\ud800text', reason: 'back\\udslash' })]);
    expect(log.query()[0]).toMatchObject({ intent: 'bad\ufffdtext', reason: 'back\\udslash' });
    expect(log.verify().ok).toBe(true);
  });
});

describe('SqliteAuditLog hash chain', () => {
  function seeded(path: string, options: { key?: string } = {}, rows = 5): SqliteAuditLog {
    const log = open({ path, ...options });
    for (let i = 1; i <= rows; i++) log.append([attempt({ messageId: `row${i}` })]);
    return log;
  }

  it('verifies across a close and reopen of a file, continuing the chain', () => {
    const path = join(dir, 'audit.db');
    const first = seeded(path, {}, 3);
    const head = first.head();
    first.close();
    const second = open({ path });
    expect(second.head()).toEqual(head);
    expect(second.verify()).toEqual({ ok: true, checked: 3 });
    second.append([attempt({ messageId: 'row4' }), attempt({ messageId: 'row5' })]);
    expect(second.head()?.seq).toBe(5);
    expect(second.verify()).toEqual({ ok: true, checked: 5 });
    expect(second.query().map((e) => e.messageId)).toEqual(['row5', 'row4', 'row3', 'row2', 'row1']);
  });

  it('continues the chain written by another connection to the same file', () => {
    const path = join(dir, 'audit.db');
    const a = seeded(path, {}, 2);
    const b = open({ path });
    b.append([attempt()]);
    a.append([attempt()]);
    expect(a.verify()).toEqual({ ok: true, checked: 4 });
  });

  it('names the seq of an edited row', () => {
    const path = join(dir, 'audit.db');
    const log = seeded(path);
    tamper(path, (r) => (r[2]!.line = r[2]!.line.replace('"summarize"', '"transfer_funds"')));
    expect(log.verify()).toMatchObject({ ok: false, checked: 2, firstBad: 3 });
  });

  it('names the seq of a deleted row', () => {
    const path = join(dir, 'audit.db');
    const log = seeded(path);
    tamper(path, (r) => r.splice(2, 1));
    expect(log.verify()).toMatchObject({ ok: false, checked: 2, firstBad: 3, reason: expect.stringMatching(/row 3 is missing/) });
  });

  it('names the seq of a deleted row even when the rows after it are renumbered', () => {
    const path = join(dir, 'audit.db');
    const log = seeded(path);
    tamper(path, (r) => {
      r.splice(2, 1);
      for (const x of r) if (x.seq > 3) x.seq--;
    });
    expect(log.verify()).toMatchObject({ ok: false, checked: 2, firstBad: 3 });
  });

  it('names the seq of an inserted row', () => {
    const path = join(dir, 'audit.db');
    const log = seeded(path);
    // A plausible row: a copy of row 2 (hash included) under seq 3, the rows after it renumbered.
    tamper(path, (r) => {
      for (const x of r) if (x.seq >= 3) x.seq++;
      r.splice(2, 0, { ...r[1]!, seq: 3, line: r[1]!.line.replace(/^\[2,/, '[3,') });
    });
    expect(log.verify()).toMatchObject({ ok: false, checked: 2, firstBad: 3 });
  });

  it('names a forged row appended at the end', () => {
    const path = join(dir, 'audit.db');
    const log = seeded(path, {}, 2);
    tamper(path, (r) => r.push({ ...r[1]!, seq: 3, line: r[1]!.line.replace(/^\[2,/, '[3,') }));
    expect(log.verify()).toMatchObject({ ok: false, checked: 2, firstBad: 3 });
  });

  /** Edits row `seq` and re-hashes it and every later row with plain SHA-256. */
  function rehashAttack(path: string, seq: number): void {
    const sha = createDigest();
    tamper(path, (records) => {
      let prev = records[seq - 2]!.hash;
      for (const r of records.slice(seq - 1)) {
        if (r.seq === seq) r.line = r.line.replace('"summarize"', '"transfer_funds"');
        prev = r.hash = sha(prev, r.line);
      }
    });
  }

  it('without a key, cannot catch a writer who re-hashes the chain (the documented limit)', () => {
    const path = join(dir, 'audit.db');
    const log = seeded(path);
    rehashAttack(path, 3);
    expect(log.verify()).toEqual({ ok: true, checked: 5 });
  });

  it('with a key, catches a row re-hashed with plain SHA-256', () => {
    const path = join(dir, 'audit.db');
    const log = seeded(path, { key: 'correct horse battery staple' });
    expect(log.chain).toBe('hmac-sha256');
    expect(log.verify()).toEqual({ ok: true, checked: 5 });
    rehashAttack(path, 3);
    expect(log.verify()).toMatchObject({ ok: false, checked: 2, firstBad: 3 });
  });

  it('keeps keyed and unkeyed logs apart: a key mismatch is a clear error', () => {
    const keyed = join(dir, 'keyed.db');
    seeded(keyed, { key: 'k1' }, 2).close();
    expect(errorOf(() => open({ path: keyed })).message).toMatch(/is keyed.*pass its key/);
    expect(errorOf(() => open({ path: keyed, key: 'k2' })).message).toMatch(/does not match/);
    expect(codeOf(() => open({ path: keyed, key: 'k2' }))).toBe('AUDIT_UNAVAILABLE');
    expect(open({ path: keyed, key: new TextEncoder().encode('k1') }).verify()).toEqual({ ok: true, checked: 2 });

    const plain = join(dir, 'plain.db');
    seeded(plain, {}, 1).close();
    expect(errorOf(() => open({ path: plain, key: 'k1' })).message).toMatch(/not keyed.*a key was given/);
  });

  it('lets a read-only opener query a keyed log without the key, but not verify it', () => {
    const path = join(dir, 'keyed.db');
    seeded(path, { key: 'k1' }, 2).close();
    const reader = open({ path, readonly: true });
    expect(reader.query()).toHaveLength(2);
    expect(errorOf(() => reader.verify()).message).toMatch(/key is needed/);
  });

  it('catches a truncated tail given a head kept elsewhere (and not without one)', () => {
    const path = join(dir, 'audit.db');
    const log = seeded(path);
    const kept = log.head();
    tamper(path, (r) => r.splice(3));
    expect(log.verify()).toEqual({ ok: true, checked: 3 });
    expect(log.verify({ head: kept })).toMatchObject({ ok: false, reason: expect.stringMatching(/ends at row 3 but the head given is row 5/) });
  });

  it('catches a tail rewritten after the head kept elsewhere', () => {
    const path = join(dir, 'audit.db');
    const log = seeded(path, {}, 3);
    const kept = log.head();
    tamper(path, (r) => r.splice(2));
    log.append([attempt({ messageId: 'other3' })]);
    expect(log.verify().ok).toBe(true);
    expect(log.verify({ head: kept })).toMatchObject({ ok: false, firstBad: 3, reason: expect.stringMatching(/another hash than the head given/) });
  });
});

describe('SqliteAuditLog schema versions', () => {
  it('creates the current schema and reopens without migrating again', () => {
    const path = join(dir, 'audit.db');
    open({ path }).close();
    const db = other(path);
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    const again = open({ path });
    again.append([attempt()]);
    expect(again.verify().ok).toBe(true);
  });

  it('refuses a database newer than the code, naming both versions', () => {
    const path = join(dir, 'audit.db');
    open({ path }).close();
    other(path).pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    const e = errorOf(() => open({ path }));
    expect(isBusError(e) && e.code).toBe('AUDIT_UNAVAILABLE');
    expect(e.message).toContain(`schema version ${SCHEMA_VERSION + 1}`);
    expect(e.message).toContain(`supports (${SCHEMA_VERSION})`);
    expect(errorOf(() => open({ path, readonly: true })).message).toContain(`schema version ${SCHEMA_VERSION + 1}`);
  });

  it('refuses a SQLite file that holds other tables', () => {
    const path = join(dir, 'other.db');
    other(path).exec('CREATE TABLE users (id INTEGER PRIMARY KEY)');
    expect(errorOf(() => open({ path })).message).toMatch(/not an agent-switchboard audit log/);
    expect(other(path).pragma('user_version', { simple: true })).toBe(0);
  });

  it('read-only: never creates a file, never migrates', () => {
    const missing = join(dir, 'missing.db');
    expect(codeOf(() => open({ path: missing, readonly: true }))).toBe('AUDIT_UNAVAILABLE');
    const blank = join(dir, 'blank.db');
    other(blank).close(); // an empty file
    expect(errorOf(() => open({ path: blank, readonly: true })).message).toMatch(/not an agent-switchboard audit log/);
    expect(new Database(blank, { readonly: true }).pragma('user_version', { simple: true })).toBe(0);
  });
});

describe('SqliteAuditLog fails closed and recovers', () => {
  it('throws AUDIT_UNAVAILABLE quickly while another connection holds the write lock, then works', () => {
    const path = join(dir, 'audit.db');
    const log = open({ path, busyTimeoutMs: 20 });
    log.append([attempt({ messageId: 'before' })]);
    const head = log.head();
    const locker = other(path);
    locker.exec('BEGIN IMMEDIATE');
    const started = performance.now();
    const e = errorOf(() => log.append([attempt({ messageId: 'x1' }), attempt({ messageId: 'x2' })]));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(isBusError(e) && e.code).toBe('AUDIT_UNAVAILABLE');
    expect(e.message).toMatch(/SQLITE_BUSY/);
    expect((e as Error & { cause?: unknown }).cause).toBeDefined();
    expect(log.head()).toEqual(head);
    locker.exec('ROLLBACK');
    log.append([attempt({ messageId: 'after' })]);
    locker.exec('BEGIN IMMEDIATE');
    expect(codeOf(() => log.append([attempt()]))).toBe('AUDIT_UNAVAILABLE');
    locker.exec('COMMIT');
    log.append([attempt({ messageId: 'last' })]);
    expect(log.query().map((x) => x.messageId)).toEqual(['last', 'after', 'before']);
    expect(log.verify()).toEqual({ ok: true, checked: 3 });
  });

  it('throws AUDIT_UNAVAILABLE when the database is full, writes nothing, and works once there is room', () => {
    const path = join(dir, 'audit.db');
    const log = open({ path });
    log.append([attempt({ messageId: 'before' })]);
    const db = connectionOf(log);
    db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
    const big = Array.from({ length: 200 }, () => attempt({ reason: 'x'.repeat(2000) }));
    const e = errorOf(() => log.append(big));
    expect(isBusError(e) && e.code).toBe('AUDIT_UNAVAILABLE');
    expect(e.message).toMatch(/SQLITE_FULL.*none of the 200 records were written/);
    expect(log.query().map((x) => x.messageId)).toEqual(['before']);
    expect(log.head()?.seq).toBe(1);
    db.pragma('max_page_count = 1073741823');
    log.append(big);
    expect(log.head()?.seq).toBe(201);
    expect(log.verify()).toEqual({ ok: true, checked: 201 });
  });

  it('fails closed in memory too', () => {
    const log = open();
    log.append([attempt()]);
    const db = connectionOf(log);
    db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
    expect(codeOf(() => log.append(Array.from({ length: 100 }, () => attempt({ reason: 'y'.repeat(4000) }))))).toBe('AUDIT_UNAVAILABLE');
    expect(log.verify()).toEqual({ ok: true, checked: 1 });
  });

  it('opens a current database while another connection holds the write lock', () => {
    const path = join(dir, 'audit.db');
    open({ path }).close();
    const locker = other(path);
    locker.exec('BEGIN IMMEDIATE');
    const log = open({ path, busyTimeoutMs: 10 });
    expect(log.query()).toEqual([]);
    expect(codeOf(() => log.append([attempt()]))).toBe('AUDIT_UNAVAILABLE');
    locker.exec('ROLLBACK');
    log.append([attempt()]);
  });

  it('refuses to append to a read-only log', () => {
    const path = join(dir, 'audit.db');
    open({ path }).close();
    expect(codeOf(() => open({ path, readonly: true }).append([attempt()]))).toBe('AUDIT_UNAVAILABLE');
  });
});

describe('SqliteAuditLog options and lifecycle', () => {
  it('closes idempotently; every later call throws AUDIT_UNAVAILABLE', () => {
    const log = open();
    log.close();
    log.close();
    expect(codeOf(() => log.append([attempt()]))).toBe('AUDIT_UNAVAILABLE');
    expect(codeOf(() => log.query())).toBe('AUDIT_UNAVAILABLE');
    expect(codeOf(() => log.verify())).toBe('AUDIT_UNAVAILABLE');
  });

  it('rejects a misspelled or invalid option with INVALID_ARGUMENT naming it', () => {
    expect(errorOf(() => new SqliteAuditLog({ durabilty: 'full' } as never)).message).toMatch(/^Invalid SqliteAuditLog options: unknown key "durabilty"/);
    expect(errorOf(() => new SqliteAuditLog({ durability: 'paranoid' as never })).message).toMatch(/durability: /);
    expect(errorOf(() => new SqliteAuditLog({ busyTimeoutMs: -1 })).message).toMatch(/busyTimeoutMs: /);
    expect(errorOf(() => new SqliteAuditLog({ key: '' })).message).toMatch(/key: /);
    expect(codeOf(() => new SqliteAuditLog({ path: '' }))).toBe('INVALID_ARGUMENT');
  });

  it('sets synchronous by durability and WAL for files', () => {
    const normal = open({ path: join(dir, 'n.db') });
    const full = open({ path: join(dir, 'f.db'), durability: 'full' });
    expect(connectionOf(normal).pragma('synchronous', { simple: true })).toBe(1);
    expect(connectionOf(full).pragma('synchronous', { simple: true })).toBe(2);
    expect(connectionOf(full).pragma('journal_mode', { simple: true })).toBe('wal');
    expect(connectionOf(open()).pragma('journal_mode', { simple: true })).toBe('memory');
  });

  it('reports a path it cannot open as AUDIT_UNAVAILABLE', () => {
    expect(codeOf(() => new SqliteAuditLog({ path: join(dir, 'no', 'such', 'dir', 'a.db') }))).toBe('AUDIT_UNAVAILABLE');
  });
});

describe('NullAuditLog', () => {
  it('records nothing, finds nothing, and verifies', () => {
    const log = new NullAuditLog();
    log.append([attempt()]);
    expect(log.query({ agentId: 'writer' })).toEqual([]);
    expect(log.verify()).toEqual({ ok: true, checked: 0 });
    log.close();
    log.close();
  });
});

describe('SqliteAuditLog replies as outcomes', () => {
  it("folds an allowed reply from the recipient into the ask's entry as outcome 'replied', ignoring late or foreign replies", () => {
    const log = new SqliteAuditLog({ path: ':memory:' });
    const base = { kind: 'attempt', ts: 1, payloadHash: 'h', payloadBytes: 2, policyVersion: 1, intent: 'q' } as const;
    log.append([
      { ...base, messageId: 'ask-1', from: 'a', to: 'b', type: 'ask', decision: 'allowed', outcome: 'delivered', conversationId: 'ask-1' },
      { ...base, messageId: 'ask-2', from: 'a', to: 'b', type: 'ask', decision: 'allowed', outcome: 'delivered', conversationId: 'ask-2' },
      // ask-1: answered by b.
      { ...base, messageId: 'r-1', from: 'b', to: 'a', type: 'reply', decision: 'allowed', outcome: 'delivered', conversationId: 'ask-1', inReplyTo: 'ask-1' },
      // ask-2: expired, then a late reply (denied) and a reply from someone else (not the addressee).
      { kind: 'outcome', ts: 2, messageId: 'ask-2', to: 'b', outcome: 'expired', code: 'TIMEOUT' },
      { ...base, messageId: 'r-2', from: 'b', to: 'a', type: 'reply', decision: 'denied', outcome: 'late-reply', conversationId: 'ask-2', inReplyTo: 'ask-2' },
      { ...base, messageId: 'r-3', from: 'c', to: 'a', type: 'reply', decision: 'allowed', outcome: 'delivered', conversationId: 'ask-2', inReplyTo: 'ask-2' },
    ]);
    const byId = new Map(log.query({ type: 'ask' }).map((e) => [e.messageId, e]));
    expect(byId.get('ask-1')).toMatchObject({ outcome: 'replied' });
    expect(byId.get('ask-1')?.code).toBeUndefined();
    expect(byId.get('ask-2')).toMatchObject({ outcome: 'expired', code: 'TIMEOUT' });
    log.close();
  });
});
