// Everything a query reads is covered by verify: an edit of any table of the file (a row
// deleted, repointed, changed or added; a table swapped for a view) either makes a keyed
// verify with the saved head fail, or leaves every query's answer as it was. So a query can
// never show less (or other) than the chain holds while verify says ok.
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteAuditLog, type AuditRecord, type MessageLogQuery } from '../src/audit/index.js';
import { main } from '../src/cli/main.js';
import { attemptMaker, tempDirPerTest } from './support/audit-records.js';

const dir = tempDirPerTest('switchboard-query-verify-');
const KEY = 'k'.repeat(32);
const AGENTS = ['admin', 'vault', 'mallory', 'helper'];

/** A keyed log of several batches: attempts, outcomes (with and without a conversation), approvals, replies. */
function writeLog(path: string): { head: { seq: number; hash: string }; conversations: string[] } {
  const attempt = attemptMaker();
  const log = new SqliteAuditLog({ path, key: KEY });
  const conversations: string[] = [];
  for (let batch = 0; batch < 4; batch++) {
    const records: AuditRecord[] = [];
    for (let i = 0; i < 3; i++) {
      const from = AGENTS[(batch + i) % AGENTS.length]!;
      const to = AGENTS[(batch + i + 1) % AGENTS.length]!;
      const a = attempt({ from, to, decision: i === 2 ? 'pending' : 'allowed', outcome: i === 2 ? undefined : 'delivered' } as never);
      conversations.push(a.conversationId);
      records.push(a);
      if (i === 0) records.push({ kind: 'outcome', ts: a.ts + 1, messageId: a.messageId, to, from, outcome: 'failed', code: 'TIMEOUT', conversationId: a.conversationId });
      if (i === 1) records.push({ kind: 'outcome', ts: a.ts + 1, messageId: a.messageId, to, outcome: 'cancelled', code: 'CLOSED' }); // no conversation: indexed by message
      if (i === 2) records.push({ kind: 'approval', ts: a.ts + 1, messageId: a.messageId, to, from, approval: 'rejected', decidedBy: 'op', policyVersion: 1, conversationId: a.conversationId });
    }
    log.append(records);
  }
  const head = log.head();
  log.close();
  return { head, conversations };
}

function queries(conversations: readonly string[]): MessageLogQuery[] {
  return [{}, { afterSeq: 0, limit: 1000 }, { beforeSeq: 20 }, ...AGENTS.map((agentId) => ({ agentId })), ...conversations.map((conversationId) => ({ conversationId }))];
}

/** Every answer, or the error that refused to answer. */
function answers(path: string, qs: readonly MessageLogQuery[]): unknown[] {
  const log = new SqliteAuditLog({ path, readonly: true });
  try {
    return qs.map((q) => {
      try {
        return log.query(q);
      } catch (e) {
        return `refused: ${(e as Error).message}`;
      }
    });
  } finally {
    log.close();
  }
}

/** Verify as an operator would: keyed, with the head kept elsewhere. */
function verifies(path: string, head: { seq: number; hash: string }): boolean {
  let log: SqliteAuditLog;
  try {
    log = new SqliteAuditLog({ path, key: KEY, readonly: true });
  } catch {
    return false; // refused at open (the key check or the chain's metadata was edited)
  }
  try {
    return log.verify({ head }).ok;
  } finally {
    log.close();
  }
}

type Row = Record<string, unknown>;

/** Each edit of one table: SQL and its arguments, run on a copy of the file. */
function editsOf(db: Database.Database, table: string): { what: string; sql: string; args: unknown[] }[] {
  const rows = db.prepare(`SELECT * FROM ${table}`).all() as Row[];
  const columns = (db.prepare(`SELECT name FROM pragma_table_info(?)`).pluck().all(table) as string[]);
  const match = (r: Row) => ({ where: columns.map((c) => `${c} IS ?`).join(' AND '), args: columns.map((c) => r[c]) });
  const edits: { what: string; sql: string; args: unknown[] }[] = [];
  rows.forEach((r, i) => {
    const m = match(r);
    edits.push({ what: `delete ${table} row ${i}`, sql: `DELETE FROM ${table} WHERE ${m.where}`, args: m.args });
    for (const c of columns) {
      const other = rows.find((o) => o[c] !== r[c] && !(Buffer.isBuffer(o[c]) && Buffer.isBuffer(r[c]) && o[c].equals(r[c])));
      if (other !== undefined) edits.push({ what: `repoint ${table}.${c} of row ${i}`, sql: `UPDATE OR IGNORE ${table} SET ${c} = ? WHERE ${m.where}`, args: [other[c], ...m.args] });
      if (typeof r[c] === 'number') edits.push({ what: `${table}.${c} + 1 of row ${i}`, sql: `UPDATE OR IGNORE ${table} SET ${c} = ${c} + 1 WHERE ${m.where}`, args: m.args });
    }
  });
  edits.push({ what: `empty ${table}`, sql: `DELETE FROM ${table}`, args: [] });
  if (columns.includes('first_seq')) {
    // The table swapped for a view that hides part of it.
    edits.push({ what: `${table} as a view`, sql: `ALTER TABLE ${table} RENAME TO ${table}_real; CREATE VIEW ${table} AS SELECT * FROM ${table}_real WHERE first_seq % 2 = 0`, args: [] });
  }
  return edits;
}

describe('SqliteAuditLog#verify() and what queries read', () => {
  it('an edit of any table either fails a keyed verify with the head, or changes no query\'s answer', () => {
    const path = join(dir.path, 'audit.db');
    const { head, conversations } = writeLog(path);
    const qs = queries(conversations);
    const before = answers(path, qs);
    expect(verifies(path, head)).toBe(true);
    const db = new Database(path, { readonly: true });
    const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").pluck().all() as string[];
    const edits = tables.flatMap((t) => editsOf(db, t).map((e) => ({ ...e, table: t })));
    db.close();
    expect(tables).toEqual(expect.arrayContaining(['audit_batch', 'audit_slice', 'audit_conversation', 'audit_message', 'audit_meta']));
    const caught = new Set<string>();
    let n = 0;
    for (const e of edits) {
      const copy = join(dir.path, `edit-${n++}.db`);
      copyFileSync(path, copy);
      const w = new Database(copy);
      const stmt = e.args.length > 0 ? w.prepare(e.sql) : undefined;
      if (stmt !== undefined) stmt.run(...e.args);
      else w.exec(e.sql);
      w.close();
      if (verifies(copy, head)) expect(answers(copy, qs), `${e.what}: verify says ok, so the queries must not change`).toEqual(before);
      else caught.add(e.table);
    }
    // Every table a query reads had an edit that mattered, and verify caught it. The durable
    // approvals' tables (held payloads, kept replies) are read by restore and result(), which
    // check them against the chained rows themselves; no query shows them.
    const queried = tables.filter((t) => t !== 'approval_hold' && t !== 'kept_reply');
    expect([...caught].sort()).toEqual([...queried].sort());
  });

  it('switchboard verify fails once the agent index is edited so that switchboard log --agent vault shows nothing', () => {
    const path = join(dir.path, 'audit.db');
    const { head } = writeLog(path);
    const log = (args: string[]) => {
      const out: string[] = [];
      const code = main(args, { out: (l) => out.push(l), err: (l) => out.push(l), env: { SWITCHBOARD_AUDIT_KEY: KEY } });
      return { code, out };
    };
    expect(log(['log', path, '--agent', 'vault']).out.length).toBeGreaterThan(1);
    const w = new Database(path);
    w.prepare('DELETE FROM audit_slice WHERE agent = ?').run('vault');
    w.close();
    expect(log(['log', path, '--agent', 'vault']).out.length).toBeLessThanOrEqual(1); // the lie
    const verdict = log(['verify', path, '--head', `${head.seq}:${head.hash}`]);
    expect(verdict.code).toBe(1);
    expect(verdict.out.join('\n')).toMatch(/not indexed under its agent "vault"/);
  });
});
