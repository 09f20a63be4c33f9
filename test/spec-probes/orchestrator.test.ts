// SPEC "Orchestrator": options, defaults and every member of the table, probed from outside.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BusError, Orchestrator } from '../../src/index.js';
import { bus, closeAll, hang, OPEN, refusal, settle } from './probe-kit.js';

afterEach(async () => {
  await closeAll();
  vi.useRealTimers();
});

describe('Orchestrator options: "validated once, strictly (an unknown or misspelled key is an error that names it)"', () => {
  it('names a misspelled nested key with its path', () => {
    expect(() => new Orchestrator({ audit: false, timeouts: { askMS: 5 } } as never)).toThrow(/Invalid Orchestrator options: unknown key "timeouts\.askMS"/);
  });

  it('refuses a non-object options value with INVALID_ARGUMENT, never a TypeError', () => {
    for (const bad of [5, 'x', [], true]) {
      let caught: unknown;
      try {
        new Orchestrator(bad as never);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(BusError);
      expect((caught as BusError).code).toBe('INVALID_ARGUMENT');
    }
  });

  it('reads the options object once: changing it after construction changes nothing', async () => {
    const options = { audit: false as const, policies: [...OPEN] as Array<unknown>, limits: { maxPayloadBytes: 100 } };
    const b = bus(options as never);
    options.limits.maxPayloadBytes = 1;
    options.policies.length = 0;
    b.register('b', { handlers: { x: () => 'ok' } });
    const a = b.register('a');
    await expect(a.ask('b', 'x', { s: 'hello' })).resolves.toBe('ok');
  });
});

describe('Orchestrator defaults', () => {
  it('"no rules (all denied)": a bus without policies refuses every type with POLICY_DENIED', async () => {
    const b = bus();
    b.register('b', { handlers: { '*': () => 1 } });
    const a = b.register('a');
    for (const p of [a.ask('b', 'x', {}), a.delegate('b', 'x', {}), a.send({ to: 'b', type: 'ask', intent: 'x', payload: null })]) {
      expect((await refusal(p)).code).toBe('POLICY_DENIED');
    }
    const receipt = await a.notify('x', {});
    expect(receipt.denied).toEqual(['b']);
    expect(receipt.delivered).toEqual([]);
  });

  it('"maxPayloadBytes 102,400" measured in UTF-8 bytes of the JSON: exactly 102,400 passes, one more is PAYLOAD_TOO_LARGE', async () => {
    const b = bus({ policies: [...OPEN], limits: { rate: false } });
    b.register('b', { handlers: { x: () => 'ok' } });
    const a = b.register('a');
    // "é" is 2 bytes in UTF-8: a string of n of them is 2n + 2 bytes of JSON.
    await expect(a.ask('b', 'x', 'é'.repeat(51_199))).resolves.toBe('ok');
    const e = await refusal(a.ask('b', 'x', 'é'.repeat(51_199) + 'a'));
    expect(e.code).toBe('PAYLOAD_TOO_LARGE');
    expect(e.message).toContain('102400');
  });

  it('"a bucket of 10 per second with burst 10 per sender": the 11th send of an instant is RATE_LIMITED with retryAfterMs, another sender is unaffected', async () => {
    let now = 1_000_000;
    const b = bus({ policies: [...OPEN], clock: { now: () => now } });
    b.register('b', { handlers: { x: () => 'ok' } });
    const a = b.register('a');
    const c = b.register('c');
    for (let i = 0; i < 10; i++) await a.ask('b', 'x', i);
    const e = await refusal(a.ask('b', 'x', 10));
    expect(e.code).toBe('RATE_LIMITED');
    expect(e.retryAfterMs).toBeGreaterThan(0);
    expect(e.retryAfterMs).toBeLessThanOrEqual(100);
    await expect(c.ask('b', 'x', 0)).resolves.toBe('ok');
    now += 100; // one token back
    await expect(a.ask('b', 'x', 11)).resolves.toBe('ok');
  });

  it('"ask and delegate deadlines 30 s": a silent handler times the ask out at 30,000 ms, not before', async () => {
    vi.useFakeTimers();
    const b = bus({ policies: [...OPEN] });
    b.register('b', { handlers: { x: hang } });
    const a = b.register('a');
    const settled = vi.fn();
    const p = a.ask('b', 'x', {});
    p.then(settled, settled);
    const job = a.delegate('b', 'x', {});
    job.catch(() => {});
    await vi.advanceTimersByTimeAsync(29_999);
    expect(settled).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    const e = await refusal(p);
    expect(e.code).toBe('TIMEOUT');
    expect(e.timeoutMs).toBe(30_000);
    expect((await refusal(job)).timeoutMs).toBe(30_000);
  });

  it('"agent trust 0", capabilities [] by default, in agents()', () => {
    const b = bus({ audit: false });
    b.register('a');
    b.register('b', { capabilities: ['calc'], trust: 3 });
    expect(b.agents()).toEqual([
      { id: 'a', capabilities: [], trust: 0 },
      { id: 'b', capabilities: ['calc'], trust: 3 },
    ]);
  });

  it('"timeouts.closeMs 1000": close waits 1000 ms for a handler that ignores its signal, then resolves', async () => {
    vi.useFakeTimers();
    const b = new Orchestrator({ policies: [...OPEN] });
    let aborted = false;
    b.register('b', {
      handlers: {
        x: (_p, ctx) => {
          ctx.signal.addEventListener('abort', () => (aborted = true));
          return new Promise(() => {});
        },
      },
    });
    const a = b.register('a');
    const asked = a.ask('b', 'x', {});
    asked.catch(() => {});
    await vi.advanceTimersByTimeAsync(0);
    const done = vi.fn();
    b.close().then(done);
    await vi.advanceTimersByTimeAsync(999);
    expect(aborted).toBe(true);
    expect(done).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(done).toHaveBeenCalled();
    expect((await refusal(asked)).code).toBe('CLOSED');
  });
});

describe('Orchestrator#register()', () => {
  it('"Duplicate or invalid id → error": DUPLICATE_AGENT naming the id; INVALID_ARGUMENT naming a bad id', () => {
    const b = bus({ audit: false });
    b.register('a');
    expect(() => b.register('a')).toThrow(expect.objectContaining({ code: 'DUPLICATE_AGENT', message: expect.stringContaining('"a"') }));
    for (const id of ['', '*', '-a', 'a b', 'x'.repeat(129), 'é']) {
      expect(() => b.register(id)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
    expect(() => b.register(5 as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    // the longest legal id, and every legal punctuation
    expect(b.register('A' + 'b'.repeat(127)).id).toHaveLength(128);
    expect(b.register('0a._:-z').id).toBe('0a._:-z');
  });

  it('refuses an unknown register option naming it', () => {
    const b = bus({ audit: false });
    expect(() => b.register('a', { capabilites: [] } as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('capabilites') }));
    expect(b.agents()).toEqual([]);
  });

  it('`rate: false` exempts one agent from the default bucket', async () => {
    const b = bus({ policies: [...OPEN], clock: { now: () => 5 } });
    b.register('b', { handlers: { x: () => 'ok' } });
    const a = b.register('a', { rate: false });
    for (let i = 0; i < 25; i++) await a.ask('b', 'x', i);
  });

  it('`rate` overrides the default bucket for that agent', async () => {
    const b = bus({ policies: [...OPEN], clock: { now: () => 5 } });
    b.register('b', { handlers: { x: () => 'ok' } });
    const a = b.register('a', { rate: { perSecond: 1, burst: 2 } });
    await a.ask('b', 'x', 1);
    await a.ask('b', 'x', 2);
    const e = await refusal(a.ask('b', 'x', 3));
    expect(e.code).toBe('RATE_LIMITED');
    expect(e.retryAfterMs).toBe(1000);
  });
});

describe('Orchestrator#unregister()', () => {
  it('"Pending asks to it fail (UNKNOWN_AGENT), its own pending asks are cancelled, its old handle is dead for good"', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('b', { handlers: { x: hang } });
    const a = b.register('a', { handlers: { y: hang } });
    const c = b.register('c');
    const toA = c.ask('a', 'y', {});
    const fromA = a.ask('b', 'x', {});
    await settle();
    expect(b.unregister('a')).toBe(true);
    const e1 = await refusal(toA);
    expect(e1.code).toBe('UNKNOWN_AGENT');
    const e2 = await refusal(fromA);
    expect(e2.code).toBe('CANCELLED');
    expect(a.alive).toBe(false);
    const again = b.register('a', { handlers: { y: () => 'new' } });
    expect(again).not.toBe(a);
    expect((await refusal(a.ask('b', 'x', {}))).code).toBe('UNKNOWN_AGENT');
    expect((await refusal(a.notify('x', {}))).code).toBe('UNKNOWN_AGENT');
    expect(a.alive).toBe(false);
    await expect(c.ask('a', 'y', {})).resolves.toBe('new');
  });

  it('returns false for an id that is not registered', () => {
    expect(bus({ audit: false }).unregister('nobody')).toBe(false);
  });
});

describe('Orchestrator#agents()', () => {
  it('"Read-only list": changing what it returns changes nothing in the bus', () => {
    const b = bus({ audit: false });
    b.register('a', { capabilities: ['x'], trust: 1 });
    const list = b.agents() as Array<{ id: string; capabilities: string[]; trust: number }>;
    try {
      list.push({ id: 'evil', capabilities: [], trust: 9 });
    } catch {}
    try {
      list[0]!.trust = 99;
      list[0]!.capabilities.push('admin');
    } catch {}
    expect(b.agents()).toEqual([{ id: 'a', capabilities: ['x'], trust: 1 }]);
  });
});

describe('Orchestrator#setPolicies() / policies()', () => {
  it('"a bad set changes nothing" and "each set gets a version number recorded with every decision"', async () => {
    const b = bus({ policies: [{ from: 'a', to: 'b', allow: ['ask'] }] });
    b.register('b', { handlers: { x: () => 'ok' } });
    const a = b.register('a');
    const before = b.policies();
    expect(() => b.setPolicies([{ from: 'a', to: 'b', allow: ['ask'] }, { from: 'a', to: 'b', allow: ['shout'] } as never])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(b.policies()).toEqual(before);
    await a.ask('b', 'x', 1);
    const v1 = b.getMessageLog({ limit: 1 })[0]!.policyVersion;
    const v2 = b.setPolicies([{ from: 'a', to: 'b', allow: ['ask', 'notify'] }]);
    expect(v2).toBeGreaterThan(v1);
    await a.ask('b', 'x', 2);
    expect(b.getMessageLog({ limit: 1 })[0]!.policyVersion).toBe(v2);
  });

  it('the returned rules cannot be edited to change the policy', async () => {
    const b = bus({ policies: [{ from: 'a', to: 'b', allow: ['ask'] }] });
    b.register('b', { handlers: { x: () => 'ok' } });
    const a = b.register('a');
    const rules = b.policies() as unknown as Array<{ allow?: string[] }>;
    try {
      rules[0]!.allow!.push('delegate');
    } catch {}
    expect((await refusal(a.delegate('b', 'x', {}))).code).toBe('POLICY_DENIED');
  });
});

describe('Orchestrator#explain()', () => {
  it('gives { decision, rule?, reason } without sending or auditing anything', () => {
    const b = bus({ policies: [{ from: 'a', to: 'b', allow: ['delegate'], requireApproval: true }, { from: '*', to: 'vault', deny: ['notify'] }] });
    const held = b.explain({ from: 'a', to: 'b', type: 'delegate', intent: 'pay' });
    expect(held.decision).toBe('approval');
    expect(held.rule).toMatchObject({ from: 'a', to: 'b', requireApproval: true });
    expect(held.reason).toEqual(expect.any(String));
    const denied = b.explain({ from: 'a', to: 'vault', type: 'notify', intent: 'x' });
    expect(denied.decision).toBe('deny');
    expect(denied.rule).toMatchObject({ from: '*', to: 'vault', deny: ['notify'] });
    const none = b.explain({ from: 'a', to: 'c', type: 'ask', intent: 'x' });
    expect(none.decision).toBe('deny');
    expect(none.rule).toBeUndefined();
    expect(b.getMessageLog()).toEqual([]);
  });

  it('refuses a malformed question with INVALID_ARGUMENT (e.g. type "reply")', () => {
    const b = bus({ audit: false });
    expect(() => b.explain({ from: 'a', to: 'b', type: 'reply' as never, intent: 'x' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => b.explain({ from: 'a', to: 'b', type: 'ask', intent: '' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('Orchestrator#getMessageLog()', () => {
  it('"newest first", limit 50 by default, and paging with beforeSeq / afterSeq is lossless whatever the timestamps', async () => {
    const b = bus({ policies: [...OPEN], limits: { rate: false }, clock: { now: () => 42 } });
    b.register('b', { handlers: { x: () => 1 } });
    const a = b.register('a');
    for (let i = 0; i < 60; i++) await a.ask('b', 'x', i);
    const first = b.getMessageLog();
    expect(first).toHaveLength(50);
    const seqs = first.map((e) => e.seq);
    expect([...seqs].sort((x, y) => y - x)).toEqual(seqs);
    const all: number[] = [];
    let before: number | undefined;
    for (;;) {
      const page = b.getMessageLog({ limit: 7, ...(before === undefined ? {} : { beforeSeq: before }) });
      if (page.length === 0) break;
      all.push(...page.map((e) => e.seq));
      before = page.at(-1)!.seq;
    }
    // one entry per message and recipient: 60 asks and their 60 replies
    expect(all).toHaveLength(120);
    expect(new Set(all).size).toBe(120);
    const forward: number[] = [];
    let after = 0;
    for (;;) {
      const page = b.getMessageLog({ limit: 9, afterSeq: after });
      if (page.length === 0) break;
      forward.push(...page.map((e) => e.seq));
      after = page.at(-1)!.seq;
    }
    expect(forward).toEqual([...all].reverse());
  });

  it('agentId matches sender or recipient', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('b', { handlers: { x: () => 1 } });
    b.register('c', { handlers: { x: () => 1 } });
    const a = b.register('a');
    await a.ask('b', 'x', 1);
    await a.ask('c', 'x', 1);
    expect(b.getMessageLog({ agentId: 'b' }).map((e) => [e.type, e.from, e.to])).toEqual([
      ['reply', 'b', 'a'],
      ['ask', 'a', 'b'],
    ]);
    expect(b.getMessageLog({ agentId: 'a' })).toHaveLength(4);
  });

  it('clamps limit to 1..10,000 as documented (docs/audit.md)', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('b', { handlers: { x: () => 1 } });
    await b.register('a').ask('b', 'x', 1);
    expect(b.getMessageLog({ limit: 0 })).toHaveLength(1);
    expect(b.getMessageLog({ limit: 1e9 })).toHaveLength(2);
  });

  it('refuses a bad query with INVALID_ARGUMENT rather than returning everything', () => {
    const b = bus();
    for (const q of [null, 5, { limit: 1.5 }, { beforeSeq: 'x' }, { agentId: 5 }, { limt: 3 }]) {
      expect(() => b.getMessageLog(q as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });
});

describe('Orchestrator#auditHead() / verifyAuditLog()', () => {
  it('auditHead() is { seq, hash } of the newest committed row; verifyAuditLog({ head }) accepts it', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('b', { handlers: { x: () => 1 } });
    const a = b.register('a');
    await a.ask('b', 'x', 1);
    await b.flush();
    const head = b.auditHead();
    expect(head).toEqual({ seq: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const result = b.verifyAuditLog({ head });
    expect(result.ok).toBe(true);
    expect(result.checked).toBeGreaterThan(0);
    expect(b.verifyAuditLog({ head: { seq: head.seq, hash: '0'.repeat(64) } }).ok).toBe(false);
    expect(b.verifyAuditLog({ head: { seq: head.seq + 100, hash: head.hash } }).ok).toBe(false);
  });
});

describe('Orchestrator#ready()', () => {
  it('"at once without" a transport', async () => {
    await expect(bus({ audit: false }).ready()).resolves.toBeUndefined();
  });
});

describe('Orchestrator#close()', () => {
  it('"stops new sends, fails pending asks (CLOSED), cancels held approvals, aborts running handlers\' signals"', async () => {
    const b = new Orchestrator({ policies: [{ from: 'a', to: 'b', allow: ['ask'] }, { from: 'a', to: 'h', allow: ['ask'], requireApproval: true }] });
    const signals: AbortSignal[] = [];
    b.register('b', {
      handlers: {
        x: (_p, ctx) =>
          new Promise((_r, reject) => {
            signals.push(ctx.signal);
            ctx.signal.addEventListener('abort', () => reject(new Error('stopped')));
          }),
      },
    });
    b.register('h', { handlers: { x: () => 1 } });
    const a = b.register('a');
    const decided: string[] = [];
    b.events.on('approval:decided', (e) => decided.push(e.decision));
    const running = a.ask('b', 'x', {});
    const held = a.ask('h', 'x', {});
    await settle();
    expect(b.approvals.list()).toHaveLength(1);
    await b.close();
    expect(signals[0]!.aborted).toBe(true);
    expect((await refusal(running)).code).toBe('CLOSED');
    expect((await refusal(held)).code).toBe('CLOSED');
    expect(decided).toEqual(['cancelled']);
    expect((await refusal(a.ask('b', 'x', {}))).code).toBe('CLOSED');
    expect(() => b.register('z')).toThrow(expect.objectContaining({ code: 'CLOSED' }));
  });

  it('"leaves no timer behind", even with asks, held notifies and rate buckets in flight', async () => {
    vi.useFakeTimers();
    const b = new Orchestrator({ policies: [{ from: 'a', to: 'b', allow: ['ask'] }, { from: 'a', to: '*', allow: ['notify'], requireApproval: true }] });
    b.register('b', { handlers: { x: () => new Promise(() => {}) } });
    const a = b.register('a');
    a.ask('b', 'x', {}).catch(() => {});
    a.notify('n', {}).catch(() => {});
    await vi.advanceTimersByTimeAsync(0);
    const closing = b.close();
    await vi.advanceTimersByTimeAsync(1000);
    await closing;
    expect(vi.getTimerCount()).toBe(0);
  });

  it('can be called twice; both calls resolve', async () => {
    const b = new Orchestrator();
    await Promise.all([b.close(), b.close()]);
    await b.close();
  });
});
