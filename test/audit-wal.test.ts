// A file log's WAL under sustained load and at close: bounded by audit.maxWalBytes, with
// backpressure when checkpoints cannot keep up, and nothing left beside the file after close().
import Database from 'better-sqlite3';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Orchestrator, type BusEvents, type OrchestratorOptions } from '../src/index.js';
import { setBackpressureWait, SqliteAuditLog } from '../src/audit/sqlite.js';
import { WorkerAuditLog } from '../src/audit/worker-log.js';
import { attemptMaker } from './support/audit-records.js';

const MiB = 1024 * 1024;
let dir: string | undefined;
let bus: Orchestrator | undefined;
afterEach(async () => {
  setBackpressureWait(undefined);
  await bus?.close();
  bus = undefined;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function freshPath(): string {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-wal-'));
  return join(dir, 'audit.db');
}

const walSize = (path: string): number => statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0;

function busOn(audit: Exclude<OrchestratorOptions['audit'], false | undefined>): Orchestrator {
  bus = new Orchestrator({ policies: [{ from: '*', to: '*', allow: ['ask'] }], limits: { rate: false }, audit });
  bus.register('echo', { handlers: { ping: (p) => p } });
  return bus;
}

/** `senders` agents that each ask again as soon as answered, until `total` asks were answered. */
async function burst(b: Orchestrator, senders: number, total: number, name = 'sender'): Promise<void> {
  let asks = 0;
  const text = 'x'.repeat(200);
  await Promise.all(
    Array.from({ length: senders }, async (_, i) => {
      const sender = b.register(`${name}-${i}`);
      while (asks < total) {
        asks++;
        await sender.ask('echo', 'ping', { i, text });
      }
    }),
  );
}

const modes: [string, boolean][] = [
  ['on a worker', true],
  ['with worker: false', false],
];

describe('audit.maxWalBytes', () => {
  it.each(modes)('keeps the -wal file under maxWalBytes through a burst %s', { timeout: 60_000 }, async (_name, worker) => {
    const path = freshPath();
    let maxWal = 0;
    // After every commit, on this thread: the WAL as the operator's disk sees it.
    const b = busOn({ path, worker, maxWalBytes: MiB, onCommit: () => void (maxWal = Math.max(maxWal, walSize(path))) });
    await burst(b, 200, 20_000);
    await b.flush();
    expect(b.auditHead().seq).toBeGreaterThanOrEqual(40_000);
    // Far more was written than the WAL may hold: it was checkpointed and truncated as it went.
    expect(statSync(path).size).toBeGreaterThan(4 * MiB);
    expect(maxWal).toBeGreaterThan(0);
    expect(maxWal).toBeLessThanOrEqual(MiB);
  });

  it.each([
    [MiB - 1, 'audit.maxWalBytes'],
    [MiB + 0.5, 'audit.maxWalBytes'],
    ['64MB', 'audit.maxWalBytes'],
  ])('refuses maxWalBytes %s with INVALID_ARGUMENT naming the key', (value, key) => {
    const attempt = () => new Orchestrator({ audit: { path: ':memory:', maxWalBytes: value as number } });
    expect(attempt).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(key) }));
  });

  it('refuses maxWalBytes under 1 MiB on the SQLite log itself, naming the key', () => {
    expect(() => new SqliteAuditLog({ maxWalBytes: 4096 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('maxWalBytes') }));
  });
});

describe('audit:backpressure', () => {
  it('is emitted with the WAL size while commits wait for a reader that holds an old snapshot, and the asks complete once it lets go', { timeout: 60_000 }, async () => {
    const path = freshPath();
    const b = busOn({ path, maxWalBytes: MiB });
    await burst(b, 1, 10, 'first'); // the file exists
    // Another connection reading: its snapshot keeps every later frame in the WAL.
    const reader = new Database(path, { readonly: true });
    reader.exec('BEGIN');
    reader.prepare('SELECT count(*) FROM audit_batch').get();
    const events: BusEvents['audit:backpressure'][] = [];
    let released = false;
    b.events.on('audit:backpressure', (e) => {
      events.push(e);
      // The writer waits for a checkpoint: this is when an operator's reader finishes.
      if (!released) {
        released = true;
        reader.exec('COMMIT');
      }
    });
    await burst(b, 100, 10_000);
    reader.close();
    expect(events.length).toBeGreaterThanOrEqual(1);
    expect(events[0]!.maxWalBytes).toBe(MiB);
    expect(events[0]!.walBytes).toBeGreaterThanOrEqual(0.75 * MiB);
    expect(events[0]!.walBytes).toBeLessThanOrEqual(MiB);
    await b.flush();
    expect(walSize(path)).toBeLessThanOrEqual(MiB);
    expect(b.verifyAuditLog()).toMatchObject({ ok: true });
  });
});

describe('audit:backpressure, when no checkpoint can be made', () => {
  /** Asks one at a time until one is refused (at most `cap`); returns the refusal. */
  async function askUntilRefused(b: Orchestrator, cap: number): Promise<unknown> {
    const sender = b.register('lone-sender');
    const text = 'x'.repeat(200);
    for (let i = 0; i < cap; i++) {
      try {
        await sender.ask('echo', 'ping', { i, text });
      } catch (e) {
        return e;
      }
    }
    throw new Error(`no ask was refused in ${cap}`);
  }

  it.each(modes)(
    'fails the batch closed with AUDIT_UNAVAILABLE %s while a reader holds its snapshot, writes none of it, and works again once the reader lets go',
    { timeout: 60_000 },
    async (_name, worker) => {
      // The wait is the only figure shortened; what the bus does at its end is what a user sees after 5 s.
      setBackpressureWait(50);
      const path = freshPath();
      // The longest busy timeout: a checkpoint that let SQLite wait for the reader would hold
      // the writing thread a minute per commit; the tries must be paced by the wait alone.
      const b = busOn({ path, worker, maxWalBytes: MiB, busyTimeoutMs: 60_000 });
      await burst(b, 1, 10, 'first'); // the file exists
      const reader = new Database(path, { readonly: true });
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) FROM audit_batch').get();
      const events: BusEvents['audit:backpressure'][] = [];
      b.events.on('audit:backpressure', (e) => void events.push(e));
      const headBefore = b.auditHead();

      const refused = (await askUntilRefused(b, 20_000)) as { code?: string; message?: string; messageId?: string };
      expect(refused).toMatchObject({ code: 'AUDIT_UNAVAILABLE', message: expect.stringContaining('audit.maxWalBytes (1048576)') });
      expect(refused.messageId).toEqual(expect.any(String));
      // The WAL never grew past its bound: the commits waited, then the batch failed instead.
      const wal = walSize(path);
      expect(wal).toBeGreaterThanOrEqual(0.75 * MiB);
      expect(wal).toBeLessThanOrEqual(MiB);
      expect(events).toEqual([{ walBytes: wal, maxWalBytes: MiB }]);
      // A second batch of the same episode fails closed too, at once (no second wait: with
      // worker: false each would hold the bus's thread, and a reader held for a minute would
      // cost a wait per batch).
      await expect(b.register('second').ask('echo', 'ping', {})).rejects.toMatchObject({ code: 'AUDIT_UNAVAILABLE', message: expect.stringContaining('ended in vain') });
      expect(events).toHaveLength(1);

      reader.exec('COMMIT');
      reader.close();
      await expect(b.register('after').ask('echo', 'ping', { after: true })).resolves.toEqual({ after: true });
      await b.flush();
      expect(walSize(path)).toBeLessThanOrEqual(MiB);
      expect(b.auditHead().seq).toBeGreaterThan(headBefore.seq);
      // Nothing half written: the refused ask is absent (its attempt was refused) or ends
      // failed (its reply was refused: the outcome is written once the log works), never
      // replied; the second one is absent; and the chain is whole.
      const ends = b.getMessageLog({ conversationId: refused.messageId!, limit: 10 }).map((e) => [e.outcome, e.code]);
      expect(ends.length === 0 ? [] : ends).toEqual(ends.length === 0 ? [] : [['failed', 'AUDIT_UNAVAILABLE']]);
      expect(b.getMessageLog({ agentId: 'second', limit: 10 })).toEqual([]);
      expect(b.getMessageLog({ agentId: 'after', type: 'ask', limit: 10 })).toMatchObject([{ from: 'after', outcome: 'replied' }]);
      expect(b.verifyAuditLog()).toMatchObject({ ok: true });
    },
  );
});

describe('WorkerAuditLog#holdStates()', () => {
  it("reads the file without waiting for an append that waits under backpressure (the approval flow's periodic look never blocks the bus's thread behind it)", { timeout: 60_000 }, async () => {
    // Longer than the worker log's own 10 s limit for a synchronous wait: waiting for the append would fail this test.
    setBackpressureWait(30_000);
    const path = freshPath();
    let told!: () => void;
    const backpressure = new Promise<void>((resolve) => (told = resolve));
    const log = new WorkerAuditLog({ path, maxWalBytes: MiB, onBackpressure: () => told() });
    const reader = new Database(path, { readonly: true });
    try {
      const next = attemptMaker();
      log.append([next()]);
      reader.exec('BEGIN');
      reader.prepare('SELECT count(*) FROM audit_batch').get();
      // Filled to three quarters: no checkpoint can shrink the WAL while the reader holds its snapshot.
      while (walSize(path) < 0.75 * MiB) log.append(Array.from({ length: 50 }, () => next({ reason: 'x'.repeat(200) })));
      let answered: Error | null | undefined;
      log.appendAsync([next()], (error) => (answered = error ?? null));
      await backpressure; // the worker waits for a checkpoint
      expect(log.holdStates()).toEqual([]);
      expect(answered).toBeUndefined(); // still waiting: holdStates did not wait for it
      reader.exec('COMMIT');
      log.drain();
      expect(answered).toBeNull();
      expect(log.verify()).toMatchObject({ ok: true });
    } finally {
      reader.close();
      log.close();
    }
  });
});

describe('Orchestrator#close()', () => {
  it.each(modes)('leaves no -wal or -shm bytes beside a file log %s, and the file copied alone holds every record', { timeout: 60_000 }, async (_name, worker) => {
    const path = freshPath();
    const b = busOn({ path, worker });
    await burst(b, 50, 3_000);
    expect(b.getMessageLog({ limit: 1 })).toHaveLength(1); // a worker log's queries open a reader connection
    const head = b.auditHead();
    await b.close();
    bus = undefined;
    const beside = readdirSync(dir!).filter((f) => f !== 'audit.db');
    expect(beside.map((f) => [f, statSync(join(dir!, f)).size]).filter(([, size]) => size !== 0)).toEqual([]);
    const alone = mkdtempSync(join(tmpdir(), 'switchboard-wal-copy-'));
    try {
      copyFileSync(path, join(alone, 'audit.db'));
      const copy = new SqliteAuditLog({ path: join(alone, 'audit.db'), readonly: true });
      expect(copy.head()).toEqual(head);
      expect(copy.verify()).toMatchObject({ ok: true, checked: head.seq });
      copy.close();
    } finally {
      rmSync(alone, { recursive: true, force: true });
    }
  });
});
