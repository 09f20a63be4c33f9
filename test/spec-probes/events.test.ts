// SPEC "Events": each event's payload, listeners that throw, on/off, frozen payloads, and
// the name and listener checked.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BusEventName, BusEvents, Orchestrator } from '../../src/index.js';
import { bus, closeAll, hang, OPEN, refusal, settle } from './probe-kit.js';

afterEach(async () => {
  await closeAll();
  vi.useRealTimers();
});

function record(b: Orchestrator): Array<[BusEventName, unknown]> {
  const seen: Array<[BusEventName, unknown]> = [];
  const names: BusEventName[] = ['message:sent', 'message:delivered', 'message:denied', 'message:replied', 'message:expired', 'message:failed', 'message:dead', 'approval:requested', 'approval:decided', 'audit:error'];
  for (const name of names) b.events.on(name, (e) => seen.push([name, e]));
  return seen;
}
const named = <K extends BusEventName>(seen: Array<[BusEventName, unknown]>, name: K): Array<BusEvents[K]> => seen.filter(([n]) => n === name).map(([, e]) => e as BusEvents[K]);

describe('"Each carries the envelope (or the attempt) and, where relevant, the decision or error code"', () => {
  it('an answered ask: message:sent, message:delivered, then message:replied with the reply envelope', async () => {
    const b = bus({ policies: [...OPEN] });
    const seen = record(b);
    b.register('w', { handlers: { x: () => 'r' } });
    await b.register('a').ask('w', 'x', 1);
    await settle();
    expect(seen.map(([n]) => n)).toEqual(['message:sent', 'message:delivered', 'message:replied']);
    const [sent] = named(seen, 'message:sent');
    expect(sent!.envelope).toMatchObject({ type: 'ask', from: 'a', to: 'w', intent: 'x', payload: 1, priority: 'normal', depth: 0 });
    const [replied] = named(seen, 'message:replied');
    expect(replied!.envelope).toMatchObject({ type: 'reply', from: 'w', to: 'a', inReplyTo: sent!.envelope.id, payload: 'r' });
  });

  it('message:denied carries the attempt { id, type, from, to, intent }, the code, the reason and the rule', async () => {
    const b = bus({ policies: [{ from: '*', to: 'w', deny: ['ask'], name: 'w is closed' }] });
    const seen = record(b);
    b.register('w', { handlers: { x: () => 1 } });
    const e = await refusal(b.register('a').ask('w', 'x', 1));
    const [denied] = named(seen, 'message:denied');
    expect(denied).toEqual({ attempt: { id: e.messageId, type: 'ask', from: 'a', to: 'w', intent: 'x' }, code: 'POLICY_DENIED', reason: expect.any(String), rule: 'w is closed' });
  });

  it('a refusal of the arguments is emitted as message:denied too (INVALID_ARGUMENT)', async () => {
    const b = bus({ policies: [...OPEN] });
    const seen = record(b);
    await refusal(b.register('a').ask('bad id', 'x', 1));
    expect(named(seen, 'message:denied').map((d) => d.code)).toEqual(['INVALID_ARGUMENT']);
  });

  it('message:expired carries the envelope and TIMEOUT', async () => {
    vi.useFakeTimers();
    const b = bus({ policies: [...OPEN] });
    const seen = record(b);
    b.register('w', { handlers: { x: hang } });
    const p = b.register('a').ask('w', 'x', 1, { timeoutMs: 10 });
    p.catch(() => {});
    await vi.advanceTimersByTimeAsync(10);
    await refusal(p);
    expect(named(seen, 'message:expired')).toEqual([{ envelope: expect.objectContaining({ type: 'ask', to: 'w' }), code: 'TIMEOUT' }]);
  });

  it('message:expired carries APPROVAL_EXPIRED for a held message that expires', async () => {
    vi.useFakeTimers();
    const b = bus({ policies: [{ from: 'a', to: 'w', allow: ['ask'], requireApproval: true }] });
    const seen = record(b);
    b.register('w', { handlers: { x: () => 1 } });
    const p = b.register('a').ask('w', 'x', 1, { timeoutMs: 10 });
    p.catch(() => {});
    await vi.advanceTimersByTimeAsync(10);
    expect((await refusal(p)).code).toBe('APPROVAL_EXPIRED');
    expect(named(seen, 'message:expired').map((e) => e.code)).toEqual(['APPROVAL_EXPIRED']);
    expect(named(seen, 'approval:decided').map((e) => e.decision)).toEqual(['expired']);
  });

  it('message:failed carries the envelope, the code and the reason when a delivered message fails (HANDLER_FAILED)', async () => {
    const b = bus({ policies: [...OPEN] });
    const seen = record(b);
    b.register('w', {
      handlers: {
        boom: () => {
          throw new Error('kaput');
        },
      },
    });
    await refusal(b.register('a').ask('w', 'boom', 1));
    await settle();
    expect(named(seen, 'message:failed')).toEqual([{ envelope: expect.objectContaining({ intent: 'boom', to: 'w' }), code: 'HANDLER_FAILED', reason: expect.stringContaining('kaput') }]);
  });

  it('a refusal at delivery (NO_HANDLER, MAILBOX_FULL) is message:denied, as docs/reference.md says: it never reached a handler', async () => {
    const b = bus({ policies: [...OPEN] });
    const seen = record(b);
    b.register('w');
    await refusal(b.register('a').ask('w', 'nothing', 1));
    expect(named(seen, 'message:denied').map((d) => d.code)).toEqual(['NO_HANDLER']);
    expect(named(seen, 'message:failed')).toEqual([]);
  });
});

describe('"A listener that throws never breaks the bus"', () => {
  it('the send completes, later listeners still run, and a process warning names the event', async () => {
    const b = bus({ policies: [...OPEN] });
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      b.events.on('message:sent', () => {
        throw new Error('listener bug');
      });
      const later = vi.fn();
      b.events.on('message:sent', later);
      b.register('w', { handlers: { x: () => 'ok' } });
      await expect(b.register('a').ask('w', 'x', 1)).resolves.toBe('ok');
      expect(later).toHaveBeenCalledTimes(1);
      await settle();
      expect(warnings.some((w) => w.includes('message:sent') && w.includes('listener bug'))).toBe(true);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('a listener cannot change what the next listener or the bus sees: the payload is frozen', async () => {
    const b = bus({ policies: [...OPEN] });
    const frozen: boolean[] = [];
    b.events.on('message:sent', (e) => {
      frozen.push(Object.isFrozen(e), Object.isFrozen(e.envelope), Object.isFrozen(e.envelope.payload));
    });
    b.register('w', { handlers: { x: (p) => p } });
    await expect(b.register('a').ask('w', 'x', { k: 1 })).resolves.toEqual({ k: 1 });
    expect(frozen).toEqual([true, true, true]);
  });
});

describe('events.on / off', () => {
  it('on() returns an unsubscribe function; off() removes a listener', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('w', { handlers: { x: () => 1 } });
    const a = b.register('a');
    const one = vi.fn();
    const two = vi.fn();
    const stop = b.events.on('message:sent', one);
    b.events.on('message:sent', two);
    await a.ask('w', 'x', 1);
    stop();
    b.events.off('message:sent', two);
    await a.ask('w', 'x', 2);
    expect(one).toHaveBeenCalledTimes(1);
    expect(two).toHaveBeenCalledTimes(1);
  });

  it('refuses an unknown (misspelled) event name with INVALID_ARGUMENT naming it, rather than a listener that never runs', () => {
    const b = bus({ audit: false });
    expect(() => b.events.on('mesage:sent' as never, () => {})).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('mesage:sent') }));
  });

  it('refuses a listener that is not a function with INVALID_ARGUMENT', () => {
    const b = bus({ audit: false });
    expect(() => b.events.on('message:sent', 'log it' as never)).toThrow(expect.objectContaining({ name: 'BusError', code: 'INVALID_ARGUMENT' }));
  });
});
