// The pipeline side of nodes: two Orchestrators joined by an in-memory transport act as two
// nodes of one bus. What crosses, what each node checks, records and decides.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditRecord, Envelope, HandlerContext, OrchestratorOptions, PolicyRule } from '../src/index.js';
import { ALLOW_ALL, closeBuses, deferred, makeBus, rejectionOf, settle } from './support/helpers.js';
import { recordingResponder } from './support/loopback.js';
import { brokenAudit, heldCarriage, inboundMessage, twoNodes } from './support/nodes.js';

afterEach(closeBuses);

const inbound = inboundMessage;

/** Lets microtasks (commits, the loopback's hops, replies) run. */
const hops = () => settle(40);

describe('cross-node ask and delegate', () => {
  it('answers an ask to an agent on another node with its handler return value, through the transport', async () => {
    const { n1, n2, t1 } = twoNodes();
    n2.register('b', { handlers: { echo: (p) => ({ echoed: p }) } });
    const a = n1.register('a');
    await Promise.all([n1.ready(), n2.ready()]);
    await expect(a.ask('b', 'echo', { x: 1 })).resolves.toEqual({ echoed: { x: 1 } });
    expect(t1.sent).toHaveLength(1);
    expect(t1.sent[0]!.node).toBe('n2');
    expect(t1.sent[0]!.budgetMs).toBeGreaterThan(0);
  });

  it('keeps one id and the chain (conversation, causation, depth) on both sides', async () => {
    const { n1, n2 } = twoNodes();
    const seen: Envelope[] = [];
    n2.register('b', { handlers: { echo: (_p, ctx) => (seen.push(ctx.message), 'ok') } });
    n1.register('c', { handlers: { go: (_p, ctx) => ctx.ask('b', 'echo', {}) } });
    const a = n1.register('a');
    const sent: Envelope[] = [];
    n1.events.on('message:sent', (e) => sent.push(e.envelope));
    await expect(a.ask('c', 'go', {})).resolves.toBe('ok');
    const outer = sent.find((e) => e.to === 'c')!;
    const crossing = sent.find((e) => e.to === 'b')!;
    const received = seen[0]!;
    expect(received.id).toBe(crossing.id);
    expect(received.conversationId).toBe(outer.conversationId);
    expect(received.causationId).toBe(outer.id);
    expect(received.depth).toBe(1);
    expect(received.from).toBe('c');
    expect(received.deadline).toBeGreaterThan(0);
  });

  it('carries delegate progress to onProgress and cancel to the handler signal', async () => {
    const { n1, n2 } = twoNodes();
    const aborted = deferred<unknown>();
    n2.register('b', {
      handlers: {
        work: (_p, ctx: HandlerContext) => {
          ctx.progress(0.5, 'half');
          return new Promise((_, reject) => ctx.signal.addEventListener('abort', () => (aborted.resolve(ctx.signal.reason), reject(new Error('stopped')))));
        },
      },
    });
    const a = n1.register('a');
    const job = a.delegate('b', 'work', {});
    const reports: unknown[] = [];
    job.onProgress((r) => reports.push(r));
    await hops();
    expect(reports).toEqual([{ fraction: 0.5, note: 'half' }]);
    job.cancel('enough');
    expect((await rejectionOf(job)).code).toBe('CANCELLED');
    const reason = (await aborted.promise) as { code?: string };
    expect(reason.code).toBe('CANCELLED');
  });

  it('fires the message events on both nodes, like local ones', async () => {
    const { n1, n2 } = twoNodes();
    n2.register('b', { handlers: { echo: () => 'ok' } });
    const a = n1.register('a');
    const seen: string[] = [];
    for (const [name, bus] of [['n1', n1], ['n2', n2]] as const) {
      for (const event of ['message:sent', 'message:delivered', 'message:replied'] as const) bus.events.on(event, () => seen.push(`${name} ${event}`));
    }
    await a.ask('b', 'echo', {});
    await hops();
    expect(seen).toEqual(expect.arrayContaining(['n1 message:sent', 'n2 message:delivered', 'n2 message:replied', 'n1 message:replied']));
    expect(seen).not.toContain('n1 message:delivered');
  });

  it('settles an ask answered with reply() from outside the handler', async () => {
    const { n1, n2 } = twoNodes();
    const ids: string[] = [];
    const gate = deferred();
    const b = n2.register('b', { handlers: { later: (_p, ctx) => (ids.push(ctx.message.id), gate.promise) } });
    const a = n1.register('a');
    const answer = a.ask('b', 'later', {});
    await hops();
    await b.reply(ids[0]!, { done: true });
    await expect(answer).resolves.toEqual({ done: true });
    gate.resolve();
  });

  it('runs A → B → A across nodes without deadlock (reentrancy carried by the causation id)', async () => {
    const { n1, n2 } = twoNodes();
    n1.register('a', {
      concurrency: 1,
      handlers: {
        start: (_p, ctx) => ctx.ask('b', 'middle', {}),
        back: () => 'from a',
      },
    });
    n2.register('b', { handlers: { middle: async (_p, ctx) => `b saw ${String(await ctx.ask('a', 'back', {}))}` } });
    const client = n1.register('client');
    await expect(client.ask('a', 'start', {}, { timeoutMs: 5000 })).resolves.toBe('b saw from a');
  });
});

describe('agent ids across nodes', () => {
  it('refuses an id another node already serves with DUPLICATE_AGENT, and lists remote agents with their node', async () => {
    const { n1, n2 } = twoNodes();
    n1.register('x', { capabilities: ['pay'] });
    expect(() => n2.register('x')).toThrow(expect.objectContaining({ code: 'DUPLICATE_AGENT' }));
    expect(n2.agents()).toEqual([{ id: 'x', capabilities: ['pay'], trust: 0, node: 'n1' }]);
  });
});

describe('errors across nodes', () => {
  it('rejects with POLICY_DENIED decided at the receiver even when the sender allows it', async () => {
    const { n1, n2 } = twoNodes({}, { policies: [] });
    n2.register('b', { handlers: { echo: () => 'no' } });
    const a = n1.register('a');
    const e = await rejectionOf(a.ask('b', 'echo', {}));
    expect(e.code).toBe('POLICY_DENIED');
    const row = n2.getMessageLog({ agentId: 'b' })[0]!;
    expect(row).toMatchObject({ decision: 'denied', code: 'POLICY_DENIED', node: 'n2', peerNode: 'n1' });
  });

  it('rejects with UNKNOWN_AGENT for an id no node serves, without touching the transport', async () => {
    const { n1, t1 } = twoNodes();
    const a = n1.register('a');
    expect((await rejectionOf(a.ask('nobody', 'echo', {}))).code).toBe('UNKNOWN_AGENT');
    expect(t1.sent).toHaveLength(0);
  });

  it('rejects with UNKNOWN_AGENT when the receiving node does not serve the id it was sent', async () => {
    const { n1, net } = twoNodes();
    net.claims.set('ghost', { id: 'ghost', node: 'n2', capabilities: [], trust: 0 });
    const a = n1.register('a');
    expect((await rejectionOf(a.ask('ghost', 'echo', {}))).code).toBe('UNKNOWN_AGENT');
  });

  it('rejects with HANDLER_FAILED when the remote handler throws', async () => {
    const { n1, n2 } = twoNodes();
    n2.register('b', {
      handlers: {
        boom: () => {
          throw new Error('kaput');
        },
      },
    });
    const a = n1.register('a');
    const e = await rejectionOf(a.ask('b', 'boom', {}));
    expect(e.code).toBe('HANDLER_FAILED');
    expect(e.message).toContain('kaput');
  });

  it('decides TIMEOUT at the sender and aborts the receiver handler signal', async () => {
    vi.useFakeTimers();
    const { n1, n2 } = twoNodes();
    const aborted = deferred<void>();
    n2.register('b', { handlers: { slow: (_p, ctx) => new Promise(() => ctx.signal.addEventListener('abort', () => aborted.resolve())) } });
    const a = n1.register('a');
    const answer = a.ask('b', 'slow', {}, { timeoutMs: 1000 });
    const outcome = rejectionOf(answer);
    await vi.advanceTimersByTimeAsync(999);
    await vi.advanceTimersByTimeAsync(1);
    expect((await outcome).code).toBe('TIMEOUT');
    await vi.advanceTimersByTimeAsync(0);
    await aborted.promise;
  });

  it('fails at once with TRANSPORT_UNAVAILABLE, audited, while the broker is down; local sends go on', async () => {
    const { n1, n2, net } = twoNodes();
    n2.register('b', { handlers: { echo: () => 'remote' } });
    n1.register('local', { handlers: { echo: () => 'local' } });
    const a = n1.register('a');
    net.down = true;
    expect((await rejectionOf(a.ask('b', 'echo', {}))).code).toBe('TRANSPORT_UNAVAILABLE');
    await expect(a.ask('local', 'echo', {})).resolves.toBe('local');
    const row = n1.getMessageLog({ agentId: 'b' })[0]!;
    expect(row).toMatchObject({ to: 'b', code: 'TRANSPORT_UNAVAILABLE', outcome: 'failed', node: 'n1', peerNode: 'n2' });
    net.down = false;
    await expect(a.ask('b', 'echo', {})).resolves.toBe('remote');
  });

  it('never calls transport.send for sends between agents of one node', async () => {
    const { n1, t1, t2, n2 } = twoNodes();
    n2.register('far');
    n1.register('b', { handlers: { echo: () => 'ok', work: () => 'done', news: () => undefined } });
    const a = n1.register('a');
    await a.ask('b', 'echo', {});
    await a.delegate('b', 'work', {});
    await a.notify('news', {}, { to: ['b'] });
    expect(t1.sent).toHaveLength(0);
    expect(t2.sent).toHaveLength(0);
  });
});

describe('notify across nodes', () => {
  it('reaches every agent of every node but the sender, and lists remote ids by what their node answered', async () => {
    const { n1, n2 } = twoNodes({}, { policies: [{ from: 'a', to: 'b', allow: ['notify'] }] });
    const got: string[] = [];
    n1.register('a2', { handlers: { news: () => void got.push('a2') } });
    n2.register('b', { handlers: { news: () => void got.push('b') } });
    n2.register('c', { handlers: { news: () => void got.push('c') } });
    const a = n1.register('a');
    const receipt = await a.notify('news', { v: 1 });
    await hops();
    expect([...receipt.delivered].sort()).toEqual(['a2', 'b']);
    expect(receipt.denied).toEqual(['c']);
    expect(got.sort()).toEqual(['a2', 'b']);
  });

  it('delivers a notify to each of several agents of one remote node, and its receipt lists each', async () => {
    const { n1, n2, t1 } = twoNodes();
    const got: string[] = [];
    for (const id of ['b', 'c']) n2.register(id, { handlers: { news: () => void got.push(id) } });
    const a = n1.register('a');
    const receipt = await a.notify('news', {}, { to: ['b', 'c'] });
    await hops();
    expect(receipt).toMatchObject({ delivered: ['b', 'c'], failed: [] });
    expect(got).toEqual(['b', 'c']);
    // One id for the notify, one carriage per recipient.
    expect(t1.sent.map((o) => [o.envelope.id, o.envelope.to])).toEqual([
      [receipt.id, 'b'],
      [receipt.id, 'c'],
    ]);
  });

  it('emits message:failed naming the code when a remote recipient of a notify is not delivered', async () => {
    const { n1, n2 } = twoNodes({}, { policies: [{ from: 'a', to: 'b', allow: ['notify'] }] });
    n2.register('b', { handlers: { news: () => undefined } });
    n2.register('c', { handlers: { news: () => undefined } });
    const a = n1.register('a');
    const failed: { to: string; code: string; reason: string }[] = [];
    n1.events.on('message:failed', ({ envelope, code, reason }) => failed.push({ to: envelope.to, code, reason }));
    const receipt = await a.notify('news', {}, { to: ['b', 'c'] });
    expect(receipt).toMatchObject({ delivered: ['b'], denied: ['c'] });
    expect(failed).toEqual([{ to: 'c', code: 'POLICY_DENIED', reason: expect.stringContaining('(node n2)') }]);
  });

  it('delivers a listed notify to a remote agent', async () => {
    const { n1, n2 } = twoNodes();
    const got = deferred<unknown>();
    n2.register('b', { handlers: { news: (p) => void got.resolve(p) } });
    const a = n1.register('a');
    const receipt = await a.notify('news', { v: 2 }, { to: ['b'] });
    expect(receipt.delivered).toEqual(['b']);
    await expect(got.promise).resolves.toEqual({ v: 2 });
  });
});

describe('the receiving node', () => {
  function receiver(options: OrchestratorOptions = {}) {
    const { n2, t1, n1 } = twoNodes({}, options);
    const calls: unknown[] = [];
    n2.register('b', { handlers: { echo: (p) => (calls.push(p), { ok: true }) } });
    n1.register('a');
    return { n2, t1, calls };
  }

  it('aborts the handler signal at its own deadline (the budget on its own clock) and answers TIMEOUT', async () => {
    vi.useFakeTimers();
    const { t1, n2 } = twoNodes();
    const aborted = deferred<void>();
    n2.register('b', { handlers: { echo: (_p, ctx) => new Promise(() => ctx.signal.addEventListener('abort', () => aborted.resolve())) } });
    const r = recordingResponder();
    t1.inject('n2', inbound({ budgetMs: 250 }), r);
    await vi.advanceTimersByTimeAsync(249);
    expect(r.errors).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await aborted.promise;
    expect(r.errors.map((e) => e.code)).toEqual(['TIMEOUT']);
  });

  it('drops a repeated message id: one delivery, one answer, message:dead for the repeat', async () => {
    const { n2, t1, calls } = receiver();
    const dead: string[] = [];
    n2.events.on('message:dead', (e) => dead.push(e.reason));
    const message = inbound();
    const first = recordingResponder();
    const second = recordingResponder();
    t1.inject('n2', message, first);
    t1.inject('n2', message, second);
    await hops();
    expect(calls).toHaveLength(1);
    expect(first.replies).toEqual(['{"ok":true}']);
    expect(second.replies).toEqual([]);
    expect(second.errors).toEqual([]);
    expect(dead[0]).toContain('repeated message id');
  });

  it('refuses a forged sender: a remote node cannot speak as one of the receiver’s agents', async () => {
    const { n2, t1, calls } = receiver();
    n2.register('local');
    const r = recordingResponder();
    t1.inject('n2', inbound({ from: 'local' }), r);
    await hops();
    expect(r.errors[0]?.code).toBe('POLICY_DENIED');
    expect(calls).toHaveLength(0);
  });

  it('refuses a sender whose directory entry names another node', async () => {
    const { n2, t1, calls } = receiver();
    const r = recordingResponder();
    t1.inject('n2', inbound({ fromNode: 'n3' }), r);
    await hops();
    expect(r.errors[0]?.code).toBe('POLICY_DENIED');
    expect(calls).toHaveLength(0);
    expect(n2.getMessageLog({ agentId: 'b' })[0]).toMatchObject({ decision: 'denied', peerNode: 'n3' });
  });

  it.each([
    ['a priority that is not one', { priority: 'urgent' }, 'INVALID_ARGUMENT'],
    ['a negative budget', { budgetMs: -1 }, 'INVALID_ARGUMENT'],
    ['an infinite budget', { budgetMs: Infinity }, 'INVALID_ARGUMENT'],
    ['a depth over maxDepth', { depth: 11 }, 'MAX_DEPTH'],
    ['a fractional depth', { depth: 0.5 }, 'INVALID_ARGUMENT'],
    ['a 2 MB payload', { payloadJson: `"${'x'.repeat(2 * 1024 * 1024)}"` }, 'PAYLOAD_TOO_LARGE'],
    ['a payload that is not JSON', { payloadJson: '{not json' }, 'INVALID_PAYLOAD'],
    ['a __proto__ key in the payload', { payloadJson: '{"__proto__":{"x":1}}' }, 'INVALID_PAYLOAD'],
    ['a type that is not one', { type: 'reply' }, 'INVALID_ARGUMENT'],
    ['an id that is not a string', { id: 42 }, 'INVALID_ARGUMENT'],
    ['a recipient that is not an agent id', { to: '../b' }, 'INVALID_ARGUMENT'],
  ])('refuses %s with a typed code, audited', async (_name, patch, code) => {
    const { n2, t1, calls } = receiver({ limits: { maxDepth: 10 } });
    const r = recordingResponder();
    t1.inject('n2', inbound(patch), r);
    await hops();
    expect(r.errors.map((e) => e.code)).toEqual([code]);
    expect(calls).toHaveLength(0);
    const rows = n2.getMessageLog({ decision: 'denied' });
    expect(rows.map((e) => e.code)).toEqual([code]);
    expect(rows[0]).toMatchObject({ node: 'n2', peerNode: 'n1' });
    expect(n2.verifyAuditLog().ok).toBe(true);
  });

  it('refuses a message whose payload fails the receiver’s contract', async () => {
    const { t1, calls } = receiver({
      contracts: { echo: { type: 'ask', input: { '~standard': { version: 1, vendor: 't', validate: (v: unknown) => (typeof v === 'object' && v !== null && 'y' in v ? { value: v } : { issues: [{ message: 'y is required' }] }) } } } },
    } as OrchestratorOptions);
    const r = recordingResponder();
    t1.inject('n2', inbound(), r);
    await hops();
    expect(r.errors[0]?.code).toBe('INVALID_PAYLOAD');
    expect(calls).toHaveLength(0);
  });

  it('limits each remote sender with its own bucket', async () => {
    const { t1, calls } = receiver({ limits: { rate: { perSecond: 1, burst: 2 } } });
    const codes: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = recordingResponder();
      t1.inject('n2', inbound(), r);
      await hops();
      codes.push(r.errors[0]?.code ?? 'ok');
    }
    expect(codes).toEqual(['ok', 'ok', 'RATE_LIMITED']);
    expect(calls).toHaveLength(2);
  });

  it('takes a remote sender’s trust from its own directory, never from the message', async () => {
    const rules: PolicyRule[] = [{ from: 'a', to: 'b', allow: ['ask'], minTrust: 50 }];
    const { n1, n2 } = twoNodes({}, { policies: rules });
    n2.register('b', { handlers: { echo: () => 'ok' } });
    const low = n1.register('a', { trust: 10 });
    expect((await rejectionOf(low.ask('b', 'echo', {}))).code).toBe('POLICY_DENIED');
  });
});

describe('minRecipientTrust across nodes', () => {
  const GATED: PolicyRule[] = [{ from: 'a', to: 'b', allow: ['ask', 'notify'], minRecipientTrust: 50 }];

  it("refuses at the sender's node, never carried, when the trust it grants the remote recipient (remoteTrust, 0 unlisted) is below the gate", async () => {
    for (const remoteTrust of [{}, { b: 49 }]) {
      const { n1, n2, t1 } = twoNodes({ policies: GATED, remoteTrust }, { policies: ALLOW_ALL });
      n2.register('b', { trust: 100, handlers: { echo: () => 'ok', news: () => undefined } });
      const a = n1.register('a');
      const e = await rejectionOf(a.ask('b', 'echo', {}));
      expect(e.code).toBe('POLICY_DENIED');
      expect(e.message).toContain('needs recipient trust >= 50');
      expect((await a.notify('news', {}, { to: ['b'] })).denied).toEqual(['b']);
      expect(t1.sent).toEqual([]);
      expect(n1.explain({ from: 'a', to: 'b', type: 'ask', intent: 'echo' }).decision).toBe('deny');
    }
  });

  it("refuses at the receiver's node when the recipient's own registered trust there is below the gate", async () => {
    const { n1, n2, t1 } = twoNodes({ policies: ALLOW_ALL }, { policies: GATED });
    const calls: unknown[] = [];
    n2.register('b', { trust: 10, handlers: { echo: (p) => (calls.push(p), 'ok') } });
    const a = n1.register('a');
    const e = await rejectionOf(a.ask('b', 'echo', {}));
    expect(e).toMatchObject({ code: 'POLICY_DENIED', message: expect.stringContaining('(node n2)') });
    expect(t1.sent).toHaveLength(1);
    expect(calls).toEqual([]);
  });

  it('delivers when both nodes find the recipient trusted enough, each by its own registry', async () => {
    const { n1, n2 } = twoNodes({ policies: GATED, remoteTrust: { b: 50 } }, { policies: GATED });
    n2.register('b', { trust: 50, handlers: { echo: () => 'ok' } });
    const a = n1.register('a');
    await expect(a.ask('b', 'echo', {})).resolves.toBe('ok');
  });
});

describe('approvals and audit across nodes', () => {
  const HOLD: PolicyRule[] = [{ from: 'a', to: 'b', allow: ['ask', 'notify'], requireApproval: true }];

  it('holds an approval at the receiving node; approving there delivers and answers the sender', async () => {
    const { n1, n2 } = twoNodes({ policies: ALLOW_ALL }, { policies: HOLD });
    n2.register('b', { handlers: { pay: () => 'paid' } });
    const a = n1.register('a');
    const answer = a.ask('b', 'pay', { amount: 5 });
    await hops();
    expect(n1.approvals.list()).toEqual([]);
    const [held] = n2.approvals.list();
    expect(held?.envelope).toMatchObject({ from: 'a', to: 'b', intent: 'pay', payload: { amount: 5 } });
    n2.approvals.approve(held!.id);
    await expect(answer).resolves.toBe('paid');
  });

  it("holds at the sender's node a message its own rule holds, before carrying it; approving there carries it", async () => {
    const { n1, n2, t1 } = twoNodes({ policies: HOLD }, { policies: ALLOW_ALL });
    const paid: unknown[] = [];
    n2.register('b', { handlers: { pay: (p) => (paid.push(p), 'paid') } });
    const a = n1.register('a');
    const answer = a.ask('b', 'pay', { amount: 5 });
    await hops();
    expect(t1.sent).toEqual([]);
    expect(paid).toEqual([]);
    const [held] = n1.approvals.list();
    expect(held?.envelope).toMatchObject({ from: 'a', to: 'b', intent: 'pay', payload: { amount: 5 } });
    expect(n1.approvals.approve(held!.id)).toEqual({ staged: true });
    await expect(answer).resolves.toBe('paid');
    expect(t1.sent).toHaveLength(1);
    expect(n2.approvals.list()).toEqual([]);
    await n1.flush();
    expect(n1.getMessageLog({ agentId: 'b', type: 'ask' })[0]).toMatchObject({ decision: 'pending', outcome: 'replied', node: 'n1', peerNode: 'n2' });
  });

  it("records a notify approved at the sender's node whose commit failed as failed (AUDIT_UNAVAILABLE), never delivered, and does not carry it", async () => {
    const { SqliteAuditLog } = await import('../src/audit/sqlite.js');
    const inner = new SqliteAuditLog();
    let failNext = 0;
    const flaky = {
      append(records: readonly AuditRecord[]) {
        if (failNext > 0) {
          failNext--;
          throw new Error('SQLITE_FULL: database or disk is full');
        }
        inner.append(records);
      },
      query: inner.query.bind(inner),
      verify: inner.verify.bind(inner),
      close: inner.close.bind(inner),
    };
    const { n1, n2, t1 } = twoNodes({ policies: HOLD, audit: flaky }, { policies: ALLOW_ALL });
    n2.register('b', { handlers: { note: () => undefined } });
    const a = n1.register('a');
    await a.notify('note', { x: 1 }, { to: ['b'] });
    await hops();
    const [held] = n1.approvals.list();
    failNext = 1; // the approval's commit
    expect(n1.approvals.approve(held!.id)).toEqual({ staged: true });
    await n1.flush(); // fails, holding what nobody waits for
    await n1.flush(); // the log works again: what was held is written
    expect(t1.sent).toEqual([]);
    const [entry] = n1.getMessageLog({ agentId: 'b', type: 'notify' });
    expect(entry).toMatchObject({ approval: 'approved', outcome: 'failed', code: 'AUDIT_UNAVAILABLE' });
    expect(n1.verifyAuditLog()).toMatchObject({ ok: true });
  });

  it("never carries a message rejected at the sender's node: APPROVAL_REJECTED", async () => {
    const { n1, n2, t1 } = twoNodes({ policies: HOLD }, { policies: ALLOW_ALL });
    n2.register('b', { handlers: { pay: () => 'paid' } });
    const a = n1.register('a');
    const answer = rejectionOf(a.ask('b', 'pay', {}));
    await hops();
    n1.approvals.reject(n1.approvals.list()[0]!.id, { reason: 'no' });
    expect((await answer).code).toBe('APPROVAL_REJECTED');
    expect(t1.sent).toEqual([]);
  });

  it('needs both approvals when both nodes hold it: first at the sender, then at the receiver', async () => {
    const { n1, n2 } = twoNodes({ policies: HOLD }, { policies: HOLD });
    n2.register('b', { handlers: { pay: () => 'paid' } });
    const a = n1.register('a');
    const answer = a.ask('b', 'pay', {});
    await hops();
    expect(n2.approvals.list()).toEqual([]);
    n1.approvals.approve(n1.approvals.list()[0]!.id);
    await hops();
    const [there] = n2.approvals.list();
    expect(there?.envelope).toMatchObject({ from: 'a', to: 'b', intent: 'pay' });
    n2.approvals.approve(there!.id);
    await expect(answer).resolves.toBe('paid');
  });

  it("holds a notify to another node's agent at the sender when its rule says so; approving there delivers it", async () => {
    const { n1, n2, t1 } = twoNodes({ policies: HOLD }, { policies: ALLOW_ALL });
    const got = deferred<unknown>();
    n2.register('b', { handlers: { news: (p) => void got.resolve(p) } });
    const a = n1.register('a');
    const receipt = await a.notify('news', { v: 3 }, { to: ['b'] });
    expect(receipt.pending).toEqual(['b']);
    expect(t1.sent).toEqual([]);
    n1.approvals.approve(n1.approvals.list()[0]!.id);
    await expect(got.promise).resolves.toEqual({ v: 3 });
  });

  it('answers APPROVAL_REJECTED when the receiving node rejects the held message', async () => {
    const { n1, n2 } = twoNodes({}, { policies: HOLD });
    n2.register('b', { handlers: { pay: () => 'paid' } });
    const a = n1.register('a');
    const answer = rejectionOf(a.ask('b', 'pay', {}));
    await hops();
    n2.approvals.reject(n2.approvals.list()[0]!.id, { reason: 'no' });
    expect((await answer).code).toBe('APPROVAL_REJECTED');
  });

  it('lists a notify held at the receiver as pending in the receipt', async () => {
    const { n1, n2 } = twoNodes({}, { policies: HOLD });
    n2.register('b', { handlers: { news: () => undefined } });
    const a = n1.register('a');
    const receipt = await a.notify('news', {}, { to: ['b'] });
    expect(receipt.pending).toEqual(['b']);
    expect(n2.approvals.list()).toHaveLength(1);
  });

  it('records the message in both logs with the node and the peer node, and both chains verify', async () => {
    const { n1, n2 } = twoNodes();
    n2.register('b', { handlers: { echo: () => 'ok' } });
    const a = n1.register('a');
    await a.ask('b', 'echo', {});
    await hops();
    const sent = n1.getMessageLog({ agentId: 'b', type: 'ask' })[0]!;
    const received = n2.getMessageLog({ agentId: 'b', type: 'ask' })[0]!;
    expect(sent).toMatchObject({ from: 'a', to: 'b', decision: 'allowed', outcome: 'replied', node: 'n1', peerNode: 'n2' });
    expect(received).toMatchObject({ messageId: sent.messageId, decision: 'allowed', outcome: 'replied', node: 'n2', peerNode: 'n1' });
    expect(n1.verifyAuditLog().ok).toBe(true);
    expect(n2.verifyAuditLog().ok).toBe(true);
  });

  it('leaves local rows without node columns', async () => {
    const bus = makeBus({ policies: ALLOW_ALL });
    bus.register('b', { handlers: { echo: () => 'ok' } });
    await bus.register('a').ask('b', 'echo', {});
    const row = bus.getMessageLog({ agentId: 'b' })[0]!;
    expect(row.node).toBeUndefined();
    expect(row.peerNode).toBeUndefined();
  });
});

describe('what comes back to the sender', () => {
  it('turns a reply after TIMEOUT into message:dead, audited, and cancels the carriage', async () => {
    vi.useFakeTimers();
    const { n1, a, carried } = heldCarriage();
    const dead: string[] = [];
    n1.events.on('message:dead', (e) => dead.push(e.reason));
    const answer = rejectionOf(a.ask('b', 'slow', {}, { timeoutMs: 100 }));
    await vi.advanceTimersByTimeAsync(100);
    expect((await answer).code).toBe('TIMEOUT');
    expect(carried[0]!.cancelled).toHaveLength(1);
    carried[0]!.sink.reply('"too late"');
    carried[0]!.sink.dead('the receiver settled first', '"later still"');
    expect(dead).toHaveLength(2);
    expect(n1.getMessageLog({ type: 'reply' }).map((e) => e.outcome)).toEqual(['late-reply', 'late-reply']);
  });

  it('ignores an error after the request settled, and maps an unknown code to TRANSPORT_UNAVAILABLE', async () => {
    const { a, carried } = heldCarriage();
    const answer = rejectionOf(a.ask('b', 'x', {}));
    await hops();
    carried[0]!.sink.error('NOT_A_CODE' as never, 'weird');
    carried[0]!.sink.error('POLICY_DENIED', 'second answer');
    const e = await answer;
    expect(e.code).toBe('TRANSPORT_UNAVAILABLE');
    expect(e.message).toContain('weird');
  });

  it('refuses a remote reply that is not JSON or over the size limit with HANDLER_FAILED', async () => {
    const { a, carried } = heldCarriage({ limits: { maxPayloadBytes: 1000 } });
    const first = rejectionOf(a.ask('b', 'x', {}));
    const second = rejectionOf(a.ask('b', 'x', {}));
    await hops();
    carried[0]!.sink.reply('{nope');
    carried[1]!.sink.reply(`"${'x'.repeat(2000)}"`);
    expect((await first).code).toBe('HANDLER_FAILED');
    expect((await second).code).toBe('HANDLER_FAILED');
  });

  it('hands a remote reply over as a frozen copy, and checks progress before it reaches listeners', async () => {
    const { a, carried } = heldCarriage();
    const job = a.delegate('b', 'x', {});
    const reports: unknown[] = [];
    job.onProgress((r) => reports.push(r));
    await hops();
    carried[0]!.sink.progress(2, 'out of range');
    carried[0]!.sink.progress(0.25);
    await hops();
    carried[0]!.sink.reply('{"deep":{"v":1}}');
    const value = (await job) as { deep: { v: number } };
    expect(value).toEqual({ deep: { v: 1 } });
    expect(Object.isFrozen(value.deep)).toBe(true);
    expect(reports).toEqual([{ fraction: 0.25 }]);
  });

  it('delivers a progress report that arrives in the same tick as the reply, before the job settles', async () => {
    const { a, carried } = heldCarriage();
    const job = a.delegate('b', 'x', {});
    const seen: string[] = [];
    job.onProgress(({ fraction }) => seen.push(`progress ${fraction}`));
    await hops();
    carried[0]!.sink.progress(0.9, 'almost');
    carried[0]!.sink.reply('"done"');
    await job.then((v) => seen.push(`reply ${String(v)}`));
    expect(seen).toEqual(['progress 0.9', 'reply done']);
  });

  it('sends the remaining budget, not the deadline, and fails pending notifies with CLOSED on close', async () => {
    const { n1, a, carried } = heldCarriage();
    void a.ask('b', 'x', {}, { timeoutMs: 5000 }).catch(() => undefined);
    const receipt = a.notify('news', {}, { to: ['b'] });
    await hops();
    expect(carried[0]!.outbound.budgetMs).toBeGreaterThan(4000);
    expect(carried[0]!.outbound.budgetMs).toBeLessThanOrEqual(5000);
    expect(carried[1]!.outbound.budgetMs).toBeUndefined();
    await n1.close();
    await expect(receipt).resolves.toMatchObject({ failed: ['b'] });
    expect(carried[0]!.cancelled).toHaveLength(1);
  });
});

/** An async audit log whose commits of reply rows wait until the test releases them. */
function heldReplies() {
  const held: (() => void)[] = [];
  const rows: AuditRecord[] = [];
  const log = {
    append: (records: readonly AuditRecord[]) => void rows.push(...records),
    appendAsync(records: readonly AuditRecord[], done: (error?: Error) => void) {
      const commit = () => (rows.push(...records), done());
      if (records.some((r) => r.kind === 'attempt' && r.type === 'reply')) held.push(commit);
      else queueMicrotask(commit);
    },
    drain: () => held.splice(0).forEach((f) => f()),
    query: () => [],
    verify: () => ({ ok: true, checked: 0 }),
    close: () => undefined,
  };
  return { log, held, rows };
}

describe('the reply to another node', () => {
  it('leaves before its reply row is committed, and the row is committed after', async () => {
    const audit = heldReplies();
    const { n1, n2 } = twoNodes({}, { audit: audit.log });
    n2.register('b', { handlers: { echo: (p) => ({ echoed: p }) } });
    const a = n1.register('a');
    await Promise.all([n1.ready(), n2.ready()]);
    await expect(a.ask('b', 'echo', { x: 1 })).resolves.toEqual({ echoed: { x: 1 } });
    expect(audit.held).toHaveLength(1);
    expect(audit.rows.filter((r) => r.kind === 'attempt' && r.type === 'reply')).toEqual([]);
    audit.held.splice(0).forEach((commit) => commit());
    expect(audit.rows.filter((r) => r.kind === 'attempt' && r.type === 'reply')).toHaveLength(1);
  });
});

describe('the receiving node fails closed', () => {
  it('answers AUDIT_UNAVAILABLE and delivers nothing when its receipt cannot be committed', async () => {
    const { t1, n2 } = twoNodes({}, { audit: brokenAudit() });
    const calls: unknown[] = [];
    n2.register('b', { handlers: { echo: (p) => void calls.push(p) } });
    const r = recordingResponder();
    t1.inject('n2', inbound(), r);
    await hops();
    expect(r.errors.map((e) => e.code)).toEqual(['AUDIT_UNAVAILABLE']);
    expect(calls).toEqual([]);
  });

  it('fails the inbound ask with UNKNOWN_AGENT when its recipient is unregistered before replying', async () => {
    const { t1, n2 } = twoNodes();
    const started = deferred();
    n2.register('b', { handlers: { echo: () => (started.resolve(), new Promise(() => undefined)) } });
    const r = recordingResponder();
    t1.inject('n2', inbound(), r);
    await started.promise;
    n2.unregister('b');
    expect(r.errors.map((e) => e.code)).toEqual(['UNKNOWN_AGENT']);
  });
});
