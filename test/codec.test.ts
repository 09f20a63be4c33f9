import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_PAYLOAD_DEPTH, decodePayload, encodePayload, hashPayload } from '../src/codec.js';
import { closeBuses, makeBus, rejectionOf, thrownBy } from './support/helpers.js';

afterEach(closeBuses);

const LIMIT = 102_400;

function cyclic(): unknown {
  const a: Record<string, unknown> = { name: 'a' };
  a.self = a;
  return a;
}

class Point {
  constructor(
    readonly x = 1,
    readonly y = 2,
  ) {}
}

describe('encodePayload()', () => {
  const refused: [string, () => unknown][] = [
    ['a function', () => () => 1],
    ['a function in an object', () => ({ run: () => 1 })],
    ['a BigInt', () => ({ n: 1n })],
    ['NaN', () => ({ n: Number.NaN })],
    ['Infinity', () => [Number.POSITIVE_INFINITY]],
    ['-Infinity', () => Number.NEGATIVE_INFINITY],
    ['a cycle', cyclic],
    ['a cycle through an array', () => {
      const list: unknown[] = [];
      list.push({ list });
      return list;
    }],
    ['a Date', () => ({ when: new Date(0) })],
    ['a Map', () => ({ m: new Map([[1, 2]]) })],
    ['a Set', () => new Set([1])],
    ['a RegExp', () => ({ re: /x/ })],
    ['a class instance', () => ({ p: new Point() })],
    ['a boxed string', () => ({ s: new String('x') })],
    ['a typed array', () => ({ bytes: new Uint8Array(2) })],
    ['a Proxy of a plain object', () => ({ p: new Proxy({ a: 1 }, {}) })],
    ['a Proxy of an array', () => new Proxy([1, 2], {})],
    ['a toJSON key', () => ({ a: 1, toJSON: () => ({ b: 2 }) })],
    ['a toJSON key that is not a function', () => ({ toJSON: 'x' })],
    ['a __proto__ key from JSON.parse', () => JSON.parse('{"__proto__":{"x":1}}') as unknown],
    ['a nested __proto__ key', () => ({ deep: JSON.parse('{"__proto__":{"polluted":true}}') as unknown })],
    ['a symbol value', () => ({ s: Symbol('x') })],
    ['a symbol key', () => ({ [Symbol('k')]: 1 })],
    ['an array with an extra named property (JSON would drop it)', () => Object.assign([1, 2], { extra: 'lost' })],
    ['undefined in an array', () => [1, undefined]],
    ['a hole in an array', () => [1, , 3]],
    ['nesting deeper than the limit', () => {
      let v: unknown = 1;
      for (let i = 0; i <= MAX_PAYLOAD_DEPTH; i++) v = [v];
      return v;
    }],
  ];

  it.each(refused)('refuses %s with INVALID_PAYLOAD', (_name, make) => {
    expect(thrownBy(() => encodePayload(make(), LIMIT)).code).toBe('INVALID_PAYLOAD');
  });

  it('names the path of the bad value', () => {
    const error = thrownBy(() => encodePayload({ doc: { pages: [1, { at: new Date(0) }] } }, LIMIT));
    expect(error.message).toContain('.doc.pages[1].at');
  });

  it('accepts nested plain data and returns exactly its JSON', () => {
    const value = { s: 'é€😀', n: -1.5, z: 0, t: true, f: false, nil: null, list: [1, 'two', [3], { four: 4 }], deep: { a: { b: { c: [] } } } };
    const encoded = encodePayload(value, LIMIT);
    expect(encoded.json).toBe(JSON.stringify(value));
    expect(encoded.bytes).toBe(Buffer.byteLength(JSON.stringify(value), 'utf8'));
  });

  it('accepts objects with a null prototype', () => {
    const bare = Object.create(null) as Record<string, unknown>;
    bare.a = 1;
    bare.nested = Object.assign(Object.create(null) as object, { b: [2] });
    expect(encodePayload(bare, LIMIT).json).toBe('{"a":1,"nested":{"b":[2]}}');
  });

  it('turns undefined at the top level into null and omits undefined properties', () => {
    expect(encodePayload(undefined, LIMIT).json).toBe('null');
    expect(encodePayload({ a: undefined, b: 1 }, LIMIT).json).toBe('{"b":1}');
  });

  it('accepts nesting right at the depth limit', () => {
    let v: unknown = 1;
    for (let i = 0; i < MAX_PAYLOAD_DEPTH; i++) v = [v];
    expect(() => encodePayload(v, LIMIT)).not.toThrow();
  });

  it('accepts a value shared twice (a DAG is not a cycle)', () => {
    const shared = { x: 1 };
    expect(encodePayload({ a: shared, b: shared }, LIMIT).json).toBe('{"a":{"x":1},"b":{"x":1}}');
  });

  it('counts UTF-8 bytes exactly at the edge: limit passes, limit + 1 is PAYLOAD_TOO_LARGE', () => {
    // '€' is 3 bytes in UTF-8, '😀' 4; the JSON adds 2 quotes.
    const limit = 2 + 3 * 10 + 4 * 5;
    const atLimit = '€'.repeat(10) + '😀'.repeat(5);
    expect(atLimit.length).toBeLessThan(limit); // UTF-16 length would undercount
    const ok = encodePayload(atLimit, limit);
    expect(ok.bytes).toBe(limit);
    const error = thrownBy(() => encodePayload(`${atLimit}a`, limit));
    expect(error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(error.message).toContain(String(limit + 1));
  });

  it('measures bytes as Buffer.byteLength of the JSON, for any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const json = JSON.stringify(value);
        fc.pre(!/"(__proto__|toJSON)":/.test(json)); // refused on purpose, tested above
        const encoded = encodePayload(value, 1_000_000);
        return encoded.json === json && encoded.bytes === Buffer.byteLength(json, 'utf8');
      }),
    );
  });

  it('refuses a huge shared-structure payload with PAYLOAD_TOO_LARGE without blowing up', () => {
    let v: unknown = 'x';
    for (let i = 0; i < 40; i++) v = [v, v]; // 2^40 leaves if expanded
    expect(thrownBy(() => encodePayload(v, 1000)).code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('does not let an accessor hand the serializer something other than what was checked', () => {
    let reads = 0;
    const payload = {
      get when(): unknown {
        reads++;
        return reads === 1 ? 'plain' : new Date(0);
      },
    };
    let json: string | undefined;
    try {
      json = encodePayload(payload, LIMIT).json;
    } catch (error) {
      expect(error).toMatchObject({ code: 'INVALID_PAYLOAD' });
      return;
    }
    expect(json).toBe('{"when":"plain"}');
  });
});

describe('decodePayload()', () => {
  it('returns a deep-frozen copy that shares nothing with the sender\'s value', () => {
    const original = { a: { b: [1, { c: 2 }] } };
    const encoded = encodePayload(original, LIMIT);
    const one = decodePayload(encoded) as { a: { b: [number, { c: number }] } };
    expect(one).toEqual(original);
    expect(one).not.toBe(original);
    expect(one.a).not.toBe(original.a);
    expect(one.a.b[1]).not.toBe(original.a.b[1]);
    expect(Object.isFrozen(one)).toBe(true);
    expect(Object.isFrozen(one.a)).toBe(true);
    expect(Object.isFrozen(one.a.b)).toBe(true);
    expect(Object.isFrozen(one.a.b[1])).toBe(true);
  });
});

describe('hashPayload()', () => {
  it('is the hex SHA-256 of the JSON bytes', () => {
    const encoded = encodePayload({ text: 'é€😀', n: [1, 2] }, LIMIT);
    const expected = createHash('sha256').update(Buffer.from(JSON.stringify({ text: 'é€😀', n: [1, 2] }), 'utf8')).digest('hex');
    expect(hashPayload(encoded)).toBe(expected);
  });
});

describe('payloads on the bus', () => {
  it('refuses a non-JSON payload with INVALID_PAYLOAD and delivers nothing', async () => {
    const bus = makeBus();
    let ran = false;
    bus.register('writer', { handlers: { x: () => (ran = true) } });
    const research = bus.register('research');
    for (const bad of [{ f: () => 1 }, { n: 1n }, cyclic(), new Point(), JSON.parse('{"__proto__":{"x":1}}') as unknown]) {
      expect((await rejectionOf(research.ask('writer', 'x', bad))).code).toBe('INVALID_PAYLOAD');
    }
    expect(ran).toBe(false);
  });

  it('enforces limits.maxPayloadBytes on UTF-8 bytes at the edge', async () => {
    const limit = 2 + 3 * 20;
    const bus = makeBus({ limits: { maxPayloadBytes: limit } });
    bus.register('writer', { handlers: { x: (p) => (p as string).length } });
    const research = bus.register('research');
    await expect(research.ask('writer', 'x', '€'.repeat(20))).resolves.toBe(20);
    const error = await rejectionOf(research.ask('writer', 'x', `${'€'.repeat(20)}a`));
    expect(error.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('enforces the size limit on replies too (HANDLER_FAILED)', async () => {
    const bus = makeBus({ limits: { maxPayloadBytes: 20 } });
    bus.register('writer', { handlers: { x: () => 'x'.repeat(100) } });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('writer', 'x', {}))).code).toBe('HANDLER_FAILED');
  });

  it('records the sha256 of the JSON bytes and their size in the audit log', async () => {
    const bus = makeBus();
    bus.register('writer', { handlers: { x: () => 'ok' } });
    const research = bus.register('research');
    const payload = { text: 'héllo €', list: [1, 2, 3] };
    const json = JSON.stringify(payload);
    await research.ask('writer', 'x', payload);
    const entry = bus.getMessageLog({ limit: 10 }).find((e) => e.type === 'ask');
    expect(entry?.payloadHash).toBe(createHash('sha256').update(json, 'utf8').digest('hex'));
    expect(entry?.payloadBytes).toBe(Buffer.byteLength(json, 'utf8'));
  });

  it('accepts undefined as a payload and delivers null', async () => {
    const bus = makeBus();
    bus.register('writer', { handlers: { x: (p) => ({ got: p }) } });
    const research = bus.register('research');
    await expect(research.ask('writer', 'x', undefined)).resolves.toEqual({ got: null });
  });

  it('resolves an ask whose handler returns nothing with null', async () => {
    const bus = makeBus();
    bus.register('writer', { handlers: { x: () => undefined } });
    const research = bus.register('research');
    await expect(research.ask('writer', 'x', {})).resolves.toBeNull();
  });
});

describe('encodePayload() copy', () => {
  it('is exactly what its JSON bytes parse to, deep-frozen, and shares nothing with the input (property)', () => {
    const isDeepFrozen = (v: unknown): boolean =>
      typeof v !== 'object' || v === null || (Object.isFrozen(v) && Object.values(v).every(isDeepFrozen));
    const sharesNothing = (copy: unknown, original: unknown): boolean =>
      typeof copy !== 'object' ||
      copy === null ||
      (copy !== original && Object.keys(copy).every((k) => sharesNothing((copy as Record<string, unknown>)[k], (original as Record<string, unknown>)[k])));
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        // Keys the codec refuses on purpose (tested above) are not part of this law.
        fc.pre(!/"(__proto__|toJSON)":/.test(JSON.stringify(value)));
        const encoded = encodePayload(value, 10_000_000);
        expect(encoded.copy).toStrictEqual(JSON.parse(encoded.json));
        expect(encoded.json).toBe(JSON.stringify(value));
        expect(isDeepFrozen(encoded.copy)).toBe(true);
        expect(sharesNothing(encoded.copy, value)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('writes -0 as 0 in both the bytes and the copy', () => {
    const encoded = encodePayload({ n: -0 }, 100);
    expect(encoded.json).toBe('{"n":0}');
    expect(Object.is((encoded.copy as { n: number }).n, 0)).toBe(true);
  });
});

describe('encodePayload(…, withJson) JSON written by the walk', () => {
  const text = fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), fc.constantFrom('"', '\\', '\n', '\u2028', '\u0000', 'é', '😀', '\ud800', 'x'.repeat(300), `${'é'.repeat(300)}"`));
  const numbers = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer(), fc.constantFrom(-0, 1e21, 5e-324, 1e-7));
  const values = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, text, numbers, fc.boolean(), fc.constant(null), tie('array'), tie('object')),
    array: fc.array(tie('value'), { maxLength: 5 }),
    object: fc.dictionary(text.filter((k) => k !== '__proto__' && k !== 'toJSON'), tie('value'), { maxKeys: 5 }),
  })).value;

  it('is byte for byte JSON.stringify of the copy, with its size, for any JSON value (property)', () => {
    fc.assert(
      fc.property(fc.oneof(values, fc.jsonValue()), fc.boolean(), (value, shared) => {
        fc.pre(!/"(__proto__|toJSON)":/.test(JSON.stringify(value)));
        // Shared: the same value referenced many times, so the walk's remembered objects and strings are written again.
        const input = shared ? { many: Array.from({ length: 12 }, () => value), again: value } : value;
        const written = encodePayload(input, 100_000_000, 'payload', true);
        const later = encodePayload(input, 100_000_000);
        expect(written.json).toBe(JSON.stringify(input));
        expect(written.json).toBe(later.json);
        expect(written.bytes).toBe(later.bytes);
        expect(written.copy).toStrictEqual(later.copy);
      }),
      { numRuns: 2000 },
    );
  });

  it('gives the same payload hash as serializing the copy afterwards', () => {
    const payload = { task: 'summarize', n: -0, tags: ['a', 'é', '😀'], nested: { ok: true, none: null, skip: undefined } };
    expect(hashPayload(encodePayload(payload, LIMIT, 'payload', true))).toBe(hashPayload(encodePayload(payload, LIMIT)));
  });
});

describe('encodePayload() size', () => {
  it('counts exactly the UTF-8 bytes of the JSON, for any JSON value and any UTF-16 text (property)', () => {
    const text = fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), fc.constantFrom('"', '\\', '\n', '\u2028', '\u0000', 'é', '€', '😀', '\ud800'));
    const numbers = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer(), fc.constantFrom(-0, 1e21, 5e-324, 1e-7, 123456789012345680000));
    const values = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, text, numbers, fc.boolean(), fc.constant(null), tie('array'), tie('object')),
      array: fc.array(tie('value'), { maxLength: 5 }),
      object: fc.dictionary(text.filter((k) => k !== '__proto__' && k !== 'toJSON'), tie('value'), { maxKeys: 5 }),
    })).value;
    fc.assert(
      fc.property(fc.oneof(values, fc.jsonValue()), (value) => {
        fc.pre(!/"(__proto__|toJSON)":/.test(JSON.stringify(value)));
        const encoded = encodePayload(value, 100_000_000);
        expect(encoded.bytes).toBe(Buffer.byteLength(encoded.json, 'utf8'));
        expect(encoded.json).toBe(JSON.stringify(value));
      }),
      { numRuns: 3000 },
    );
  });
});
