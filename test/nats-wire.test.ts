import { headers } from '@nats-io/transport-node';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BusError } from '../src/errors.js';
import { decodeAbout, decodeAnswer, decodeMessage, encodeAbout, encodeError, encodeMessage, encodeReply, type WireMeta } from '../src/nats/wire.js';

const meta: WireMeta = {
  id: 'mabc-1',
  intent: 'résumé\nnext line',
  ts: 1_700_000_000_000,
  conversationId: 'c-1',
  causationId: 'mabc-0',
  depth: 2,
  priority: 'high',
  budgetMs: 1500,
  traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  node: 'billing-1',
};

function tampered(key: string, value: string | null) {
  const frame = encodeMessage(meta, '{"a":1}');
  if (value === null) frame.headers.delete(key);
  else frame.headers.set(key, value);
  return () => decodeMessage(frame.headers, frame.data, 1024, true);
}

describe('encodeMessage() / decodeMessage()', () => {
  it('round-trips every field and the payload', () => {
    const frame = encodeMessage(meta, '{"a":[1,"x"]}');
    expect(decodeMessage(frame.headers, frame.data, 1024, true)).toEqual({ ...meta, payload: { a: [1, 'x'] }, payloadJson: '{"a":[1,"x"]}', payloadBytes: 13 });
  });

  it.each([
    ['Sb-Id', 'a.b c'],
    ['Sb-Id', null],
    ['Sb-V', '2'],
    ['Sb-Depth', '-1'],
    ['Sb-Depth', '1e3'],
    ['Sb-Prio', 'urgent'],
    ['Sb-Budget', '0'],
    ['Sb-Budget', null],
    ['Sb-Budget', '99999999999'],
    ['Sb-Intent', '%E0%A4%A'],
    ['Sb-Intent', '*'],
    ['Sb-Intent', 'x'.repeat(129)],
    ['Sb-Conv', 'x'.repeat(129)],
    ['Sb-Node', 'a b'],
  ])('refuses header %s = %j with INVALID_ARGUMENT', (key, value) => {
    expect(tampered(key, value)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('refuses a header that appears twice', () => {
    const frame = encodeMessage(meta, '1');
    frame.headers.append('Sb-Id', 'other');
    expect(() => decodeMessage(frame.headers, frame.data, 1024, true)).toThrow(/must appear once/);
  });

  it('refuses a message without headers', () => {
    expect(() => decodeMessage(undefined, new Uint8Array(), 1024, false)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('accepts a notify without a budget', () => {
    const { budgetMs: _, ...rest } = meta;
    const frame = encodeMessage(rest, 'null');
    expect(decodeMessage(frame.headers, frame.data, 1024, false).budgetMs).toBeUndefined();
  });

  it('drops an unreadable traceparent instead of refusing the message', () => {
    expect(tampered('traceparent', 'garbage')().traceparent).toBeUndefined();
  });

  it('refuses a payload over the receiver limit with PAYLOAD_TOO_LARGE, before parsing', () => {
    const frame = encodeMessage(meta, JSON.stringify('x'.repeat(2000)));
    expect(() => decodeMessage(frame.headers, frame.data, 1024, true)).toThrow(expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE', messageId: 'mabc-1' }));
  });

  it('refuses bytes that are not UTF-8 JSON with INVALID_PAYLOAD', () => {
    const frame = encodeMessage(meta, '1');
    expect(() => decodeMessage(frame.headers, new Uint8Array([0xff, 0xfe]), 1024, true)).toThrow(expect.objectContaining({ code: 'INVALID_PAYLOAD' }));
    expect(() => decodeMessage(frame.headers, new TextEncoder().encode('{"a":'), 1024, true)).toThrow(expect.objectContaining({ code: 'INVALID_PAYLOAD' }));
  });
});

describe('decodeAnswer()', () => {
  it('decodes a reply and an error', () => {
    const r = encodeReply('m1', '{"ok":true}');
    expect(decodeAnswer(r.headers, r.data, 1024)).toEqual({ kind: 'reply', id: 'm1', payload: { ok: true }, payloadJson: '{"ok":true}', payloadBytes: 11 });
    const e = encodeError('m1', { code: 'NO_HANDLER', message: 'nope' });
    expect(decodeAnswer(e.headers, e.data, 1024)).toEqual({ kind: 'error', id: 'm1', error: { code: 'NO_HANDLER', message: 'nope' } });
  });

  it('carries only code and message of an error, cut to 2048 characters', () => {
    const e = encodeError('m1', Object.assign({ code: 'HANDLER_FAILED' as const, message: 'y'.repeat(5000) }, { stack: 'secret' }));
    const decoded = decodeAnswer(e.headers, e.data, 1024);
    expect(decoded.kind === 'error' && decoded.error.message.length).toBe(2048);
    expect(new TextDecoder().decode(e.data)).not.toContain('secret');
  });

  it('refuses an unknown error code, an unknown kind and missing headers with INVALID_REPLY', () => {
    const e = encodeError('m1', { code: 'NO_HANDLER', message: 'x' });
    expect(() => decodeAnswer(e.headers, new TextEncoder().encode('{"code":"PWNED","message":"x"}'), 1024)).toThrow(expect.objectContaining({ code: 'INVALID_REPLY' }));
    e.headers.set('Sb-Kind', 'other');
    expect(() => decodeAnswer(e.headers, e.data, 1024)).toThrow(expect.objectContaining({ code: 'INVALID_REPLY' }));
    expect(() => decodeAnswer(headers(), e.data, 1024)).toThrow(expect.objectContaining({ code: 'INVALID_REPLY' }));
  });
});

describe('encodeAbout() / decodeAbout()', () => {
  it('round-trips a progress report', () => {
    const f = encodeAbout('m9', '{"pct":50}');
    expect(decodeAbout(f.headers, f.data, 100)).toEqual({ id: 'm9', payload: { pct: 50 } });
  });
});

describe('decoding hostile input', () => {
  const value = fc.oneof(fc.string({ maxLength: 200 }), fc.integer().map(String), fc.constantFrom('1', '0', 'high', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'));
  const keys = ['Sb-V', 'Sb-Id', 'Sb-Intent', 'Sb-Ts', 'Sb-Conv', 'Sb-Cause', 'Sb-Depth', 'Sb-Prio', 'Sb-Budget', 'Sb-Kind', 'traceparent'];

  it('either decodes or throws a BusError, for any headers and bytes', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...keys), value), fc.uint8Array({ maxLength: 300 }), (record, data) => {
        const h = headers();
        for (const [k, v] of Object.entries(record)) {
          try {
            h.set(k, v);
          } catch {
            return; // the client itself refuses the value (CR/LF): it never reaches the wire
          }
        }
        for (const decode of [() => decodeMessage(h, data, 256, true), () => decodeAnswer(h, data, 256), () => decodeAbout(h, data, 256)]) {
          try {
            decode();
          } catch (e) {
            expect(e).toBeInstanceOf(BusError);
          }
        }
      }),
    );
  });
});
