import type { AttemptRecord, RefusalSummary } from '../audit/types.js';
import type { ErrorCode } from '../errors.js';
import { TokenBucket, type RateSpec } from '../limits.js';

/**
 * How long the refusals of a sender beyond its rate are counted before their summary row
 * is written, at the latest (`flush()`, a read of the log and `close()` write it sooner).
 */
export const REFUSAL_SUMMARY_MS = 1_000;

/**
 * The least a sender's refusal rows may follow, whatever its own rate (the default of
 * `limits.rate`): a few mistakes in a row are always written one by one, and a sender with
 * no rate (`rate: false`, no global rate) is held to this.
 */
export const MIN_REFUSAL_RATE: RateSpec = Object.freeze({ perSecond: 10, burst: 10 });

/** The refusals of one sender counted since its summary opened. */
interface Tally {
  /** The first of them, written as it is when it stays alone. */
  readonly sample: AttemptRecord;
  count: number;
  last: number;
  readonly codes: Map<ErrorCode, number>;
}

interface Sender {
  /** One token per refusal row, refilled at the sender's rate. */
  bucket: TokenBucket;
  /** How long an untouched bucket takes to be full again: past it, the entry can go. */
  refillMs: number;
  last: number;
  tally: Tally | undefined;
}

/**
 * Bounds the disk a flood of refusals costs. Each sender's refusal rows spend a token of a
 * bucket of their own, shaped like the sender's rate (else the bus's global rate), and never
 * slower than {@link MIN_REFUSAL_RATE}: within it every refusal is its own row, as before. Beyond
 * it, the sender's refusals are counted in memory (a count, the first and last time, a count
 * per code, and the first refusal's row) and written as ONE row at most
 * {@link REFUSAL_SUMMARY_MS} after the first (by the bus's clock at the sender's next
 * refusal, or by a timer), and on `flush()` / `close()`. That row is the first refusal's attempt with a
 * {@link RefusalSummary}; nothing is lost: the counts add up to every refusal made.
 *
 * Memory: one small entry per sender that refused lately (entries whose bucket has refilled
 * are swept), one tally at most per sender. A timer runs only while a tally is open.
 */
export class RefusalSummaries {
  readonly #senders = new Map<string, Sender>();
  /** The senders with an open tally: a flush visits only these. */
  readonly #open = new Set<Sender>();
  readonly #write: (record: AttemptRecord) => void;
  readonly #rateOf: (from: string) => RateSpec | undefined;
  readonly #keyOf: (from: string) => string;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #sweepAt = 1024;
  #closed = false;

  /**
   * @param write stages one audit row.
   * @param rateOf the rate a sender's refusal rows follow (at least {@link MIN_REFUSAL_RATE}).
   * @param keyOf whose bucket a sender's refusals spend: its own id by default. Senders a peer
   *   node can make up at will (ids no node is known to serve) share one key, so rotating
   *   fake ids buys no fresh bucket and no unbounded map.
   */
  constructor(write: (record: AttemptRecord) => void, rateOf: (from: string) => RateSpec | undefined, keyOf: (from: string) => string = (from) => from) {
    this.#write = write;
    this.#rateOf = rateOf;
    this.#keyOf = keyOf;
  }

  /** Writes the refusal's row, or counts it in its sender's summary when the sender is beyond its rate. */
  record(refusal: AttemptRecord): void {
    if (this.#closed) {
      this.#write(refusal);
      return;
    }
    const now = refusal.ts;
    const sender = this.#sender(refusal.from, now);
    sender.last = now;
    const tally = sender.tally;
    if (tally !== undefined) {
      if (!(now - tally.sample.ts >= REFUSAL_SUMMARY_MS)) {
        count(tally, refusal, now);
        return;
      }
      this.#close(sender, tally); // a full interval counted: its row, then this refusal anew
    }
    if (sender.bucket.take(now) === 0) {
      this.#write(refusal);
      return;
    }
    sender.tally = { sample: refusal, count: 0, last: now, codes: new Map() };
    count(sender.tally, refusal, now);
    this.#open.add(sender);
    this.#timer ??= setTimeout(this.#onTimer, REFUSAL_SUMMARY_MS);
  }

  /** Writes every open summary now. */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    for (const sender of this.#open) if (sender.tally !== undefined) this.#close(sender, sender.tally);
    this.#open.clear();
  }

  /** Writes every open summary and stops counting: later refusals (if any) are written one by one. Leaves no timer. */
  close(): void {
    this.flush();
    this.#closed = true;
    this.#senders.clear();
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    this.flush();
  };

  #sender(from: string, now: number): Sender {
    const spec = atLeast(this.#rateOf(from));
    const key = this.#keyOf(from);
    const sender = this.#senders.get(key);
    if (sender !== undefined && sender.bucket.spec.perSecond === spec.perSecond && sender.bucket.spec.burst === spec.burst) return sender;
    if (sender === undefined && this.#senders.size >= this.#sweepAt) this.#sweep(now);
    const fresh: Sender = { bucket: new TokenBucket(spec, now), refillMs: (spec.burst / spec.perSecond) * 1000, last: now, tally: sender?.tally };
    this.#senders.set(key, fresh);
    if (sender !== undefined && this.#open.delete(sender)) this.#open.add(fresh);
    return fresh;
  }

  /** Drops the entries of senders whose bucket is full again: a new entry would be the same. */
  #sweep(now: number): void {
    for (const [id, s] of this.#senders) if (s.tally === undefined && now - s.last >= s.refillMs) this.#senders.delete(id);
    this.#sweepAt = Math.max(1024, this.#senders.size * 2);
  }

  #close(sender: Sender, tally: Tally): void {
    sender.tally = undefined;
    this.#open.delete(sender);
    this.#write(tally.count === 1 ? tally.sample : summaryRow(tally));
  }
}

function atLeast(spec: RateSpec | undefined): RateSpec {
  if (spec === undefined) return MIN_REFUSAL_RATE;
  if (spec.perSecond >= MIN_REFUSAL_RATE.perSecond && spec.burst >= MIN_REFUSAL_RATE.burst) return spec;
  return { perSecond: Math.max(spec.perSecond, MIN_REFUSAL_RATE.perSecond), burst: Math.max(spec.burst, MIN_REFUSAL_RATE.burst) };
}

function count(tally: Tally, refusal: AttemptRecord, now: number): void {
  tally.count++;
  if (now > tally.last) tally.last = now;
  const code = refusal.code ?? 'INVALID_ARGUMENT';
  tally.codes.set(code, (tally.codes.get(code) ?? 0) + 1);
}

/** Refusals for want of a handler or a mailbox place: the policy allowed them (see Journal#refusal). */
const DELIVERY_CODES: ReadonlySet<string> = new Set<ErrorCode>(['NO_HANDLER', 'MAILBOX_FULL']);

/** The row of a summary: the first refusal's attempt, with the tally, the most frequent code and a reason that says it all. */
function summaryRow(tally: Tally): AttemptRecord {
  const byCount = [...tally.codes].sort((a, b) => b[1] - a[1]);
  const codes = Object.fromEntries(byCount) as Partial<Record<ErrorCode, number>>;
  const { sample } = tally;
  const refusals: RefusalSummary = { count: tally.count, first: sample.ts, last: tally.last, codes };
  const delivery = byCount.every(([code]) => DELIVERY_CODES.has(code));
  const { rule: _rule, outcome: _outcome, reason: firstReason, code: _code, ...attempt } = sample;
  const tallyText = byCount.map(([code, n]) => `${code} ×${n}`).join(', ');
  const reason =
    `${tally.count} refusals of ${sample.from} beyond its rate between ${isoTime(sample.ts)} and ${isoTime(tally.last)}, counted in this one row: ${tallyText}` +
    (firstReason !== undefined ? `; the first: ${firstReason}` : '');
  return {
    ...attempt,
    ts: tally.last,
    decision: delivery ? 'allowed' : 'denied',
    ...(delivery ? { outcome: 'failed' as const } : {}),
    code: byCount[0]![0],
    reason,
    refusals,
  };
}

function isoTime(ts: number): string {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toISOString();
}
