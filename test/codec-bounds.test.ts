import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { checkSize, copyPlainJson, encodePayload } from '../src/codec.js';
import { closeBuses, makeBus, rejectionOf, thrownBy } from './support/helpers.js';

afterEach(closeBuses);

const MiB = 1024 * 1024;

/** An array whose elements count their reads (index getters, not a Proxy: Proxies are refused). */
function countingArray(length: number, element: unknown): { array: unknown[]; reads: () => number } {
  let reads = 0;
  const array: unknown[] = new Array<unknown>(length).fill(0);
  for (let i = 0; i < length; i++) {
    Object.defineProperty(array, i, { enumerable: true, get: () => (reads++, element) });
  }
  return { array, reads: () => reads };
}

describe('copyPlainJson() bounded walk', () => {
  it('stops reading at the first value that passes maxPayloadBytes', () => {
    // Each element is '"aaaaaaaa"' (10 bytes) plus a comma: the 10th passes a 100-byte limit.
    const { array, reads } = countingArray(1_000, 'a'.repeat(8));
    expect(thrownBy(() => copyPlainJson(array, 100)).code).toBe('PAYLOAD_TOO_LARGE');
    expect(reads()).toBeLessThanOrEqual(10);
  });

  it('refuses an array whose length alone passes the limit before reading any element', () => {
    const { array, reads } = countingArray(60, 0); // 60 elements take at least 121 bytes
    const error = thrownBy(() => copyPlainJson(array, 120));
    expect(error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(reads()).toBe(0);
  });

  it('refuses a dense array of 10^7 zeros and a 2^32−1 sparse array with PAYLOAD_TOO_LARGE', () => {
    expect(thrownBy(() => copyPlainJson(new Array<number>(10_000_000).fill(0), 102_400)).code).toBe('PAYLOAD_TOO_LARGE');
    expect(thrownBy(() => copyPlainJson(new Array(2 ** 32 - 1), 102_400)).code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('refuses 100,000 references to one 1 MiB string, naming the limit', () => {
    const error = thrownBy(() => encodePayload(new Array<string>(100_000).fill('x'.repeat(MiB)), 102_400));
    expect(error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(error.message).toContain('over the limit of 102400 bytes');
  });

  it('counts a shared string at every reference, as JSON writes it', () => {
    const s = 'é'.repeat(300); // past the cached length: measured once, charged three times
    const value = [s, { k: s }, s];
    const json = JSON.stringify(value);
    expect(encodePayload(value, 10_000).bytes).toBe(Buffer.byteLength(json, 'utf8'));
    expect(thrownBy(() => encodePayload(value, Buffer.byteLength(json, 'utf8') - 1)).code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('reads a widely shared object a bounded number of times and still counts every reference', () => {
    let reads = 0;
    const shared = {
      get v(): number {
        reads++;
        return 1;
      },
    };
    const value = new Array(1_000).fill(shared);
    const encoded = encodePayload(value, 1_000_000);
    expect(encoded.json).toBe(JSON.stringify(new Array(1_000).fill({ v: 1 })));
    expect(encoded.bytes).toBe(Buffer.byteLength(encoded.json));
    expect(reads).toBeLessThan(10);
  });

  it('writes the JSON of a payload of many small objects in one linear pass (withJson)', { timeout: 20_000 }, () => {
    // Once quadratic: every remembered object sliced (so flattened) the whole JSON written so
    // far; at 1 MB this took minutes or ran out of memory. Now each object's JSON is written once.
    const many = Array.from({ length: 55_000 }, (_, i) => ({ a: 'bbbbbbbb', i }));
    const encoded = encodePayload(many, 2_000_000, 'payload', true);
    expect(encoded.json).toBe(JSON.stringify(many));
    const shared = { deep: { list: [1, 2, 3], text: 'é' } };
    const again = Array.from({ length: 20_000 }, () => shared);
    expect(encodePayload(again, 2_000_000, 'payload', true).json).toBe(JSON.stringify(again));
  });

  it('bounds the properties it passes over because their value is undefined', () => {
    const hollow: Record<string, undefined> = {};
    for (let i = 0; i < 2_000; i++) hollow[`k${i}`] = undefined;
    expect(encodePayload(hollow, 10_000).json).toBe('{}');
    expect(thrownBy(() => encodePayload([hollow, hollow, hollow, hollow, hollow, hollow], 10_000)).code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('counts exactly Buffer.byteLength(JSON.stringify(x)) under the limit and refuses past it (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.integer({ min: 1, max: 400 }), (value, limit) => {
        const json = JSON.stringify(value);
        fc.pre(!/"(__proto__|toJSON)":/.test(json));
        const bytes = Buffer.byteLength(json, 'utf8');
        if (bytes <= limit) {
          const plain = copyPlainJson(value, limit);
          expect(plain.bytes).toBe(bytes);
          expect(checkSize(plain, limit).json).toBe(json);
        } else {
          const error = thrownBy(() => copyPlainJson(value, limit));
          expect(error.code).toBe('PAYLOAD_TOO_LARGE');
          expect(error.message).toContain(`limit of ${limit} bytes`);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('encodePayload() arrays and objects JSON would write differently', () => {
  class List extends Array<number> {}

  it('refuses an Array subclass with INVALID_PAYLOAD', () => {
    const list = List.from([1, 2]);
    const error = thrownBy(() => encodePayload({ list }, 1_000));
    expect(error.code).toBe('INVALID_PAYLOAD');
    expect(error.message).toContain('.list');
  });

  it('refuses an array from another realm and one with a null prototype', () => {
    expect(thrownBy(() => encodePayload(runInNewContext('[1, 2]'), 1_000)).code).toBe('INVALID_PAYLOAD');
    expect(thrownBy(() => encodePayload(Object.setPrototypeOf([1], null), 1_000)).code).toBe('INVALID_PAYLOAD');
  });

  it('refuses an array whose prototype chain has toJSON', () => {
    const proto = Object.create(Array.prototype, { toJSON: { value: () => 'other' } });
    expect(thrownBy(() => encodePayload(Object.setPrototypeOf([1], proto), 1_000)).code).toBe('INVALID_PAYLOAD');
    const patched = Array.prototype as unknown as { toJSON?: () => string };
    patched.toJSON = () => 'other';
    try {
      expect(thrownBy(() => encodePayload([1, 2], 1_000)).code).toBe('INVALID_PAYLOAD');
    } finally {
      delete patched.toJSON;
    }
  });

  it('refuses an object with a non-enumerable toJSON (JSON.stringify still calls it)', () => {
    const value = Object.defineProperty({ a: 1 }, 'toJSON', { value: () => 'other', enumerable: false });
    expect(thrownBy(() => encodePayload(value, 1_000)).code).toBe('INVALID_PAYLOAD');
  });

  it('copies own keys only, as JSON does, even when Object.prototype has an enumerable key', () => {
    const polluted = Object.prototype as unknown as { extra?: number };
    polluted.extra = 1;
    try {
      expect(encodePayload({ a: 1 }, 1_000).json).toBe('{"a":1}');
      expect(Object.keys(encodePayload({ a: 1 }, 1_000).copy as object)).toEqual(['a']);
    } finally {
      delete polluted.extra;
    }
  });

  it('tells a hole from an undefined element', () => {
    expect(thrownBy(() => encodePayload([1, , 3], 1_000)).message).toContain('hole');
    expect(thrownBy(() => encodePayload([1, undefined], 1_000)).message).toContain('undefined');
  });
});

describe('encodePayload() unreadable values', () => {
  function revoked(): object {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  }

  it('refuses a payload whose getter throws with INVALID_PAYLOAD, naming where', () => {
    const payload = {
      get secret(): never {
        throw new Error('no access');
      },
    };
    const error = thrownBy(() => encodePayload(payload, 1_000));
    expect(error.code).toBe('INVALID_PAYLOAD');
    expect(error.message).toContain('.secret');
    expect(error.message).toContain('no access');
  });

  it('refuses a payload whose getter throws a revoked Proxy with INVALID_PAYLOAD', () => {
    const payload = {
      get bad(): never {
        throw revoked();
      },
    };
    expect(thrownBy(() => encodePayload(payload, 1_000)).code).toBe('INVALID_PAYLOAD');
  });

  it('rejects such a send on the bus with INVALID_PAYLOAD and delivers nothing', async () => {
    const bus = makeBus();
    let ran = false;
    bus.register('writer', { handlers: { x: () => (ran = true) } });
    const research = bus.register('research');
    const payload = {
      get bad(): never {
        throw revoked();
      },
    };
    expect((await rejectionOf(research.ask('writer', 'x', payload))).code).toBe('INVALID_PAYLOAD');
    expect((await rejectionOf(research.ask('writer', 'x', [revoked()]))).code).toBe('INVALID_PAYLOAD');
    expect(ran).toBe(false);
  });
});
