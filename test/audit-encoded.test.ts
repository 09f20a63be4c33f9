// Records encoded on the bus's thread (src/audit/encode.ts), the per-batch index statements,
// and the worker log's read connection: the chain stays byte-identical to hashing each
// record's canonical encoding, and queries see what was handed over before them.
import { hash } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { encodeBatches, InvalidRecordError } from '../src/audit/encode.js';
import { encodeRow, GENESIS } from '../src/audit/hash-chain.js';
import { BATCH_RECORDS } from '../src/audit/migrations.js';
import { toRow } from '../src/audit/records.js';
import { SqliteAuditLog, STRING_CAP, type AuditRecord } from '../src/audit/index.js';
import { WorkerAuditLog } from '../src/audit/worker-log.js';
import { Orchestrator } from '../src/index.js';
import { attemptMaker, tempDirPerTest } from './support/audit-records.js';

const dir = tempDirPerTest('switchboard-encoded-');
const attempt = attemptMaker({ intent: 'q', payloadHash: '00'.repeat(32), payloadBytes: 2, outcome: 'delivered' });

/** The chain as defined in hash-chain.ts, computed record by record from scratch. */
function chainOf(records: readonly AuditRecord[]): { line: string; hash: string }[] {
  let prev = GENESIS;
  return records.map((r, i) => {
    const line = encodeRow(toRow(r, i + 1));
    prev = hash('sha256', prev + line, 'hex');
    return { line, hash: prev };
  });
}

describe('records encoded before the write', () => {
  it('stores every line and hash exactly as hashing each record alone gives, across seq digit boundaries, capped strings and lone surrogates', () => {
    const records: AuditRecord[] = [];
    for (let i = 0; i < 1100; i++) records.push(attempt());
    records[5] = attempt({ intent: 'x'.repeat(STRING_CAP + 7) });
    records[98] = attempt({ reason: 'lone \ud800 surrogate', decision: 'denied', code: 'POLICY_DENIED' });
    records[999] = { kind: 'outcome', ts: 1, messageId: 'm1', to: 'b', outcome: 'failed', code: 'HANDLER_FAILED', reason: 'line\nbreak "quoted"' };
    const path = join(dir.path, 'lines.db');
    const log = new SqliteAuditLog({ path });
    log.append(records.slice(0, 9)); // seqs 1..9, then 10.. in one append crossing 99, 999
    log.append(records.slice(9));
    expect(log.verify()).toEqual({ ok: true, checked: 1100 });
    log.close();
    const db = new Database(path, { readonly: true });
    const stored = db.prepare('SELECT seq, hash FROM audit_records ORDER BY seq').raw().all() as [number, string][];
    const texts = db.prepare('SELECT records FROM audit_batch ORDER BY first_seq').pluck().all() as string[];
    db.close();
    const want = chainOf(records);
    expect(stored.map(([, h]) => h)).toEqual(want.map((w) => w.hash));
    const lines = texts.flatMap((t) => t.split('\n').slice(1, -1).map((l) => (l.endsWith(',') ? l.slice(0, -1) : l)));
    expect(lines).toEqual(want.map((w) => w.line));
  });

  it('indexes each agent, conversation and conversation-less message once per batch', () => {
    const path = join(dir.path, 'index.db');
    const log = new SqliteAuditLog({ path });
    log.append([
      attempt({ from: 'a', to: 'b', conversationId: 'conv-1' }),
      attempt({ from: 'b', to: 'a', type: 'reply', conversationId: 'conv-1' }),
      attempt({ from: 'a', to: 'c', conversationId: 'conv-2' }),
      { kind: 'outcome', ts: 2, messageId: 'lonely', to: 'd', outcome: 'expired' },
    ]);
    log.close();
    const db = new Database(path, { readonly: true });
    expect(db.prepare('SELECT agent, first_seq FROM audit_slice ORDER BY agent').raw().all()).toEqual([['a', 1], ['b', 1], ['c', 1], ['d', 1]]);
    expect(db.prepare('SELECT conversation_id FROM audit_conversation ORDER BY 1').pluck().all()).toEqual(['conv-1', 'conv-2']);
    expect(db.prepare('SELECT message_id FROM audit_message').pluck().all()).toEqual(['lonely']);
    db.close();
  });

  it(`splits records into batches of at most ${BATCH_RECORDS}, each line encoded with seq 0`, () => {
    const batches = encodeBatches(Array.from({ length: BATCH_RECORDS + 3 }, () => attempt()));
    expect(batches.map((b) => b.count)).toEqual([BATCH_RECORDS, 3]);
    expect(batches[1]!.lines.split('\n').every((l) => l.startsWith('[0,"attempt",'))).toBe(true);
  });

  it('names the first invalid record and its position', () => {
    const bad = { ...attempt(), decision: 'maybe' } as unknown as AuditRecord;
    let error: unknown;
    try {
      encodeBatches([attempt(), attempt(), bad]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidRecordError);
    expect(error).toMatchObject({ index: 2, message: expect.stringMatching(/decision "maybe"/) });
  });

  it('catches a batch whose separating comma was removed (the stored text is no longer what was hashed)', () => {
    const path = join(dir.path, 'comma.db');
    const log = new SqliteAuditLog({ path });
    log.append([attempt(), attempt(), attempt()]);
    log.close();
    const db = new Database(path);
    db.prepare("UPDATE audit_batch SET records = replace(records, '],\n[2,', ']\n[2,')").run();
    db.close();
    const again = new SqliteAuditLog({ path });
    expect(again.verify()).toMatchObject({ ok: false, firstBad: 1 });
    again.close();
  });
});

describe('the worker log', () => {
  it('refuses a chunk with an invalid record at once, naming it, and the next append works', { timeout: 30_000 }, () => {
    const log = new WorkerAuditLog({ path: join(dir.path, 'invalid.db') });
    let failure: Error | undefined;
    let called = false;
    log.appendAsync([attempt(), { ...attempt(), kind: 'bogus' } as unknown as AuditRecord], (e) => {
      called = true;
      failure = e;
    });
    expect(called).toBe(true);
    expect(failure).toMatchObject({ code: 'AUDIT_UNAVAILABLE', message: expect.stringMatching(/record 1 of the batch is invalid.*none of the 2 records were written/) });
    log.append([attempt({ messageId: 'after' })]);
    expect(log.query().map((e) => e.messageId)).toEqual(['after']);
    expect(log.verify()).toMatchObject({ ok: true, checked: 1 });
    log.close();
  });

  it('answers a query with every append handed over before it', { timeout: 30_000 }, () => {
    const log = new WorkerAuditLog({ path: join(dir.path, 'reader.db') });
    const done: (Error | undefined)[] = [];
    for (let i = 0; i < 20; i++) log.appendAsync([attempt({ messageId: `r${i}` })], (e) => done.push(e));
    const entries = log.query({ limit: 100 });
    expect(entries.map((e) => e.messageId)).toEqual(Array.from({ length: 20 }, (_, i) => `r${19 - i}`));
    expect(done).toEqual(Array.from({ length: 20 }, () => undefined));
    log.close();
  });

  it('reads the file now at the path after the one it read was replaced', { timeout: 30_000 }, () => {
    const path = join(dir.path, 'moved.db');
    const log = new WorkerAuditLog({ path });
    log.append([attempt({ messageId: 'old' })]);
    expect(log.query().map((e) => e.messageId)).toEqual(['old']);
    const other = join(dir.path, 'blank.db');
    writeFileSync(other, '');
    renameSync(other, path);
    expect(() => log.append([attempt({ messageId: 'refused' })])).toThrow(/replaced/);
    log.append([attempt({ messageId: 'new' })]);
    expect(log.query().map((e) => e.messageId)).toEqual(['new']);
    log.close();
  });

  it('serves a :memory: log from the worker when asked (audit.worker: true)', { timeout: 30_000 }, async () => {
    const bus = new Orchestrator({ audit: { path: ':memory:', worker: true }, policies: [{ from: '*', to: '*', allow: ['ask'] }] });
    bus.register('b', { handlers: { q: (p) => p } });
    await expect(bus.register('a').ask('b', 'q', { x: 1 })).resolves.toEqual({ x: 1 });
    expect(bus.getMessageLog({ agentId: 'a', type: 'ask' })).toMatchObject([{ from: 'a', to: 'b', outcome: 'replied' }]);
    expect(bus.verifyAuditLog()).toMatchObject({ ok: true, checked: 2 });
    await bus.close();
  });
});
