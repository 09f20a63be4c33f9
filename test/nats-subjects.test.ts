import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { escapeToken, Subjects, unescapeToken } from '../src/nats/subjects.js';

const agentId = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/);

describe('escapeToken()', () => {
  it('maps every agent id to one token of letters, digits, "-" and "_XX"', () => {
    fc.assert(
      fc.property(agentId, (id) => {
        expect(escapeToken(id)).toMatch(/^(?:[A-Za-z0-9-]|_[0-9A-F]{2})+$/);
      }),
    );
  });

  it('is injective on any strings: two different ids never share a token', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }), (a, b) => {
        fc.pre(a !== b);
        expect(escapeToken(a)).not.toBe(escapeToken(b));
      }),
    );
  });

  it('round-trips through unescapeToken for any string', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme', minLength: 1 }), (s) => { expect(unescapeToken(escapeToken(s))).toBe(s); }));
  });

  it('refuses a lone surrogate, which UTF-8 cannot carry', () => {
    expect(() => escapeToken('a\uD800')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('escapes ".", ":", "_", "*", ">", spaces and non-ASCII', () => {
    expect(escapeToken('a.b:c_d')).toBe('a_2Eb_3Ac_5Fd');
    expect(escapeToken('* > x')).toBe('_2A_20_3E_20x');
    expect(escapeToken('é')).toBe('_C3_A9');
  });
});

describe('unescapeToken()', () => {
  it.each(['a_2e', 'a_', '_2', 'a.b', 'a*', '', 'a_2D', '_FF'])('refuses the non-canonical or malformed token %j', (t) => {
    expect(() => unescapeToken(t)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('Subjects', () => {
  const s = new Subjects('shop');

  it('builds <bus>.in.<to>.<from>.<kind> with five tokens whatever the ids', () => {
    fc.assert(
      fc.property(agentId, agentId, (to, from) => {
        const subject = s.inbound(to, from, 'ask');
        expect(subject.split('.')).toHaveLength(5);
        expect(s.parseInbound(subject)).toEqual({ to, from, kind: 'ask' });
      }),
    );
  });

  it('refuses a bad bus name with INVALID_ARGUMENT', () => {
    for (const bus of ['', 'a.b', 'a*', 'a_b', 'x'.repeat(65), 3]) {
      expect(() => new Subjects(bus as string)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });

  it('refuses an inbound subject of another bus, shape or kind', () => {
    for (const subject of ['other.in.a.b.ask', 'shop.in.a.b', 'shop.in.a.b.reply', 'shop.in.a.b.c.ask', 'shop.in.a_zz.b.ask']) {
      expect(() => s.parseInbound(subject)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });

  it('keeps the inbox prefix per node and off _INBOX', () => {
    expect(s.inboxPrefix('billing.1')).toBe('shop._r.billing_2E1');
    expect(s.claimsBucket()).toMatch(/^[A-Za-z0-9_-]+$/);
  });
});
