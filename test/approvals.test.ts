/**
 * The approval queue through the bus: holding, listing, approving (with the re-check),
 * rejecting, expiry, caps, cancellation, events and what the audit log records.
 * Every test runs on vitest fake timers: no real waits.
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  Orchestrator,
  isBusError,
  type BusError,
  type BusEvents,
  type OrchestratorOptions,
  type PendingApproval,
  type PolicyRule,
} from '../src/index.js';
import type { AnyContracts } from '../src/contracts.js';

const T0 = 1_700_000_000_000;

let bus: Orchestrator | undefined;

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(T0);
});

afterEach(async () => {
  await bus?.close();
  bus = undefined;
  vi.useRealTimers();
});

/** purchase → payment delegates (and asks and notifies, for the tests that need them) need a human. */
const RULES: PolicyRule[] = [
  { from: 'purchase', to: 'payment', allow: ['delegate', 'ask', 'notify'], requireApproval: true },
  { from: 'purchase', to: 'payment', allow: ['ask'], intents: ['status'] },
  { from: 'research', to: 'writer', allow: ['ask'] },
];
const APPROVAL_RULE = 'purchase -> payment allow:delegate,ask,notify approval';

function open(options: OrchestratorOptions<AnyContracts> = {}): Orchestrator {
  bus = new Orchestrator({ policies: RULES, ...options });
  return bus;
}

/** The usual cast: payment pays, purchase sends. */
function setup(options: OrchestratorOptions<AnyContracts> = {}) {
  const b = open(options);
  const pay = vi.fn((p: unknown) => ({ paid: (p as { amount: number }).amount }));
  const payment = b.register('payment', { handlers: { pay, status: () => 'idle', '*': (p) => ({ got: p }) } });
  const purchase = b.register('purchase');
  return { b, pay, payment, purchase };
}

type Settled = { value: unknown } | { error: BusError };

/** Observes a promise without letting its rejection go unhandled. */
function observe(promise: Promise<unknown>): Promise<Settled> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => {
      if (isBusError(error)) return { error };
      throw error;
    },
  );
}

async function refusal(promise: Promise<unknown>): Promise<BusError> {
  const s = await observe(promise);
  if ('error' in s) return s.error;
  throw new Error(`expected a refusal, got ${JSON.stringify(s.value)}`);
}

function thrown(fn: () => unknown): BusError {
  try {
    fn();
  } catch (e) {
    if (isBusError(e)) return e;
    throw e;
  }
  throw new Error('expected a BusError to be thrown');
}

/** Lets staged audit rows commit and their deliveries run (microtasks only; the clock does not move). */
async function tick(): Promise<void> {
  await vi.advanceTimersByTimeAsync(0);
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function decisions(b: Orchestrator): BusEvents['approval:decided'][] {
  const seen: BusEvents['approval:decided'][] = [];
  b.events.on('approval:decided', (e) => seen.push(e));
  return seen;
}

function only<T>(items: readonly T[]): T {
  expect(items).toHaveLength(1);
  return items[0]!;
}

describe('approvals.list()', () => {
  it('shows a held delegate with its envelope, rule, payload hash and expiry, and delivers nothing', async () => {
    const { b, pay, purchase } = setup();
    const job = purchase.delegate('payment', 'pay', { amount: 5 });
    void observe(job);
    await tick();

    const held = only(b.approvals.list());
    expect(held).toEqual({
      id: job.id,
      envelope: expect.objectContaining({
        id: job.id,
        type: 'delegate',
        from: 'purchase',
        to: 'payment',
        intent: 'pay',
        payload: { amount: 5 },
        ts: T0,
        deadline: T0 + 30_000,
        depth: 0,
        priority: 'normal',
      }),
      rule: APPROVAL_RULE,
      payloadHash: sha256('{"amount":5}'),
      payloadBytes: 12,
      requestedAt: T0,
      expiresAt: T0 + 30_000,
    });
    expect(Object.isFrozen(held)).toBe(true);
    expect(Object.isFrozen(held.envelope)).toBe(true);
    expect(pay).not.toHaveBeenCalled();
  });

  it('expires a held ask at the timeoutMs it was sent with', async () => {
    const { b, purchase } = setup();
    void observe(purchase.ask('payment', 'refund', { amount: 1 }, { timeoutMs: 5_000 }));
    expect(only(b.approvals.list()).expiresAt).toBe(T0 + 5_000);
  });

  it('lists holds oldest first, one per notify recipient under messageId/recipient', async () => {
    const b = open({ policies: [{ from: 'purchase', to: '*', allow: ['notify', 'delegate'], requireApproval: true }] });
    for (const id of ['payment', 'ledger']) b.register(id, { handlers: { '*': () => null } });
    const purchase = b.register('purchase');

    const job = purchase.delegate('payment', 'pay', { amount: 1 });
    void observe(job);
    const receipt = await purchase.notify('audit', { n: 1 });
    expect([...receipt.pending].sort()).toEqual(['ledger', 'payment']);
    expect(receipt.delivered).toEqual([]);

    const ids = b.approvals.list().map((a) => a.id);
    expect(ids[0]).toBe(job.id);
    expect(ids.slice(1).sort()).toEqual([`${receipt.id}/ledger`, `${receipt.id}/payment`]);
    for (const a of b.approvals.list().slice(1)) expect(a.envelope.to).toBe(a.id.split('/')[1]);
  });
});

describe('approval:requested', () => {
  it('fires with the held item once its pending row is audited', async () => {
    const { b, purchase } = setup();
    const requested: PendingApproval[] = [];
    let auditedAtEvent: string | undefined;
    b.events.on('approval:requested', ({ approval }) => {
      requested.push(approval);
      auditedAtEvent = b.getMessageLog({ agentId: 'purchase' })[0]?.decision;
    });

    const job = purchase.delegate('payment', 'pay', { amount: 5 });
    void observe(job);
    await tick();

    expect(requested).toEqual(b.approvals.list());
    expect(only(requested).id).toBe(job.id);
    expect(auditedAtEvent).toBe('pending');
  });
});

describe('approvals.approve()', () => {
  it('delivers the held delegate and resolves the sender with the reply', async () => {
    const { b, pay, purchase } = setup();
    const job = purchase.delegate('payment', 'pay', { amount: 5 });
    const settled = observe(job);
    await tick();

    const result: unknown = b.approvals.approve(job.id, { by: 'alice', note: 'within budget' });
    expect(result).toEqual({ staged: true });
    expect(b.approvals.list()).toEqual([]);
    expect(await settled).toEqual({ value: { paid: 5 } });
    expect(pay).toHaveBeenCalledTimes(1);
  });

  it('delivers a held ask and resolves the asker with the reply', async () => {
    const { b, purchase } = setup();
    const ask = observe(purchase.ask('payment', 'quote', { item: 'pen' }));
    await tick();
    b.approvals.approve(only(b.approvals.list()).id);
    expect(await ask).toEqual({ value: { got: { item: 'pen' } } });
  });

  it('delivers a held notify to that recipient only', async () => {
    const b = open({ policies: [{ from: 'purchase', to: '*', allow: ['notify'], requireApproval: true }] });
    const got: string[] = [];
    b.register('payment', { handlers: { '*': (_p, ctx) => void got.push(`payment:${ctx.message.to}`) } });
    b.register('ledger', { handlers: { '*': (_p, ctx) => void got.push(`ledger:${ctx.message.to}`) } });
    const purchase = b.register('purchase');
    const receipt = await purchase.notify('audit', { n: 1 });

    expect(b.approvals.approve(`${receipt.id}/ledger`, { by: 'ops' }) as unknown).toEqual({ staged: true });
    await b.onIdle();
    expect(got).toEqual(['ledger:ledger']);
    expect(b.approvals.list().map((a) => a.id)).toEqual([`${receipt.id}/payment`]);
    const entry = b.getMessageLog({ agentId: 'ledger' })[0];
    expect(entry).toMatchObject({ type: 'notify', decision: 'pending', approval: 'approved', decidedBy: 'ops', outcome: 'delivered' });
  });

  it('audits the message as pending, then the approval with who decided, then the outcome', async () => {
    const { b, purchase } = setup();
    const job = purchase.delegate('payment', 'pay', { amount: 5 });
    await tick();
    expect(only(b.getMessageLog({ agentId: 'purchase' }))).toMatchObject({
      messageId: job.id,
      decision: 'pending',
      rule: APPROVAL_RULE,
      policyVersion: 1,
      payloadHash: sha256('{"amount":5}'),
    });
    expect(b.getMessageLog()[0]?.approval).toBeUndefined();

    b.approvals.approve(job.id, { by: 'alice' });
    await job;
    const entry = b.getMessageLog({ type: 'delegate' })[0];
    expect(entry).toMatchObject({ messageId: job.id, decision: 'pending', approval: 'approved', decidedBy: 'alice', outcome: 'replied' });
    expect(b.verifyAuditLog().ok).toBe(true);
  });

  it('keeps the original deadline after approval: a slow handler still times out at it', async () => {
    const { b, payment, purchase } = setup();
    payment.handle('slow', (_p, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(null))));
    const job = observe(purchase.delegate('payment', 'slow', {}, { timeoutMs: 5_000 }));
    await vi.advanceTimersByTimeAsync(3_000);
    b.approvals.approve(only(b.approvals.list()).id);
    await vi.advanceTimersByTimeAsync(1_999);
    let done = false;
    void job.then(() => (done = true));
    await tick();
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    const s = await job;
    expect('error' in s && s.error.code).toBe('TIMEOUT');
  });

  describe('re-check', () => {
    it('does not deliver when the rule was removed since the hold: the sender gets POLICY_DENIED and the result says why', async () => {
      const { b, pay, purchase } = setup();
      const job = purchase.delegate('payment', 'pay', { amount: 5 });
      const settled = observe(job);
      await tick();

      b.setPolicies(RULES.filter((r) => r.requireApproval !== true));
      const result: unknown = b.approvals.approve(job.id, { by: 'alice' });
      expect(result).toEqual({ staged: false, delivered: false, code: 'POLICY_DENIED', reason: expect.stringContaining('now denies') });

      const s = await settled;
      expect('error' in s && s.error.code).toBe('POLICY_DENIED');
      await b.onIdle();
      expect(pay).not.toHaveBeenCalled();
      expect(b.approvals.list()).toEqual([]);
      expect(b.getMessageLog({ type: 'delegate' })[0]).toMatchObject({ approval: 'approved', decidedBy: 'alice', outcome: 'failed', code: 'POLICY_DENIED' });
    });

    it('does not deliver when a deny was added since the hold', async () => {
      const { b, pay, purchase } = setup();
      const job = purchase.delegate('payment', 'pay', { amount: 5 });
      const settled = observe(job);
      await tick();

      b.setPolicies([...RULES, { from: '*', to: 'payment', deny: ['delegate'], name: 'payments frozen' }]);
      expect(b.approvals.approve(job.id) as unknown).toMatchObject({ delivered: false, code: 'POLICY_DENIED' });
      const s = await settled;
      expect('error' in s && [s.error.code, s.error.rule]).toEqual(['POLICY_DENIED', 'payments frozen']);
      expect(pay).not.toHaveBeenCalled();
    });

    it('delivers when the new policy still allows it (with or without approval)', async () => {
      const { b, purchase } = setup();
      const job = purchase.delegate('payment', 'pay', { amount: 7 });
      await tick();
      b.setPolicies([{ from: 'purchase', to: '*', allow: ['delegate'] }]);
      expect(b.approvals.approve(job.id) as unknown).toEqual({ staged: true });
      await expect(job).resolves.toEqual({ paid: 7 });
    });

    it('does not deliver when the recipient left and an agent of that id came back with no handler for it', async () => {
      const { b, purchase } = setup();
      const job = purchase.delegate('payment', 'pay', { amount: 5 });
      const settled = observe(job);
      await tick();
      // Unregistering cancels the hold; a fresh approval for a later message to the new agent works.
      b.unregister('payment');
      expect((await settled as { error: BusError }).error.code).toBe('UNKNOWN_AGENT');
      b.register('payment');
      const again = observe(purchase.delegate('payment', 'pay', { amount: 5 }));
      await tick();
      expect(b.approvals.approve(only(b.approvals.list()).id) as unknown).toMatchObject({ delivered: false, code: 'NO_HANDLER' });
      const s = await again;
      expect('error' in s && s.error.code).toBe('NO_HANDLER');
    });

    it('with always: true, still refuses a message whose rule was removed since the hold, and adds no rule', async () => {
      const { b, pay, purchase } = setup();
      const job = purchase.delegate('payment', 'pay', { amount: 5 });
      const settled = observe(job);
      await tick();

      const version = b.setPolicies(RULES.filter((r) => r.requireApproval !== true));
      const rules = b.policies();
      const result: unknown = b.approvals.approve(job.id, { by: 'alice', always: true });
      expect(result).toMatchObject({ delivered: false, code: 'POLICY_DENIED' });
      const s = await settled;
      expect('error' in s && s.error.code).toBe('POLICY_DENIED');
      expect(pay).not.toHaveBeenCalled();
      expect(b.policyVersion).toBe(version);
      expect(b.policies()).toBe(rules);
    });
  });

  describe('always: true', () => {
    it('adds an allow rule for that pair, type and intent under a new policy version', async () => {
      const { b, pay, purchase } = setup();
      const first = purchase.delegate('payment', 'pay', { amount: 1 });
      await tick();
      const version = b.policyVersion;

      b.approvals.approve(first.id, { by: 'alice', always: true });
      await expect(first).resolves.toEqual({ paid: 1 });
      expect(b.policyVersion).toBe(version + 1);
      expect(b.policies().at(-1)).toEqual({ from: 'purchase', to: 'payment', allow: ['delegate'], intents: ['pay'] });

      // The next identical send is delivered without approval...
      await expect(purchase.delegate('payment', 'pay', { amount: 2 })).resolves.toEqual({ paid: 2 });
      expect(pay).toHaveBeenCalledTimes(2);
      expect(b.approvals.list()).toEqual([]);
      expect(b.getMessageLog({ type: 'delegate' })[0]).toMatchObject({ decision: 'allowed', policyVersion: version + 1 });

      // ...but another intent or type still needs approval.
      void observe(purchase.delegate('payment', 'refund', { amount: 3 }));
      void observe(purchase.ask('payment', 'pay', { amount: 4 }));
      expect(b.approvals.list().map((a) => `${a.envelope.type}:${a.envelope.intent}`)).toEqual(['delegate:refund', 'ask:pay']);
    });

    it('makes the next identical send skip approval when the approval rule itself names the intent', async () => {
      const b = open({
        policies: [{ from: 'purchase', to: 'payment', allow: ['delegate'], intents: ['pay'], requireApproval: true }],
      });
      b.register('payment', { handlers: { '*': () => 'paid' } });
      const purchase = b.register('purchase');
      const first = purchase.delegate('payment', 'pay', { amount: 1 });
      await tick();
      b.approvals.approve(first.id, { always: true });
      await expect(first).resolves.toBe('paid');

      const second = observe(purchase.delegate('payment', 'pay', { amount: 2 }));
      await tick();
      expect(b.approvals.list()).toEqual([]);
      expect(await second).toEqual({ value: 'paid' });
      // A different intent has no rule at all: denied.
      expect((await refusal(purchase.delegate('payment', 'refund', {}))).code).toBe('POLICY_DENIED');
    });

    it("keeps a split rule's trust gates, minRecipientTrust included, for the types it still holds", async () => {
      const b = open({
        policies: [{ from: 'purchase', to: 'payment', allow: ['delegate', 'ask'], intents: ['pay'], requireApproval: true, minTrust: 1, minRecipientTrust: 5 }],
      });
      b.register('payment', { trust: 5, handlers: { '*': () => 'paid' } });
      const purchase = b.register('purchase', { trust: 1 });
      const first = purchase.delegate('payment', 'pay', { amount: 1 });
      await tick();
      b.approvals.approve(first.id, { always: true });
      await expect(first).resolves.toBe('paid');
      expect(b.policies()).toContainEqual({ from: 'purchase', to: 'payment', intents: ['pay'], allow: ['ask'], requireApproval: true, minTrust: 1, minRecipientTrust: 5 });
    });

    it('is refused with INVALID_ARGUMENT when not a boolean, leaving the hold in place', async () => {
      const { b, purchase } = setup();
      const job = purchase.delegate('payment', 'pay', { amount: 1 });
      void observe(job);
      expect(thrown(() => b.approvals.approve(job.id, { always: 'yes' as unknown as boolean })).code).toBe('INVALID_ARGUMENT');
      expect(b.approvals.list().map((a) => a.id)).toEqual([job.id]);
    });
  });

  describe('errors', () => {
    it('throws INVALID_ARGUMENT for an unknown id', () => {
      const { b } = setup();
      const e = thrown(() => b.approvals.approve('no-such-message'));
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(thrown(() => b.approvals.reject('no-such-message')).code).toBe('INVALID_ARGUMENT');
    });

    it('throws INVALID_ARGUMENT for a second decision on the same message', async () => {
      const { b, purchase } = setup();
      const a = purchase.delegate('payment', 'pay', { amount: 1 });
      const r = purchase.delegate('payment', 'pay', { amount: 2 });
      void observe(a);
      void observe(r);
      await tick();

      b.approvals.approve(a.id);
      expect(thrown(() => b.approvals.approve(a.id)).code).toBe('INVALID_ARGUMENT');
      expect(thrown(() => b.approvals.reject(a.id)).code).toBe('INVALID_ARGUMENT');
      b.approvals.reject(r.id);
      expect(thrown(() => b.approvals.reject(r.id)).code).toBe('INVALID_ARGUMENT');
      expect(thrown(() => b.approvals.approve(r.id)).code).toBe('INVALID_ARGUMENT');
      await expect(a).resolves.toEqual({ paid: 1 });
    });

    it('throws INVALID_ARGUMENT when deciding after expiry', async () => {
      const { b, purchase } = setup();
      const job = purchase.delegate('payment', 'pay', { amount: 1 }, { timeoutMs: 1_000 });
      void observe(job);
      await vi.advanceTimersByTimeAsync(1_000);
      expect(thrown(() => b.approvals.approve(job.id)).code).toBe('INVALID_ARGUMENT');
      expect(thrown(() => b.approvals.reject(job.id)).code).toBe('INVALID_ARGUMENT');
    });

    it('throws INVALID_ARGUMENT for a bad by or note, leaving the hold in place', async () => {
      const { b, purchase } = setup();
      const job = purchase.delegate('payment', 'pay', { amount: 1 });
      void observe(job);
      expect(thrown(() => b.approvals.approve(job.id, { by: 42 as unknown as string })).code).toBe('INVALID_ARGUMENT');
      expect(thrown(() => b.approvals.reject(job.id, { reason: 'x'.repeat(1001) })).code).toBe('INVALID_ARGUMENT');
      expect(b.approvals.list()).toHaveLength(1);
    });
  });
});

describe('approvals.reject()', () => {
  it('rejects the sender with APPROVAL_REJECTED carrying the reason, and audits who rejected', async () => {
    const { b, pay, purchase } = setup();
    const job = purchase.delegate('payment', 'pay', { amount: 5000 });
    const settled = observe(job);
    await tick();

    b.approvals.reject(job.id, { by: 'bob', reason: 'over budget' });
    const s = await settled;
    if (!('error' in s)) throw new Error('expected a rejection');
    expect(s.error.code).toBe('APPROVAL_REJECTED');
    expect(s.error.reason).toBe('over budget');
    expect(s.error.message).toContain('over budget');
    expect(s.error.messageId).toBe(job.id);
    expect(b.approvals.list()).toEqual([]);
    expect(pay).not.toHaveBeenCalled();
    expect(b.getMessageLog({ type: 'delegate' })[0]).toMatchObject({
      decision: 'pending',
      approval: 'rejected',
      decidedBy: 'bob',
      outcome: 'failed',
      code: 'APPROVAL_REJECTED',
    });
  });

  it('rejects without a reason', async () => {
    const { b, purchase } = setup();
    const job = purchase.delegate('payment', 'pay', { amount: 1 });
    const settled = observe(job);
    b.approvals.reject(job.id);
    const s = await settled;
    expect('error' in s && s.error.code).toBe('APPROVAL_REJECTED');
  });
});

describe('expiry', () => {
  it('expires a held delegate at its deadline with APPROVAL_EXPIRED', async () => {
    const { b, pay, purchase } = setup();
    const expired: string[] = [];
    b.events.on('message:expired', ({ envelope, code }) => expired.push(`${envelope.id}:${code}`));
    const job = purchase.delegate('payment', 'pay', { amount: 1 }, { timeoutMs: 5_000 });
    const settled = observe(job);

    await vi.advanceTimersByTimeAsync(4_999);
    expect(b.approvals.list()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    const s = await settled;
    if (!('error' in s)) throw new Error('expected a rejection');
    expect(s.error.code).toBe('APPROVAL_EXPIRED');
    expect(s.error.timeoutMs).toBe(5_000);
    expect(s.error.messageId).toBe(job.id);
    expect(b.approvals.list()).toEqual([]);
    expect(expired).toEqual([`${job.id}:APPROVAL_EXPIRED`]);
    expect(pay).not.toHaveBeenCalled();
    expect(b.getMessageLog({ type: 'delegate' })[0]).toMatchObject({ decision: 'pending', approval: 'expired', outcome: 'expired', code: 'APPROVAL_EXPIRED' });
  });

  it('expires a held ask at the default ask deadline (timeouts.askMs)', async () => {
    const { b, purchase } = setup({ timeouts: { askMs: 8_000 } });
    const settled = observe(purchase.ask('payment', 'quote', {}));
    await vi.advanceTimersByTimeAsync(7_999);
    expect(b.approvals.list()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    const s = await settled;
    expect('error' in s && s.error.code).toBe('APPROVAL_EXPIRED');
  });

  it('waits for an ask or delegate until its own deadline, not approvals.ttlMs', async () => {
    const { b, purchase } = setup({ approvals: { ttlMs: 1_000 } });
    const settled = observe(purchase.delegate('payment', 'pay', { amount: 1 }, { timeoutMs: 60_000 }));
    await vi.advanceTimersByTimeAsync(59_999);
    expect(b.approvals.list()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(b.approvals.list()).toEqual([]);
    const s = await settled;
    expect('error' in s && s.error.code).toBe('APPROVAL_EXPIRED');
  });

  it('expires a held notify at approvals.ttlMs', async () => {
    const { b, purchase } = setup({ approvals: { ttlMs: 10_000 } });
    const seen = decisions(b);
    const receipt = await purchase.notify('audit', { n: 1 }, { to: ['payment'] });
    expect(receipt.pending).toEqual(['payment']);
    const id = `${receipt.id}/payment`;
    expect(only(b.approvals.list())).toMatchObject({ id, expiresAt: T0 + 10_000 });

    await vi.advanceTimersByTimeAsync(9_999);
    expect(b.approvals.list()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(b.approvals.list()).toEqual([]);
    expect(seen.map((d) => [d.approval.id, d.decision])).toEqual([[id, 'expired']]);
    expect(b.getMessageLog({ type: 'notify' })[0]).toMatchObject({ decision: 'pending', approval: 'expired', outcome: 'expired', code: 'APPROVAL_EXPIRED' });
    expect(thrown(() => b.approvals.approve(id)).code).toBe('INVALID_ARGUMENT');
  });

  it('uses the default approvals.ttlMs of 5 minutes for a held notify', async () => {
    const { b, purchase } = setup();
    await purchase.notify('audit', {}, { to: ['payment'] });
    expect(only(b.approvals.list()).expiresAt).toBe(T0 + 300_000);
    await vi.advanceTimersByTimeAsync(300_000);
    expect(b.approvals.list()).toEqual([]);
  });

  it('treats a held ask as expired once its deadline has passed, even before the expiry timer ran', async () => {
    const { b, purchase } = setup();
    const outcome = purchase.ask('payment', 'quote', {}, { timeoutMs: 1000 }).then(() => 'resolved', (e: { code: string }) => e.code);
    await tick();
    const held = only(b.approvals.list());
    vi.setSystemTime(Date.now() + 5000); // the clock moves on; no timer has fired yet
    expect(() => b.approvals.approve(held.id, { by: 'late-operator' })).toThrow(/expired/);
    expect(await outcome).toBe('APPROVAL_EXPIRED');
  });
});

describe('approval caps', () => {
  const ANYONE: PolicyRule[] = [{ from: '*', to: 'payment', allow: ['delegate', 'notify'], requireApproval: true }];

  it('refuses a sender past approvals.maxPendingPerSender with APPROVAL_QUEUE_FULL, while others may still hold', async () => {
    const b = open({ policies: ANYONE, approvals: { maxPendingPerSender: 2 } });
    b.register('payment', { handlers: { '*': () => 'ok' } });
    const purchase = b.register('purchase');
    const other = b.register('other');

    const first = purchase.delegate('payment', 'pay', 1);
    void observe(first);
    void observe(purchase.delegate('payment', 'pay', 2));
    const e = await refusal(purchase.delegate('payment', 'pay', 3));
    expect(e.code).toBe('APPROVAL_QUEUE_FULL');
    expect(b.getMessageLog()[0]).toMatchObject({ decision: 'denied', code: 'APPROVAL_QUEUE_FULL' });

    void observe(other.delegate('payment', 'pay', 4));
    expect(b.approvals.list()).toHaveLength(3);

    // A decision frees a place.
    b.approvals.approve(first.id);
    void observe(purchase.delegate('payment', 'pay', 5));
    expect(b.approvals.list()).toHaveLength(3);
  });

  it('refuses anyone past approvals.maxPending with APPROVAL_QUEUE_FULL', async () => {
    const b = open({ policies: ANYONE, approvals: { maxPending: 2 } });
    b.register('payment', { handlers: { '*': () => 'ok' } });
    const [s1, s2, s3] = ['s1', 's2', 's3'].map((id) => b.register(id));
    void observe(s1!.delegate('payment', 'pay', 1));
    const second = s2!.delegate('payment', 'pay', 2);
    void observe(second);
    expect((await refusal(s3!.delegate('payment', 'pay', 3))).code).toBe('APPROVAL_QUEUE_FULL');

    b.approvals.reject(second.id);
    void observe(s3!.delegate('payment', 'pay', 3));
    expect(b.approvals.list().map((a) => a.envelope.from)).toEqual(['s1', 's3']);
  });

  it('counts held notifies against the caps too', async () => {
    const b = open({ policies: ANYONE, approvals: { maxPending: 1 } });
    b.register('payment', { handlers: { '*': () => 'ok' } });
    const purchase = b.register('purchase');
    expect((await purchase.notify('audit', 1, { to: ['payment'] })).pending).toEqual(['payment']);
    const receipt = await purchase.notify('audit', 2, { to: ['payment'] });
    expect(receipt.pending).toEqual([]);
    expect(receipt.delivered).toEqual([]);
    expect(b.getMessageLog({ type: 'notify' })[0]).toMatchObject({ decision: 'denied', code: 'APPROVAL_QUEUE_FULL' });
    expect((await refusal(purchase.delegate('payment', 'pay', 3))).code).toBe('APPROVAL_QUEUE_FULL');
  });
});

describe('held messages and other traffic', () => {
  it('never block other messages between the same or other agents', async () => {
    const { b, payment, purchase } = setup();
    b.register('writer', { handlers: { '*': () => 'written' } });
    const research = b.register('research');
    void payment;

    const held = purchase.delegate('payment', 'pay', { amount: 1 });
    const settled = observe(held);
    const held2 = purchase.delegate('payment', 'pay', { amount: 2 });
    void observe(held2);
    await tick();

    // The same pair, an intent with a plain allow: flows at once.
    await expect(purchase.ask('payment', 'status', {})).resolves.toBe('idle');
    // Other agents: flow at once.
    await expect(research.ask('writer', 'draft', {})).resolves.toBe('written');
    // The later hold may be decided first.
    b.approvals.approve(held2.id);
    await expect(held2).resolves.toEqual({ paid: 2 });
    expect(b.approvals.list().map((a) => a.id)).toEqual([held.id]);

    b.approvals.approve(held.id);
    expect(await settled).toEqual({ value: { paid: 1 } });
  });
});

describe('cancelling a held message', () => {
  it('removes it from list() as cancelled when the sender calls job.cancel()', async () => {
    const { b, pay, purchase } = setup();
    const seen = decisions(b);
    const job = purchase.delegate('payment', 'pay', { amount: 1 });
    const settled = observe(job);
    await tick();

    job.cancel('changed my mind');
    expect(b.approvals.list()).toEqual([]);
    const s = await settled;
    expect('error' in s && [s.error.code, s.error.reason]).toEqual(['CANCELLED', 'changed my mind']);
    expect(seen.map((d) => [d.approval.id, d.decision, d.reason])).toEqual([[job.id, 'cancelled', 'changed my mind']]);
    expect(thrown(() => b.approvals.approve(job.id)).code).toBe('INVALID_ARGUMENT');
    expect(pay).not.toHaveBeenCalled();
    expect(b.getMessageLog({ type: 'delegate' })[0]).toMatchObject({ approval: 'cancelled', outcome: 'cancelled', code: 'CANCELLED' });
  });

  it('removes it from list() as cancelled when the sender aborts its signal', async () => {
    const { b, purchase } = setup();
    const seen = decisions(b);
    const controller = new AbortController();
    const settled = observe(purchase.ask('payment', 'quote', {}, { signal: controller.signal }));
    await tick();
    expect(b.approvals.list()).toHaveLength(1);

    controller.abort('user left');
    expect(b.approvals.list()).toEqual([]);
    const s = await settled;
    expect('error' in s && s.error.code).toBe('CANCELLED');
    expect(seen.map((d) => d.decision)).toEqual(['cancelled']);
  });

  it('cancels the holds addressed to an agent when it is unregistered: the sender gets UNKNOWN_AGENT', async () => {
    const { b, purchase } = setup();
    const seen = decisions(b);
    const job = purchase.delegate('payment', 'pay', { amount: 1 });
    const settled = observe(job);
    await tick();

    b.unregister('payment');
    expect(b.approvals.list()).toEqual([]);
    const s = await settled;
    expect('error' in s && s.error.code).toBe('UNKNOWN_AGENT');
    expect(seen.map((d) => [d.approval.id, d.decision])).toEqual([[job.id, 'cancelled']]);
    expect(b.getMessageLog({ type: 'delegate' })[0]).toMatchObject({ approval: 'cancelled', outcome: 'cancelled' });
  });

  it('cancels the holds a sender made when it is unregistered', async () => {
    const { b, purchase } = setup();
    const seen = decisions(b);
    const settled = observe(purchase.delegate('payment', 'pay', { amount: 1 }));
    await tick();
    b.unregister('purchase');
    expect(b.approvals.list()).toEqual([]);
    const s = await settled;
    expect('error' in s && s.error.code).toBe('CANCELLED');
    expect(seen.map((d) => d.decision)).toEqual(['cancelled']);
  });

  it('cancels a held notify when its recipient is unregistered, and audits it as cancelled', async () => {
    const { b, purchase } = setup();
    const seen = decisions(b);
    const receipt = await purchase.notify('audit', {}, { to: ['payment'] });
    b.unregister('payment');
    expect(b.approvals.list()).toEqual([]);
    expect(seen.map((d) => [d.approval.id, d.decision])).toEqual([[`${receipt.id}/payment`, 'cancelled']]);
    expect(b.getMessageLog({ type: 'notify' })[0]).toMatchObject({ decision: 'pending', approval: 'cancelled', outcome: 'cancelled' });
  });

  it('cancels every hold on close(): senders get CLOSED, and no timer is left behind', async () => {
    const { b, purchase } = setup();
    const seen = decisions(b);
    const job = purchase.delegate('payment', 'pay', { amount: 1 });
    const settled = observe(job);
    await purchase.notify('audit', {}, { to: ['payment'] });
    await tick();
    expect(b.approvals.list()).toHaveLength(2);

    await b.close();
    const s = await settled;
    expect('error' in s && s.error.code).toBe('CLOSED');
    expect(seen.map((d) => d.decision)).toEqual(['cancelled', 'cancelled']);
    expect(b.approvals.list()).toEqual([]);
    expect(thrown(() => b.approvals.approve(job.id)).code).toBe('CLOSED');
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('approval:decided', () => {
  it('fires for approved, rejected, expired and cancelled, with who decided and why', async () => {
    const { b, purchase } = setup();
    const seen = decisions(b);
    const approved = purchase.delegate('payment', 'pay', { amount: 1 });
    const rejected = purchase.delegate('payment', 'pay', { amount: 2 });
    const expired = purchase.delegate('payment', 'pay', { amount: 3 }, { timeoutMs: 1_000 });
    const cancelled = purchase.delegate('payment', 'pay', { amount: 4 });
    for (const j of [approved, rejected, expired, cancelled]) void observe(j);
    await tick();

    b.approvals.approve(approved.id, { by: 'alice', note: 'fine' });
    b.approvals.reject(rejected.id, { by: 'bob', reason: 'too much' });
    await vi.advanceTimersByTimeAsync(1_000);
    cancelled.cancel('no longer needed');

    expect(seen.map((d) => ({ id: d.approval.id, decision: d.decision, by: d.by, note: d.note, reason: d.reason }))).toEqual([
      { id: approved.id, decision: 'approved', by: 'alice', note: 'fine', reason: undefined },
      { id: rejected.id, decision: 'rejected', by: 'bob', note: 'too much', reason: 'too much' },
      { id: expired.id, decision: 'expired', by: undefined, note: undefined, reason: undefined },
      { id: cancelled.id, decision: 'cancelled', by: undefined, note: undefined, reason: 'no longer needed' },
    ]);
    for (const d of seen) expect(d.approval.envelope.intent).toBe('pay');
  });
});
