// The test kit's own tests: agent-switchboard/testing (src/testing/).
import { afterEach, describe, expect, expectTypeOf, it, vi } from 'vitest';
import { z } from 'zod';
import { defineContracts, isBusError, Orchestrator, type BusError, type Contracts } from '../src/index.js';
import {
  ALLOW_ALL,
  advanceUntilIdle,
  closeBus,
  createTestBus,
  delay,
  fail,
  flushMicrotasks,
  manual,
  never,
  recordTranscript,
  runUntilIdle,
  sequence,
  sequentialIds,
  stubAgent,
  type AnyContracts,
  type StubCall,
  type TestBusOptions,
} from '../src/testing/index.js';

// Each test's buses, closed after it (advancing fake timers if a handler holds close() up).
const open: Orchestrator<Contracts>[] = [];
function testBus<C extends Contracts = AnyContracts>(options: TestBusOptions<C> = {}): Orchestrator<C> {
  const bus = createTestBus(options);
  open.push(bus as unknown as Orchestrator<Contracts>);
  return bus;
}
afterEach(async () => {
  for (const bus of open.splice(0)) await closeBus(bus, vi);
  vi.useRealTimers();
});

/** The BusError a promise rejects with. */
async function rejectionOf(promise: Promise<unknown>): Promise<BusError> {
  try {
    const value = await promise;
    throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
  } catch (error) {
    if (isBusError(error)) return error;
    throw error;
  }
}

const contracts = defineContracts({
  summarize: { type: 'delegate', input: z.object({ task: z.string() }), output: z.object({ summary: z.string() }) },
  clarify: { type: 'ask', input: z.object({ q: z.string() }), output: z.string() },
  found: { type: 'notify', input: z.object({ url: z.string() }) },
});

describe('createTestBus()', () => {
  it('numbers message ids msg-1, msg-2, … and starts again for each bus', async () => {
    for (let i = 0; i < 2; i++) {
      const bus = testBus({ allowAll: true });
      stubAgent(bus, 'writer', { clarify: 'yes' });
      const research = bus.register('research');
      const job = research.delegate('writer', 'clarify', {});
      expect(job.id).toBe('msg-1');
      await job;
      expect(research.delegate('writer', 'clarify', {}).id).toBe('msg-3'); // msg-2 was the reply
    }
  });

  it('keeps default deny: with no rules every message is refused with POLICY_DENIED', async () => {
    const bus = testBus();
    stubAgent(bus, 'writer', { clarify: 'yes' });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('writer', 'clarify', {}))).code).toBe('POLICY_DENIED');
    expect(bus.explain({ from: 'research', to: 'writer', type: 'ask', intent: 'clarify' }).decision).toBe('deny');
  });

  it('allowAll adds a * → * rule after yours: your denies and approval holds still decide', async () => {
    const bus = testBus({
      allowAll: true,
      policies: [
        { from: '*', to: 'vault', deny: ['ask'] },
        { from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true },
      ],
    });
    expect(bus.policies()).toHaveLength(3);
    expect(bus.policies()[2]).toEqual(ALLOW_ALL[0]);
    expect(bus.explain({ from: 'a', to: 'b', type: 'notify', intent: 'x' }).decision).toBe('allow');
    expect(bus.explain({ from: 'a', to: 'vault', type: 'ask', intent: 'x' }).decision).toBe('deny');
    expect(bus.explain({ from: 'purchase', to: 'payment', type: 'delegate', intent: 'pay' }).decision).toBe('approval');
    expect(testBus({ allowAll: true }).policies()).toEqual(ALLOW_ALL);
    expect(testBus({ allowAll: false }).policies()).toEqual([]);
  });

  it('turns the per-sender rate limit off unless limits.rate is given, keeping the other limits', async () => {
    const bus = testBus({ allowAll: true, limits: { maxDepth: 3 } });
    stubAgent(bus, 'writer', { ping: 'pong' });
    const research = bus.register('research');
    const answers = await Promise.all(Array.from({ length: 50 }, () => research.ask('writer', 'ping', {})));
    expect(answers).toHaveLength(50);

    const limited = testBus({ allowAll: true, limits: { rate: { perSecond: 1, burst: 2 } } });
    stubAgent(limited, 'writer', { ping: 'pong' });
    const sender = limited.register('research');
    await sender.ask('writer', 'ping', {});
    await sender.ask('writer', 'ping', {});
    expect((await rejectionOf(sender.ask('writer', 'ping', {}))).code).toBe('RATE_LIMITED');
  });

  it('audits in memory: the log and its hash chain are there to assert on', async () => {
    const bus = testBus({ allowAll: true });
    stubAgent(bus, 'writer', { clarify: 'yes' });
    await bus.register('research').ask('writer', 'clarify', { q: 'x' });
    expect(bus.getMessageLog()).toEqual([
      expect.objectContaining({ messageId: 'msg-2', type: 'reply', from: 'writer', to: 'research' }),
      expect.objectContaining({ messageId: 'msg-1', type: 'ask', from: 'research', to: 'writer', outcome: 'replied' }),
    ]);
    expect(bus.verifyAuditLog()).toMatchObject({ ok: true, checked: 2 });
  });

  it('takes every Orchestrator option: clock, ids, audit, timeouts', async () => {
    let now = 1_000;
    const bus = testBus({ allowAll: true, clock: { now: () => now }, ids: sequentialIds('m'), audit: false, timeouts: { askMs: 5_000 } });
    const writer = stubAgent(bus, 'writer', { clarify: 'yes' });
    now = 2_000;
    await bus.register('research').ask('writer', 'clarify', {});
    expect(writer.calls[0]!.envelope).toMatchObject({ id: 'm1', ts: 2_000, deadline: 7_000 });
    expect(bus.getMessageLog()).toEqual([]);
  });

  it('reads Date.now() by default, so fake timers drive envelope times and deadlines', async () => {
    vi.useFakeTimers({ now: 50_000 });
    const bus = testBus({ allowAll: true });
    const writer = stubAgent(bus, 'writer', { clarify: 'yes' });
    await vi.advanceTimersByTimeAsync(1_234);
    await bus.register('research').ask('writer', 'clarify', {}, { timeoutMs: 100 });
    expect(writer.calls[0]!.envelope).toMatchObject({ ts: 51_234, deadline: 51_334 });
  });

  it('validates options as strictly as the bus, naming a misspelled key', () => {
    // @ts-expect-error: `limts` is not an option
    expect(() => createTestBus({ limts: {} })).toThrow(/unknown key "limts"/);
    // @ts-expect-error: nor is limits.rat
    expect(() => createTestBus({ limits: { rat: false } })).toThrow(/limits\.rat/);
    // @ts-expect-error: allowAll is a boolean
    expect(() => createTestBus({ allowAll: 'yes' })).toThrow(/allowAll must be a boolean/);
  });

  it('keeps the contracts generic: intents, payloads and results are typed', async () => {
    const bus = testBus({ contracts, allowAll: true });
    expectTypeOf(bus).toEqualTypeOf<Orchestrator<typeof contracts>>();
    stubAgent(bus, 'writer', { summarize: (p) => ({ summary: p.task }), clarify: 'yes' });
    const research = bus.register('research');
    const out = await research.delegate('writer', 'summarize', { task: 't' });
    expectTypeOf(out).toEqualTypeOf<{ summary: string }>();
    expect(out).toEqual({ summary: 't' });
    // @ts-expect-error: clarify takes { q: string }
    await rejectionOf(research.ask('writer', 'clarify', { question: 1 }));
    // @ts-expect-error: no such intent
    await rejectionOf(research.ask('writer', 'nope', {}));
  });
});

describe('stubAgent()', () => {
  it('answers with fixed values and functions (sync and async), and records every call in order', async () => {
    const bus = testBus({ allowAll: true });
    const writer = stubAgent(bus, 'writer', {
      clarify: 'for engineers',
      summarize: (payload) => ({ summary: `about ${(payload as { task: string }).task}` }),
      count: async (payload, ctx) => ({ n: (payload as number[]).length, by: ctx.agentId }),
    });
    const research = bus.register('research');
    await expect(research.ask('writer', 'clarify', { q: 'who?' })).resolves.toBe('for engineers');
    await expect(research.delegate('writer', 'summarize', { task: 'otters' })).resolves.toEqual({ summary: 'about otters' });
    await expect(research.ask('writer', 'count', [1, 2, 3])).resolves.toEqual({ n: 3, by: 'writer' });
    await expect(research.ask('writer', 'clarify', { q: 'why?' })).resolves.toBe('for engineers');

    expect(writer.calls.map((c) => [c.intent, c.payload])).toEqual([
      ['clarify', { q: 'who?' }],
      ['summarize', { task: 'otters' }],
      ['count', [1, 2, 3]],
      ['clarify', { q: 'why?' }],
    ]);
    expect(writer.calls[1]!.envelope).toMatchObject({ id: 'msg-3', type: 'delegate', from: 'research', to: 'writer', depth: 0 });
    expect(writer.callsFor('clarify').map((c) => c.payload)).toEqual([{ q: 'who?' }, { q: 'why?' }]);
    expect(writer.lastCall()?.payload).toEqual({ q: 'why?' });
    expect(writer.lastCall('summarize')?.envelope.id).toBe('msg-3');
    expect(writer.lastCall('nothing')).toBeUndefined();
    expect(Object.isFrozen(writer.calls[0])).toBe(true);
    writer.reset();
    expect(writer.calls).toEqual([]);
  });

  it("fail() makes the sender's ask reject with HANDLER_FAILED carrying the message", async () => {
    const bus = testBus({ allowAll: true });
    stubAgent(bus, 'writer', { a: fail('model overloaded'), b: fail(new Error('disk full')), c: (p) => (p === 'bad' ? fail('bad input') : 'ok') });
    const research = bus.register('research');
    const a = await rejectionOf(research.ask('writer', 'a', {}));
    expect(a.code).toBe('HANDLER_FAILED');
    expect(a.message).toContain('model overloaded');
    expect((await rejectionOf(research.ask('writer', 'b', {}))).message).toContain('disk full');
    expect((await rejectionOf(research.ask('writer', 'c', 'bad'))).message).toContain('bad input');
    await expect(research.ask('writer', 'c', 'good')).resolves.toBe('ok');
  });

  it('delay() answers after the given fake time, not a millisecond before', async () => {
    vi.useFakeTimers();
    const bus = testBus({ allowAll: true });
    stubAgent(bus, 'writer', { summarize: delay(2_000, (p) => ({ summary: String((p as { task: string }).task) })) });
    const research = bus.register('research');
    let result: unknown;
    const job = research.delegate('writer', 'summarize', { task: 'x' }).then((r) => (result = r));
    await vi.advanceTimersByTimeAsync(1_999);
    expect(result).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    await job;
    expect(result).toEqual({ summary: 'x' });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('delay() gives up when the message expires first, leaving no timer', async () => {
    vi.useFakeTimers();
    const bus = testBus({ allowAll: true });
    stubAgent(bus, 'writer', { summarize: delay(10_000, 'late') });
    const job = rejectionOf(bus.register('research').delegate('writer', 'summarize', {}, { timeoutMs: 500 }));
    await vi.advanceTimersByTimeAsync(500);
    expect((await job).code).toBe('TIMEOUT');
    await runUntilIdle(bus);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('never() never answers: the sender times out and the handler stops with the deadline', async () => {
    vi.useFakeTimers();
    const bus = testBus({ allowAll: true });
    const writer = stubAgent(bus, 'writer', { clarify: never() });
    const answer = rejectionOf(bus.register('research').ask('writer', 'clarify', {}, { timeoutMs: 5_000 }));
    await vi.advanceTimersByTimeAsync(4_999);
    expect(writer.calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(await answer).toMatchObject({ code: 'TIMEOUT', timeoutMs: 5_000 });
    await runUntilIdle(bus); // the handler followed its signal: nothing is in flight
  });

  it('manual() holds a call until the test answers it', async () => {
    const bus = testBus({ allowAll: true });
    const writer = stubAgent(bus, 'writer', { summarize: manual() });
    const research = bus.register('research');
    const first = research.delegate('writer', 'summarize', { task: 'a' });
    await flushMicrotasks();
    expect(writer.waiting()).toEqual([writer.calls[0]]);
    expect(() => writer.answer('msg-99', 'x')).toThrow(/no call "msg-99" is waiting/);
    writer.answer(writer.calls[0]!, (p: unknown) => ({ summary: (p as { task: string }).task }));
    await expect(first).resolves.toEqual({ summary: 'a' });
    expect(writer.waiting()).toEqual([]);

    const second = research.delegate('writer', 'summarize', { task: 'b' });
    await flushMicrotasks();
    writer.answer(second.id, fail('changed my mind'));
    expect((await rejectionOf(second)).code).toBe('HANDLER_FAILED');
  });

  it('sequence() answers call after call, then keeps repeating the last answer', async () => {
    const bus = testBus({ allowAll: true });
    stubAgent(bus, 'writer', { flaky: sequence(fail('busy'), 'one', (p) => `echo ${String(p)}`) });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('writer', 'flaky', 1))).code).toBe('HANDLER_FAILED');
    await expect(research.ask('writer', 'flaky', 2)).resolves.toBe('one');
    await expect(research.ask('writer', 'flaky', 3)).resolves.toBe('echo 3');
    await expect(research.ask('writer', 'flaky', 4)).resolves.toBe('echo 4');
  });

  it("respond() adds or replaces an intent's answer; '*' takes the rest; unscripted intents get NO_HANDLER", async () => {
    const bus = testBus({ allowAll: true });
    const writer = stubAgent(bus, 'writer', { clarify: 'v1' });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('writer', 'other', {}))).code).toBe('NO_HANDLER');
    writer.respond('clarify', 'v2').respond('other', 'fresh');
    await expect(research.ask('writer', 'clarify', {})).resolves.toBe('v2');
    await expect(research.ask('writer', 'other', {})).resolves.toBe('fresh');
    writer.respond('*', (_p, ctx) => `fallback for ${ctx.message.intent}`);
    await expect(research.ask('writer', 'anything', {})).resolves.toBe('fallback for anything');
    expect(writer.lastCall()?.intent).toBe('anything');
  });

  it('is a real agent: registered with the given options, subject to policy, and able to send', async () => {
    const bus = testBus({ policies: [{ from: 'writer', to: 'research', allow: ['notify'] }] });
    const writer = stubAgent(bus, 'writer', { clarify: 'yes' }, { capabilities: ['writing'], trust: 2 });
    const research = stubAgent(bus, 'research', { done: undefined });
    expect(bus.agents()).toContainEqual({ id: 'writer', capabilities: ['writing'], trust: 2 });
    expect((await rejectionOf(research.agent.ask('writer', 'clarify', {}))).code).toBe('POLICY_DENIED');
    await expect(writer.agent.notify('done', { ok: true }, { to: ['research'] })).resolves.toMatchObject({ delivered: ['research'] });
    await runUntilIdle(bus);
    expect(research.calls).toEqual([expect.objectContaining({ intent: 'done', payload: { ok: true } })]);
    expect(() => stubAgent(bus, 'writer', {})).toThrow(/already registered/);
  });

  it('types the script by the contracts', async () => {
    const bus = testBus({ contracts, allowAll: true });
    const writer = stubAgent(bus, 'writer', {
      summarize: (payload) => {
        expectTypeOf(payload).toEqualTypeOf<{ task: string }>();
        return { summary: payload.task };
      },
      clarify: delay(0, 'typed'),
    });
    expectTypeOf(writer.callsFor('summarize')).toEqualTypeOf<StubCall<{ task: string }>[]>();
    // @ts-expect-error: summarize answers { summary: string }
    stubAgent(bus, 'w2', { summarize: { title: 'no' } });
    // @ts-expect-error: clarify answers a string
    stubAgent(bus, 'w3', { clarify: delay(10, 42) });
    stubAgent(bus, 'w4', { clarify: fail('any intent can fail'), summarize: never() });
    await expect(bus.register('research').ask('writer', 'clarify', { q: 'x' })).resolves.toBe('typed');
  });
});

describe('recordTranscript()', () => {
  it('records the envelopes of an ask as sent, delivered and replied, as plain frozen data', async () => {
    const bus = testBus({ allowAll: true });
    const transcript = recordTranscript(bus);
    stubAgent(bus, 'writer', { clarify: 'for engineers' });
    await bus.register('research').ask('writer', 'clarify', { q: 'Audience?' });
    expect(transcript.entries).toEqual([
      { event: 'sent', id: 'msg-1', type: 'ask', from: 'research', to: 'writer', intent: 'clarify', payload: { q: 'Audience?' }, conversationId: 'msg-1', depth: 0 },
      { event: 'delivered', id: 'msg-1', type: 'ask', from: 'research', to: 'writer', intent: 'clarify', payload: { q: 'Audience?' }, conversationId: 'msg-1', depth: 0 },
      {
        event: 'replied',
        id: 'msg-2',
        type: 'reply',
        from: 'writer',
        to: 'research',
        intent: 'clarify',
        payload: 'for engineers',
        conversationId: 'msg-1',
        causationId: 'msg-1',
        inReplyTo: 'msg-1',
        depth: 0,
      },
    ]);
    expect(Object.isFrozen(transcript.entries[0])).toBe(true);
    expect(structuredClone(transcript.entries)).toEqual(transcript.entries);
  });

  it('records refusals with their code and rule, holds, and approval decisions with who made them', async () => {
    const bus = testBus({
      policies: [
        { from: 'research', to: 'writer', allow: ['ask'] },
        { from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true, name: 'payments need a human' },
      ],
    });
    const transcript = recordTranscript(bus);
    stubAgent(bus, 'writer', { clarify: 'yes' });
    stubAgent(bus, 'payment', { pay: { paid: true } });
    const research = bus.register('research');
    const purchase = bus.register('purchase');

    await rejectionOf(research.delegate('writer', 'clarify', {}));
    const approved = purchase.delegate('payment', 'pay', { amount: 5 });
    const rejected = purchase.delegate('payment', 'pay', { amount: 5_000 });
    await runUntilIdle(bus);
    expect(transcript.filter({ event: 'held' }).map((e) => [e.approvalId, e.rule])).toEqual([
      [approved.id, 'payments need a human'],
      [rejected.id, 'payments need a human'],
    ]);
    bus.approvals.approve(approved.id, { by: 'alice', note: 'PO-1' });
    bus.approvals.reject(rejected.id, { by: 'bob', reason: 'over budget' });
    await approved;
    await rejectionOf(rejected);

    expect(transcript.lines()).toEqual([
      'research → writer delegate clarify denied POLICY_DENIED',
      'purchase → payment delegate pay sent',
      'purchase → payment delegate pay sent',
      'purchase → payment delegate pay held',
      'purchase → payment delegate pay held',
      'purchase → payment delegate pay approved by alice',
      'purchase → payment delegate pay rejected by bob',
      'purchase → payment delegate pay failed APPROVAL_REJECTED',
      'purchase → payment delegate pay delivered',
      'payment → purchase reply pay replied',
    ]);
    expect(transcript.filter({ event: 'denied' })[0]).toEqual({
      event: 'denied',
      id: 'msg-1',
      type: 'delegate',
      from: 'research',
      to: 'writer',
      intent: 'clarify',
      code: 'POLICY_DENIED',
      reason: expect.stringContaining('research may not delegate writer'),
    });
    expect(transcript.last({ event: 'approved' })).toMatchObject({ by: 'alice', note: 'PO-1', approvalId: approved.id });
    expect(transcript.last({ event: 'rejected' })).toMatchObject({ by: 'bob', reason: 'over budget' });
  });

  it('records expiries, handler failures and late replies', async () => {
    vi.useFakeTimers();
    const bus = testBus({ allowAll: true });
    const transcript = recordTranscript(bus, { time: true });
    const writer = stubAgent(bus, 'writer', { slow: delay(1_000, 'late'), broken: fail('boom') });
    const research = bus.register('research');
    await rejectionOf(research.ask('writer', 'broken', {}));
    const slow = rejectionOf(research.ask('writer', 'slow', {}, { timeoutMs: 400 }));
    await vi.advanceTimersByTimeAsync(400);
    await slow;
    // A reply the handler sends itself after the deadline is dead.
    writer.respond('slower', async () => {
      await new Promise((resolve) => setTimeout(resolve, 300)); // ignores its signal
      return 'too late';
    });
    const slower = rejectionOf(research.ask('writer', 'slower', {}, { timeoutMs: 100 }));
    await advanceUntilIdle(bus, vi);
    expect((await slower).code).toBe('TIMEOUT');

    expect(transcript.lines({ event: ['expired', 'failed', 'dead'] }, { time: true, ids: true })).toEqual([
      '+0ms msg-1 research → writer ask broken failed HANDLER_FAILED',
      '+400ms msg-2 research → writer ask slow expired TIMEOUT',
      '+500ms msg-3 research → writer ask slower expired TIMEOUT',
      '+700ms msg-4 writer → research reply slower dead',
    ]);
    expect(transcript.last({ event: 'dead' })).toMatchObject({ inReplyTo: 'msg-3', payload: 'too late', reason: expect.stringContaining('late reply') });
    expect(transcript.last({ event: 'failed' })?.reason).toContain('boom');
  });

  it('filters by from, to, type, intent, event, id and code (an array matches any of its values)', async () => {
    const bus = testBus({ allowAll: true });
    const transcript = recordTranscript(bus);
    stubAgent(bus, 'writer', { a: 1, b: 2 });
    stubAgent(bus, 'qa', { a: 3 });
    const research = bus.register('research');
    await research.ask('writer', 'a', {});
    await research.ask('qa', 'a', {});
    await research.delegate('writer', 'b', {});
    await rejectionOf(research.ask('qa', 'b', {}));
    expect(transcript.lines({ to: 'qa' })).toEqual(['research → qa ask a sent', 'research → qa ask a delivered', 'research → qa ask b denied NO_HANDLER']);
    expect(transcript.lines({ from: ['writer', 'qa'] })).toEqual(['writer → research reply a replied', 'qa → research reply a replied', 'writer → research reply b replied']);
    expect(transcript.filter({ type: 'delegate', event: 'delivered' }).map((e) => e.id)).toEqual(['msg-5']);
    expect(transcript.filter({ intent: 'b', code: 'NO_HANDLER' })).toHaveLength(1);
    expect(transcript.filter({ id: 'msg-1' }).map((e) => e.event)).toEqual(['sent', 'delivered']);
    expect(transcript.filter({ conversationId: 'msg-1' }).map((e) => e.event)).toEqual(['sent', 'delivered', 'replied']);
    expect(transcript.filter()).toEqual(transcript.entries);
  });

  it('shows a causal chain: same conversation, causationId and depth', async () => {
    const bus = testBus({ allowAll: true });
    const transcript = recordTranscript(bus);
    stubAgent(bus, 'writer', { clarify: 'short' });
    stubAgent(bus, 'editor', { edit: async (_p, ctx) => `edited (${String(await ctx.ask('writer', 'clarify', {}))})` });
    await bus.register('research').ask('editor', 'edit', {});
    expect(transcript.text({ event: 'delivered' }, { ids: true })).toMatchInlineSnapshot(`
      "msg-1 research → editor ask edit delivered
      msg-2 editor → writer ask clarify delivered"
    `);
    expect(transcript.last({ intent: 'clarify', event: 'delivered' })).toMatchObject({ conversationId: 'msg-1', causationId: 'msg-1', depth: 1 });
  });

  it('is stable enough to snapshot with the preset', async () => {
    vi.useFakeTimers();
    const bus = testBus({ allowAll: true, policies: [{ from: '*', to: 'vault', deny: ['notify'], name: 'vault is quiet' }] });
    const transcript = recordTranscript(bus);
    stubAgent(bus, 'writer', { found: undefined });
    stubAgent(bus, 'vault', { found: undefined });
    await bus.register('research').notify('found', { url: 'https://example.com' });
    await runUntilIdle(bus);
    expect(transcript.entries).toMatchInlineSnapshot(`
      [
        {
          "conversationId": "msg-1",
          "depth": 0,
          "event": "sent",
          "from": "research",
          "id": "msg-1",
          "intent": "found",
          "payload": {
            "url": "https://example.com",
          },
          "to": "writer",
          "type": "notify",
        },
        {
          "code": "POLICY_DENIED",
          "event": "denied",
          "from": "research",
          "id": "msg-1",
          "intent": "found",
          "reason": "research may not notify vault ("found"): denied by rule 'vault is quiet'",
          "rule": "vault is quiet",
          "to": "vault",
          "type": "notify",
        },
        {
          "conversationId": "msg-1",
          "depth": 0,
          "event": "delivered",
          "from": "research",
          "id": "msg-1",
          "intent": "found",
          "payload": {
            "url": "https://example.com",
          },
          "to": "writer",
          "type": "notify",
        },
      ]
    `);
  });

  it('with { time: true }, says when each entry happened, in fake ms since it started', async () => {
    vi.useFakeTimers({ now: 1_700_000_000_000 });
    const bus = testBus({ allowAll: true });
    stubAgent(bus, 'writer', { clarify: delay(250, 'yes') });
    const untimed = recordTranscript(bus);
    await vi.advanceTimersByTimeAsync(1_000);
    const transcript = recordTranscript(bus, { time: true });
    const answer = bus.register('research').ask('writer', 'clarify', {});
    await advanceUntilIdle(bus, vi);
    await answer;
    expect(transcript.entries.map((e) => e.at)).toEqual([0, 0, 250]);
    expect(transcript.lines({ event: 'replied' }, { time: true })).toEqual(['+250ms writer → research reply clarify replied']);
    expect(untimed.entries[0]).not.toHaveProperty('at');
    expect(() => untimed.lines({}, { time: true })).toThrow(/recordTranscript\(bus, \{ time: true \}\)/);
  });

  it('stop() unsubscribes and keeps the entries; clear() forgets them; closing the bus ends it too', async () => {
    const bus = testBus({ allowAll: true });
    const transcript = recordTranscript(bus);
    stubAgent(bus, 'writer', { ping: 'pong' });
    const research = bus.register('research');
    await research.ask('writer', 'ping', {});
    expect(transcript.entries).toHaveLength(3);
    transcript.clear();
    expect(transcript.entries).toHaveLength(0);
    await research.ask('writer', 'ping', {});
    expect(transcript.entries).toHaveLength(3);
    transcript.stop();
    transcript.stop();
    await research.ask('writer', 'ping', {});
    expect(transcript.entries).toHaveLength(3);

    const other = recordTranscript(bus);
    await bus.close();
    expect((await rejectionOf(research.ask('writer', 'ping', {}))).code).toBe('CLOSED');
    expect(other.entries).toEqual([]);
  });
});

describe('runUntilIdle()', () => {
  it("waits for handler chains and for the sender's follow-up sends, without any timer", async () => {
    vi.useFakeTimers();
    const bus = testBus({ allowAll: true });
    const transcript = recordTranscript(bus);
    const writer = stubAgent(bus, 'writer', { draft: async (_p, ctx) => `draft (${String(await ctx.ask('editor', 'style', {}))})`, publish: 'ok' });
    stubAgent(bus, 'editor', { style: 'plain' });
    const research = bus.register('research');
    let finished = false;
    void (async () => {
      const draft = await research.delegate('writer', 'draft', {});
      await research.notify('publish', { draft }, { to: ['writer'] });
      finished = true;
    })();
    await runUntilIdle(bus);
    expect(finished).toBe(true);
    expect(writer.lastCall('publish')?.payload).toEqual({ draft: 'draft (plain)' });
    expect(transcript.filter({ event: 'delivered' })).toHaveLength(3);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('resolves at once on an idle bus, and with held approvals pending', async () => {
    const bus = testBus({ policies: [{ from: 'a', to: 'b', allow: ['ask'], requireApproval: true }] });
    stubAgent(bus, 'b', { x: 1 });
    await runUntilIdle(bus);
    void bus
      .register('a')
      .ask('b', 'x', {})
      .catch(() => undefined);
    await runUntilIdle(bus);
    expect(bus.approvals.list()).toHaveLength(1);
  });
});

describe('advanceUntilIdle()', () => {
  it('moves the fake clock from timer to timer until the bus is idle, and says how far', async () => {
    vi.useFakeTimers();
    const bus = testBus({ allowAll: true });
    stubAgent(bus, 'writer', { summarize: delay(1_500, delay(500, { summary: 'ok' })) });
    const job = bus.register('research').delegate('writer', 'summarize', {});
    expect(await advanceUntilIdle(bus, vi)).toBe(2_000);
    await expect(job).resolves.toEqual({ summary: 'ok' });
  });

  it('runs a never() stub into its deadline', async () => {
    vi.useFakeTimers();
    const bus = testBus({ allowAll: true, timeouts: { askMs: 30_000 } });
    stubAgent(bus, 'writer', { clarify: never() });
    const answer = rejectionOf(bus.register('research').ask('writer', 'clarify', {}));
    expect(await advanceUntilIdle(bus, vi)).toBe(30_000);
    expect((await answer).code).toBe('TIMEOUT');
  });

  it('rejects instead of hanging when the bus is busy and no timer could change that', async () => {
    vi.useFakeTimers();
    const bus = testBus({ allowAll: true });
    stubAgent(bus, 'writer', { found: never() });
    await bus.register('research').notify('found', {});
    await expect(advanceUntilIdle(bus, vi)).rejects.toThrow(/no fake timer is pending/);
  });

  it('refuses to run without fake timers', async () => {
    const bus = testBus();
    await expect(advanceUntilIdle(bus, vi)).rejects.toThrow(/fake timers are not installed/);
  });
});

describe('under vitest fake timers with their defaults', () => {
  it('drives a deadline, an approval expiry, a rate-limit refill and close(), and nothing hangs', async () => {
    vi.useFakeTimers();
    const bus = testBus({
      policies: [
        { from: 'research', to: 'writer', allow: ['ask', 'notify'] },
        { from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true },
      ],
      limits: { rate: { perSecond: 2, burst: 1 } },
    });
    const transcript = recordTranscript(bus, { time: true });
    stubAgent(bus, 'writer', { clarify: never(), found: never() });
    stubAgent(bus, 'payment', { pay: { paid: true } });
    const research = bus.register('research');
    const purchase = bus.register('purchase');

    // A deadline.
    const timeout = rejectionOf(research.ask('writer', 'clarify', {}, { timeoutMs: 1_000 }));
    // The rate limit: the bucket (burst 1) is empty now.
    const limited = await rejectionOf(research.notify('found', {}, { to: ['writer'] }));
    expect(limited).toMatchObject({ code: 'RATE_LIMITED', retryAfterMs: 500 });
    // An approval that nobody decides.
    const held = rejectionOf(purchase.delegate('payment', 'pay', {}, { timeoutMs: 2_000 }));
    // (Not runUntilIdle: the never() handler is in flight until its deadline.)
    await flushMicrotasks();
    expect(bus.approvals.list()).toHaveLength(1);

    await vi.advanceTimersByTimeAsync(500);
    // Refilled: one more send goes through (it is handled by never(), which close() will stop).
    await expect(research.notify('found', {}, { to: ['writer'] })).resolves.toMatchObject({ delivered: ['writer'] });
    await vi.advanceTimersByTimeAsync(500);
    expect(await timeout).toMatchObject({ code: 'TIMEOUT', timeoutMs: 1_000 });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await held).toMatchObject({ code: 'APPROVAL_EXPIRED', timeoutMs: 2_000 });
    expect(bus.approvals.list()).toEqual([]);

    // close() aborts the running never() handler, so it needs no timer to finish.
    await bus.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(transcript.lines({ event: ['denied', 'expired', 'approval-expired'] }, { time: true })).toEqual([
      '+0ms research → * notify found denied RATE_LIMITED', // refused before fan-out: to is '*'
      '+1000ms research → writer ask clarify expired TIMEOUT',
      '+2000ms purchase → payment delegate pay approval-expired APPROVAL_EXPIRED',
      '+2000ms purchase → payment delegate pay expired APPROVAL_EXPIRED',
    ]);
  });

  it('closeBus() advances the fake clock while close() waits for a handler that ignores its signal', async () => {
    vi.useFakeTimers();
    const bus = testBus({ allowAll: true, timeouts: { closeMs: 1_000 } });
    let release!: () => void;
    bus.register('writer', { handlers: { stubborn: () => new Promise<void>((resolve) => (release = resolve)) } });
    await bus.register('research').notify('stubborn', {});
    await flushMicrotasks();
    const start = Date.now();
    await closeBus(bus, vi);
    expect(Date.now() - start).toBe(1_000);
    expect(vi.getTimerCount()).toBe(0);
    release();
  });
});
