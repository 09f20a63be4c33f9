// SPEC "Errors": every listed code, the BusError shape, the fields each carries, and "a send
// never throws synchronously".
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BusError, ErrorCode, isBusError, type Agent } from '../../src/index.js';
import { bus, closeAll, hang, OPEN, refusal, settle } from './probe-kit.js';

afterEach(async () => {
  await closeAll();
  vi.useRealTimers();
});

const SPEC_CODES = [
  'INVALID_ARGUMENT', 'INVALID_PAYLOAD', 'UNKNOWN_AGENT', 'DUPLICATE_AGENT', 'SELF_MESSAGE',
  'PAYLOAD_TOO_LARGE', 'RATE_LIMITED', 'POLICY_DENIED', 'APPROVAL_REJECTED',
  'APPROVAL_EXPIRED', 'APPROVAL_QUEUE_FULL', 'TIMEOUT', 'CANCELLED', 'NO_HANDLER',
  'HANDLER_FAILED', 'INVALID_REPLY', 'MAILBOX_FULL', 'MAX_DEPTH', 'AUDIT_UNAVAILABLE',
  'CLOSED', 'TRANSPORT_UNAVAILABLE',
] as const;

describe('the codes', () => {
  it('ErrorCode holds every code SPEC lists, each mapped to itself', () => {
    for (const code of SPEC_CODES) expect(ErrorCode[code]).toBe(code);
  });
});

describe('"All refusals reject with BusError (instanceof Error), carrying a stable code, the messageId where one exists"', () => {
  it('a BusError is an Error named BusError, with code and message; fields it does not carry are absent', () => {
    const e = new BusError('TIMEOUT', 'late', { timeoutMs: 5 });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('BusError');
    expect(e.code).toBe('TIMEOUT');
    expect(e.timeoutMs).toBe(5);
    expect('messageId' in e).toBe(false);
    expect('rule' in e).toBe(false);
    expect(Object.keys(e).sort()).toEqual(['code', 'name', 'timeoutMs']);
  });

  it('keeps cause as the standard Error cause', () => {
    const cause = new Error('disk');
    expect(new BusError('AUDIT_UNAVAILABLE', 'x', { cause }).cause).toBe(cause);
  });

  it('isBusError() checks the shape (two copies of the package), refusing unknown codes and hostile values without throwing', () => {
    expect(isBusError({ name: 'BusError', code: 'TIMEOUT', message: 'x' })).toBe(true);
    expect(isBusError({ name: 'BusError', code: 'NOT_A_CODE' })).toBe(false);
    expect(isBusError(new Error('x'))).toBe(false);
    expect(isBusError(null)).toBe(false);
    expect(isBusError('BusError')).toBe(false);
    const hostile = new Proxy({}, { get: () => { throw new Error('trap'); } });
    expect(isBusError(hostile)).toBe(false);
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    expect(isBusError(proxy)).toBe(false);
  });
});

describe('"useful fields (retryAfterMs, rule, timeoutMs)", and messageId once a message exists', () => {
  it('TIMEOUT carries timeoutMs and the messageId; the message names the deadline', async () => {
    vi.useFakeTimers();
    const b = bus({ policies: [...OPEN] });
    b.register('w', { handlers: { x: hang } });
    const p = b.register('a').ask('w', 'x', 1, { timeoutMs: 1234 });
    p.catch(() => {});
    await vi.advanceTimersByTimeAsync(1234);
    const e = await refusal(p);
    expect(e).toMatchObject({ code: 'TIMEOUT', timeoutMs: 1234, messageId: expect.any(String) });
    expect(e.message).toContain('1234');
  });

  it('RATE_LIMITED carries retryAfterMs; POLICY_DENIED carries messageId; UNKNOWN_AGENT names the agent', async () => {
    const b = bus({ policies: [{ from: 'a', to: 'w', allow: ['ask'] }], limits: { rate: { perSecond: 1, burst: 1 } }, clock: { now: () => 0 } });
    b.register('w', { handlers: { x: () => 1 } });
    b.register('v', { handlers: { x: () => 1 } });
    const a = b.register('a');
    const c = b.register('c');
    await a.ask('w', 'x', 1);
    expect(await refusal(a.ask('w', 'x', 2))).toMatchObject({ code: 'RATE_LIMITED', retryAfterMs: 1000, messageId: expect.any(String) });
    expect(await refusal(c.ask('v', 'x', 1))).toMatchObject({ code: 'POLICY_DENIED', messageId: expect.any(String) });
    const unknown = await refusal(c.ask('ghost', 'x', 1));
    expect(unknown).toMatchObject({ code: 'UNKNOWN_AGENT', agentId: 'ghost' });
    expect(unknown.message).toContain('ghost');
  });

  it('the messageId of a refusal is the id of its audit entry', async () => {
    const b = bus();
    b.register('w');
    const e = await refusal(b.register('a').ask('w', 'x', 1));
    await b.flush();
    expect(b.getMessageLog()[0]!.messageId).toBe(e.messageId);
  });
});

describe('"A send never throws synchronously; it returns a rejected promise"', () => {
  function sends(a: Agent): Array<[string, () => unknown]> {
    const hostile = new Proxy({}, { ownKeys: () => { throw new Error('trap'); }, get: () => { throw new Error('trap'); } });
    return [
      ['ask with a number recipient', () => a.ask(5 as never, 'x', 1)],
      ['ask with a symbol intent', () => a.ask('w', Symbol('x') as never, 1)],
      ['ask with options null', () => a.ask('w', 'x', 1, null as never)],
      ['ask with options a string', () => a.ask('w', 'x', 1, 'fast' as never)],
      ['ask with hostile options', () => a.ask('w', 'x', 1, hostile as never)],
      ['ask with a hostile payload', () => a.ask('w', 'x', hostile)],
      ['delegate with no arguments', () => (a.delegate as (...args: unknown[]) => unknown)()],
      ['notify with a bad intent', () => a.notify('' as never, 1)],
      ['notify with hostile options', () => a.notify('n', 1, hostile as never)],
      ['send(null)', () => a.send(null as never)],
      ['send(a string)', () => a.send('hello' as never)],
      ['send(hostile)', () => a.send(hostile as never)],
      ['send of an unknown type', () => a.send({ to: 'w', type: 'shout', intent: 'x' } as never)],
      ['reply to a number', () => a.reply(5 as never, 1)],
      ['reply with a cyclic payload', () => { const c: Record<string, unknown> = {}; c.c = c; return a.reply('id', c); }],
    ];
  }

  it.each([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14])('case %i returns a promise that rejects with a BusError', async (i) => {
    const b = bus({ policies: [...OPEN] });
    b.register('w', { handlers: { x: () => 1 } });
    const a = b.register('a');
    const [what, call] = sends(a)[i]!;
    let result: unknown;
    expect(() => (result = call()), what).not.toThrow();
    expect(result, what).toBeInstanceOf(Promise);
    const e = await refusal(result as Promise<unknown>);
    expect(['INVALID_ARGUMENT', 'INVALID_PAYLOAD', 'INVALID_REPLY'], what).toContain(e.code);
  });

  it('a dead handle and a closed bus reject too, never throw', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('w', { handlers: { x: () => 1 } });
    const a = b.register('a');
    b.unregister('a');
    let p: Promise<unknown> | undefined;
    expect(() => (p = a.delegate('w', 'x', 1))).not.toThrow();
    expect((await refusal(p!)).code).toBe('UNKNOWN_AGENT');
    const c = b.register('c');
    await b.close();
    expect(() => (p = c.notify('x', 1))).not.toThrow();
    expect((await refusal(p!)).code).toBe('CLOSED');
  });

  it('a refused delegate is still a Job: cancel() and onProgress() do not throw', async () => {
    const b = bus();
    const job = b.register('a').delegate('nobody', 'x', 1);
    expect(() => job.onProgress(() => {})).not.toThrow();
    expect(() => job.cancel('why')).not.toThrow();
    expect((await refusal(job)).code).toBe('UNKNOWN_AGENT');
    await settle();
  });
});
