import { isAsyncAuditLog, type AsyncAuditLog, type AuditLog, type AuditRecord } from './audit/types.js';
import { BusError } from './errors.js';
import { FairYield } from './fair-yield.js';

interface Entry {
  /** How many of the staged records are this entry's. */
  readonly count: number;
  readonly onCommit: (() => void) | undefined;
  readonly onFail: ((error: BusError) => void) | undefined;
}

/**
 * At most this many records in one transaction of a log with its own thread (never splitting
 * one send's records): after a stall, what piled up goes over in a few bounded transactions.
 */
const MAX_TRANSACTION_RECORDS = 8192;

/**
 * Audit before delivery, without a write per message: the records staged during one tick
 * are written in one transaction (chunks of at most `maxBatch`), and only after a chunk
 * commits do its callbacks run, which is where messages are delivered. If a write fails,
 * that chunk's callbacks get AUDIT_UNAVAILABLE instead; the next tick tries again.
 *
 * With a log that appends on another thread ({@link AsyncAuditLog}), **one transaction is
 * in flight at a time**: everything staged while it commits forms the next one (no timers;
 * up to {@link MAX_TRANSACTION_RECORDS} records), handed over as soon as the log has
 * confirmed the previous one and that one's callbacks have run, so a synchronous handler's
 * reply rides in the very next transaction. A busier bus makes larger transactions, not
 * more of them.
 *
 * Flushes on a microtask, not a timer: nothing per message, and it runs under vitest fake
 * timers without anyone advancing them. After a slice of continuous work in one macrotask
 * (see {@link FairYield}), the flush waits for the next macrotask instead, so a sender that
 * loops cannot starve timers (deadlines, approval expiry) with a synchronous log or none.
 */
export class GroupCommit {
  private records: AuditRecord[] = [];
  private entries: Entry[] = [];
  private scheduled = false;
  /** Whether a transaction is with the log's thread (pipelined logs only). */
  private inFlight = false;
  /** Set while send() hands over: a log that answers at once (a closed log) must not re-enter it. */
  private sending = false;
  private readonly async: AsyncAuditLog | undefined;
  /** Chunks whose callbacks are waiting to run, in order; see settle(). */
  private readonly ready: { entries: readonly Entry[]; error: BusError | undefined }[] = [];
  private settling = false;
  /** Told how long each chunk took to commit (ms) and its records (the telemetry), when set. */
  onTimed: ((ms: number, records: number) => void) | undefined = undefined;

  constructor(
    private log: AuditLog | undefined,
    private readonly maxBatch: number,
    private readonly onError: (error: Error, records: number) => void,
    /** Moves the flush to the next macrotask after a slice of continuous work: timers fire under load. */
    private readonly fair: FairYield = new FairYield(),
  ) {
    this.async = log !== undefined && isAsyncAuditLog(log) ? log : undefined;
  }

  /** Whether records are kept at all (false with `audit: false`: callers can skip building them). */
  get enabled(): boolean {
    return this.log !== undefined;
  }

  /** Queues records (may be none) and what to do once they are committed or refused. */
  stage(records: AuditRecord | readonly AuditRecord[] | undefined, onCommit?: () => void, onFail?: (error: BusError) => void): void {
    let count = 0;
    if (this.log !== undefined && records !== undefined) {
      if (Array.isArray(records)) {
        for (const r of records) this.records.push(r);
        count = records.length;
      } else {
        this.records.push(records as AuditRecord);
        count = 1;
      }
    }
    if (onCommit !== undefined || onFail !== undefined || count > 0) this.entries.push({ count, onCommit, onFail });
    if (!this.scheduled) {
      this.scheduled = true;
      this.fair.schedule(this.flushSoon);
    } else if (this.entries.length === this.maxBatch) {
      queueMicrotask(this.flushSoon); // a yielded flush must not let a sender that never waits pile up records
    }
  }

  /** Writes everything staged now and waits for it, then runs the callbacks. Safe to call at any time. */
  readonly flush = (): void => {
    this.scheduled = false;
    // Inside a callback (settling), the outer loop runs the callbacks of what this commits.
    if (this.async === undefined) {
      this.writeAll();
      return;
    }
    while (this.entries.length > 0 || this.inFlight) {
      this.send();
      this.async.drain();
    }
  };

  /** Writes what is staged, then stops recording: used by close() before the log is closed. */
  shutdown(): void {
    this.flush();
    this.log = undefined;
  }

  private readonly flushSoon = (): void => {
    this.scheduled = false;
    if (this.async !== undefined) this.send();
    else this.writeAll();
  };

  /** Takes the staged entries from the front until they hold `limit` records (or the one send that crosses it). */
  private nextChunk(limit: number): { records: AuditRecord[]; entries: Entry[] } {
    let n = 0;
    let count = 0;
    while (n < this.entries.length && (count < limit || count === 0)) count += this.entries[n++]!.count;
    const entries = this.entries.splice(0, n);
    const records = count === this.records.length ? this.records.splice(0) : this.records.splice(0, count);
    return { records, entries };
  }

  private writeAll(): void {
    while (this.entries.length > 0) {
      const { records, entries } = this.nextChunk(this.maxBatch);
      this.settle(entries, records.length > 0 ? this.write(records) : undefined);
    }
  }

  /**
   * Pipelined: when no transaction is in flight, hands everything staged to the log's thread
   * as the next one. Its answer runs its callbacks, then hands over what was staged
   * meanwhile together with what those callbacks staged (replies of synchronous handlers).
   */
  private send(): void {
    const log = this.async!;
    this.sending = true;
    try {
      this.handOver(log);
    } finally {
      this.sending = false;
    }
  }

  private handOver(log: AsyncAuditLog): void {
    while (!this.inFlight && this.entries.length > 0) {
      const { records, entries } = this.nextChunk(MAX_TRANSACTION_RECORDS);
      if (records.length === 0) {
        this.settle(entries, undefined); // nothing in flight before them: their turn is now
        continue;
      }
      this.inFlight = true;
      const started = this.onTimed === undefined ? 0 : performance.now();
      let answered = false;
      log.appendAsync(records, (error) => {
        if (answered) return; // a log answers once; a second answer must not free the slot twice
        answered = true;
        this.inFlight = false;
        if (error === undefined) this.onTimed?.(performance.now() - started, records.length);
        const failed = error === undefined ? undefined : this.failure(error, records.length);
        // Deliver first: what a synchronous handler stages (its reply) joins the very next
        // transaction, which then goes over at once (it only waited for this one).
        this.settle(entries, failed);
        if (!this.sending) this.send();
        if (this.entries.length > 0 && !this.inFlight && !this.scheduled) {
          this.scheduled = true;
          this.fair.schedule(this.flushSoon);
        }
      });
    }
  }

  /**
   * Runs a committed (or refused) chunk's callbacks. A callback can start a handler that
   * flushes again (getMessageLog does): that inner flush writes its records but leaves their
   * callbacks to this loop, so messages are always delivered in the order they were staged.
   */
  private settle(entries: readonly Entry[], error: BusError | undefined): void {
    this.ready.push({ entries, error });
    if (this.settling) return;
    this.settling = true;
    try {
      for (let chunk = this.ready.shift(); chunk !== undefined; chunk = this.ready.shift()) {
        for (const entry of chunk.entries) {
          try {
            if (chunk.error === undefined) entry.onCommit?.();
            else entry.onFail?.(chunk.error);
          } catch (e) {
            // Bus code that must not throw; say so rather than hide it, and go on with the others.
            process.emitWarning(`agent-switchboard: an audit commit callback threw: ${(e as Error)?.message ?? String(e)}`, { code: 'SWITCHBOARD_INTERNAL' });
          }
        }
      }
    } finally {
      this.settling = false;
    }
  }

  private write(records: AuditRecord[]): BusError | undefined {
    try {
      const started = this.onTimed === undefined ? 0 : performance.now();
      this.log!.append(records);
      this.onTimed?.(performance.now() - started, records.length);
      return undefined;
    } catch (cause) {
      return this.failure(cause, records.length);
    }
  }

  private failure(cause: unknown, records: number): BusError {
    const error =
      cause instanceof BusError && cause.code === 'AUDIT_UNAVAILABLE'
        ? cause
        : new BusError('AUDIT_UNAVAILABLE', `audit log write failed, ${records} records refused: ${(cause as Error)?.message ?? cause}`, { cause });
    this.onError(error, records);
    return error;
  }
}
