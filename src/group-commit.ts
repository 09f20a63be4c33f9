import type { AuditLog, AuditRecord } from './audit/types.js';
import { BusError } from './errors.js';

interface Entry {
  /** Index one past this entry's last record. */
  readonly end: number;
  readonly onCommit: (() => void) | undefined;
  readonly onFail: ((error: BusError) => void) | undefined;
}

/**
 * Audit before delivery, without a write per message: the records staged during one tick
 * are written in one transaction (chunks of at most `maxBatch`), and only after a chunk
 * commits do its callbacks run, which is where messages are delivered. If a write fails,
 * that chunk's callbacks get AUDIT_UNAVAILABLE instead; the next tick tries again.
 *
 * Flushes on a microtask, not a timer: nothing per message, and it runs under vitest fake
 * timers without anyone advancing them.
 */
export class GroupCommit {
  private records: AuditRecord[] = [];
  private entries: Entry[] = [];
  private scheduled = false;

  constructor(
    private log: AuditLog | undefined,
    private readonly maxBatch: number,
    private readonly onError: (error: Error, records: number) => void,
  ) {}

  /** Whether records are kept at all (false with `audit: false`: callers can skip building them). */
  get enabled(): boolean {
    return this.log !== undefined;
  }

  /** Queues records (may be none) and what to do once they are committed or refused. */
  stage(records: AuditRecord | readonly AuditRecord[] | undefined, onCommit?: () => void, onFail?: (error: BusError) => void): void {
    if (this.log !== undefined && records !== undefined) {
      if (Array.isArray(records)) for (const r of records) this.records.push(r);
      else this.records.push(records as AuditRecord);
    }
    if (onCommit !== undefined || onFail !== undefined || this.records.length > 0) {
      this.entries.push({ end: this.records.length, onCommit, onFail });
    }
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flush);
    }
  }

  /** Writes what is staged, then stops recording: used by close() before the log is closed. */
  shutdown(): void {
    this.flush();
    this.log = undefined;
  }

  /** Writes everything staged now, then runs the callbacks. Safe to call at any time. */
  readonly flush = (): void => {
    this.scheduled = false;
    while (this.entries.length > 0) {
      const records = this.records;
      const entries = this.entries;
      this.records = [];
      this.entries = [];
      this.commit(records, entries);
    }
  };

  private commit(records: AuditRecord[], entries: Entry[]): void {
    let start = 0; // first record of the chunk
    let first = 0; // first entry of the chunk
    for (let i = 0; i < entries.length; i++) {
      const end = entries[i]!.end;
      const last = i === entries.length - 1;
      if (!last && end - start < this.maxBatch) continue;
      const error = end > start ? this.write(records, start, end) : undefined;
      for (let j = first; j <= i; j++) {
        const entry = entries[j]!;
        try {
          if (error === undefined) entry.onCommit?.();
          else entry.onFail?.(error);
        } catch {
          // A callback is bus code that must not throw; never let one strand the others.
        }
      }
      start = end;
      first = i + 1;
    }
  }

  private write(records: AuditRecord[], start: number, end: number): BusError | undefined {
    const chunk = start === 0 && end === records.length ? records : records.slice(start, end);
    try {
      this.log!.append(chunk);
      return undefined;
    } catch (cause) {
      const error =
        cause instanceof BusError && cause.code === 'AUDIT_UNAVAILABLE'
          ? cause
          : new BusError('AUDIT_UNAVAILABLE', `audit log write failed, ${chunk.length} records refused: ${(cause as Error)?.message ?? cause}`, { cause });
      this.onError(error, chunk.length);
      return error;
    }
  }
}
