// The batches a query parsed are kept for the next queries (src/audit/batch-query.ts,
// BatchCache) only while the database is unchanged: every test here checks that a query
// after a change answers exactly as a log with nothing cached does.
import { renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it, vi } from 'vitest';
import { CACHED_BATCHES } from '../src/audit/batch-query.js';
import { SqliteAuditLog, type AttemptRecord, type MessageLogEntry, type MessageLogQuery, type OutcomeRecord } from '../src/audit/index.js';
import { attemptMaker, tempDirPerTest } from './support/audit-records.js';

const dir = tempDirPerTest('switchboard-qcache-');
const attempt = attemptMaker({ outcome: 'delivered' });

const outcome = (of: AttemptRecord, over: Partial<OutcomeRecord> = {}): OutcomeRecord => ({
  kind: 'outcome',
  ts: of.ts + 1,
  messageId: of.messageId,
  from: of.from,
  to: of.to,
  outcome: 'failed',
  code: 'HANDLER_FAILED',
  conversationId: of.conversationId,
  ...over,
});

/** The log's batch cache, reached the way the tests reach its connection. */
const cacheOf = (log: SqliteAuditLog) => (log as unknown as { batches: { size: number; clear(): void } }).batches;

/** What the query answers with nothing cached (the cache is emptied first, then the query runs twice: cold and warm). */
function uncached(log: SqliteAuditLog, q: MessageLogQuery): MessageLogEntry[] {
  cacheOf(log).clear();
  const cold = log.query(q);
  expect(log.query(q)).toEqual(cold);
  return cold;
}

const FILTERS: MessageLogQuery[] = [{}, { agentId: 'a' }, { agentId: 'b', limit: 3 }, { conversationId: 'c2' }, { afterSeq: 0, limit: 5 }, { beforeSeq: 40, limit: 7 }];

describe('the query cache', () => {
  it('keeps the batches read once the log was unchanged between two queries, and drops them at any append', () => {
    const path = join(dir.path, 'reads.db');
    const log = new SqliteAuditLog({ path });
    log.append([attempt(), attempt(), attempt()]);
    const records = vi.spyOn((log as unknown as { stmts: { records: { get(first: number): unknown } } }).stmts.records, 'get');
    const first = log.query({ agentId: 'a' });
    expect(records).toHaveBeenCalledTimes(1);
    expect(log.query({ agentId: 'a' })).toEqual(first);
    expect(records).toHaveBeenCalledTimes(2); // unchanged since the last query: now kept
    expect(log.query({ agentId: 'a' })).toEqual(first);
    expect(log.query({ agentId: 'a' })).toEqual(first);
    expect(records).toHaveBeenCalledTimes(2); // served from the cache
    log.append([attempt({ from: 'z', to: 'y' })]);
    expect(log.query({ agentId: 'a' })).toEqual(first);
    expect(records).toHaveBeenCalledTimes(3); // the append emptied it, and this query keeps nothing
    expect(cacheOf(log).size).toBe(0);
    expect(log.query({ agentId: 'a' })).toEqual(first);
    expect(log.query({ agentId: 'a' })).toEqual(first);
    expect(records).toHaveBeenCalledTimes(4);
    log.close();
  });

  it('shows a follow-up appended after the entry was cached', () => {
    const log = new SqliteAuditLog();
    const a = attempt();
    log.append([a, attempt()]);
    expect(log.query({ agentId: 'a' })[1]).toMatchObject({ messageId: a.messageId, outcome: 'delivered' });
    log.append([outcome(a)]);
    expect(log.query({ agentId: 'a' })[1]).toMatchObject({ messageId: a.messageId, outcome: 'failed', code: 'HANDLER_FAILED' });
  });

  it('shows a batch as edited by this connection after it was cached', () => {
    const log = new SqliteAuditLog();
    log.append([attempt(), attempt()]);
    expect(log.query().map((e) => e.intent)).toEqual(['work', 'work']);
    const db = (log as unknown as { db: Database.Database }).db;
    db.prepare(`UPDATE audit_batch SET records = replace(records, '"work"', '"rest"')`).run();
    expect(log.query().map((e) => e.intent)).toEqual(['rest', 'rest']);
  });

  it('shows a batch as edited by another connection after it was cached (a read-only reader too)', () => {
    const path = join(dir.path, 'other.db');
    const log = new SqliteAuditLog({ path });
    log.append([attempt(), attempt()]);
    const reader = new SqliteAuditLog({ path, readonly: true });
    expect(reader.query().map((e) => e.intent)).toEqual(['work', 'work']);
    expect(log.query().map((e) => e.intent)).toEqual(['work', 'work']);
    const db = new Database(path);
    db.prepare(`UPDATE audit_batch SET records = replace(records, '"work"', '"rest"')`).run();
    db.close();
    expect(reader.query().map((e) => e.intent)).toEqual(['rest', 'rest']);
    expect(log.query().map((e) => e.intent)).toEqual(['rest', 'rest']);
    // The writer's next append is seen by the reader.
    log.append([attempt({ intent: 'next' })]);
    expect(reader.query({ limit: 1 })[0]?.intent).toBe('next');
    reader.close();
    log.close();
  });

  it('never shows a batch that maxRows dropped, and answers every filter as with nothing cached', () => {
    const log = new SqliteAuditLog({ maxRows: 40 });
    for (let i = 0; i < 12; i++) {
      const batch = Array.from({ length: 10 }, (_, k) => attempt({ from: k % 2 === 0 ? 'a' : 'b', to: k % 3 === 0 ? 'a' : 'c', conversationId: `c${i % 3}` }));
      log.append(batch);
      const warm = FILTERS.map((q) => log.query({ ...q, limit: q.limit ?? 10_000 }));
      const anchor = log.verify().anchor?.seq ?? 0;
      for (const entries of warm) for (const e of entries) expect(e.seq).toBeGreaterThan(anchor);
      expect(warm).toEqual(FILTERS.map((q) => uncached(log, { ...q, limit: q.limit ?? 10_000 })));
    }
    expect(log.verify().anchor?.seq).toBeGreaterThan(60);
  });

  it('reads the new file, not the cached batches of the old one, after the file at the path was replaced', () => {
    const path = join(dir.path, 'replaced.db');
    const log = new SqliteAuditLog({ path });
    log.append([attempt({ intent: 'old' }), attempt({ intent: 'old' })]);
    expect(log.query().map((e) => e.intent)).toEqual(['old', 'old']);
    // Another file with records at the same seqs, moved over the path.
    const other = join(dir.path, 'other.db');
    const writer = new SqliteAuditLog({ path: other });
    writer.append([attempt({ intent: 'new' }), attempt({ intent: 'new' })]);
    writer.close();
    renameSync(other, path);
    // The old file's WAL and index go with it (a WAL left beside the new file would be replayed into it).
    rmSync(`${path}-wal`, { force: true });
    rmSync(`${path}-shm`, { force: true });
    expect(() => log.append([attempt()])).toThrow(/replaced by another file/);
    log.append([attempt({ intent: 'after' })]); // opens the file now at the path
    expect(log.query().map((e) => e.intent)).toEqual(['after', 'new', 'new']);
    log.close();
  });

  it(`keeps at most ${CACHED_BATCHES} batches, and a page spanning more is still whole`, () => {
    const log = new SqliteAuditLog();
    for (let i = 0; i < CACHED_BATCHES + 8; i++) log.append([attempt(), attempt({ from: 'z', to: 'y' })]);
    const all = log.query({ agentId: 'a', limit: 10_000 });
    expect(all).toHaveLength(CACHED_BATCHES + 8);
    expect(log.query({ agentId: 'a', limit: 10_000 })).toEqual(all);
    expect(cacheOf(log).size).toBe(CACHED_BATCHES);
    expect(log.query({ agentId: 'a', limit: 10_000 })).toEqual(all);
    expect(uncached(log, { agentId: 'a', limit: 10_000 })).toEqual(all);
  });
});
