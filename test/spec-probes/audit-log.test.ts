// SPEC "Audit log": entry shape, outcomes at the edges (close, crash), the WAL bound and
// nothing left beside the file, fail-closed, the hash chain naming the first bad row, schema
// versions, the :memory: bound and capped strings, and the CLI over a file.
import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Orchestrator, SqliteAuditLog, type MessageLogEntry } from '../../src/index.js';
import { bus, closeAll, dbPath, OPEN, refusal, removeDirs, settle } from './probe-kit.js';

afterEach(async () => {
  await closeAll();
  removeDirs();
});

const ENTRY_KEYS = ['messageId', 'ts', 'from', 'to', 'type', 'intent', 'payloadHash', 'payloadBytes', 'decision', 'policyVersion', 'conversationId'];

describe('"getMessageLog entries: { messageId, ts, from, to, type, intent, payloadHash, payloadBytes, decision, reason?, rule?, policyVersion, approval?, decidedBy?, outcome?, conversationId, inReplyTo? }"', () => {
  it('an answered ask and its reply carry every field, with the SHA-256 and UTF-8 size of the payload', async () => {
    const b = bus({ policies: [{ from: 'a', to: 'w', allow: ['ask'], name: 'a asks w' }], clock: { now: () => 1234 } });
    b.register('w', { handlers: { x: () => 'é' } });
    await b.register('a').ask('w', 'x', { q: 'é' });
    await b.flush();
    const [reply, ask] = b.getMessageLog() as [MessageLogEntry, MessageLogEntry];
    for (const key of ENTRY_KEYS) {
      expect(ask).toHaveProperty(key);
      expect(reply).toHaveProperty(key);
    }
    const { createHash } = await import('node:crypto');
    expect(ask).toMatchObject({
      ts: 1234,
      from: 'a',
      to: 'w',
      type: 'ask',
      intent: 'x',
      payloadHash: createHash('sha256').update('{"q":"é"}').digest('hex'),
      payloadBytes: Buffer.byteLength('{"q":"é"}'),
      decision: 'allowed',
      rule: 'a asks w',
      outcome: 'replied',
      conversationId: ask.messageId,
    });
    expect(ask.inReplyTo).toBeUndefined();
    expect(reply).toMatchObject({ type: 'reply', from: 'w', to: 'a', inReplyTo: ask.messageId, conversationId: ask.messageId, payloadBytes: 4, decision: 'allowed', outcome: 'delivered' });
  });

  it('a refused send has decision "denied" and a reason, and no outcome claiming delivery', async () => {
    const b = bus();
    b.register('w');
    await refusal(b.register('a').ask('w', 'x', 1));
    await b.flush();
    const [e] = b.getMessageLog();
    expect(e).toMatchObject({ decision: 'denied', reason: expect.stringMatching(/\S/) });
    expect(e!.outcome === undefined || e!.outcome === 'failed').toBe(true);
  });

  it('a held then approved message has decision "pending", approval "approved" and decidedBy', async () => {
    const b = bus({ policies: [{ from: 'a', to: 'w', allow: ['ask'], requireApproval: true }] });
    b.register('w', { handlers: { x: () => 1 } });
    const asked = b.register('a').ask('w', 'x', 1);
    await settle();
    b.approvals.approve(b.approvals.list()[0]!.id, { by: 'carol' });
    await asked;
    await b.flush();
    expect(b.getMessageLog({ type: 'ask' })[0]).toMatchObject({ decision: 'pending', approval: 'approved', decidedBy: 'carol', outcome: 'replied' });
  });

  it('"one entry per message and recipient": a broadcast notify is one entry per recipient', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('w1', { handlers: { n: () => {} } });
    b.register('w2', { handlers: { n: () => {} } });
    const receipt = await b.register('a').notify('n', 1);
    await settle();
    await b.flush();
    const entries = b.getMessageLog({ type: 'notify' });
    expect(entries.map((e) => e.to).sort()).toEqual(['w1', 'w2']);
    expect(new Set(entries.map((e) => e.messageId))).toEqual(new Set([receipt.id]));
  });
});

describe('"Every outcome is recorded, also at the edges"', () => {
  it('"a message admitted but not yet run when the bus closes is recorded cancelled (CLOSED), not left delivered"', async () => {
    const path = dbPath();
    const b = new Orchestrator({ audit: { path }, policies: [...OPEN], timeouts: { closeMs: 0 } });
    b.register('w', { handlers: { x: (_p, ctx) => new Promise((_r, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('stop')))) } });
    const a = b.register('a');
    const running = a.ask('w', 'x', 'running');
    const queued = a.ask('w', 'x', 'queued');
    await settle();
    await b.flush();
    const [queuedId, runningId] = b.getMessageLog({ type: 'ask' }).map((e) => e.messageId);
    await b.close();
    expect((await refusal(queued)).code).toBe('CLOSED');
    expect((await refusal(running)).code).toBe('CLOSED');
    const log = new SqliteAuditLog({ path });
    try {
      const byId = new Map(log.query({ type: 'ask' }).map((e) => [e.messageId, e]));
      expect(byId.get(queuedId!)).toMatchObject({ outcome: 'cancelled' });
      const queuedEntry = byId.get(queuedId!) as MessageLogEntry & { code?: string };
      expect(queuedEntry.code ?? queuedEntry.reason).toMatch(/CLOSED/);
      expect(byId.get(runningId!)!.outcome).not.toBe('delivered');
    } finally {
      log.close();
    }
  });

  it('close() with 50 asks and 10 notifies in flight writes a row and an outcome for each; a clean reopen marks none interrupted', async () => {
    const path = dbPath();
    const b = new Orchestrator({ audit: { path }, policies: [...OPEN], limits: { rate: false } });
    b.register('w', { concurrency: 2, handlers: { x: (p, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(p))) } });
    const a = b.register('a');
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < 50; i++) sends.push(a.ask('w', 'x', i).catch((e: { code: string }) => e.code));
    for (let i = 0; i < 10; i++) sends.push(a.notify('x', i).catch((e: { code: string }) => e.code));
    await settle(1);
    await b.close();
    const results = await Promise.all(sends);
    expect(results.slice(0, 50).every((r) => r === 'CLOSED')).toBe(true);
    const again = new Orchestrator({ audit: { path } });
    try {
      const entries = again.getMessageLog({ limit: 1000 });
      expect(entries.filter((e) => e.type === 'ask')).toHaveLength(50);
      expect(entries.filter((e) => e.type === 'notify')).toHaveLength(10);
      expect(entries.filter((e) => e.outcome === undefined || e.outcome === 'interrupted' || e.outcome === 'delivered')).toEqual([]);
    } finally {
      await again.close();
    }
  });

  it('"a bus opened on a file records, for every attempt of an earlier run that has no outcome and is not held, the outcome interrupted" (a SIGKILLed process)', async () => {
    const path = dbPath();
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'crash-child.ts'), path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const ids = await new Promise<Record<'answered' | 'running' | 'queued' | 'held', string>>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!));
      });
      child.on('exit', (code) => reject(new Error(`child exited ${String(code)}: ${err}`)));
    });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    const b = new Orchestrator({ audit: { path } });
    try {
      const byId = new Map(b.getMessageLog({ type: 'ask' }).map((e) => [e.messageId, e]));
      expect(byId.get(ids.answered)!.outcome).toBe('replied');
      expect(byId.get(ids.running)!.outcome).toBe('interrupted');
      expect(byId.get(ids.queued)!.outcome).toBe('interrupted');
      expect(byId.get(ids.held)!.outcome).toBeUndefined();
      expect(b.approvals.list().map((i) => i.id)).toEqual([ids.held]);
      expect(b.verifyAuditLog().ok).toBe(true);
    } finally {
      await b.close();
    }
  }, 30_000);
});

describe('"close() leaves the database file self-contained (the WAL checkpointed and truncated)"', () => {
  it('leaves nothing beside the file after close(), in worker and inline mode', async () => {
    for (const worker of [true, false]) {
      const path = dbPath();
      const b = new Orchestrator({ audit: { path, worker }, policies: [...OPEN], limits: { rate: false } });
      b.register('w', { handlers: { x: () => 1 } });
      const a = b.register('a');
      for (let i = 0; i < 50; i++) await a.ask('w', 'x', i);
      await b.close();
      expect(readdirSync(dirname(path))).toEqual(['audit.db']);
      const db = new Database(path, { readonly: true });
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      db.close();
    }
  });

  it('"when checkpoints cannot keep up, commits wait for them (backpressure), and the bus says so (audit:backpressure)", the WAL staying under maxWalBytes', async () => {
    const path = dbPath();
    const MiB = 1 << 20;
    const b = bus({ audit: { path, maxWalBytes: MiB }, policies: [...OPEN], limits: { rate: false } });
    b.register('w', { handlers: { x: () => 1 } });
    const a = b.register('a');
    await a.ask('w', 'x', 0);
    // A reader holding an old snapshot: no checkpoint can pass it, so the WAL only grows.
    const reader = new Database(path, { readonly: true });
    reader.exec('BEGIN');
    reader.prepare('SELECT count(*) FROM audit_batch').get();
    const events: Array<{ walBytes: number; maxWalBytes: number }> = [];
    b.events.on('audit:backpressure', (e) => {
      events.push(e);
      if (reader.inTransaction) reader.exec('COMMIT');
    });
    for (let i = 0; i < 2_000 && events.length === 0; i++) await a.ask('w', 'x', 'p'.repeat(2_000));
    if (reader.inTransaction) reader.exec('COMMIT');
    reader.close();
    expect(events[0]).toEqual({ walBytes: expect.any(Number), maxWalBytes: MiB });
    expect(events[0]!.walBytes).toBeLessThanOrEqual(MiB);
    await expect(a.ask('w', 'x', 'after')).resolves.toBe(1);
    await b.close();
    expect(readdirSync(dirname(path))).toEqual(['audit.db']);
  }, 60_000);

  it('maxWalBytes below 1 MiB is refused naming the key; a valid one is accepted', () => {
    expect(() => new Orchestrator({ audit: { path: dbPath(), maxWalBytes: 1000 } })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^Invalid Orchestrator options: audit\.maxWalBytes/) }),
    );
    const b = bus({ audit: { path: dbPath(), maxWalBytes: 1 << 20 } });
    expect(b.closed).toBe(false);
  });
});

describe('"If the database cannot be written, messages are refused with AUDIT_UNAVAILABLE (fail closed) … once it can, the bus works again"', () => {
  it('another connection holding the write lock: the send is AUDIT_UNAVAILABLE and no handler runs; released, sends work again', async () => {
    const path = dbPath();
    const b = bus({ audit: { path, worker: false }, policies: [...OPEN] });
    const ran: unknown[] = [];
    b.register('w', { handlers: { x: (p) => (ran.push(p), 'ok') } });
    const a = b.register('a');
    await a.ask('w', 'x', 'before');
    const events: unknown[] = [];
    b.events.on('audit:error', (e) => events.push(e));
    const locker = new Database(path);
    locker.exec('BEGIN IMMEDIATE');
    try {
      const e = await refusal(a.ask('w', 'x', 'while locked'));
      expect(e.code).toBe('AUDIT_UNAVAILABLE');
      expect(ran).toEqual(['before']);
      expect(events.length).toBeGreaterThan(0);
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    await expect(a.ask('w', 'x', 'after')).resolves.toBe('ok');
    expect(ran).toEqual(['before', 'after']);
    expect(b.verifyAuditLog().ok).toBe(true);
  });
});

describe('"Rows form a SHA-256 hash chain … verifyAuditLog() and switchboard verify <db> name the first bad row"', () => {
  async function fileWithRows(path: string, key?: string): Promise<void> {
    const b = new Orchestrator({ audit: { path, ...(key === undefined ? {} : { key }) }, policies: [...OPEN], limits: { rate: false } });
    b.register('w', { handlers: { x: () => 1 } });
    const a = b.register('a');
    for (let i = 0; i < 5; i++) await a.ask('w', 'x', i);
    await b.close();
  }

  /** Edits the intent of the record with `seq` in the stored batch that holds it, through SQL as an attacker would. */
  function tamper(path: string, seq: number): void {
    const db = new Database(path);
    try {
      for (const row of db.prepare('SELECT first_seq, records FROM audit_batch').all() as Array<{ first_seq: number; records: string }>) {
        const at = row.records.indexOf(`[${seq},`);
        if (at < 0) continue;
        const edited = row.records.slice(0, at) + row.records.slice(at).replace('"x"', '"X"');
        db.prepare('UPDATE audit_batch SET records = ? WHERE first_seq = ?').run(edited, row.first_seq);
        return;
      }
      throw new Error(`no stored batch holds record ${seq}`);
    } finally {
      db.close();
    }
  }

  it('an edited row fails verifyAuditLog() with firstBad naming it; the CLI exits non-zero naming it', async () => {
    const path = dbPath();
    await fileWithRows(path);
    const b0 = new Orchestrator({ audit: { path } });
    const clean = b0.verifyAuditLog();
    await b0.close();
    expect(clean.ok).toBe(true);
    tamper(path, 3);
    const b = new Orchestrator({ audit: { path } });
    try {
      const r = b.verifyAuditLog();
      expect(r.ok).toBe(false);
      expect(r.firstBad).toBe(3);
    } finally {
      await b.close();
    }
    const cli = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../../src/cli/main.ts'), 'verify', path], { encoding: 'utf8' });
    expect(cli.status).not.toBe(0);
    expect(cli.stdout + cli.stderr).toMatch(/\b3\b/);
  }, 30_000);

  it('a keyed (HMAC) log verifies with its key and not without it', async () => {
    const path = dbPath();
    await fileWithRows(path, 'k-123');
    const good = new SqliteAuditLog({ path, key: 'k-123' });
    expect(good.verify().ok).toBe(true);
    good.close();
    let refusedOrBad: boolean;
    try {
      const wrong = new SqliteAuditLog({ path, key: 'wrong' });
      refusedOrBad = !wrong.verify().ok;
      wrong.close();
    } catch (e) {
      refusedOrBad = (e as { code?: string }).code !== undefined;
    }
    expect(refusedOrBad).toBe(true);
  });
});

describe('"Given a head saved earlier, also fails when the log no longer contains it (a truncated tail)"; "an edit of any table (lookup indexes included)"', () => {
  async function fileWithHold(path: string) {
    const b = new Orchestrator({ audit: { path }, policies: [{ from: 'a', to: 'w', allow: ['ask'] }, { from: 'a', to: 'v', allow: ['ask'], requireApproval: true }] });
    b.register('w', { handlers: { x: () => 1 } });
    const a = b.register('a');
    for (let i = 0; i < 3; i++) await a.ask('w', 'x', i);
    a.ask('v', 'x', { secret: 'ORIGINAL' }, { timeoutMs: 600_000 }).catch(() => {});
    await b.flush();
    const head = b.auditHead();
    await b.close();
    return head;
  }
  function edit(path: string, sql: string): void {
    const db = new Database(path);
    db.exec(sql);
    db.close();
  }

  it('deleting the newest rows passes a plain verify but fails verify({ head }) and `switchboard verify --head`', async () => {
    const path = dbPath();
    const head = await fileWithHold(path);
    edit(path, 'DELETE FROM audit_batch WHERE first_seq = (SELECT max(first_seq) FROM audit_batch)');
    const b = new Orchestrator({ audit: { path } });
    try {
      expect(b.verifyAuditLog({ head }).ok).toBe(false);
    } finally {
      await b.close();
    }
    const cli = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../../src/cli/main.ts'), 'verify', path, '--head', `${head.seq}:${head.hash}`], { encoding: 'utf8' });
    expect(cli.status).not.toBe(0);
  }, 30_000);

  it('deleting a lookup row that getMessageLog({ agentId }) reads fails verification, naming the row', async () => {
    const path = dbPath();
    await fileWithHold(path);
    edit(path, "DELETE FROM audit_slice WHERE agent = 'w'");
    const b = new Orchestrator({ audit: { path } });
    try {
      const r = b.verifyAuditLog();
      expect(r.ok).toBe(false);
      expect(r.firstBad).toEqual(expect.any(Number));
    } finally {
      await b.close();
    }
  });

  it('a held payload edited in the file is never delivered', async () => {
    const path = dbPath();
    await fileWithHold(path);
    edit(path, "UPDATE approval_hold SET payload = replace(payload, 'ORIGINAL', 'TAMPERED')");
    const b = new Orchestrator({ audit: { path }, policies: [{ from: 'a', to: 'v', allow: ['ask'], requireApproval: true }] });
    try {
      const got: unknown[] = [];
      b.register('v', { handlers: { x: (p) => void got.push(p) } });
      for (const item of b.approvals.list()) {
        try {
          b.approvals.approve(item.id);
        } catch {}
      }
      await settle();
      expect(JSON.stringify(got)).not.toContain('TAMPERED');
    } finally {
      await b.close();
    }
  });
});

describe('"Schema is versioned (PRAGMA user_version) … a database newer than the code is refused"', () => {
  it('refuses a newer file with a BusError naming both versions, and leaves it untouched', async () => {
    const path = dbPath();
    const b = new Orchestrator({ audit: { path } });
    await b.close();
    const db = new Database(path);
    const current = db.pragma('user_version', { simple: true }) as number;
    expect(current).toBeGreaterThan(0);
    db.pragma(`user_version = ${current + 7}`);
    db.close();
    let caught: unknown;
    try {
      new Orchestrator({ audit: { path } });
    } catch (e) {
      caught = e;
    }
    expect(caught).toMatchObject({ name: 'BusError', message: expect.stringContaining(String(current + 7)) });
    expect((caught as Error).message).toContain(String(current));
    const after = new Database(path, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(current + 7);
    after.close();
  });
});

describe('"Bounded: a :memory: log keeps at most audit.maxRows rows … no caller can make one refused send write an unbounded row"', () => {
  it('keeps at most maxRows, the oldest going first, and still verifies', async () => {
    const b = bus({ audit: { maxRows: 10 }, policies: [...OPEN], limits: { rate: false } });
    b.register('w', { handlers: { x: () => 1 } });
    const a = b.register('a');
    for (let i = 0; i < 30; i++) await a.ask('w', 'x', i);
    await b.flush();
    const entries = b.getMessageLog({ limit: 1000 });
    expect(entries.length).toBeLessThanOrEqual(10);
    expect(entries.length).toBeGreaterThan(0);
    expect(entries[0]!.seq).toBeGreaterThan(50);
    const v = b.verifyAuditLog();
    expect(v.ok).toBe(true);
    expect(v.checked).toBeLessThanOrEqual(10);
  });

  it('caps the stored text of a refusal: a 1 MB bad id and a 1 MB handler error keep a short row', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('w', {
      handlers: {
        x: () => {
          throw new Error('E'.repeat(1_000_000));
        },
      },
    });
    const a = b.register('a');
    const big = 'z'.repeat(1_000_000);
    expect((await refusal(a.ask(big, 'x', 1))).code).toBe('INVALID_ARGUMENT');
    expect((await refusal(a.ask('w', 'x', 1))).code).toBe('HANDLER_FAILED');
    await b.flush();
    for (const e of b.getMessageLog()) expect(JSON.stringify(e).length).toBeLessThan(20_000);
  });
});

describe('CLI: "switchboard log <db> [--agent ID] [--limit N] [--json]", "switchboard export <db> [--format jsonl|csv]"', () => {
  it('log --json and export --format jsonl print every entry of a file', async () => {
    const path = dbPath();
    const b = new Orchestrator({ audit: { path }, policies: [...OPEN], limits: { rate: false } });
    b.register('w', { handlers: { x: () => 1 } });
    const a = b.register('a');
    for (let i = 0; i < 3; i++) await a.ask('w', 'x', i);
    await b.close();
    const cli = join(import.meta.dirname, '../../src/cli/main.ts');
    const log = spawnSync(process.execPath, ['--import', 'tsx', cli, 'log', path, '--json', '--limit', '2', '--agent', 'w'], { encoding: 'utf8' });
    expect(log.status).toBe(0);
    const entries = log.stdout.trim().split('\n').map((l) => JSON.parse(l) as MessageLogEntry);
    expect(entries).toHaveLength(2);
    const exported = spawnSync(process.execPath, ['--import', 'tsx', cli, 'export', path, '--format', 'jsonl'], { encoding: 'utf8' });
    expect(exported.status).toBe(0);
    const lines = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type?: string });
    expect(lines.filter((l) => l.type === 'ask')).toHaveLength(3);
  }, 30_000);
});
