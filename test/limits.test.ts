import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { TokenBucket } from '../src/limits.js';
import { isBusError } from '../src/errors.js';

const T0 = 1_700_000_000_000;

describe('new TokenBucket()', () => {
  it('starts full: burst takes succeed at once, the next one waits', () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 3 }, T0);
    expect([bucket.take(T0), bucket.take(T0), bucket.take(T0)]).toEqual([0, 0, 0]);
    expect(bucket.take(T0)).toBe(100);
  });

  it('keeps a frozen copy of its spec', () => {
    const spec = { perSecond: 5, burst: 2 };
    const bucket = new TokenBucket(spec, T0);
    spec.burst = 100;
    expect(bucket.spec).toEqual({ perSecond: 5, burst: 2 });
    expect(Object.isFrozen(bucket.spec)).toBe(true);
  });

  it.each([
    [{ perSecond: 0, burst: 1 }, 'perSecond'],
    [{ perSecond: -1, burst: 1 }, 'perSecond'],
    [{ perSecond: Number.NaN, burst: 1 }, 'perSecond'],
    [{ perSecond: Number.POSITIVE_INFINITY, burst: 1 }, 'perSecond'],
    [{ perSecond: 1, burst: 0.5 }, 'burst'],
    [{ perSecond: 1, burst: Number.POSITIVE_INFINITY }, 'burst'],
  ])('refuses %o with INVALID_ARGUMENT naming %s', (spec, key) => {
    let caught: unknown;
    try {
      new TokenBucket(spec, T0);
    } catch (e) {
      caught = e;
    }
    expect(isBusError(caught) && caught.code === 'INVALID_ARGUMENT').toBe(true);
    expect((caught as Error).message).toContain(key);
  });
});

describe('TokenBucket#take()', () => {
  it('refills continuously at perSecond', () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 1 }, T0);
    expect(bucket.take(T0)).toBe(0);
    expect(bucket.take(T0 + 50)).toBe(50);
    expect(bucket.take(T0 + 100)).toBe(0);
    expect(bucket.take(T0 + 150)).toBe(50);
  });

  it('never holds more than burst, however long it sat idle', () => {
    const bucket = new TokenBucket({ perSecond: 100, burst: 5 }, T0);
    const later = T0 + 3_600_000;
    let accepted = 0;
    while (bucket.take(later) === 0) accepted++;
    expect(accepted).toBe(5);
  });

  it('returns a wait after which a take succeeds, and not a ms sooner', () => {
    for (const perSecond of [1, 3, 7, 10, 33, 1000, 2500]) {
      const bucket = new TokenBucket({ perSecond, burst: 1 }, T0);
      expect(bucket.take(T0)).toBe(0);
      const wait = bucket.take(T0 + 0.25);
      expect(wait).toBeGreaterThan(0);
      expect(Number.isInteger(wait)).toBe(true);
      if (wait > 1) expect(bucket.take(T0 + 0.25 + wait - 1)).toBeGreaterThan(0);
      expect(bucket.take(T0 + 0.25 + wait)).toBe(0);
    }
  });

  it('spends nothing on a refusal, so refusals never push the next token further away', () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 1 }, T0);
    bucket.take(T0);
    for (let i = 0; i < 1000; i++) bucket.take(T0 + i * 0.05);
    expect(bucket.take(T0 + 100)).toBe(0);
  });

  it('treats a clock going backwards as no elapsed time, and refills from the new reading on', () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 1 }, T0);
    expect(bucket.take(T0)).toBe(0);
    expect(bucket.take(T0 - 10_000)).toBe(100);
    expect(bucket.take(T0 - 9_950)).toBe(50);
    expect(bucket.take(T0 - 9_900)).toBe(0);
  });

  it('ignores a NaN clock reading', () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 1 }, T0);
    bucket.take(T0);
    expect(bucket.take(Number.NaN)).toBe(100);
    expect(bucket.take(T0 + 100)).toBe(0);
  });

  it('never accepts more than burst + perSecond·T over any window T (property)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.1, max: 1000, noNaN: true }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.oneof(fc.constant(0), fc.double({ min: 0, max: 500, noNaN: true }), fc.integer({ min: 0, max: 50 })), {
          minLength: 1,
          maxLength: 300,
        }),
        (perSecond, burst, steps) => {
          const bucket = new TokenBucket({ perSecond, burst }, T0);
          const accepted: number[] = [];
          let now = T0;
          for (const step of steps) {
            now += step;
            if (bucket.take(now) === 0) accepted.push(now);
          }
          // Every window that starts and ends on an accepted take is the tightest one.
          for (let i = 0; i < accepted.length; i++) {
            for (let j = i; j < accepted.length; j++) {
              const window = (accepted[j] as number) - (accepted[i] as number);
              expect(j - i + 1).toBeLessThanOrEqual(burst + (perSecond * window) / 1000 + 1e-6);
            }
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('makes a take at now + wait succeed, whatever came before (property)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.1, max: 5000, noNaN: true }),
        fc.integer({ min: 1, max: 5 }),
        fc.double({ min: 0, max: 1e9, noNaN: true }),
        fc.array(fc.double({ min: 0, max: 200, noNaN: true }), { maxLength: 50 }),
        (perSecond, burst, start, steps) => {
          const bucket = new TokenBucket({ perSecond, burst }, start);
          let now = start;
          for (const step of steps) {
            now += step;
            const wait = bucket.take(now);
            if (wait > 0) {
              expect(Number.isInteger(wait)).toBe(true);
              now += wait;
              expect(bucket.take(now)).toBe(0);
            }
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
