import { createHash } from 'node:crypto';
import { COL } from '../audit/migrations.js';
import { BusError, ErrorCode, describe } from '../errors.js';
import type { PipelineConfig } from './config.js';
import type { Ledger } from './ledger.js';
import type { PendingRequest } from './records.js';

/** How often a result decided in another process (or held here as a notify) is looked for in the log. */
const POLL_MS = 200;

/** What the log says of one message: its result, or that it has none yet. */
type Verdict = { readonly value: unknown } | { readonly error: BusError } | 'pending';

interface Follower {
  readonly id: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: BusError) => void;
}

const CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/**
 * `bus.result(messageId)`: the reply or the error of any message of the log. A message in
 * flight here is observed; a finished one is read from the log (a restored message's reply
 * is kept there until read); one still open elsewhere (held, or running in another process
 * on the same file) is looked for again until it ends or the bus closes.
 */
export class Results {
  readonly #config: PipelineConfig;
  readonly #ledger: Ledger;
  readonly #followers = new Set<Follower>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(config: PipelineConfig, ledger: Ledger) {
    this.#config = config;
    this.#ledger = ledger;
  }

  result(id: unknown): Promise<unknown> {
    if (typeof id !== 'string' || id.length === 0 || id.length > 256) {
      return Promise.reject(new BusError('INVALID_ARGUMENT', `result(messageId): expected a message id (1 to 256 characters), got ${describe(id)}`));
    }
    if (this.#closed) return Promise.reject(new BusError('CLOSED', 'the orchestrator is closed'));
    const p = this.#ledger.get(id);
    if (p !== undefined) return this.#observe(p);
    return new Promise((resolve, reject) => {
      const verdict = this.#read(id);
      if (verdict === 'pending') this.#add({ id, resolve, reject });
      else if ('error' in verdict) reject(verdict.error);
      else resolve(verdict.value);
    });
  }

  /**
   * A live request whose hold another process decided: its sender is answered from the log
   * once that process records the outcome (it keeps the reply, its sender being absent there).
   */
  follow(p: PendingRequest): void {
    p.state = 'settled';
    if (this.#closed) {
      p.reject(closed(p.envelope.id));
      return;
    }
    this.#add({ id: p.envelope.id, resolve: (value) => p.resolve(value), reject: (error) => p.reject(error) });
  }

  /** Fails every waiter with CLOSED and stops looking. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const followers = [...this.#followers];
    this.#followers.clear();
    for (const f of followers) f.reject(closed(f.id));
  }

  #observe(p: PendingRequest): Promise<unknown> {
    return new Promise((resolve, reject) => {
      (p.observers ??= []).push((error, value) => {
        if (error !== undefined) {
          reject(error);
          return;
        }
        // Read here: the copy kept for a later reader goes, as a read from the log would take it.
        if (p.keepReply) this.#takeReply(p.envelope.id);
        resolve(value);
      });
    });
  }

  #takeReply(id: string): string | undefined {
    try {
      return this.#config.holdStore?.keptReply(id, true);
    } catch {
      return undefined;
    }
  }

  #add(follower: Follower): void {
    this.#followers.add(follower);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#followers.size === 0 || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // One read per message, however many wait for it: a read may scan the log.
      const verdicts = new Map<string, Verdict>();
      for (const f of [...this.#followers]) {
        let verdict = verdicts.get(f.id);
        if (verdict === undefined) {
          try {
            verdict = this.#read(f.id);
          } catch (error) {
            verdict = { error: error instanceof BusError ? error : new BusError('AUDIT_UNAVAILABLE', String(error)) };
          }
          verdicts.set(f.id, verdict);
        }
        if (verdict === 'pending') continue;
        this.#followers.delete(f);
        if ('error' in verdict) f.reject(verdict.error);
        else f.resolve(verdict.value);
      }
      this.#schedule();
    }, POLL_MS);
    this.#timer.unref?.();
  }

  /** The message's result as the log records it. Throws AUDIT_UNAVAILABLE when the log cannot be read. */
  #read(id: string): Verdict {
    const store = this.#config.holdStore;
    if (store === undefined) {
      return { error: new BusError('INVALID_ARGUMENT', `result("${id}"): no message of that id is in flight, and this bus's audit log cannot be searched (audit: false or a custom log)`, { messageId: id }) };
    }
    this.#config.commit.flush();
    const kept = store.keptReply(id, false);
    const rows = store.messageRecords(id);
    if (kept !== undefined) {
      // The kept copy sits beside the chain, not in it: only the hash its reply row records vouches for it.
      if (!replyHashes(id, rows).has(createHash('sha256').update(kept).digest('hex'))) {
        return { error: new BusError('INVALID_PAYLOAD', `result("${id}"): the kept reply does not match the hash its reply row records (the file was edited)`, { messageId: id }) };
      }
      this.#takeReply(id);
      return { value: deepFreeze(JSON.parse(kept)) };
    }
    return verdictOf(id, rows);
  }
}

/**
 * The result the rows of one message record: the refusal or failure (as the BusError the
 * sender got), a notify's or reply's delivery (undefined), or 'pending' while it is held or
 * in flight. A reply that went to a live sender is not kept: that is an error saying so.
 */
export function verdictOf(id: string, rows: readonly unknown[][]): Verdict {
  const attempts = rows.filter((r) => r[COL.kind] === 'attempt' && r[COL.message_id] === id);
  if (attempts.length === 0) return { error: new BusError('INVALID_ARGUMENT', `result("${id}"): no message of that id is in the audit log (unknown, or removed by retention)`, { messageId: id }) };
  const type = attempts[0]![COL.type];
  let open = false;
  let firstError: BusError | undefined;
  for (const attempt of attempts) {
    const to = attempt[COL.recipient];
    if (attempt[COL.decision] === 'denied') {
      firstError ??= errorOf(id, attempt);
      continue;
    }
    const later = rows.filter((r) => r[COL.kind] === 'outcome' && r[COL.message_id] === id && r[COL.recipient] === to);
    const last = later[later.length - 1] ?? (attempt[COL.outcome] === 'failed' ? attempt : undefined);
    const outcome = last?.[COL.outcome];
    if (outcome === 'failed' || outcome === 'expired' || outcome === 'cancelled' || (typeof outcome === 'string' && !KNOWN_OUTCOMES.has(outcome))) {
      firstError ??= errorOf(id, last!);
      continue;
    }
    if (type === 'notify' || type === 'reply') {
      if (attempt[COL.decision] === 'pending' && outcome !== 'delivered') open = true;
      continue;
    }
    const replied = rows.some((r) => r[COL.kind] === 'attempt' && r[COL.type] === 'reply' && r[COL.in_reply_to] === id && r[COL.decision] === 'allowed');
    if (replied) {
      return { error: new BusError('INVALID_ARGUMENT', `result("${id}"): it was answered, but the reply went to its sender and is not kept (replies are kept for restored messages, until read)`, { messageId: id }) };
    }
    open = true;
  }
  if (type === 'ask' || type === 'delegate') return firstError !== undefined ? { error: firstError } : 'pending';
  if (open) return 'pending';
  return firstError !== undefined && attempts.every((a) => a[COL.decision] === 'denied') ? { error: firstError } : { value: undefined };
}

/** The payload hashes of the replies to `id` the log records. */
function replyHashes(id: string, rows: readonly unknown[][]): Set<unknown> {
  return new Set(rows.filter((r) => r[COL.kind] === 'attempt' && r[COL.type] === 'reply' && r[COL.in_reply_to] === id && r[COL.decision] === 'allowed').map((r) => r[COL.payload_hash]));
}

const KNOWN_OUTCOMES: ReadonlySet<string> = new Set(['delivered', 'replied', 'late-reply']);

function errorOf(id: string, row: readonly unknown[]): BusError {
  const code = row[COL.code];
  const reason = row[COL.reason];
  // An `interrupted` outcome carries no code: its process stopped without closing, as if closed.
  const fallback: ErrorCode = row[COL.outcome] === 'interrupted' ? 'CLOSED' : 'CANCELLED';
  return new BusError(typeof code === 'string' && CODES.has(code) ? (code as ErrorCode) : fallback, typeof reason === 'string' ? reason : `message ${id} ended ${String(row[COL.outcome] ?? row[COL.decision])}`, {
    messageId: id,
  });
}

function closed(id: string): BusError {
  return new BusError('CLOSED', `the orchestrator closed before the result of ${id} was known`, { messageId: id });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
