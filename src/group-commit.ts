import { isAsyncAuditLog, type AsyncAuditLog, type AuditLog, type AuditRecord } from './audit/types.js';
import { BusError } from './errors.js';
import { FairYield } from './fair-yield.js';
import { escapeText } from './escape-text.js';

interface Entry {
  /** How many of the staged records are this entry's. */
  readonly count: number;
  readonly onCommit: (() => void) | undefined;
  readonly onFail: ((error: BusError) => void) | undefined;
}

/** Batches a log with pipelined appends may have in flight before new records wait. */
const MAX_IN_FLIGHT = 8;

/**
 * At most this many records nobody waits for (outcomes, approval decisions, refusals) are
 * held after their write failed, to be written once the log works again; beyond it the
 * oldest are dropped (and counted in a warning).
 */
export const MAX_HELD_RECORDS = 10_000;

/** How often held records are tried again while nothing else is written. */
const RETRY_MS = 1_000;

/**
 * Audit before delivery, without a write per message: the records staged during one tick
 * are written in one transaction (chunks of at most `maxBatch`), and only after a chunk
 * commits do its callbacks run, which is where messages are delivered. If a write fails,
 * that chunk's callbacks get AUDIT_UNAVAILABLE instead; the next tick tries again.
 *
 * With a log that appends on another thread ({@link AsyncAuditLog}), up to
 * {@link MAX_IN_FLIGHT} chunks are in flight at once and records staged meanwhile form the
 * next, larger chunk: the bus keeps working while the worker commits.
 *
 * Flushes on a microtask, not a timer: nothing per message, and it runs under vitest fake
 * timers without anyone advancing them. After a slice of continuous work in one macrotask
 * (see {@link FairYield}), counted in sends settled, the rest waits for the next macrotask,
 * so however many senders loop, timers and I/O (deadlines, approval expiry) get a turn
 * after at most a slice plus one chunk, in every audit mode.
 */
export class GroupCommit {
  private records: AuditRecord[] = [];
  private entries: Entry[] = [];
  private scheduled = false;
  private inFlight = 0;
  private readonly async: AsyncAuditLog | undefined;
  /** Chunks whose callbacks are waiting to run, in order; see runReady(). */
  private readonly ready: { entries: readonly Entry[]; error: BusError | undefined }[] = [];
  private settling = false;
  private writingAhead = false;
  /** Told how long each chunk took to commit (ms) and its records (the telemetry), when set. */
  onTimed: ((ms: number, records: number) => void) | undefined = undefined;
  /** Records of failed chunks that nobody waited for: written first once the log works again. */
  private held: AuditRecord[] = [];
  /** Held records dropped beyond {@link MAX_HELD_RECORDS}, not yet reported. */
  private droppedHeld = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;

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
    } else if (this.records.length >= this.maxBatch && !this.writingAhead) {
      // A flush that waits for the next macrotask must not let a sender that never waits pile
      // up records: write them now, but leave their callbacks (deliveries) to that flush.
      this.writingAhead = true;
      queueMicrotask(this.writeAhead);
    }
  }

  /** Writes everything staged now and waits for it, then runs the callbacks. Safe to call at any time. */
  readonly flush = (): void => {
    this.scheduled = false;
    if (!this.settling) this.retryHeld();
    // Inside a callback (settling), only write: the outer loop runs what this commits.
    while (this.entries.length > 0 || (!this.settling && (this.inFlight > 0 || this.ready.length > 0))) {
      if (this.async !== undefined) {
        this.send(Infinity);
        this.async.drain();
        this.runReady(false);
      } else {
        this.writeAll(false);
      }
    }
  };

  /** Writes what is staged, then stops recording: used by close() before the log is closed. */
  shutdown(): void {
    this.flush();
    if (this.async !== undefined && this.held.length > 0) this.async.drain();
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const lost = this.held.length + this.droppedHeld;
    if (lost > 0) {
      process.emitWarning(
        `agent-switchboard: ${lost} audit records (outcomes, decisions, refusals) could not be written before close: the log kept failing; a file log records the requests among them as interrupted when it is opened again`,
        { code: 'SWITCHBOARD_AUDIT_LOST' },
      );
    }
    this.held = [];
    this.droppedHeld = 0;
    this.log = undefined;
  }

  /** How many records wait to be written again (after a failed write). */
  get heldCount(): number {
    return this.held.length;
  }

  private readonly flushSoon = (): void => {
    this.scheduled = false;
    if (this.async !== undefined) {
      this.runReady(true);
      this.send(MAX_IN_FLIGHT);
    } else {
      this.writeAll(true);
    }
  };

  /** Writes (or hands to the log's thread) what is staged in chunks, leaving their callbacks for the next flush (see stage()). */
  private readonly writeAhead = (): void => {
    this.writingAhead = false;
    if (this.async !== undefined) this.send(MAX_IN_FLIGHT);
    else if (this.log !== undefined) while (this.records.length >= this.maxBatch) this.writeChunk();
  };

  /** Takes the staged entries from the front, as many as fill one chunk (of records, and of sends: with no log, entries have none). */
  private nextChunk(): { records: AuditRecord[]; entries: Entry[] } {
    let n = 0;
    let count = 0;
    while (n < this.entries.length && n < this.maxBatch && (count < this.maxBatch || count === 0)) count += this.entries[n++]!.count;
    const entries = this.entries.splice(0, n);
    const records = count === this.records.length ? this.records.splice(0) : this.records.splice(0, count);
    return { records, entries };
  }

  /**
   * Writes the staged chunks and runs their callbacks, one chunk at a time. With `fair`, once
   * this macrotask has had its slice (counted in sends settled, see {@link FairYield.spend}),
   * the rest waits for the next macrotask: however many senders share a flush, timers and
   * I/O get a turn after at most a slice plus one chunk.
   */
  private writeAll(fair: boolean): void {
    if (this.entries.length > 0) this.retryHeld();
    if (this.settling) {
      // Inside a callback: only write; the outer loop runs what this commits, in order.
      while (this.entries.length > 0) this.writeChunk();
      return;
    }
    // Opens the slice in a macrotask of its own (so that this flush's work counts), or finds it over.
    if (fair && this.fair.spend(0)) return this.later();
    while (this.entries.length > 0 || this.ready.length > 0) {
      if (this.ready.length === 0) this.writeChunk();
      const ran = this.runChunk();
      if (fair && (this.entries.length > 0 || this.ready.length > 0) && this.fair.spend(ran)) return this.later();
      // Rows the callbacks staged have a flush of their own queued (stage() scheduled it):
      // what the callbacks queued before them runs first. A reply sent ahead of its row
      // (replyAhead) queued its socket flush then, and leaves before that row is written
      // instead of after. (Entries without rows cost nothing to write: they go on here.)
      if (fair && this.scheduled && this.ready.length === 0 && this.records.length > 0) return;
    }
  }

  /** The slice is over: the rest waits for a flush on the next macrotask. */
  private later(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.fair.schedule(this.flushSoon);
  }

  /** Writes one chunk from the front of what is staged; its callbacks wait in `ready`. */
  private writeChunk(): void {
    const { records, entries } = this.nextChunk();
    const error = records.length > 0 ? this.write(records) : undefined;
    if (error !== undefined) this.hold(records, entries);
    this.ready.push({ entries, error });
  }

  /**
   * Keeps the records of a failed chunk that no callback answers for (an outcome, a
   * decision, a refusal: the caller was already told), so they are written later rather
   * than lost. Records with an `onFail` are refused to their sender instead.
   */
  private hold(records: readonly AuditRecord[], entries: readonly Entry[]): void {
    let at = 0;
    for (const entry of entries) {
      if (entry.onFail === undefined) for (let i = 0; i < entry.count; i++) this.held.push(records[at + i]!);
      at += entry.count;
    }
    this.bound();
  }

  private bound(): void {
    const over = this.held.length - MAX_HELD_RECORDS;
    if (over > 0) {
      this.held.splice(0, over);
      this.droppedHeld += over;
    }
    if (this.held.length > 0 && this.retryTimer === undefined && this.log !== undefined) {
      this.retryTimer = setTimeout(this.retryLater, RETRY_MS);
      this.retryTimer.unref?.();
    }
  }

  private readonly retryLater = (): void => {
    this.retryTimer = undefined;
    this.retryHeld();
  };

  /**
   * Writes the held records (before anything newer), or keeps holding them if the log still
   * fails. A synchronous log gets them in transactions of at most `maxBatch` records, as any
   * chunk (up to {@link MAX_HELD_RECORDS} in one would be far larger than the file log
   * assumes), stopping at the first that fails. A pipelined log gets them in one request,
   * which its thread writes in one transaction: slices in flight at once could fail one and
   * commit the next, and the log would hold them out of order.
   */
  private retryHeld(): void {
    if (this.held.length === 0 || this.log === undefined) return;
    const records = this.held;
    this.held = [];
    const size = Math.max(1, this.maxBatch);
    if (this.async !== undefined) {
      // One request: the worker writes it in one transaction, all or nothing, so what fails is
      // held again whole and in order (slices in flight at once could fail one and commit the next).
      this.inFlight++;
      this.async.appendAsync(records, (error) => {
        this.inFlight--;
        if (error !== undefined) this.holdAgain(records);
        else this.written(records.length);
      });
      return;
    }
    for (let at = 0; at < records.length; at += size) {
      const slice = at === 0 && records.length <= size ? records : records.slice(at, at + size);
      try {
        this.log.append(slice);
      } catch {
        this.holdAgain(at === 0 ? records : records.slice(at));
        return;
      }
      this.written(slice.length);
    }
  }

  private holdAgain(records: AuditRecord[]): void {
    this.held = this.held.length === 0 ? records : records.concat(this.held);
    this.bound();
  }

  /** Held records were written: say how many were dropped meanwhile, if any. */
  private written(count: number): void {
    if (this.droppedHeld === 0 || count === 0) return;
    const dropped = this.droppedHeld;
    this.droppedHeld = 0;
    process.emitWarning(`agent-switchboard: the audit log works again; ${dropped} audit records held while it failed were dropped (more than ${MAX_HELD_RECORDS} waited)`, {
      code: 'SWITCHBOARD_AUDIT_LOST',
    });
  }

  /** Runs the callbacks of the oldest written chunk; returns how many entries it had. */
  private runChunk(): number {
    const chunk = this.ready.shift();
    if (chunk === undefined) return 0;
    this.settling = true;
    try {
      this.run(chunk);
    } finally {
      this.settling = false;
    }
    return chunk.entries.length;
  }

  /** Pipelined: hands chunks to the log's thread while fewer than `limit` are in flight. */
  private send(limit: number): void {
    const log = this.async!;
    if (this.entries.length > 0 && this.inFlight < limit) this.retryHeld();
    while (this.entries.length > 0 && this.inFlight < limit) {
      const { records, entries } = this.nextChunk();
      if (records.length === 0) {
        this.ready.push({ entries, error: undefined });
        this.runReady(true);
        continue;
      }
      this.inFlight++;
      const started = this.onTimed === undefined ? 0 : performance.now();
      log.appendAsync(records, (error) => {
        this.inFlight--;
        if (error === undefined) this.onTimed?.(performance.now() - started, records.length);
        else this.hold(records, entries);
        this.ready.push({ entries, error: error === undefined ? undefined : this.failure(error, records.length) });
        this.runReady(true);
        if (this.entries.length > 0 && !this.scheduled) {
          this.scheduled = true;
          this.fair.schedule(this.flushSoon);
        }
      });
    }
  }

  /**
   * Runs the callbacks of committed (or refused) chunks, oldest first; with `fair`, only until
   * this macrotask has had its slice, leaving the rest to a flush in the next one. A callback
   * can start a handler that flushes again (getMessageLog does): that inner flush writes its
   * records but leaves their callbacks to the outer loop, so messages are always delivered in
   * the order they were staged.
   */
  private runReady(fair: boolean): void {
    if (this.settling || this.ready.length === 0) return;
    if (fair && this.fair.spend(0)) return this.later();
    while (this.ready.length > 0) {
      const ran = this.runChunk();
      if (fair && this.ready.length > 0 && this.fair.spend(ran)) return this.later();
    }
  }

  private run(chunk: { entries: readonly Entry[]; error: BusError | undefined }): void {
    for (const entry of chunk.entries) {
      try {
        if (chunk.error === undefined) entry.onCommit?.();
        else entry.onFail?.(chunk.error);
      } catch (e) {
        // Bus code that must not throw; say so rather than hide it, and go on with the others.
        process.emitWarning(`agent-switchboard: an audit commit callback threw: ${escapeText((e as Error)?.message ?? String(e))}`, { code: 'SWITCHBOARD_INTERNAL' });
      }
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
