// SPEC "Approval queue" (one process, in-memory log): hold, approve, reject, expiry, the
// re-check, always, list() items, caps and events.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BusEvents, PolicyRule } from '../../src/index.js';
import { bus, closeAll, refusal, settle } from './probe-kit.js';

afterEach(async () => {
  await closeAll();
  vi.useRealTimers();
});

const HOLD: PolicyRule[] = [
  { from: 'purchase', to: 'payment', allow: ['ask', 'delegate', 'notify'], requireApproval: true, name: 'payments need a human' },
];

function setup(options: Parameters<typeof bus>[0] = {}) {
  const b = bus({ policies: HOLD, ...options });
  const ran: unknown[] = [];
  b.register('payment', { handlers: { pay: (p) => (ran.push(p), { paid: true }) } });
  const purchase = b.register('purchase');
  const requested: Array<BusEvents['approval:requested']> = [];
  const decided: Array<BusEvents['approval:decided']> = [];
  b.events.on('approval:requested', (e) => requested.push(e));
  b.events.on('approval:decided', (e) => decided.push(e));
  return { b, ran, purchase, requested, decided };
}

describe('"A held message is delivered only after approve"', () => {
  it('holds, lists, then delivers on approve() → { staged: true }; the audit row names the approver', async () => {
    const { b, ran, purchase, requested, decided } = setup();
    const asked = purchase.ask('payment', 'pay', { amount: 5 });
    await settle();
    expect(ran).toEqual([]);
    const [item] = b.approvals.list();
    expect(requested).toHaveLength(1);
    expect(requested[0]!.approval.id).toBe(item!.id);
    expect(b.approvals.approve(item!.id, { by: 'alice', note: 'fine' })).toEqual({ staged: true });
    await expect(asked).resolves.toEqual({ paid: true });
    expect(ran).toEqual([{ amount: 5 }]);
    expect(decided).toHaveLength(1);
    expect(decided[0]).toMatchObject({ decision: 'approved', by: 'alice', note: 'fine' });
    expect(b.approvals.list()).toEqual([]);
    await b.flush();
    const entry = b.getMessageLog({ type: 'ask' })[0]!;
    expect(entry).toMatchObject({ decision: 'pending', approval: 'approved', decidedBy: 'alice', outcome: 'replied' });
  });

  it('"reject makes the sender\'s promise reject with APPROVAL_REJECTED (with the reason)"', async () => {
    const { b, ran, purchase, decided } = setup();
    const asked = purchase.ask('payment', 'pay', { amount: 5 });
    await settle();
    b.approvals.reject(b.approvals.list()[0]!.id, { by: 'bob', reason: 'over budget' });
    const e = await refusal(asked);
    expect(e.code).toBe('APPROVAL_REJECTED');
    expect(e.reason).toBe('over budget');
    expect(e.message).toContain('over budget');
    expect(ran).toEqual([]);
    expect(decided[0]).toMatchObject({ decision: 'rejected', by: 'bob', reason: 'over budget' });
    await b.flush();
    expect(b.getMessageLog({ type: 'ask' })[0]).toMatchObject({ approval: 'rejected', decidedBy: 'bob' });
  });

  it('a held notify shows in the receipt\'s `pending`, then is delivered on approve', async () => {
    const { b, ran, purchase } = setup();
    const receipt = await purchase.notify('pay', { n: 1 }, { to: ['payment'] });
    expect(receipt.pending).toEqual(['payment']);
    b.approvals.approve(b.approvals.list()[0]!.id);
    await settle();
    expect(ran).toEqual([{ n: 1 }]);
  });
});

describe('"a held item expires at the message\'s deadline (or approvals.ttlMs for notify) as APPROVAL_EXPIRED"', () => {
  it('a held ask expires at its own deadline, not before; expiresAt is that deadline', async () => {
    vi.useFakeTimers();
    const { b, purchase, decided } = setup();
    const asked = purchase.ask('payment', 'pay', {}, { timeoutMs: 5_000 });
    asked.catch(() => {});
    await vi.advanceTimersByTimeAsync(0);
    const item = b.approvals.list()[0]!;
    expect(item.expiresAt - item.requestedAt).toBe(5_000);
    expect(item.expiresAt).toBe(item.envelope.deadline);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(b.approvals.list()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    const e = await refusal(asked);
    expect(e.code).toBe('APPROVAL_EXPIRED');
    expect(b.approvals.list()).toEqual([]);
    expect(decided.map((d) => d.decision)).toEqual(['expired']);
    expect(() => b.approvals.approve(item.id)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('a held notify expires after approvals.ttlMs (default 300,000 ms)', async () => {
    vi.useFakeTimers();
    const { b, purchase, decided } = setup();
    await purchase.notify('pay', {}, { to: ['payment'] });
    const item = b.approvals.list()[0]!;
    expect(item.expiresAt - item.requestedAt).toBe(300_000);
    await vi.advanceTimersByTimeAsync(299_999);
    expect(b.approvals.list()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(b.approvals.list()).toEqual([]);
    expect(decided.map((d) => d.decision)).toEqual(['expired']);
    await b.flush();
    expect(b.getMessageLog({ type: 'notify' })[0]).toMatchObject({ approval: 'expired' });
  });

  it('a custom ttlMs is honoured', async () => {
    vi.useFakeTimers();
    const { b, purchase } = setup({ approvals: { ttlMs: 1_000 } });
    await purchase.notify('pay', {}, { to: ['payment'] });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(b.approvals.list()).toEqual([]);
  });
});

describe('"approve re-checks the current policy and the payload hash"', () => {
  it('a rule removed while held: approve → { staged: false, code, reason } and the sender gets that code', async () => {
    const { b, ran, purchase } = setup();
    const asked = purchase.ask('payment', 'pay', {});
    await settle();
    b.setPolicies([]);
    const r = b.approvals.approve(b.approvals.list()[0]!.id);
    expect(r).toMatchObject({ staged: false, code: 'POLICY_DENIED', reason: expect.any(String) });
    expect((await refusal(asked)).code).toBe('POLICY_DENIED');
    expect(ran).toEqual([]);
  });

  it('"approving twice, after expiry, or an unknown id is an error" (INVALID_ARGUMENT naming the id)', async () => {
    const { b, purchase } = setup();
    const asked = purchase.ask('payment', 'pay', {});
    await settle();
    const id = b.approvals.list()[0]!.id;
    b.approvals.approve(id);
    await asked;
    expect(() => b.approvals.approve(id)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(id) }));
    expect(() => b.approvals.reject(id)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => b.approvals.approve('nope')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('nope') }));
  });

  it('refuses unknown approve/reject options naming the key', async () => {
    const { b, purchase } = setup();
    purchase.ask('payment', 'pay', {}).catch(() => {});
    await settle();
    const id = b.approvals.list()[0]!.id;
    expect(() => b.approvals.approve(id, { allways: true } as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('allways') }));
    expect(() => b.approvals.reject(id, { reasn: 'x' } as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('reasn') }));
    expect(b.approvals.list()).toHaveLength(1);
  });
});

describe('"always: true also adds an allow rule for that pair, type and intent (a new policy version)"', () => {
  it('the next message of that pair, type and intent goes through unheld; another intent or type is still held', async () => {
    const { b, purchase } = setup();
    const v = b.policyVersion;
    const first = purchase.ask('payment', 'pay', {});
    await settle();
    b.approvals.approve(b.approvals.list()[0]!.id, { always: true });
    await first;
    expect(b.policyVersion).toBeGreaterThan(v);
    expect(b.policies()).toContainEqual(expect.objectContaining({ from: 'purchase', to: 'payment', allow: ['ask'], intents: ['pay'] }));
    await expect(purchase.ask('payment', 'pay', {})).resolves.toEqual({ paid: true });
    purchase.delegate('payment', 'pay', {}).catch(() => {});
    purchase.ask('payment', 'other', {}).catch(() => {});
    await settle();
    expect(b.approvals.list()).toHaveLength(2);
  });
});

describe('"list() items: { id, envelope, rule, payloadHash, payloadBytes, requestedAt, expiresAt } … oldest first"', () => {
  it('has exactly those keys, payloadHash as the audit log records it, oldest first', async () => {
    let now = 1_000;
    const { b, purchase } = setup({ clock: { now: () => now } });
    purchase.ask('payment', 'pay', { n: 1 }).catch(() => {});
    await settle();
    now = 2_000;
    purchase.ask('payment', 'pay', { n: 2 }).catch(() => {});
    await settle();
    const items = b.approvals.list();
    expect(items.map((i) => i.envelope.payload)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(Object.keys(items[0]!).sort()).toEqual(['envelope', 'expiresAt', 'id', 'payloadBytes', 'payloadHash', 'requestedAt', 'rule']);
    expect(items[0]!.requestedAt).toBe(1_000);
    expect(items[0]!.rule).toBe('payments need a human');
    expect(items[0]!.payloadBytes).toBe(JSON.stringify({ n: 1 }).length);
    await b.flush();
    const logged = b.getMessageLog({ limit: 10 }).find((e) => e.messageId === items[0]!.envelope.id)!;
    expect(items[0]!.payloadHash).toBe(logged.payloadHash);
    expect(Object.isFrozen(items[0]!.envelope)).toBe(true);
  });
});

describe('"Caps: per-sender and global pending limits (APPROVAL_QUEUE_FULL)"', () => {
  it('maxPendingPerSender: the next hold from that sender is APPROVAL_QUEUE_FULL; another sender still gets held', async () => {
    const b = bus({ policies: [{ from: '*', to: 'payment', allow: ['ask'], requireApproval: true }], approvals: { maxPendingPerSender: 2, maxPending: 3 }, limits: { rate: false } });
    b.register('payment', { handlers: { pay: () => 1 } });
    const p = b.register('p');
    const q = b.register('q');
    const r = b.register('r');
    p.ask('payment', 'pay', 1).catch(() => {});
    p.ask('payment', 'pay', 2).catch(() => {});
    const e = await refusal(p.ask('payment', 'pay', 3));
    expect(e.code).toBe('APPROVAL_QUEUE_FULL');
    q.ask('payment', 'pay', 4).catch(() => {});
    await settle();
    expect(b.approvals.list()).toHaveLength(3);
    expect((await refusal(r.ask('payment', 'pay', 5))).code).toBe('APPROVAL_QUEUE_FULL');
    await b.flush();
    expect(b.getMessageLog({ agentId: 'r' })[0]).toMatchObject({ decision: 'denied' });
  });

  it('maxPending: 0 refuses every hold', async () => {
    const b = bus({ policies: HOLD, approvals: { maxPending: 0 } });
    b.register('payment', { handlers: { pay: () => 1 } });
    expect((await refusal(b.register('purchase').ask('payment', 'pay', 1))).code).toBe('APPROVAL_QUEUE_FULL');
  });
});

describe('Events: "approval:requested, approval:decided (approved/rejected/expired/cancelled)"', () => {
  it('cancelled: a held ask whose sender cancels is decided "cancelled"', async () => {
    const { b, purchase, decided } = setup();
    const controller = new AbortController();
    const asked = purchase.ask('payment', 'pay', {}, { signal: controller.signal });
    await settle();
    controller.abort();
    expect((await refusal(asked)).code).toBe('CANCELLED');
    await settle();
    expect(decided.map((d) => d.decision)).toEqual(['cancelled']);
    expect(b.approvals.list()).toEqual([]);
  });

  it('approval:requested carries the item list() shows', async () => {
    const { b, purchase, requested } = setup();
    purchase.ask('payment', 'pay', {}).catch(() => {});
    await settle();
    expect(requested[0]!.approval).toEqual(b.approvals.list()[0]);
  });
});
