// Bugs found by an adversarial review of the core, each pinned by the test that reproduced it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SqliteAuditLog } from '../src/audit/sqlite.js';
import type { AuditRecord } from '../src/audit/types.js';
import { closeBuses, deferred, makeBus, settle } from './helpers.js';

afterEach(closeBuses);
const dir = mkdtempSync(join(tmpdir(), 'switchboard-review-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

class FlakyLog extends SqliteAuditLog {
  broken = false;
  override append(records: readonly AuditRecord[]): void {
    if (this.broken) throw new Error('SQLITE_FULL: database or disk is full');
    super.append(records);
  }
}

class LazyError extends Error {
  override get message(): string {
    throw new Error('the message getter throws');
  }
}

describe('worker audit log', () => {
  it('survives a handler that reads the log while an outer getMessageLog() waits for the worker', { timeout: 30_000 }, async () => {
    const bus = makeBus({ audit: { path: join(dir, 'nested.db') } });
    let inner = -1;
    bus.register('w', {
      handlers: {
        go: () => {
          inner = bus.getMessageLog({ limit: 1 }).length; // a synchronous query from inside a handler
          return 'ok';
        },
      },
    });
    bus.register('x', { handlers: { other: () => 'ok' } });
    const a = bus.register('a');
    const first = a.ask('w', 'go', {});
    await Promise.resolve();
    await Promise.resolve(); // the first chunk is with the worker
    const second = a.ask('x', 'other', {});
    await Promise.resolve();
    await Promise.resolve(); // and the second
    const started = Date.now();
    expect(() => bus.getMessageLog()).not.toThrow();
    expect(Date.now() - started).toBeLessThan(5000);
    await expect(Promise.all([first, second])).resolves.toEqual(['ok', 'ok']);
    expect(inner).toBe(1);
    await expect(a.ask('x', 'other', {})).resolves.toBe('ok');
  });
});

describe('Agent#reply()', () => {
  it('rejects the replier with AUDIT_UNAVAILABLE when its reply cannot be recorded', async () => {
    const log = new FlakyLog({ path: ':memory:' });
    const bus = makeBus({ audit: log });
    const gate = deferred<string>();
    const w = bus.register('w', {
      handlers: {
        go: (_p, ctx) => {
          gate.resolve(ctx.message.id);
          return new Promise(() => undefined);
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

  it('refuses a reply to an ask that has not reached its recipient yet (its row is not committed)', async () => {
    let n = 0;
    const bus = makeBus({ ids: () => `m${n++}` });
    let ran = false;
    const w = bus.register('w', {
      handlers: {
        go: () => {
          ran = true;
          return 'from the handler';
        },
      },
    });
    const ask = bus.register('a').ask('w', 'go', {});
    const early = w.reply('m0', 'too early'); // same tick: the ask is only staged
    await expect(early).rejects.toMatchObject({ code: 'INVALID_REPLY' });
    await expect(ask).resolves.toBe('from the handler');
    expect(ran).toBe(true);
  });
});

describe('handlers that throw unreadable values', () => {
  for (const [name, thrown] of [
    ['an error whose message getter throws', () => new LazyError()],
    ['a revoked Proxy', () => {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      return proxy;
    }],
  ] as const) {
    it(`reject the sender with HANDLER_FAILED and leave the mailbox working: ${name}`, async () => {
      const bus = makeBus();
      bus.register('w', {
        handlers: {
          bad: () => {
            throw thrown();
          },
          badAsync: async () => {
            throw thrown();
          },
          good: () => 'ok',
        },
      });
      const a = bus.register('a');
      await expect(a.ask('w', 'bad', {}, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'HANDLER_FAILED' });
      await expect(a.ask('w', 'badAsync', {}, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'HANDLER_FAILED' });
      await expect(a.ask('w', 'good', {}, { timeoutMs: 2000 })).resolves.toBe('ok');
    });
  }
});

describe('audit and delivery order', () => {
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

  it('records a notify withdrawn in the same tick (recipient unregistered) as failed, not delivered', async () => {
    const bus = makeBus();
    bus.register('x', { handlers: { hi: () => undefined } });
    const receipt = bus.register('a').notify('hi', {}, { to: ['x'] });
    bus.unregister('x');
    expect((await receipt).failed).toEqual(['x']);
    expect(bus.getMessageLog({ agentId: 'x' })[0]).toMatchObject({ outcome: 'failed', code: 'UNKNOWN_AGENT' });
  });
});

describe('WorkerAuditLog recovery', () => {
  it('starts a fresh worker after its worker died, and the chain goes on', { timeout: 30_000 }, async () => {
    const { WorkerAuditLog } = await import('../src/audit/worker-log.js');
    const log = new WorkerAuditLog({ path: join(dir, 'recover.db') });
    const record: AuditRecord = {
      kind: 'attempt', ts: 1, messageId: 'm-1', from: 'a', to: 'b', type: 'ask', intent: 'q',
      payloadHash: 'h', payloadBytes: 2, decision: 'allowed', policyVersion: 1, conversationId: 'm-1',
    };
    log.append([record]);
    const internals = log as unknown as { worker: { terminate(): Promise<number> }; broken: unknown };
    await internals.worker.terminate(); // the worker dies (as on a fatal error)
    await new Promise((resolve) => setTimeout(resolve, 50)); // its exit event arrives
    expect(internals.broken).toMatchObject({ code: 'AUDIT_UNAVAILABLE' });
    log.append([{ ...record, messageId: 'm-3' }]); // a fresh worker takes over
    expect(internals.broken).toBeUndefined();
    expect(log.query().map((e) => e.messageId)).toEqual(['m-3', 'm-1']);
    expect(log.verify()).toMatchObject({ ok: true, checked: 2 });
    log.close();
  });
});

describe('approvals.approve() after the deadline', () => {
  it('treats a held ask as expired once its deadline has passed, even before the expiry timer ran', async () => {
    const { vi } = await import('vitest');
    vi.useFakeTimers();
    const bus = makeBus({ policies: [{ from: 'a', to: 'b', allow: ['ask'], requireApproval: true }] });
    bus.register('b', { handlers: { q: () => 'answer' } });
    const asked = bus.register('a').ask('b', 'q', {}, { timeoutMs: 1000 });
    const outcome = asked.then(() => 'resolved', (e: { code: string }) => e.code);
    await settle();
    const [held] = bus.approvals.list();
    vi.setSystemTime(Date.now() + 5000); // the clock moves on; no timer has fired yet
    expect(() => bus.approvals.approve(held!.id, { by: 'late-operator' })).toThrow(/expired/);
    expect(await outcome).toBe('APPROVAL_EXPIRED');
    vi.useRealTimers();
  });
});
