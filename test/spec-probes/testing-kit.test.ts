// SPEC "Testing kit (agent-switchboard/testing)": the preset, stub agents, the transcript,
// runUntilIdle(), and vitest fake timers for deadlines, approvals and rate limits.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isBusError } from '../../src/index.js';
import { advanceUntilIdle, closeBus, createTestBus, fail, never, recordTranscript, runUntilIdle, sequentialIds, stubAgent } from '../../src/testing/index.js';
import { refusal } from './probe-kit.js';

const made: Array<ReturnType<typeof createTestBus>> = [];
function testBus(options: Parameters<typeof createTestBus>[0] = {}) {
  const b = createTestBus(options);
  made.push(b);
  return b;
}
afterEach(async () => {
  for (const b of made.splice(0)) await closeBus(b, vi);
  vi.useRealTimers();
});

describe('"an orchestrator preset for tests (in-memory audit, injectable clock and ids)"', () => {
  it('ids are msg-1, msg-2, … and the log is in memory and queryable', async () => {
    const b = testBus({ allowAll: true });
    stubAgent(b, 'w', { x: 'ok' });
    await b.register('a').ask('w', 'x', 1);
    await b.flush();
    expect(b.getMessageLog().map((e) => e.messageId).sort()).toEqual(['msg-1', 'msg-2']);
  });

  it('takes an injected clock and ids', async () => {
    const b = testBus({ allowAll: true, clock: { now: () => 777 }, ids: sequentialIds('t-') });
    stubAgent(b, 'w', { x: 'ok' });
    await b.register('a').ask('w', 'x', 1);
    await b.flush();
    expect(b.getMessageLog()[1]).toMatchObject({ messageId: 't-1', ts: 777 });
  });

  it('without allowAll the policy is still default-deny', async () => {
    const b = testBus();
    stubAgent(b, 'w', { x: 'ok' });
    expect((await refusal(b.register('a').ask('w', 'x', 1))).code).toBe('POLICY_DENIED');
  });

  it('a misspelled option is refused naming it', () => {
    expect(() => createTestBus({ alowAll: true } as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('alowAll') }));
  });
});

describe('"scripted stub agents"', () => {
  it('answer by value, by function and with fail(); calls are recorded with payload and envelope', async () => {
    const b = testBus({ allowAll: true });
    const w = stubAgent(b, 'w', { v: { n: 1 }, f: (p: unknown) => ({ echo: p }), bad: fail('nope') });
    const a = b.register('a');
    await expect(a.ask('w', 'v', 0)).resolves.toEqual({ n: 1 });
    await expect(a.ask('w', 'f', 5)).resolves.toEqual({ echo: 5 });
    const e = await refusal(a.ask('w', 'bad', 0));
    expect(e.code).toBe('HANDLER_FAILED');
    expect(e.message).toContain('nope');
    expect(w.calls.map((c) => [c.intent, c.payload, c.envelope.from])).toEqual([
      ['v', 0, 'a'],
      ['f', 5, 'a'],
      ['bad', 0, 'a'],
    ]);
    expect(w.callsFor('f')).toHaveLength(1);
  });

  it('refuses handlers in the register options (responses belong in the script)', () => {
    const b = testBus();
    expect(() => stubAgent(b, 'w', {}, { handlers: {} } as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('"a transcript of everything that crossed the bus"', () => {
  it('records sends, deliveries, replies and refusals in order, as lines', async () => {
    const b = testBus({ policies: [{ from: 'a', to: 'w', allow: ['ask'] }] });
    const t = recordTranscript(b);
    stubAgent(b, 'w', { x: 'ok' });
    const a = b.register('a');
    await a.ask('w', 'x', 1);
    await refusal(a.ask('z', 'x', 1));
    await runUntilIdle(b);
    const lines = t.lines();
    expect(lines.some((l) => l.includes('a → w ask x'))).toBe(true);
    expect(lines.some((l) => l.includes('UNKNOWN_AGENT'))).toBe(true);
    expect(t.entries.length).toBe(lines.length);
    t.stop();
  });
});

describe('"runUntilIdle(), and support for vitest fake timers for deadlines, approvals and rate limits"', () => {
  it('runUntilIdle() resolves once fire-and-forget work has settled', async () => {
    const b = testBus({ allowAll: true });
    const w = stubAgent(b, 'w', { n: undefined });
    void b.register('a').notify('n', 1);
    await runUntilIdle(b);
    expect(w.calls).toHaveLength(1);
  });

  it('a deadline follows vi.useFakeTimers(): a never() stub times out at exactly timeoutMs', async () => {
    vi.useFakeTimers();
    const b = testBus({ allowAll: true });
    stubAgent(b, 'w', { x: never() });
    const p = b.register('a').ask('w', 'x', 1, { timeoutMs: 5_000 });
    const settled = vi.fn();
    p.then(settled, settled);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(settled).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    const e = await refusal(p);
    expect(e.code).toBe('TIMEOUT');
  });

  it('an approval expires on the fake clock', async () => {
    vi.useFakeTimers();
    const b = testBus({ policies: [{ from: 'a', to: 'w', allow: ['notify'], requireApproval: true }], approvals: { ttlMs: 60_000 } });
    stubAgent(b, 'w', { n: undefined });
    await b.register('a').notify('n', 1, { to: ['w'] });
    expect(b.approvals.list()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(b.approvals.list()).toEqual([]);
  });

  it('a rate bucket refills on the fake clock', async () => {
    vi.useFakeTimers();
    const b = testBus({ allowAll: true, limits: { rate: { perSecond: 1, burst: 1 } } });
    stubAgent(b, 'w', { x: 'ok' });
    const a = b.register('a');
    await a.ask('w', 'x', 1);
    const e = await refusal(a.ask('w', 'x', 2));
    expect(e).toMatchObject({ code: 'RATE_LIMITED', retryAfterMs: 1_000 });
    vi.advanceTimersByTime(1_000);
    await expect(a.ask('w', 'x', 3)).resolves.toBe('ok');
  });

  it('advanceUntilIdle() moves fake time until the bus is idle and closeBus() closes it', async () => {
    vi.useFakeTimers();
    const b = createTestBus({ allowAll: true });
    stubAgent(b, 'w', { x: never() });
    const p = b.register('a').ask('w', 'x', 1, { timeoutMs: 10_000 });
    p.catch(() => {});
    await advanceUntilIdle(b, vi);
    const e: unknown = await p.catch((x: unknown) => x);
    expect(isBusError(e) && e.code).toBe('TIMEOUT');
    await closeBus(b, vi);
    expect(b.closed).toBe(true);
  });
});
