// The audit log that writes on a worker thread (src/audit/worker-log.ts): what it promises
// when a handler queries it mid-commit, and when its worker dies.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditRecord } from '../src/audit/types.js';
import { WorkerAuditLog } from '../src/audit/worker-log.js';
import Database from 'better-sqlite3';
import { isBusError } from '../src/errors.js';
import { closeBuses, makeBus } from './support/helpers.js';

afterEach(closeBuses);
const dir = mkdtempSync(join(tmpdir(), 'switchboard-worker-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('worker audit log on the bus', () => {
  it('stores the same payload hashes and sizes as the inline log: SHA-256 of the payload JSON', { timeout: 30_000 }, async () => {
    const payload = { task: 'summarize', text: 'é"\\\n😀', n: -0, list: [1, 2.5, null, true], nested: { deep: ['x'] } };
    const reply = { summary: 'short', words: 3 };
    const rows = async (worker: boolean) => {
      const bus = makeBus({ audit: { path: join(dir, `hash-${String(worker)}.db`), worker } });
      bus.register('w', { handlers: { go: () => reply } });
      const a = bus.register('a');
      await expect(a.ask('w', 'go', payload)).resolves.toEqual(reply);
      await bus.flush();
      const entries = bus.getMessageLog({ agentId: 'a' });
      expect(bus.verifyAuditLog()).toMatchObject({ ok: true });
      return entries.map((e) => [e.type, e.payloadHash, e.payloadBytes]);
    };
    const sha = (v: unknown) => createHash('sha256').update(JSON.stringify(v)).digest('hex');
    const onWorker = await rows(true);
    expect(onWorker).toEqual([
      ['reply', sha(reply), Buffer.byteLength(JSON.stringify(reply))],
      ['ask', sha(payload), Buffer.byteLength(JSON.stringify(payload))],
    ]);
    expect(await rows(false)).toEqual(onWorker);
  });

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

describe('AUDIT_UNAVAILABLE from the worker log', () => {
  it('carries the SQLite error as its cause, as the inline log does', { timeout: 30_000 }, async () => {
    const causeOf = async (worker: boolean) => {
      const path = join(dir, `cause-${String(worker)}.db`);
      const bus = makeBus({ audit: { path, worker, busyTimeoutMs: 0 } });
      bus.register('w', { handlers: { go: () => 'ok' } });
      const a = bus.register('a');
      await a.ask('w', 'go', {});
      // Another connection holds the write lock: the bus's commit fails with SQLITE_BUSY.
      const other = new Database(path);
      other.exec('BEGIN IMMEDIATE');
      try {
        const error = await a.ask('w', 'go', {}).then(() => undefined, (e: unknown) => e);
        expect(isBusError(error) && error.code).toBe('AUDIT_UNAVAILABLE');
        return (error as Error).cause as { code?: unknown; message?: unknown } | undefined;
      } finally {
        other.exec('ROLLBACK');
        other.close();
      }
    };
    const inline = await causeOf(false);
    expect(inline?.code).toBe('SQLITE_BUSY');
    const onWorker = await causeOf(true);
    expect(onWorker?.code).toBe('SQLITE_BUSY');
    expect(onWorker?.message).toBe(inline?.message);
  });
});

describe('WorkerAuditLog recovery', () => {
  it('starts a fresh worker after its worker died, and the chain goes on', { timeout: 30_000 }, async () => {
    const log = new WorkerAuditLog({ path: join(dir, 'recover.db') });
    const record: AuditRecord = {
      kind: 'attempt', ts: 1, messageId: 'm-1', from: 'a', to: 'b', type: 'ask', intent: 'q',
      payloadHash: 'h', payloadBytes: 2, decision: 'allowed', policyVersion: 1, conversationId: 'm-1',
    };
    log.append([record]);
    const internals = log as unknown as { worker: { terminate(): Promise<number> }; broken: unknown };
    await internals.worker.terminate(); // the worker dies (as on a fatal error)
    // Its exit event marks the log broken (polled, not a fixed sleep).
    await vi.waitFor(() => expect(internals.broken).toMatchObject({ code: 'AUDIT_UNAVAILABLE' }));
    log.append([{ ...record, messageId: 'm-3' }]); // a fresh worker takes over
    expect(internals.broken).toBeUndefined();
    expect(log.query().map((e) => e.messageId)).toEqual(['m-3', 'm-1']);
    expect(log.verify()).toMatchObject({ ok: true, checked: 2 });
    log.close();
  });
});
