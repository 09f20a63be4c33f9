import { BusError } from './errors.js';

/** A token bucket's shape: how fast it refills and how many tokens it holds at most. */
export interface RateSpec {
  /** Tokens added per second, continuously. Must be finite and > 0. */
  perSecond: number;
  /** The bucket's capacity, and what it holds at the start. Must be finite and >= 1. */
  burst: number;
}

// Absorbs float rounding (large or fractional clock readings) so that taking exactly
// `retryAfterMs` later always succeeds. A millionth of a token per take cannot add up to
// an extra message in practice.
const EPSILON = 1e-6;

/**
 * A synchronous token bucket on an injected clock (epoch or monotonic ms, the caller's
 * choice). One token per message; no timers, no allocation per call.
 *
 * A clock reading earlier than the previous one counts as no elapsed time and becomes the
 * new reference, so a clock stepped back neither refills the bucket nor stalls it until
 * the old time comes round again.
 *
 * @example
 * const bucket = new TokenBucket({ perSecond: 10, burst: 10 }, Date.now());
 * const wait = bucket.take(Date.now());
 * if (wait > 0) throw new BusError('RATE_LIMITED', `rate limited, retry in ${wait}ms`, { retryAfterMs: wait });
 */
export class TokenBucket {
  /** The spec this bucket was made with (a frozen copy). */
  readonly spec: RateSpec;
  readonly #perMs: number;
  readonly #burst: number;
  #tokens: number;
  #last: number;

  /** Makes a full bucket. Throws `INVALID_ARGUMENT` for a rate or burst it cannot honour. */
  constructor(spec: RateSpec, now: number) {
    const { perSecond, burst } = spec;
    if (typeof perSecond !== 'number' || !Number.isFinite(perSecond) || perSecond <= 0) {
      throw new BusError('INVALID_ARGUMENT', `rate.perSecond must be a finite number > 0, got ${String(perSecond)}`);
    }
    if (typeof burst !== 'number' || !Number.isFinite(burst) || burst < 1) {
      throw new BusError('INVALID_ARGUMENT', `rate.burst must be a finite number >= 1, got ${String(burst)}`);
    }
    if (typeof now !== 'number' || !Number.isFinite(now)) {
      throw new BusError('INVALID_ARGUMENT', `now must be a finite number of ms, got ${String(now)}`);
    }
    this.spec = Object.freeze({ perSecond, burst });
    this.#perMs = perSecond / 1000;
    this.#burst = burst;
    this.#tokens = burst;
    this.#last = now;
  }

  /**
   * Spends one token if one is available and returns 0. Otherwise spends nothing (the
   * bucket never goes below empty) and returns how many ms until a token is available:
   * always > 0, rounded up to a whole ms, so `take(now + result)` succeeds.
   */
  take(now: number): number {
    const elapsed = now - this.#last;
    // NaN (a broken clock) fails this test too, and then changes nothing.
    if (elapsed > 0) {
      const refilled = this.#tokens + elapsed * this.#perMs;
      this.#tokens = refilled < this.#burst ? refilled : this.#burst;
      this.#last = now;
    } else if (elapsed < 0) {
      this.#last = now;
    }
    if (this.#tokens >= 1 - EPSILON) {
      const left = this.#tokens - 1;
      this.#tokens = left > 0 ? left : 0;
      return 0;
    }
    const wait = Math.ceil((1 - this.#tokens) / this.#perMs);
    return wait > 0 ? wait : 1;
  }
}
