// SPEC "Durable approvals (a file log)" and `bus.result()`: holds that outlive close(), a
// restart, expiry while down, approval before the recipient exists, one decision per message.
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { Orchestrator, type PolicyRule } from '../../src/index.js';
import { closeAll, dbPath, refusal, removeDirs, settle } from './probe-kit.js';

const extra: Orchestrator[] = [];
afterEach(async () => {
  await Promise.all(extra.splice(0).map((b) => b.close()));
  await closeAll();
  removeDirs();
});

const policies: PolicyRule[] = [
  { from: 'p', to: 'pay', allow: ['ask', 'delegate', 'notify'], requireApproval: true },
  { from: 'p', to: 'x', allow: ['ask', 'notify'] },
];

function open(path: string, now: () => number = Date.now): Orchestrator {
  const b = new Orchestrator({ audit: { path }, policies, clock: { now } });
  extra.push(b);
  return b;
}

/** Every table cell of a closed database file that contains `needle`, as "table". */
function tablesHolding(path: string, needle: string): string[] {
  const db = new Database(path, { readonly: true });
  try {
    const found = new Set<string>();
    for (const { name } of db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>) {
      for (const row of db.prepare(`SELECT * FROM "${name}"`).all() as Array<Record<string, unknown>>) {
        for (const v of Object.values(row)) {
          if ((typeof v === 'string' && v.includes(needle)) || (Buffer.isBuffer(v) && v.includes(needle))) found.add(name);
        }
      }
    }
    return [...found];
  } finally {
    db.close();
  }
}

async function holdAndClose(path: string, now: () => number, timeoutMs = 60_000): Promise<{ id: string; decided: string[]; senderCode: Promise<string> }> {
  const b1 = open(path, now);
  b1.register('pay', { handlers: { go: () => 'paid' } });
  const decided: string[] = [];
  b1.events.on('approval:decided', (e) => decided.push(e.decision));
  const asked = b1.register('p').ask('pay', 'go', { marker: 'HELD-PAYLOAD-7f3a' }, { timeoutMs });
  const senderCode = asked.then(
    () => 'resolved',
    (e: { code: string }) => e.code,
  );
  await settle();
  const id = b1.approvals.list()[0]!.id;
  await b1.close();
  return { id, decided, senderCode };
}

describe('"a held message (envelope and payload) is stored in the same database … It survives close(), a crash and a restart"', () => {
  it('close() leaves it held (no "cancelled" decision); the old sender\'s promise rejects CLOSED', async () => {
    const path = dbPath();
    const { decided, senderCode } = await holdAndClose(path, Date.now);
    expect(decided).toEqual([]);
    expect(await senderCode).toBe('CLOSED');
    expect(tablesHolding(path, 'HELD-PAYLOAD-7f3a').length).toBeGreaterThan(0);
  });

  it('a bus opened on the file lists it with payload and restored: true, keeping its deadline', async () => {
    const path = dbPath();
    let now = 1_000_000;
    const { id } = await holdAndClose(path, () => now, 60_000);
    now += 10_000;
    const b2 = open(path, () => now);
    const [item] = b2.approvals.list();
    expect(item).toMatchObject({ id, restored: true, envelope: { id, from: 'p', to: 'pay', intent: 'go', payload: { marker: 'HELD-PAYLOAD-7f3a' } } });
    expect(item!.expiresAt).toBe(1_000_000 + 60_000);
    expect(item!.envelope.deadline).toBe(1_000_000 + 60_000);
    expect(Object.isFrozen(item!.envelope.payload)).toBe(true);
  });

  it('"those that passed while the process was down are recorded APPROVAL_EXPIRED at open"', async () => {
    const path = dbPath();
    let now = 1_000_000;
    const { id } = await holdAndClose(path, () => now, 5_000);
    now += 5_001;
    const b2 = open(path, () => now);
    expect(b2.approvals.list()).toEqual([]);
    expect(b2.getMessageLog().find((e) => e.messageId === id)).toMatchObject({ approval: 'expired', outcome: 'expired' });
    const e = await refusal(b2.result(id));
    expect(e.code).toBe('APPROVAL_EXPIRED');
    await b2.close();
    expect(tablesHolding(path, 'HELD-PAYLOAD-7f3a')).toEqual([]);
  });
});

describe('"Approving a restored message delivers it once its recipient is registered"; bus.result()', () => {
  it('approve before the recipient exists, register it, and result() resolves with the reply; the payload is gone from the file', async () => {
    const path = dbPath();
    const { id } = await holdAndClose(path, Date.now);
    const b2 = open(path);
    expect(b2.approvals.approve(id, { by: 'alice' })).toEqual({ staged: true });
    const result = b2.result(id);
    await settle();
    b2.register('pay', { handlers: { go: (p: unknown) => ({ paidFor: (p as { marker: string }).marker }) } });
    await expect(result).resolves.toEqual({ paidFor: 'HELD-PAYLOAD-7f3a' });
    await b2.flush();
    expect(b2.getMessageLog().find((e) => e.messageId === id)).toMatchObject({ approval: 'approved', decidedBy: 'alice', outcome: 'replied' });
    await b2.close();
    expect(tablesHolding(path, 'HELD-PAYLOAD-7f3a')).toEqual([]);
  });

  it('reject of a restored message: result() rejects APPROVAL_REJECTED with the reason, also after another restart', async () => {
    const path = dbPath();
    const { id } = await holdAndClose(path, Date.now);
    const b2 = open(path);
    b2.approvals.reject(id, { by: 'bob', reason: 'no budget' });
    const e = await refusal(b2.result(id));
    expect(e).toMatchObject({ code: 'APPROVAL_REJECTED', messageId: id });
    expect(e.message).toContain('no budget');
    await b2.close();
    const b3 = open(path);
    const again = await refusal(b3.result(id));
    expect(again.code).toBe('APPROVAL_REJECTED');
  });

  it('result() of a live ask waits for it and resolves with the reply; of an unknown id rejects INVALID_ARGUMENT naming it', async () => {
    const b = open(dbPath());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: (id: string) => void;
    const running = new Promise<string>((r) => (entered = r));
    b.register('x', { handlers: { go: async (_p, ctx) => (entered(ctx.message.id), await gate, 'xx') } });
    const asked = b.register('p').ask('x', 'go', 1);
    const result = b.result(await running);
    release();
    await expect(result).resolves.toBe('xx');
    await expect(asked).resolves.toBe('xx');
    const e = await refusal(b.result('no-such-message'));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toContain('no-such-message');
  });

  it('result() of a refused message rejects with its refusal code', async () => {
    const b = open(dbPath());
    const p = b.register('p');
    const e = await refusal(p.ask('nobody', 'go', 1));
    await b.flush();
    expect((await refusal(b.result(e.messageId!))).code).toBe('UNKNOWN_AGENT');
  });

  it('a waiting result() rejects CLOSED when the bus closes', async () => {
    const path = dbPath();
    const { id } = await holdAndClose(path, Date.now);
    const b2 = open(path);
    const waiting = b2.result(id);
    await b2.close();
    expect((await refusal(waiting)).code).toBe('CLOSED');
  });
});

describe('"A decision is taken once: of two operators deciding the same message … the first wins and the second gets INVALID_ARGUMENT"', () => {
  for (const [first, second] of [
    ['reject', 'approve'],
    ['approve', 'approve'],
    ['approve', 'reject'],
    ['reject', 'reject'],
  ] as const) {
    it(`two buses on one file: ${first} in one, then ${second} in the other is INVALID_ARGUMENT "already decided", and the first decision stands`, async () => {
      const path = dbPath();
      const { id } = await holdAndClose(path, Date.now);
      const one = open(path);
      const two = open(path);
      expect(one.approvals.list().map((i) => i.id)).toEqual([id]);
      expect(two.approvals.list().map((i) => i.id)).toEqual([id]);
      if (first === 'reject') one.approvals.reject(id, { by: 'alice' });
      else expect(one.approvals.approve(id, { by: 'alice' })).toEqual({ staged: true });
      await one.flush();
      const decide = () => (second === 'reject' ? two.approvals.reject(id, { by: 'bob' }) : two.approvals.approve(id, { by: 'bob' }));
      expect(decide).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('already decided') }));
      await two.flush();
      const rows = two.getMessageLog().filter((e) => e.messageId === id);
      expect(rows).toMatchObject([{ approval: first === 'reject' ? 'rejected' : 'approved', decidedBy: 'alice' }]);
    });
  }
});
