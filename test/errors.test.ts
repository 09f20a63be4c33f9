import { describe, expect, it } from 'vitest';
import { BusError, isBusError, MAX_TEXT_LENGTH, toBusError } from '../src/errors.js';

describe('toBusError()', () => {
  it('passes a BusError through, adding the message id it lacks', () => {
    const e = new BusError('TIMEOUT', 'late', { timeoutMs: 5 });
    expect(toBusError(e, 'HANDLER_FAILED')).toBe(e);
    const withId = toBusError(e, 'HANDLER_FAILED', 'm1');
    expect(withId).toBeInstanceOf(BusError);
    expect([withId.code, withId.message, withId.timeoutMs, withId.messageId]).toEqual(['TIMEOUT', 'late', 5, 'm1']);
  });

  it('turns anything else into a BusError of the fallback code whose cause is the value', () => {
    const thrown = new Error('broker gone');
    const e = toBusError(thrown, 'TRANSPORT_UNAVAILABLE', undefined, 'connect: ');
    expect([e.code, e.message, e.cause]).toEqual(['TRANSPORT_UNAVAILABLE', 'connect: broker gone', thrown]);
  });

  it('caps the text of a long message', () => {
    const e = toBusError(new Error('x'.repeat(MAX_TEXT_LENGTH * 3)), 'INVALID_ARGUMENT');
    expect(e.message.length).toBe(MAX_TEXT_LENGTH + 1);
  });

  it('survives a value whose message getter throws', () => {
    const hostile = Object.create(Error.prototype, { message: { get() { throw new Error('gotcha'); } } }) as Error;
    const e = toBusError(hostile, 'INVALID_REPLY');
    expect([e.code, e.message]).toEqual(['INVALID_REPLY', 'a thrown value that could not be read']);
  });

  it('survives a revoked Proxy', () => {
    const { proxy, revoke } = Proxy.revocable(new BusError('TIMEOUT', 'late'), {});
    revoke();
    const e = toBusError(proxy, 'HANDLER_FAILED', 'm1');
    expect([e.code, e.messageId]).toEqual(['HANDLER_FAILED', 'm1']);
  });
});

describe('isBusError()', () => {
  it('is false, not a throw, for a value whose name getter throws', () => {
    const hostile = { get name(): string { throw new Error('gotcha'); }, code: 'TIMEOUT' };
    expect(isBusError(hostile)).toBe(false);
  });

  it('recognises a BusError by shape, so a second copy of the package still counts', () => {
    expect(isBusError({ name: 'BusError', code: 'TIMEOUT', message: 'late' })).toBe(true);
    expect(isBusError({ name: 'BusError', code: 'NOT_A_CODE' })).toBe(false);
  });
});
