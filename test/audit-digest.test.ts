// A peer node's signed digest is a record of its own kind in the audit log (schema v6): chained
// and hashed like every record, never a message entry, indexed by its signing node only.
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION, SqliteAuditLog } from '../src/audit/index.js';
import type { AttemptRecord, AuditRecord, DigestRecord, OutcomeRecord } from '../src/audit/index.js';
import { MIGRATIONS } from '../src/audit/migrations.js';
import { main } from '../src/cli/main.js';
import { InProcessTransport, type InboundPort } from '../src/pipeline/transport.js';
import { tamper } from './support/audit-tamper.js';
import { closeBuses, makeBus } from './support/helpers.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-digest-'));
});
afterEach(async () => {
  await closeBuses();
  rmSync(dir, { recursive: true, force: true });
});

const HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
let n = 0;
const attempt = (over: Partial<AttemptRecord> = {}): AttemptRecord => {
  const id = `m${++n}`;
  return { kind: 'attempt', ts: 1_700_000_000_000 + n, messageId: id, from: 'alice', to: 'bob', type: 'ask', intent: 'echo', payloadHash: '00'.repeat(32), payloadBytes: 2, decision: 'allowed', policyVersion: 1, outcome: 'delivered', conversationId: id, node: 'n2', peerNode: 'n1', proof: '{"v":1,"node":"n1","sig":"m.x"}', ...over };
};
const outcome = (a: AttemptRecord): OutcomeRecord => ({ kind: 'outcome', ts: a.ts + 1, messageId: a.messageId, to: a.to, from: a.from, outcome: 'replied', conversationId: a.conversationId, node: 'n2', peerNode: 'n1' });
const digest = (over: Partial<DigestRecord> = {}): DigestRecord => ({
  kind: 'digest',
  ts: 1_700_000_000_000 + ++n,
  digestId: `d${n}`,
  payloadHash: HASH,
  node: 'n2',
  peerNode: 'n1',
  proof: JSON.stringify({ v: 1, node: 'n1', key: 'k', sig: 's', subject: 'shop.in.bob.alice.digest', seal: 'o', line: `sb2 d d${n} 1`, covers: 'c.AAAAAAAAAAAAAAAAAAAAAA' }),
  ...over,
});

const out = () => {
  const lines: string[] = [];
  return { lines, io: { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) } };
};

/** A log of a few asks and their outcomes with digest records between them; returns the records in order. */
function written(path: string): AuditRecord[] {
  const a1 = attempt();
  const a2 = attempt({ conversationId: a1.conversationId });
  const records: AuditRecord[] = [a1, digest(), outcome(a1), a2, digest({ peerNode: 'n3' }), outcome(a2), attempt()];
  const log = new SqliteAuditLog({ path });
  log.append(records);
  log.close();
  return records;
}

describe('DigestRecord (a peer node\'s signed covers, schema v6)', () => {
  it('is chained and hashed like every record, but is never a message entry: no query (all, an agent, a conversation, a type) returns it', () => {
    const path = join(dir, 'a.db');
    const records = written(path);
    const log = new SqliteAuditLog({ path });
    expect(log.verify()).toEqual({ ok: true, checked: records.length });
    const entries = log.query({ limit: 100 });
    const asks = records.filter((r): r is AttemptRecord => r.kind === 'attempt');
    expect(entries.map((e) => e.messageId)).toEqual(asks.map((r) => r.messageId).reverse());
    expect(entries.every((e) => e.type === 'ask' && e.from === 'alice' && e.to === 'bob')).toBe(true);
    for (const q of [{ agentId: 'alice' }, { agentId: 'bob' }, { type: 'notify' as const }, { conversationId: (records[0] as AttemptRecord).conversationId }, { afterSeq: 0, limit: 100 }]) {
      expect(log.query(q).every((e) => e.type === 'ask'), JSON.stringify(q)).toBe(true);
    }
    expect(log.query({ type: 'notify' })).toEqual([]);
    // The conversation of the first ask holds both asks and nothing else; its fold still finds the outcome after the digest.
    expect(log.query({ conversationId: (records[0] as AttemptRecord).conversationId }).map((e) => [e.messageId, e.outcome])).toEqual([
      [(records[3] as AttemptRecord).messageId, 'replied'],
      [(records[0] as AttemptRecord).messageId, 'replied'],
    ]);
    log.close();
  });

  it('is read back by peerDigests(), oldest first, paged by seq and filtered by signing node, with every field kept', () => {
    const path = join(dir, 'b.db');
    const records = written(path);
    const log = new SqliteAuditLog({ path, readonly: true });
    const d1 = records[1] as DigestRecord;
    const d2 = records[4] as DigestRecord;
    expect(log.peerDigests()).toEqual([
      { seq: 2, digestId: d1.digestId, ts: d1.ts, node: 'n2', peerNode: 'n1', payloadHash: HASH, proof: d1.proof },
      { seq: 5, digestId: d2.digestId, ts: d2.ts, node: 'n2', peerNode: 'n3', payloadHash: HASH, proof: d2.proof },
    ]);
    expect(log.peerDigests({ afterSeq: 2 }).map((d) => d.seq)).toEqual([5]);
    expect(log.peerDigests({ limit: 1 }).map((d) => d.seq)).toEqual([2]);
    expect(log.peerDigests({ peerNode: 'n3' }).map((d) => d.seq)).toEqual([5]);
    expect(log.peerDigests({ since: d2.ts }).map((d) => d.seq)).toEqual([5]);
    expect(() => log.peerDigests({ agentId: 'bob' } as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: 'unknown query filter "agentId"' }));
    log.close();
  });

  it('is read back newest first with beforeSeq (as getMessageLog pages), so a restart reads only the newest; afterSeq with beforeSeq is refused', () => {
    const path = join(dir, 'b-down.db');
    written(path);
    const log = new SqliteAuditLog({ path, readonly: true });
    expect(log.peerDigests({ beforeSeq: Number.MAX_SAFE_INTEGER }).map((d) => d.seq)).toEqual([5, 2]);
    expect(log.peerDigests({ beforeSeq: 5 }).map((d) => d.seq)).toEqual([2]);
    expect(log.peerDigests({ beforeSeq: 6, limit: 1 }).map((d) => d.seq)).toEqual([5]);
    expect(log.peerDigests({ beforeSeq: 6, peerNode: 'n1' }).map((d) => d.seq)).toEqual([2]);
    expect(() => log.peerDigests({ afterSeq: 0, beforeSeq: 6 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('give one') }));
    log.close();
  });

  it('is indexed by its signing node only (no agent, conversation or message lookup row), and verify fails when that row is deleted', () => {
    const path = join(dir, 'c.db');
    written(path);
    const db = new Database(path);
    expect(db.prepare('SELECT node, first_seq FROM audit_digest ORDER BY node').raw().all()).toEqual([
      ['n1', 1],
      ['n3', 1],
    ]);
    expect(db.prepare("SELECT count(*) FROM audit_message WHERE message_id LIKE 'd%'").pluck().get()).toBe(0);
    db.prepare("DELETE FROM audit_digest WHERE node = 'n3'").run();
    db.close();
    const log = new SqliteAuditLog({ path });
    expect(log.verify()).toMatchObject({ ok: false, firstBad: 5, reason: 'row 5 is not indexed under its signing node "n3": a lookup table was edited, so queries could miss it' });
    log.close();
  });

  it('makes verify fail when a digest record is edited (another cover) or deleted', () => {
    const edited = join(dir, 'edited.db');
    written(edited);
    const deleted = join(dir, 'deleted.db');
    copyFileSync(edited, deleted);
    tamper(edited, (rs) => {
      const r = rs.find((x) => x.line.includes('"digest"'))!;
      r.line = r.line.replace('c.AAAAAAAAAAAAAAAAAAAAAA', 'c.BAAAAAAAAAAAAAAAAAAAAA');
    });
    tamper(deleted, (rs) => {
      rs.splice(rs.findIndex((x) => x.line.includes('"digest"')), 1);
    });
    const a = out();
    expect(main(['verify', edited], a.io)).toBe(1);
    expect(a.lines[0]).toBe('bad: row 2 does not match its hash: it was changed, or a row was inserted before it');
    const b = out();
    expect(main(['verify', deleted], b.io)).toBe(1);
    expect(b.lines[0]).toBe('bad: row 2 is missing (the next row is 3)');
  });

  it('refuses a digest record without a proof, signer or a payload hash of 64 hex characters, writing nothing of its batch', () => {
    const log = new SqliteAuditLog();
    for (const [bad, why] of [
      [{ proof: '' }, 'digest record has no proof'],
      [{ payloadHash: 'XYZ' }, 'digest record has no payloadHash'],
      [{ peerNode: undefined }, 'digest record has no peerNode'],
      [{ digestId: undefined }, 'digest record has no digestId'],
    ] as const) {
      expect(() => log.append([attempt(), { ...digest(), ...bad } as DigestRecord]), why).toThrow(expect.objectContaining({ code: 'AUDIT_UNAVAILABLE', message: expect.stringContaining(why) }));
    }
    expect(log.head().seq).toBe(0);
    log.close();
  });

  it('goes with its batch under retention (maxRows): its lookup row too, and the kept log verifies', () => {
    const log = new SqliteAuditLog({ maxRows: 300 });
    for (let i = 0; i < 4; i++) log.append([digest(), ...Array.from({ length: 255 }, () => attempt())]);
    expect(log.verify()).toMatchObject({ ok: true });
    const kept = log.peerDigests();
    expect(kept.length).toBeLessThan(4);
    expect(kept.every((d) => d.seq > (log.verify().anchor?.seq ?? 0))).toBe(true);
    const db = (log as unknown as { db: Database.Database }).db;
    expect(db.prepare('SELECT count(*) FROM audit_digest').pluck().get()).toBe(kept.length);
    log.close();
  });
});

describe('WorkerAuditLog#peerDigests()', () => {
  it.each([':memory:', 'file'])('reads the digest records the worker committed (%s), and query() never returns them', async (where) => {
    const { WorkerAuditLog } = await import('../src/audit/worker-log.js');
    const log = new WorkerAuditLog({ path: where === 'file' ? join(dir, 'w.db') : ':memory:' });
    try {
      const d = digest();
      await new Promise<void>((resolve, reject) => log.appendAsync([attempt(), d, attempt()], (e) => (e === undefined ? resolve() : reject(e))));
      expect(log.peerDigests()).toEqual([{ seq: 2, digestId: d.digestId, ts: d.ts, node: 'n2', peerNode: 'n1', payloadHash: HASH, proof: d.proof }]);
      expect(log.query().map((e) => e.seq)).toEqual([3, 1]);
      expect(log.verify()).toEqual({ ok: true, checked: 3 });
    } finally {
      log.close();
    }
  });
});

describe('schema v6 migration', () => {
  /** The schema the v1..v5 steps make on a blank file: `type name` → sql. */
  function v5Schema(): Map<string, string | null> {
    const db = new Database(':memory:');
    db.transaction(() => {
      for (const m of MIGRATIONS.slice(0, 5)) m.up(db);
    })();
    const schema = schemaOf(db);
    db.close();
    return schema;
  }
  function schemaOf(db: Database.Database): Map<string, string | null> {
    return new Map((db.prepare("SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'").raw().all() as [string, string, string | null][]).map(([t, name, sql]) => [`${t} ${name}`, sql]));
  }

  it('migrates a v5 file with rows (node, proof and refusal columns): same records, same head, the chain verifies, queries answer as before; then takes digest records', () => {
    const path = join(dir, 'v5.db');
    const log = new SqliteAuditLog({ path });
    const records: AuditRecord[] = [];
    for (let i = 0; i < 300; i++) {
      const a = attempt();
      records.push(a, outcome(a));
    }
    const { outcome: _delivered, ...summary } = attempt({ decision: 'denied', code: 'RATE_LIMITED', refusals: { count: 3, first: 1, last: 2, codes: { RATE_LIMITED: 3 } } });
    records.push(summary);
    log.append(records);
    const head = log.head();
    const before = log.query({ limit: 1000 });
    log.close();
    // The file as v5 left it: what v6 added taken away, and its schema exactly v1..v5's.
    const db = new Database(path);
    db.exec('DROP TABLE audit_digest');
    db.pragma('user_version = 5');
    expect(schemaOf(db)).toEqual(v5Schema());
    const batches = db.prepare('SELECT first_seq, count, prev_hash, hex(hashes), records FROM audit_batch ORDER BY first_seq').raw().all();
    db.close();
    // A reader never migrates: the v5 file waits for a writer.
    expect(() => new SqliteAuditLog({ path, readonly: true })).toThrow(/schema version 5 and needs migrating to 6/);

    const migrated = new SqliteAuditLog({ path });
    expect(migrated.verify({ head })).toEqual({ ok: true, checked: records.length });
    expect(migrated.head()).toEqual(head);
    expect(migrated.query({ limit: 1000 })).toEqual(before);
    expect(migrated.peerDigests()).toEqual([]);
    migrated.append([digest(), attempt()]);
    expect(migrated.verify({ head })).toEqual({ ok: true, checked: records.length + 2 });
    migrated.close();
    const after = new Database(path, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBe(6);
    // Every v5 batch is still there, byte for byte.
    expect(after.prepare('SELECT first_seq, count, prev_hash, hex(hashes), records FROM audit_batch WHERE first_seq <= ? ORDER BY first_seq').raw().all(head.seq)).toEqual(batches);
    after.close();
  });

  it('migrates the v2 fixture through v5 to v6, still verifying', () => {
    const path = join(dir, 'v2.db');
    copyFileSync(new URL('./fixtures/audit-v2.db', import.meta.url).pathname, path);
    const expected = JSON.parse(readFileSync(new URL('./fixtures/audit-v2.expected.json', import.meta.url), 'utf8')) as { head: { seq: number; hash: string } };
    const log = new SqliteAuditLog({ path });
    expect(log.verify({ head: expected.head })).toEqual({ ok: true, checked: expected.head.seq });
    log.close();
  });

  it('a v6 log with digest records is refused by nothing: opened again to write, read-only, by the CLI (verify, log) and by a bus', async () => {
    const path = join(dir, 'v6.db');
    const records = written(path);
    const again = new SqliteAuditLog({ path });
    expect(again.verify()).toEqual({ ok: true, checked: records.length });
    again.close();
    const ro = new SqliteAuditLog({ path, readonly: true });
    expect(ro.verify().ok).toBe(true);
    ro.close();
    const v = out();
    expect(main(['verify', path], v.io)).toBe(0);
    expect(v.lines[0]).toBe(`ok: ${records.length} rows verified`);
    const l = out();
    expect(main(['log', path, '--json'], l.io)).toBe(0);
    expect(l.lines.map((x) => (JSON.parse(x) as { type: string }).type)).toEqual(['ask', 'ask', 'ask']);
    const { Orchestrator } = await import('../src/index.js');
    const bus = new Orchestrator({ audit: { path } });
    expect(bus.verifyAuditLog().ok).toBe(true);
    expect(bus.getMessageLog({ limit: 100 })).toHaveLength(3);
    await bus.close();
  });
});

describe('switchboard export and digest records', () => {
  it('lists digest records in JSON Lines as their own kind, in seq order among the entries; CSV, whose columns are a message\'s, leaves them out', () => {
    const path = join(dir, 'e.db');
    const records = written(path);
    const j = out();
    expect(main(['export', path], j.io)).toBe(0);
    const lines = j.lines.map((x) => JSON.parse(x) as { seq: number; kind?: string; messageId?: string; digestId?: string });
    expect(lines.map((x) => [x.seq, x.kind ?? 'entry'])).toEqual([
      [1, 'entry'],
      [2, 'digest'],
      [4, 'entry'],
      [5, 'digest'],
      [7, 'entry'],
    ]);
    expect(lines[1]).toEqual({ kind: 'digest', seq: 2, digestId: (records[1] as DigestRecord).digestId, ts: records[1]!.ts, node: 'n2', peerNode: 'n1', payloadHash: HASH, proof: (records[1] as DigestRecord).proof });
    const since = out();
    expect(main(['export', path, '--since', String(records[4]!.ts)], since.io)).toBe(0);
    expect(since.lines.map((x) => (JSON.parse(x) as { seq: number }).seq)).toEqual([5, 7]);
    const c = out();
    expect(main(['export', path, '--format', 'csv'], c.io)).toBe(0);
    expect(c.lines).toHaveLength(1 + 3);
    expect(c.lines.join('\n')).not.toContain('digest');
  });
});

/** The default transport, but it keeps the port the bus attached, so a test can play the transport's part. */
class PortKeeper extends InProcessTransport {
  port!: InboundPort;
  override attach(_node: string, port: InboundPort): void {
    this.port = port;
  }
}

describe('InboundPort#digest() (what a transport hands the bus for a verified digest frame)', () => {
  function nodeBus() {
    const transport = new PortKeeper();
    const log = new SqliteAuditLog();
    const bus = makeBus({ node: 'n2', transport, audit: log, policies: [{ from: '*', to: '*', allow: ['ask'] }] });
    return { bus, log, port: transport.port };
  }
  const report = { id: 'd1.1', fromNode: 'n1', proof: '{"v":1,"node":"n1"}', payloadHash: HASH };

  it('records a digest record naming this node and the signer, and no message: no entry, no event', () => {
    const { bus, log, port } = nodeBus();
    const events: string[] = [];
    for (const name of ['message:sent', 'message:delivered', 'message:denied'] as const) bus.events.on(name, () => events.push(name));
    port.digest!(report);
    expect(bus.getMessageLog()).toEqual([]);
    expect(log.peerDigests()).toEqual([{ seq: 1, digestId: 'd1.1', ts: expect.any(Number), node: 'n2', peerNode: 'n1', payloadHash: HASH, proof: report.proof }]);
    expect(bus.verifyAuditLog()).toEqual({ ok: true, checked: 1 });
    expect(events).toEqual([]);
    // A restarted node reads them back to refuse their repeats.
    expect(port.admittedDigests!(0, 10)).toEqual([{ id: 'd1.1', node: 'n1', ts: expect.any(Number) }]);
  });

  it.each([
    [{ id: '' }, "a digest's id must be a non-empty string"],
    [{ fromNode: 'no such node!' }, 'fromNode must be a node id'],
    [{ proof: 'x'.repeat(20_000) }, "a digest's proof must be a non-empty string of at most 16384 characters"],
    [{ payloadHash: 'abc' }, "a digest's payloadHash must be 64 lowercase hex characters, got \"abc\""],
  ])('refuses a malformed report %j with INVALID_ARGUMENT naming the field, recording nothing', (bad, message) => {
    const { bus, log, port } = nodeBus();
    expect(() => port.digest!({ ...report, ...bad })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(message) }));
    bus.getMessageLog();
    expect(log.peerDigests()).toEqual([]);
  });
});
