import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BusError, Orchestrator, SqliteAuditLog, type AuditLog, type AuditRecord, type BusEvents } from '../src/index.js';
import { closeBuses, deferred, hang, makeBus, settle } from './support/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'switchboard-audit-bus-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const open: Orchestrator[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((bus) => bus.close()));
});
afterEach(closeBuses);

/** A SQLite log whose writes can be made to fail, as on a full disk. */
class FlakyLog extends SqliteAuditLog {
  broken = false;
  override append(records: readonly AuditRecord[]): void {
    if (this.broken) throw new Error('SQLITE_FULL: database or disk is full');
    super.append(records);
  }
}

function busAt(path: string, extra: Partial<ConstructorParameters<typeof Orchestrator>[0]> = {}) {
  const bus = new Orchestrator({
    audit: { path, busyTimeoutMs: 0 },
    policies: [{ from: '*', to: '*', allow: ['ask', 'notify'] }],
    limits: { rate: false },
    ...extra,
  });
  open.push(bus);
  return bus;
}

describe('audit before delivery', () => {
  it('records every field of an allowed ask, its hash being SHA-256 of the payload JSON bytes', async () => {
    const bus = busAt(':memory:');
    bus.register('writer', { handlers: { clarify: () => 'sure' } });
    const research = bus.register('research');
    const payload = { q: 'Which audience? — für Ingenieure' };
    await research.ask('writer', 'clarify', payload);
    const json = JSON.stringify(payload);
    const [reply, ask] = bus.getMessageLog({ agentId: 'research', limit: 2 });
    expect(ask).toMatchObject({
      from: 'research',
      to: 'writer',
      type: 'ask',
      intent: 'clarify',
      payloadHash: createHash('sha256').update(json, 'utf8').digest('hex'),
      payloadBytes: Buffer.byteLength(json, 'utf8'),
      decision: 'allowed',
      outcome: 'replied',
      policyVersion: 1,
    });
    expect(ask?.rule).toContain('*');
    expect(reply).toMatchObject({ type: 'reply', from: 'writer', to: 'research', inReplyTo: ask?.messageId, conversationId: ask?.conversationId });
  });

  it('has the row committed when the handler runs', async () => {
    const path = join(dir, 'before.db');
    const bus = busAt(path);
    const reader = new Database(path, { readonly: true });
    let rowsSeenByHandler = -1;
    bus.register('writer', {
      handlers: {
        clarify: (_p, ctx) => {
          rowsSeenByHandler = (reader.prepare('SELECT count(*) AS n FROM audit_records WHERE message_id = ?').get(ctx.message.id) as { n: number }).n;
          return 'ok';
        },
      },
    });
    await bus.register('research').ask('writer', 'clarify', {});
    reader.close();
    expect(rowsSeenByHandler).toBe(1);
  });

  it('delivers in staging order even when a handler flushes the log from inside a commit', async () => {
    const bus = makeBus();
    const order: string[] = [];
    bus.register('x', { handlers: { B: () => void order.push('B'), C: () => void order.push('C') } });
    bus.register('h', {
      handlers: {
        go: (_p, ctx) => {
          void ctx.notify('C', {}, { to: ['x'] });
          bus.getMessageLog({ limit: 1 });
          return 1;
        },
      },
    });
    const a = bus.register('a');
    const asked = a.ask('h', 'go', {});
    const notified = a.notify('B', {}, { to: ['x'] });
    await asked;
    await notified;
    await settle();
    expect(order).toEqual(['B', 'C']);
    expect(bus.getMessageLog({ agentId: 'x' }).reverse().map((e) => e.intent)).toEqual(['B', 'C']);
  });
});

describe('fail closed', () => {
  it('refuses with AUDIT_UNAVAILABLE while another connection holds the write lock, delivers nothing, and recovers', async () => {
    const path = join(dir, 'locked.db');
    const bus = busAt(path);
    const errors: BusEvents['audit:error'][] = [];
    bus.events.on('audit:error', (e) => errors.push(e));
    const handled: unknown[] = [];
    bus.register('writer', { handlers: { clarify: (p) => (handled.push(p), 'ok') } });
    const research = bus.register('research');
    await research.ask('writer', 'clarify', { n: 0 }); // creates the schema and a first row

    const other = new Database(path);
    other.prepare('BEGIN IMMEDIATE').run();
    const started = performance.now();
    const error = await research.ask('writer', 'clarify', { n: 1 }).catch((e: unknown) => e);
    const took = performance.now() - started;
    expect(error).toBeInstanceOf(BusError);
    expect((error as BusError).code).toBe('AUDIT_UNAVAILABLE');
    expect(took).toBeLessThan(1000); // a locked database must not freeze the event loop
    expect(handled).toEqual([{ n: 0 }]);
    expect(errors.length).toBeGreaterThan(0);

    other.prepare('ROLLBACK').run();
    other.close();
    await expect(research.ask('writer', 'clarify', { n: 2 })).resolves.toBe('ok');
    expect(handled).toEqual([{ n: 0 }, { n: 2 }]);
    expect(bus.verifyAuditLog().ok).toBe(true);
    // Nothing of the refused batch was half written: only the two delivered asks and their replies.
    const entries = bus.getMessageLog({ type: 'ask' });
    expect(entries.map((e) => e.outcome)).toEqual(['replied', 'replied']);
  });

  it('refuses every message of a failed batch, notify included, and works again once writes succeed', async () => {
    const inner = new SqliteAuditLog({ path: ':memory:' });
    let broken = false;
    const faulty: AuditLog = {
      append: (records) => {
        if (broken) throw new Error('SQLITE_FULL: database or disk is full');
        inner.append(records);
      },
      query: (q) => inner.query(q),
      verify: () => inner.verify(),
      close: () => inner.close(),
    };
    const bus = new Orchestrator({ audit: faulty, policies: [{ from: '*', to: '*', allow: ['ask', 'notify'] }], limits: { rate: false } });
    open.push(bus);
    const handled: string[] = [];
    bus.register('writer', { handlers: { clarify: () => (handled.push('ask'), 'ok'), found: () => void handled.push('notify') } });
    const research = bus.register('research');

    broken = true;
    const [ask, notify] = await Promise.allSettled([research.ask('writer', 'clarify', {}), research.notify('found', {})]);
    expect(ask.status === 'rejected' && (ask.reason as BusError).code).toBe('AUDIT_UNAVAILABLE');
    expect(notify.status === 'rejected' && (notify.reason as BusError).code).toBe('AUDIT_UNAVAILABLE');
    await bus.onIdle();
    expect(handled).toEqual([]);
    expect(inner.query({})).toEqual([]);

    broken = false;
    await expect(research.ask('writer', 'clarify', {})).resolves.toBe('ok');
    expect(handled).toEqual(['ask']);
    expect(bus.verifyAuditLog().ok).toBe(true);
  });

  it('refuses the reply too when its row cannot be written: the asker gets AUDIT_UNAVAILABLE, not the answer', async () => {
    const inner = new SqliteAuditLog({ path: ':memory:' });
    let breakNext = false;
    const faulty: AuditLog = {
      append: (records) => {
        if (breakNext && records.some((r) => r.kind === 'attempt' && r.type === 'reply')) throw new Error('SQLITE_IOERR');
        inner.append(records);
      },
      query: (q) => inner.query(q),
      verify: () => inner.verify(),
      close: () => inner.close(),
    };
    const bus = new Orchestrator({ audit: faulty, policies: [{ from: '*', to: '*', allow: ['ask'] }], limits: { rate: false } });
    open.push(bus);
    bus.register('writer', { handlers: { clarify: async () => ((breakNext = true), 'secret answer') } });
    const error = await bus.register('research').ask('writer', 'clarify', {}).catch((e: unknown) => e);
    expect((error as BusError).code).toBe('AUDIT_UNAVAILABLE');
  });

  it('rejects the replier with AUDIT_UNAVAILABLE when its reply cannot be recorded', async () => {
    const log = new FlakyLog({ path: ':memory:' });
    const bus = makeBus({ audit: log });
    const gate = deferred<string>();
    const w = bus.register('w', {
      handlers: {
        go: (_p, ctx) => {
          gate.resolve(ctx.message.id);
          return hang(ctx); // never answers, but lets close() go when its signal aborts
        },
      },
    });
    const ask = bus.register('a').ask('w', 'go', {}, { timeoutMs: 1000 });
    const id = await gate.promise;
    log.broken = true;
    const [asked, replied] = await Promise.allSettled([ask, w.reply(id, { x: 1 })]);
    log.broken = false;
    expect(asked).toMatchObject({ status: 'rejected', reason: { code: 'AUDIT_UNAVAILABLE' } });
    expect(replied).toMatchObject({ status: 'rejected', reason: { code: 'AUDIT_UNAVAILABLE' } });
  });
});

describe('AUDIT_UNAVAILABLE', () => {
  it('names the refused message in messageId', async () => {
    const faulty: AuditLog = {
      append: () => {
        throw new Error('SQLITE_READONLY');
      },
      query: () => [],
      verify: () => ({ ok: true, checked: 0 }),
      close: () => undefined,
    };
    const bus = new Orchestrator({ audit: faulty, policies: [{ from: '*', to: '*', allow: ['delegate'] }] });
    open.push(bus);
    bus.register('writer', { handlers: { clarify: () => 'ok' } });
    const job = bus.register('research').delegate('writer', 'clarify', {});
    const error = (await job.catch((e: unknown) => e)) as BusError;
    expect(error.code).toBe('AUDIT_UNAVAILABLE');
    expect(error.messageId).toBe(job.id);
  });
});

describe('getMessageLog() chain fields', () => {
  it('shows causationId for a message sent from inside a handler', async () => {
    const bus = busAt(':memory:');
    bus.register('b', { handlers: { inner: () => 'ok' } });
    bus.register('a', { handlers: { outer: (_p, ctx) => ctx.ask('b', 'inner', {}) } });
    await bus.register('c').ask('a', 'outer', {});
    const [outer] = bus.getMessageLog({ type: 'ask', agentId: 'c' });
    const [inner] = bus.getMessageLog({ type: 'ask', agentId: 'b' });
    expect(inner?.causationId).toBe(outer?.messageId);
    expect(inner?.conversationId).toBe(outer?.conversationId);
    expect(outer?.causationId).toBeUndefined();
  });
});

describe('refusals after the policy', () => {
  it('records NO_HANDLER as allowed by policy with outcome failed, and a policy refusal as denied', async () => {
    const bus = busAt(':memory:', { policies: [{ from: 'research', to: 'writer', allow: ['ask'] }] });
    bus.register('writer');
    bus.register('vault');
    const research = bus.register('research');
    await expect(research.ask('writer', 'clarify', {})).rejects.toMatchObject({ code: 'NO_HANDLER' });
    await expect(research.ask('vault', 'open', {})).rejects.toMatchObject({ code: 'POLICY_DENIED' });
    const [vault, writer] = bus.getMessageLog();
    expect(writer).toMatchObject({ to: 'writer', decision: 'allowed', outcome: 'failed', code: 'NO_HANDLER' });
    expect(vault).toMatchObject({ to: 'vault', decision: 'denied', code: 'POLICY_DENIED' });
  });
});
