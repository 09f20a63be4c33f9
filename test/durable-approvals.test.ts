/**
 * Durable approvals: with a file log, held messages outlive close(), a crash and a restart;
 * decisions are taken once through the file; bus.result() reads a message's outcome after
 * a restart. Each test uses its own temporary file.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Orchestrator, SqliteAuditLog, isBusError, type OrchestratorOptions, type PendingApproval, type PolicyRule } from '../src/index.js';
import { LoopbackNetwork } from './support/loopback.js';

const RULES: PolicyRule[] = [{ from: 'purchase', to: 'payment', allow: ['ask', 'delegate', 'notify'], requireApproval: true }];

let dir: string;
let path: string;
const open: Orchestrator[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-durable-'));
  path = join(dir, 'audit.db');
});

afterEach(async () => {
  for (const b of open.splice(0)) await b.close();
  rmSync(dir, { recursive: true, force: true });
});

function bus(options: OrchestratorOptions = {}): Orchestrator {
  const b = new Orchestrator({ policies: RULES, audit: { path }, ...options });
  open.push(b);
  return b;
}

async function closeAll(): Promise<void> {
  for (const b of open.splice(0)) await b.close();
}

function errorOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

/** One ask held for approval on a bus with `clock`, then every bus closed (the hold stays in the file). */
async function holdOneAndClose(clock: { now(): number }, amount: number): Promise<PendingApproval | undefined> {
  const first = bus({ clock });
  first.register('payment', { handlers: { pay: () => 'paid' } });
  const asked = errorOf(first.register('purchase').ask('payment', 'pay', { amount }, { timeoutMs: 5_000 }));
  await first.flush();
  const [held] = first.approvals.list();
  await closeAll();
  await asked;
  return held;
}

/** Holds one ask from purchase to payment in a bus on the file, then closes that bus. */
async function holdAndClose(payload: unknown = { amount: 42 }, timeoutMs = 60_000): Promise<string> {
  const first = bus();
  first.register('payment', { handlers: { pay: (p: unknown) => ({ paid: (p as { amount: number }).amount }) } });
  const purchase = first.register('purchase');
  const asked = purchase.ask('payment', 'pay', payload, { timeoutMs });
  const failed = errorOf(asked);
  await first.flush();
  const [held] = first.approvals.list();
  await closeAll();
  expect((await failed as { code?: string }).code).toBe('CLOSED');
  return held!.id;
}

describe('durable approvals: close()', () => {
  it('leaves a held message held, and a bus opened on the file lists it with its payload and restored: true', async () => {
    const id = await holdAndClose({ amount: 42, to: 'ACME' });
    const second = bus();
    const [item, ...rest] = second.approvals.list();
    expect(rest).toEqual([]);
    expect(item).toMatchObject({ id, restored: true, envelope: { id, from: 'purchase', to: 'payment', intent: 'pay', payload: { amount: 42, to: 'ACME' } } });
    expect(second.getMessageLog().filter((e) => e.messageId === id)).toMatchObject([{ decision: 'pending' }]);
    expect(second.getMessageLog()[0]).not.toHaveProperty('approval');
  });

  it('approving a restored message delivers it once and result() gives the reply, also after another restart', async () => {
    const id = await holdAndClose({ amount: 7 });
    const second = bus();
    let calls = 0;
    second.register('payment', { handlers: { pay: (p: unknown) => ({ paid: (p as { amount: number }).amount, call: ++calls }) } });
    expect(second.approvals.approve(id, { by: 'ops' })).toEqual({ staged: true });
    await second.onIdle();
    await second.flush();
    expect(calls).toBe(1);
    await closeAll();
    // Decided: the stored copy is gone, the payload's hash stays with its pending row.
    const db = new Database(path, { readonly: true });
    expect(db.prepare('SELECT count(*) FROM approval_hold').pluck().get()).toBe(0);
    db.close();
    const third = bus();
    expect(third.approvals.list()).toEqual([]);
    expect(third.getMessageLog().find((e) => e.messageId === id && e.type === 'ask')).toMatchObject({ payloadHash: expect.stringMatching(/^[0-9a-f]{64}$/), approval: 'approved' });
    expect(await third.result(id)).toEqual({ paid: 7, call: 1 });
    // Kept until read: once read, the log says it was answered and no longer keeps it.
    expect(await errorOf(third.result(id))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(calls).toBe(1);
  });
});

/** Runs the child that holds one ask, kills it with SIGKILL once the hold is committed, and returns the held id. */
function holdAndKill(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = join(import.meta.dirname, 'fixtures', 'durable-child.ts');
    const proc = spawn(process.execPath, ['--import', 'tsx', child, path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let id: string | undefined;
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /held (\S+)\n/.exec(out);
      if (match !== null && id === undefined) {
        id = match[1];
        proc.kill('SIGKILL');
      }
    });
    proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    proc.on('exit', (_code, signal) => {
      if (signal !== 'SIGKILL' || id === undefined) reject(new Error(`child exited without being killed: ${err}`));
      else resolve(id);
    });
  });
}

describe('durable approvals: a crash', () => {
  it('a held message survives SIGKILL and is restored with its payload', async () => {
    const id = await holdAndKill();
    const b = bus();
    expect(b.approvals.list()).toMatchObject([{ id, restored: true, envelope: { payload: { amount: 99, memo: 'held across a crash' } } }]);
    b.register('payment', { handlers: { pay: (p: unknown) => ({ paid: (p as { amount: number }).amount }) } });
    b.approvals.approve(id, { by: 'ops' });
    expect(await b.result(id)).toEqual({ paid: 99 });
  }, 30_000);
});

describe('durable approvals: decisions after a restart', () => {
  it('rejecting a restored message records it and result() rejects with APPROVAL_REJECTED', async () => {
    const id = await holdAndClose();
    const b = bus();
    b.approvals.reject(id, { by: 'ops', reason: 'not this month' });
    expect(b.approvals.list()).toEqual([]);
    const e = await errorOf(b.result(id));
    expect(isBusError(e) && e.code).toBe('APPROVAL_REJECTED');
    await closeAll();
    const again = bus();
    expect(again.approvals.list()).toEqual([]);
    expect(await errorOf(again.result(id))).toMatchObject({ code: 'APPROVAL_REJECTED', message: expect.stringContaining('not this month') });
    expect(again.getMessageLog().find((entry) => entry.messageId === id)).toMatchObject({ approval: 'rejected', decidedBy: 'ops', outcome: 'failed' });
  });

  it('a hold whose deadline passed while no process ran is recorded APPROVAL_EXPIRED at open', async () => {
    let now = Date.now();
    const clock = { now: () => now };
    const held = await holdOneAndClose(clock, 1);
    now += 10_000;
    const second = bus({ clock });
    expect(second.approvals.list()).toEqual([]);
    expect(second.getMessageLog().find((e) => e.messageId === held!.id)).toMatchObject({ approval: 'expired', outcome: 'expired' });
    expect(await errorOf(second.result(held!.id))).toMatchObject({ code: 'APPROVAL_EXPIRED' });
  });

  it('a restored hold keeps its deadline and expires at it', async () => {
    const id = await holdAndClose({ amount: 3 }, 1_500);
    const b = bus();
    expect(b.approvals.list().map((a) => a.id)).toEqual([id]);
    const decided = new Promise((resolve) => b.events.on('approval:decided', (e) => resolve(e.decision)));
    expect(await decided).toBe('expired');
    expect(await errorOf(b.result(id))).toMatchObject({ code: 'APPROVAL_EXPIRED' });
  });

  it('approving a restored message before its recipient registers delivers it when it does', async () => {
    const id = await holdAndClose({ amount: 5 });
    const b = bus();
    expect(b.approvals.approve(id)).toEqual({ staged: true });
    expect(b.approvals.list()).toEqual([]);
    const result = b.result(id);
    b.register('payment', { handlers: { pay: () => 'paid late' } });
    expect(await result).toBe('paid late');
  });

  it('an approved message still waiting for its recipient survives a restart and is delivered once it registers', async () => {
    const id = await holdAndClose({ amount: 8 });
    const second = bus();
    second.approvals.approve(id, { by: 'ops' }); // no payment agent in this process
    await closeAll();
    const third = bus();
    expect(third.approvals.list()).toEqual([]); // decided: not listed again
    const result = third.result(id);
    third.register('payment', { handlers: { pay: (p: unknown) => ({ paid: (p as { amount: number }).amount }) } });
    expect(await result).toEqual({ paid: 8 });
    expect(third.getMessageLog().find((e) => e.messageId === id)).toMatchObject({ approval: 'approved', decidedBy: 'ops', outcome: 'replied' });
  });

  it('a stored payload edited in the file is not delivered: recorded failed with INVALID_PAYLOAD', async () => {
    const id = await holdAndClose({ amount: 5 });
    const db = new Database(path);
    db.prepare('UPDATE approval_hold SET payload = ?').run(JSON.stringify({ amount: 5_000_000 }));
    db.close();
    const b = bus();
    const pay = vi.fn(() => 'paid');
    b.register('payment', { handlers: { pay } });
    expect(b.approvals.list()).toEqual([]);
    expect(await errorOf(b.result(id))).toMatchObject({ code: 'INVALID_PAYLOAD' });
    expect(pay).not.toHaveBeenCalled();
  });
});

describe('durable approvals: an edited approved flag', () => {
  it('a hold marked approved in the file with no approval row in the log is not delivered: recorded failed with INVALID_PAYLOAD', async () => {
    const id = await holdAndClose({ amount: 9 });
    const db = new Database(path);
    db.prepare('UPDATE approval_hold SET approved = 1').run();
    db.close();
    const b = bus();
    const pay = vi.fn(() => 'paid');
    b.register('payment', { handlers: { pay } });
    expect(b.approvals.list()).toEqual([]);
    expect(await errorOf(b.result(id))).toMatchObject({ code: 'INVALID_PAYLOAD' });
    expect(pay).not.toHaveBeenCalled();
    expect(b.getMessageLog().find((e) => e.messageId === id)).toMatchObject({ approval: 'cancelled', outcome: 'failed' });
  });

  it('a delivered message whose hold is put back in the file, marked approved, is not delivered again', async () => {
    const id = await holdAndClose({ amount: 11 });
    const db = new Database(path);
    const saved = db.prepare('SELECT * FROM approval_hold').all() as Record<string, unknown>[];
    db.close();
    const pay = vi.fn(() => 'paid');
    const second = bus();
    second.register('payment', { handlers: { pay } });
    second.approvals.approve(id, { by: 'ops' });
    expect(await second.result(id)).toBe('paid');
    await closeAll();
    const edit = new Database(path);
    for (const row of saved) {
      const keys = Object.keys(row);
      edit.prepare(`INSERT INTO approval_hold (${keys.join(', ')}) VALUES (${keys.map(() => '?').join(', ')})`).run(...keys.map((k) => (k === 'approved' ? 1 : row[k])));
    }
    edit.close();
    const third = bus();
    third.register('payment', { handlers: { pay } });
    await third.flush();
    expect(pay).toHaveBeenCalledTimes(1);
    expect(third.approvals.list()).toEqual([]);
  });

  it('a rejected message whose hold is put back in the file is not delivered when approved: the approval is refused INVALID_PAYLOAD', async () => {
    const id = await holdAndClose({ amount: 12 });
    const db = new Database(path);
    const saved = db.prepare('SELECT * FROM approval_hold').all() as Record<string, unknown>[];
    db.close();
    bus().approvals.reject(id, { by: 'ops', reason: 'no' });
    await closeAll();
    const edit = new Database(path);
    for (const row of saved) {
      const keys = Object.keys(row);
      edit.prepare(`INSERT INTO approval_hold (${keys.join(', ')}) VALUES (${keys.map(() => '?').join(', ')})`).run(...keys.map((k) => row[k]));
    }
    edit.close();
    const third = bus();
    const pay = vi.fn(() => 'paid');
    third.register('payment', { handlers: { pay } });
    expect(third.approvals.list().map((a) => a.id)).toEqual([id]);
    expect(third.approvals.approve(id, { by: 'ops' })).toMatchObject({ staged: false, code: 'INVALID_PAYLOAD' });
    await third.flush();
    expect(pay).not.toHaveBeenCalled();
    expect(third.approvals.list()).toEqual([]);
  });

  it('a hold another process shows approved in the file with no approval row is not delivered by the bus that listed it', async () => {
    const id = await holdAndClose({ amount: 10 });
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const b = bus();
      const pay = vi.fn(() => 'paid');
      b.register('payment', { handlers: { pay } });
      expect(b.approvals.list().map((a) => a.id)).toEqual([id]);
      const db = new Database(path);
      db.prepare('UPDATE approval_hold SET approved = 1').run();
      db.close();
      const settled = errorOf(b.result(id));
      vi.advanceTimersByTime(1_000);
      expect(await settled).toMatchObject({ code: 'INVALID_PAYLOAD' });
      expect(pay).not.toHaveBeenCalled();
      expect(b.approvals.list()).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('durable approvals: an edited rule', () => {
  it('a restored hold shows the rule its chained pending row records, not the one the file\'s hold row says', async () => {
    const id = await holdAndClose({ amount: 14 });
    const before = new Database(path, { readonly: true });
    const recorded = before.prepare('SELECT rule FROM approval_hold').pluck().get();
    before.close();
    expect(typeof recorded).toBe('string');
    const db = new Database(path);
    db.prepare('UPDATE approval_hold SET rule = ?').run('petty cash, auto-approve');
    db.close();
    const [item] = bus().approvals.list();
    expect(item).toMatchObject({ id, rule: recorded });
  });
});

describe('Orchestrator#result(): an edited kept reply', () => {
  it('rejects with INVALID_PAYLOAD when the kept reply does not match the hash its reply row records, never resolving with it', async () => {
    const id = await holdAndClose({ amount: 13 });
    const second = bus();
    second.approvals.approve(id, { by: 'ops' });
    second.register('payment', { handlers: { pay: () => ({ paid: 13 }) } });
    await second.onIdle();
    await closeAll();
    const db = new Database(path);
    expect(db.prepare('UPDATE kept_reply SET reply = ?').run(JSON.stringify({ paid: 13_000_000 })).changes).toBe(1);
    db.close();
    expect(await errorOf(bus().result(id))).toMatchObject({ code: 'INVALID_PAYLOAD' });
  });
});

describe('durable approvals: retention', () => {
  it('a kept reply goes with its row when retention (maxRows) drops it', async () => {
    const id = await holdAndClose({ amount: 2 });
    const policies: PolicyRule[] = [...RULES, { from: 'a', to: 'b', allow: ['ask'] }];
    const b = bus({ policies, audit: { path, maxRows: 300 }, limits: { rate: false } });
    b.register('payment', { handlers: { pay: () => 'kept for a while' } });
    b.approvals.approve(id);
    await b.onIdle();
    await b.flush();
    const count = () => {
      const db = new Database(path, { readonly: true });
      try {
        return db.prepare('SELECT count(*) FROM kept_reply').pluck().get();
      } finally {
        db.close();
      }
    };
    expect(count()).toBe(1);
    b.register('b', { handlers: { ping: () => 'pong' } });
    const a = b.register('a');
    for (let round = 0; round < 8; round++) await Promise.all(Array.from({ length: 50 }, () => a.ask('b', 'ping', {})));
    await b.flush();
    expect(count()).toBe(0);
    expect(await errorOf(b.result(id))).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('durable approvals: a notify', () => {
  it('a held notify is restored, and approving it delivers it; result() resolves once delivered', async () => {
    const first = bus();
    first.register('payment', { handlers: { '*': () => undefined } });
    const receipt = await first.register('purchase').notify('invoice', { n: 1 }, { to: ['payment'] });
    expect(receipt.pending).toEqual(['payment']);
    await closeAll();
    const second = bus();
    const [held] = second.approvals.list();
    expect(held).toMatchObject({ id: `${receipt.id}/payment`, restored: true, envelope: { type: 'notify', payload: { n: 1 } } });
    const got = new Promise((resolve) => second.register('payment', { handlers: { invoice: (p) => resolve(p) } }));
    second.approvals.approve(held!.id);
    expect(await got).toEqual({ n: 1 });
    expect(await second.result(receipt.id)).toBeUndefined();
  });
});

describe('durable approvals: decided once', () => {
  it('of two buses on one file deciding the same message, the first wins and the second gets INVALID_ARGUMENT', async () => {
    const a = bus();
    a.register('payment', { handlers: { pay: () => 'paid by a' } });
    const asked = a.register('purchase').ask('payment', 'pay', { amount: 1 });
    await a.flush();
    const [held] = a.approvals.list();
    const b = bus();
    const pay = vi.fn(() => 'paid by b');
    b.register('payment', { handlers: { pay } });
    expect(b.approvals.list().map((x) => x.id)).toEqual([held!.id]);
    expect(b.approvals.approve(held!.id, { by: 'console b' })).toEqual({ staged: true });
    const second = (() => {
      try {
        a.approvals.reject(held!.id, { by: 'console a' });
        return undefined;
      } catch (e) {
        return e;
      }
    })();
    expect(second).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('already decided') });
    // The live sender in the first bus gets the reply the second delivered.
    expect(await asked).toBe('paid by b');
    expect(pay).toHaveBeenCalledTimes(1);
    const decisions = a.getMessageLog().filter((e) => e.messageId === held!.id);
    expect(decisions).toMatchObject([{ approval: 'approved', decidedBy: 'console b' }]);
  });

  it('a console bus on the same file lists what another holds later, and its approval is delivered where the recipient is', async () => {
    const console_ = bus(); // an operator's process: no agents of its own
    const requested = new Promise<string>((resolve) => console_.events.on('approval:requested', (e) => resolve(e.approval.id)));
    const app = bus();
    const pay = vi.fn((p: unknown) => ({ paid: (p as { amount: number }).amount }));
    app.register('payment', { handlers: { pay } });
    const asked = app.register('purchase').ask('payment', 'pay', { amount: 12 });
    const id = await requested; // seen in the file, without a restart
    expect(console_.approvals.list()).toMatchObject([{ id, restored: true, envelope: { payload: { amount: 12 } } }]);
    expect(console_.approvals.approve(id, { by: 'ops' })).toEqual({ staged: true });
    // The process with the recipient delivers it, and its live sender gets the reply.
    expect(await asked).toEqual({ paid: 12 });
    expect(pay).toHaveBeenCalledTimes(1);
    expect(app.approvals.list()).toEqual([]);
    expect(app.getMessageLog().find((e) => e.messageId === id)).toMatchObject({ approval: 'approved', decidedBy: 'ops', outcome: 'replied' });
  });

  it('approving twice in one bus: the second gets INVALID_ARGUMENT', async () => {
    const id = await holdAndClose();
    const b = bus();
    b.register('payment', { handlers: { pay: () => 'ok' } });
    b.approvals.approve(id);
    expect(() => b.approvals.approve(id)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('Orchestrator#result()', () => {
  it('rejects with INVALID_ARGUMENT for an id the log does not hold', async () => {
    const b = bus();
    expect(await errorOf(b.result('no-such-id'))).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('no-such-id') });
    expect(await errorOf(b.result(42 as unknown as string))).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('waits for a message in flight and resolves with its reply', async () => {
    const b = bus({ policies: [{ from: 'a', to: 'b', allow: ['delegate'] }] });
    let release!: () => void;
    const started = new Promise<void>((running) => {
      b.register('b', {
        handlers: {
          work: () =>
            new Promise((r) => {
              release = () => r('done');
              running();
            }),
        },
      });
    });
    const job = b.register('a').delegate('b', 'work', {});
    const result = b.result(job.id);
    await started;
    release();
    expect(await result).toBe('done');
    expect(await job).toBe('done');
  });

  it('a :memory: log keeps the old behaviour: close() cancels a held message (CLOSED), a file log leaves it held', async () => {
    const decisions: string[] = [];
    for (const options of [{ audit: {} }, { audit: { path } }]) {
      const b = new Orchestrator({ policies: RULES, ...options });
      b.events.on('approval:decided', (e) => decisions.push(`${options.audit.path === undefined ? 'memory' : 'file'}: ${e.decision}`));
      b.register('payment', { handlers: { pay: () => 'paid' } });
      const asked = errorOf(b.register('purchase').ask('payment', 'pay', {}));
      await b.flush();
      await b.close();
      expect(await asked).toMatchObject({ code: 'CLOSED' });
    }
    expect(decisions).toEqual(['memory: cancelled']);
  });
});

describe('Orchestrator#result(): many waiters', () => {
  it('reads the log once per look for one message, however many callers wait for it', async () => {
    const b = bus();
    b.register('payment', { handlers: { pay: () => undefined } });
    void b.register('purchase').notify('pay', { amount: 1 }, { to: ['payment'] });
    await b.flush();
    const [held] = b.approvals.list();
    const id = held!.envelope.id;
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const waiting = Array.from({ length: 50 }, () => b.result(id));
      const reads = vi.spyOn(SqliteAuditLog.prototype, 'messageRecords');
      vi.advanceTimersByTime(200);
      expect(reads).toHaveBeenCalledTimes(1);
      reads.mockRestore();
      b.approvals.approve(held!.id);
      await b.flush();
      vi.advanceTimersByTime(200);
      expect(await Promise.all(waiting)).toEqual(Array(50).fill(undefined));
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('Orchestrator#result() without a file', () => {
  it('reads a finished message from a :memory: log, on the bus thread or a worker', async () => {
    for (const worker of [false, true]) {
      const b = new Orchestrator({ policies: [{ from: 'a', to: 'b', allow: ['ask'] }], audit: { worker } });
      open.push(b);
      b.register('b', { handlers: { fail: () => Promise.reject(new Error('no stock')) } });
      const id = await errorOf(b.register('a').ask('b', 'fail', {})).then((e) => (e as { messageId: string }).messageId);
      expect(await errorOf(b.result(id))).toMatchObject({ code: 'HANDLER_FAILED', message: expect.stringContaining('no stock') });
    }
  });
});

describe('durable approvals: held at the sender on the way to another node', () => {
  it('a message held at the sending node survives its restart and is carried once approved there', async () => {
    const net = new LoopbackNetwork();
    const hold: PolicyRule[] = [{ from: 'a', to: 'b', allow: ['ask'], requireApproval: true }];
    const n2 = new Orchestrator({ node: 'n2', transport: net.transport(), policies: [{ from: 'a', to: 'b', allow: ['ask'] }] });
    const paid: unknown[] = [];
    n2.register('b', { handlers: { pay: (p: unknown) => (paid.push(p), 'paid on n2') } });
    try {
      const first = bus({ node: 'n1', transport: net.transport(), policies: hold });
      const asked = errorOf(first.register('a').ask('b', 'pay', { amount: 5 }));
      await first.flush();
      const [held] = first.approvals.list();
      expect(held?.envelope).toMatchObject({ from: 'a', to: 'b', payload: { amount: 5 } });
      await closeAll();
      expect(await asked).toMatchObject({ code: 'CLOSED' });
      const again = bus({ node: 'n1', transport: net.transport(), policies: hold });
      expect(again.approvals.list()).toMatchObject([{ id: held!.id, restored: true }]);
      expect(again.approvals.approve(held!.id, { by: 'ops' })).toEqual({ staged: true });
      expect(await again.result(held!.envelope.id)).toBe('paid on n2');
      expect(paid).toEqual([{ amount: 5 }]);
    } finally {
      await n2.close();
    }
  });
});

/** Changes one stored hold row in the file, as anyone who can write the file could. */
function editHold(sql: string, ...params: unknown[]): void {
  const db = new Database(path);
  expect(db.prepare(`UPDATE approval_hold SET ${sql}`).run(...params).changes).toBe(1);
  db.close();
}

describe('durable approvals: an edited hold row (the chained pending row vouches for what a restored hold acts on)', () => {
  it('raising the stored trust does not let a minTrust rule pass at approval: refused POLICY_DENIED with the trust the sender had', async () => {
    const first = bus();
    first.register('payment', { handlers: { pay: () => 'paid' } });
    const asked = errorOf(first.register('purchase', { trust: 0.1 }).ask('payment', 'pay', { amount: 1 }, { timeoutMs: 60_000 }));
    await first.flush();
    const [held] = first.approvals.list();
    await closeAll();
    await asked;
    editHold('trust = ?', 0.9);
    // The policy in force now asks for trust 0.5 before it holds (or delivers) anything.
    const b = bus({ policies: [{ from: 'purchase', to: 'payment', allow: ['ask'], requireApproval: true, minTrust: 0.5 }] });
    const pay = vi.fn(() => 'paid');
    b.register('payment', { handlers: { pay } });
    expect(b.approvals.approve(held!.id)).toMatchObject({ staged: false, delivered: false, code: 'POLICY_DENIED' });
    expect(await errorOf(b.result(held!.envelope.id))).toMatchObject({ code: 'POLICY_DENIED' });
    expect(pay).not.toHaveBeenCalled();
  });

  it('a later expires_at does not extend the hold: recorded APPROVAL_EXPIRED at open once its recorded expiry passed', async () => {
    let now = Date.now();
    const clock = { now: () => now };
    const held = await holdOneAndClose(clock, 2);
    editHold('expires_at = ?, requested_at = ?', now + 86_400_000, now + 60_000);
    now += 10_000;
    const b = bus({ clock });
    expect(b.approvals.list()).toEqual([]);
    expect(await errorOf(b.result(held!.id))).toMatchObject({ code: 'APPROVAL_EXPIRED' });
  });

  it('a later expires_at does not extend a hold restored before its expiry: it is listed with, and expires at, the recorded one', async () => {
    let now = Date.now();
    const clock = { now: () => now };
    const held = await holdOneAndClose(clock, 3);
    editHold('expires_at = ?, requested_at = ?', now + 86_400_000, now + 60_000);
    const [item] = bus({ clock }).approvals.list();
    expect(item).toMatchObject({ id: held!.id, requestedAt: held!.requestedAt, expiresAt: held!.expiresAt });
  });

  it('an edited stored deadline, priority and depth have no effect: the restored envelope has the recorded ones', async () => {
    const first = bus();
    first.register('payment', { handlers: { pay: () => 'paid' } });
    const asked = errorOf(first.register('purchase').ask('payment', 'pay', { amount: 4 }, { timeoutMs: 60_000, priority: 'low' }));
    await first.flush();
    const [held] = first.approvals.list();
    expect(held!.envelope).toMatchObject({ priority: 'low', depth: 0 });
    await closeAll();
    await asked;
    editHold('envelope = ?', JSON.stringify({ priority: 'critical', depth: 7, deadline: held!.envelope.deadline! + 86_400_000 }));
    const [item] = bus().approvals.list();
    expect(item!.envelope).toMatchObject({ priority: 'low', depth: 0, deadline: held!.envelope.deadline });
    expect(item!.expiresAt).toBe(held!.expiresAt);
  });

  it('an untouched log with restored holds still verifies', async () => {
    await holdAndClose({ amount: 5 });
    const b = bus();
    expect(b.approvals.list()).toHaveLength(1);
    await closeAll();
    const log = new SqliteAuditLog({ path });
    try {
      expect(log.verify()).toMatchObject({ ok: true });
    } finally {
      log.close();
    }
  });

  it('a hold written before its row recorded these (an older version) is restored with trust 0 and no later than its row time + approvals.ttlMs', async () => {
    const ts = Date.now();
    const payload = JSON.stringify({ amount: 6 });
    const week = 7 * 86_400_000;
    const log = new SqliteAuditLog({ path });
    // What the older version wrote: the pending row without the hold column, the rest only in the hold table.
    log.append([
      {
        kind: 'attempt', ts, messageId: 'm-old', from: 'purchase', to: 'payment', type: 'ask', intent: 'pay',
        payloadHash: createHash('sha256').update(payload).digest('hex'), payloadBytes: Buffer.byteLength(payload),
        decision: 'pending', policyVersion: 1, conversationId: 'c-old',
        held: { envelope: JSON.stringify({ priority: 'normal', depth: 0, deadline: ts + week }), payload, requestedAt: ts, expiresAt: ts + week, trust: 0.9 },
      },
    ]);
    log.close();
    const b = bus({ approvals: { ttlMs: 60_000 }, policies: [{ from: 'purchase', to: 'payment', allow: ['ask'], requireApproval: true, minTrust: 0.5 }] });
    const [item] = b.approvals.list();
    expect(item).toMatchObject({ id: 'm-old', restored: true, requestedAt: ts, expiresAt: ts + 60_000, envelope: { deadline: ts + 60_000, payload: { amount: 6 } } });
    const pay = vi.fn(() => 'paid');
    b.register('payment', { handlers: { pay } });
    expect(b.approvals.approve('m-old')).toMatchObject({ staged: false, code: 'POLICY_DENIED' });
    expect(pay).not.toHaveBeenCalled();
  });
});
