import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BusError } from '../src/errors.js';
import { claimedId, decodeAbout, decodeAnswer, decodeMessage, encodeAbout, encodeError, encodeMessage, encodeReply, MAX_META_BYTES, type WireMeta } from '../src/nats/wire.js';

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

const FIELDS = ['id', 'intent', 'ts', 'conversation', 'causation', 'depth', 'priority', 'budget', 'traceparent', 'node'];
const utf8 = new TextEncoder();
const text = (data: Uint8Array) => Buffer.from(data).toString('latin1');
const bytes = (latin1: string) => new Uint8Array(Buffer.from(latin1, 'latin1'));

/** A frame of `meta` with one metadata field replaced (or, for `version`/`kind`, the line's head). */
function tampered(field: string, value: string) {
  const frame = text(encodeMessage(meta, '{"a":1}'));
  const end = frame.indexOf('\n');
  const parts = frame.slice(0, end).split(' ');
  const at = field === 'version' ? 0 : field === 'kind' ? 1 : 2 + FIELDS.indexOf(field);
  parts[at] = value;
  const data = bytes(`${parts.join(' ')}${frame.slice(end)}`);
  return () => decodeMessage(data, 1024, true);
}

describe('encodeMessage() / decodeMessage()', () => {
  it('round-trips every field and the payload text, unparsed', () => {
    const data = encodeMessage(meta, '{"a":[1,"x"]}');
    expect(decodeMessage(data, 1024, true)).toEqual({ ...meta, payloadJson: '{"a":[1,"x"]}', payloadBytes: 13 });
  });

  it('puts no NATS headers on the message: one ASCII metadata line, then the payload', () => {
    const line = text(encodeMessage(meta, '"é"')).split('\n')[0]!;
    expect(line).toMatch(/^sb2 m mabc-1 r%C3%A9sum%C3%A9%0Anext%20line 1700000000000 c-1 mabc-0 2 high 1500 00-\S+ billing-1$/);
  });

  it.each([
    ['id', 'a.b\tc'],
    ['id', '-'],
    ['id', ''],
    ['version', 'sb1'],
    ['version', '1'],
    ['kind', 'r'],
    ['depth', '-1'],
    ['depth', '1e3'],
    ['depth', '10001'],
    ['ts', 'now'],
    ['priority', 'urgent'],
    ['budget', '0'],
    ['budget', '-'],
    ['budget', '99999999999'],
    ['intent', '%E0%A4%A'],
    ['intent', '*'],
    ['intent', 'x'.repeat(129)],
    ['intent', 'caf\xe9'],
    ['conversation', 'x'.repeat(129)],
    ['causation', '.x'],
    ['node', 'a\xffb'],
  ])('refuses field %s = %j with INVALID_ARGUMENT', (field, value) => {
    expect(tampered(field, value)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('names the bad field in the refusal', () => {
    expect(tampered('depth', '-5')).toThrow(/field depth must be an integer/);
  });

  it('refuses a metadata line with a field too many or too few', () => {
    expect(tampered('node', 'billing-1 extra')).toThrow(/11 metadata fields .* \(exactly 10\)/);
    expect(tampered('node', 'billing-1  ')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    const frame = text(encodeMessage(meta, '1'));
    expect(() => decodeMessage(bytes(frame.replace(' billing-1\n', '\n')), 1024, true)).toThrow(/9 metadata fields/);
  });

  it('refuses a frame without a metadata line within MAX_META_BYTES', () => {
    expect(() => decodeMessage(new Uint8Array(), 1024, false)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => decodeMessage(utf8.encode('{"a":1}'), 1024, false)).toThrow(/no metadata line/);
    expect(() => decodeMessage(utf8.encode(`sb2 m ${'x'.repeat(MAX_META_BYTES)}\n1`), 1024, false)).toThrow(/no metadata line/);
  });

  it('accepts a notify without a budget', () => {
    const { budgetMs: _, ...rest } = meta;
    expect(decodeMessage(encodeMessage(rest, 'null'), 1024, false).budgetMs).toBeUndefined();
  });

  it('drops an unreadable traceparent instead of refusing the message', () => {
    expect(tampered('traceparent', 'garbage')().traceparent).toBeUndefined();
  });

  it('refuses a payload over the receiver limit with PAYLOAD_TOO_LARGE, before reading it', () => {
    const data = encodeMessage(meta, JSON.stringify('x'.repeat(2000)));
    expect(() => decodeMessage(data, 1024, true)).toThrow(expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE', messageId: 'mabc-1' }));
  });

  it('refuses payload bytes that are not UTF-8 with INVALID_PAYLOAD', () => {
    const line = text(encodeMessage(meta, ''));
    for (const tail of [[0xff, 0xfe], [0xed, 0xa0, 0x80] /* a UTF-16 surrogate */, [0xc0, 0xaf] /* overlong */]) {
      const data = new Uint8Array([...bytes(line), ...tail]);
      expect(() => decodeMessage(data, 1024, true)).toThrow(expect.objectContaining({ code: 'INVALID_PAYLOAD', messageId: 'mabc-1' }));
    }
  });

  it('leaves JSON to the receiving pipeline: text that is not JSON passes the wire as it came', () => {
    // The pipeline's bounded codec refuses it with INVALID_PAYLOAD and audits the refusal.
    expect(decodeMessage(encodeMessage(meta, '{"a":'), 1024, true).payloadJson).toBe('{"a":');
  });

  it('reads the claimed id of a frame to answer a malformed request, and nothing else', () => {
    expect(claimedId(bytes(text(encodeMessage(meta, '1')).replace(' 2 high ', ' -1 high ')))).toBe('mabc-1');
    expect(claimedId(bytes('sb2 m a.b\tc 1\n1'))).toBeUndefined();
    expect(claimedId(bytes('sb2 m'))).toBeUndefined();
    expect(claimedId(bytes('sb2 m -x\n'))).toBeUndefined();
  });
});

describe('decodeAnswer()', () => {
  it('decodes a reply (its payload text unparsed) and an error', () => {
    expect(decodeAnswer(encodeReply('m1', '{"ok":true}'), 1024)).toEqual({ kind: 'reply', id: 'm1', payloadJson: '{"ok":true}', payloadBytes: 11 });
    expect(decodeAnswer(encodeError('m1', { code: 'NO_HANDLER', message: 'nope' }), 1024)).toEqual({ kind: 'error', id: 'm1', error: { code: 'NO_HANDLER', message: 'nope' } });
  });

  it('carries only code and message of an error, cut to 2048 characters', () => {
    const e = encodeError('m1', Object.assign({ code: 'HANDLER_FAILED' as const, message: 'y'.repeat(5000) }, { stack: 'secret' }));
    const decoded = decodeAnswer(e, 1024);
    expect(decoded.kind === 'error' && decoded.error.message.length).toBe(2048);
    expect(new TextDecoder().decode(e)).not.toContain('secret');
  });

  it('refuses an unknown error code, an unknown kind, a bad id and a missing metadata line with INVALID_REPLY', () => {
    expect(() => decodeAnswer(utf8.encode('sb2 e m1\n{"code":"PWNED","message":"x"}'), 1024)).toThrow(expect.objectContaining({ code: 'INVALID_REPLY' }));
    expect(() => decodeAnswer(utf8.encode('sb2 e m1\n{"code":"NO_HANDLER"'), 1024)).toThrow(expect.objectContaining({ code: 'INVALID_REPLY' }));
    expect(() => decodeAnswer(utf8.encode('sb2 x m1\nnull'), 1024)).toThrow(expect.objectContaining({ code: 'INVALID_REPLY' }));
    expect(() => decodeAnswer(utf8.encode('sb2 r m 1\nnull'), 1024)).toThrow(expect.objectContaining({ code: 'INVALID_REPLY' }));
    expect(() => decodeAnswer(utf8.encode('sb2 r *\nnull'), 1024)).toThrow(expect.objectContaining({ code: 'INVALID_REPLY' }));
    expect(() => decodeAnswer(utf8.encode('{"ok":true}'), 1024)).toThrow(expect.objectContaining({ code: 'INVALID_REPLY' }));
  });

  it('refuses a reply over the limit with PAYLOAD_TOO_LARGE and one that is not UTF-8 with INVALID_PAYLOAD', () => {
    expect(() => decodeAnswer(encodeReply('m1', JSON.stringify('x'.repeat(2000))), 1024)).toThrow(expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE', messageId: 'm1' }));
    expect(() => decodeAnswer(new Uint8Array([...utf8.encode('sb2 r m1\n'), 0xff]), 1024)).toThrow(expect.objectContaining({ code: 'INVALID_PAYLOAD', messageId: 'm1' }));
  });
});

describe('encodeAbout() / decodeAbout()', () => {
  it('round-trips a progress report', () => {
    expect(decodeAbout(encodeAbout('m9', '{"pct":50}'), 100)).toEqual({ id: 'm9', payload: { pct: 50 } });
  });

  it('refuses a report that is not JSON, or another kind of frame', () => {
    expect(() => decodeAbout(encodeAbout('m9', '{"pct":'), 100)).toThrow(expect.objectContaining({ code: 'INVALID_PAYLOAD' }));
    expect(() => decodeAbout(encodeReply('m9', '1'), 100)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('decoding hostile input', () => {
  const field = fc.oneof(fc.string({ maxLength: 40 }), fc.integer().map(String), fc.constantFrom('-', '1', '0', 'high', 'mabc-1', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'));
  const line = fc.tuple(fc.constantFrom('sb2', 'sb1', ''), fc.constantFrom('m', 'r', 'e', 'a', 'x'), fc.array(field, { maxLength: 12 })).map(([v, k, fs]) => [v, k, ...fs].join(' '));

  it('either decodes or throws a BusError, for any metadata line and bytes', () => {
    fc.assert(
      fc.property(line, fc.uint8Array({ maxLength: 300 }), fc.boolean(), (head, body, newline) => {
        const data = new Uint8Array([...utf8.encode(head), ...(newline ? [0x0a] : []), ...body]);
        for (const decode of [() => decodeMessage(data, 256, true), () => decodeMessage(data, 256, false), () => decodeAnswer(data, 256), () => decodeAbout(data, 256), () => claimedId(data)]) {
          try {
            decode();
          } catch (e) {
            expect(e).toBeInstanceOf(BusError);
          }
        }
      }),
    );
  });

  it('either decodes or throws a BusError, for any bytes at all', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (data) => {
        for (const decode of [() => decodeMessage(data, 256, true), () => decodeAnswer(data, 256), () => decodeAbout(data, 256)]) {
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
