import type { BusEventSource, BusEvents, Clock, Envelope, ErrorCode, MessageType } from '../index.js';
import { clockOf, fakeableClock } from './preset.js';

/**
 * What happened to a message, one per bus event:
 *
 * | entry | bus event | |
 * |---|---|---|
 * | `sent` | `message:sent` | passed every check; on its way (or about to be held) |
 * | `delivered` | `message:delivered` | audited and handed to the recipient's mailbox |
 * | `denied` | `message:denied` | refused: `code`, `reason`, `rule` (policy) |
 * | `held` | `approval:requested` | waiting for a human: `approvalId`, `rule` |
 * | `approved` / `rejected` | `approval:decided` | a human decided: `by`, `note` / `reason` |
 * | `approval-expired` / `approval-cancelled` | `approval:decided` | nobody decided in time / the sender, recipient or bus went away |
 * | `replied` | `message:replied` | the reply (type `reply`) reached the asker |
 * | `expired` | `message:expired` | `code` `TIMEOUT`, or `APPROVAL_EXPIRED` |
 * | `failed` | `message:failed` | handler threw, cancelled, closed, …: `code`, `reason` |
 * | `dead` | `message:dead` | a late or extra reply, dropped; `reason` |
 */
export type TranscriptEvent =
  | 'sent'
  | 'delivered'
  | 'denied'
  | 'held'
  | 'approved'
  | 'rejected'
  | 'approval-expired'
  | 'approval-cancelled'
  | 'replied'
  | 'expired'
  | 'failed'
  | 'dead';

/**
 * One thing that crossed the bus: plain, frozen data, easy to `toEqual`, `toMatchObject`
 * and snapshot. The message fields are the envelope's (a `denied` entry has only those an
 * attempt has: `id`, `type`, `from`, `to`, `intent`); the rest are there when they apply.
 */
export interface TranscriptEntry {
  /** What happened. */
  readonly event: TranscriptEvent;
  /**
   * Ms since `recordTranscript()` was called, on the bus's clock. Only with
   * `recordTranscript(bus, { time: true })`: under fake timers it is stable, under real
   * ones it is not, and it would make snapshots flaky.
   */
  readonly at?: number;
  readonly id: string;
  readonly type: MessageType;
  readonly from: string;
  readonly to: string;
  readonly intent: string;
  readonly payload?: unknown;
  readonly conversationId?: string;
  readonly causationId?: string;
  readonly inReplyTo?: string;
  readonly depth?: number;
  /** The error code of a denial, expiry or failure (and of the approval expiry). */
  readonly code?: ErrorCode;
  /** Why: the refusal's or failure's message, a rejection's or cancellation's reason. */
  readonly reason?: string;
  /** The label of the deciding rule (denied by policy, held). */
  readonly rule?: string;
  /** For held and decided approvals: the id to pass to `bus.approvals.approve()` / `reject()`. */
  readonly approvalId?: string;
  /** Who approved or rejected. */
  readonly by?: string;
  /** The approver's note. */
  readonly note?: string;
}

/** An audit write that failed (`audit:error`); its messages were refused. */
export interface TranscriptAuditError {
  /** As {@link TranscriptEntry.at}: only with `{ time: true }`. */
  readonly at?: number;
  readonly message: string;
  readonly records: number;
}

type OneOrMany<T> = T | readonly T[];

/** Which entries: every given field must match (an array matches any of its values). */
export interface TranscriptQuery {
  event?: OneOrMany<TranscriptEvent>;
  from?: OneOrMany<string>;
  to?: OneOrMany<string>;
  type?: OneOrMany<MessageType>;
  intent?: OneOrMany<string>;
  /** The message id. */
  id?: OneOrMany<string>;
  conversationId?: OneOrMany<string>;
  code?: OneOrMany<ErrorCode>;
}

/** How {@link Transcript.lines} writes each entry. */
export interface LineOptions {
  /** Start each line with the message id: `msg-1 research → writer …`. @default false */
  ids?: boolean;
  /**
   * Start each line with the entry's time: `+1000ms research → writer …`. Needs a
   * transcript recorded with `{ time: true }`. @default false
   */
  time?: boolean;
}

/** Options of {@link recordTranscript}. */
export interface TranscriptOptions {
  /**
   * Record when each entry happened (`at`, ms since the transcript started). Turn it on
   * under fake timers, where fake time makes it exact and stable; under real timers it
   * varies from run to run. @default false
   */
  time?: boolean;
  /** The clock for `at`. @default the test bus's clock (`createTestBus`), else `Date.now` */
  clock?: Clock;
}

/** Everything that crossed a bus since {@link recordTranscript}, in order. */
export interface Transcript {
  /** Every entry, oldest first. A live, read-only list. */
  readonly entries: readonly TranscriptEntry[];
  /** Audit write failures (`audit:error`), oldest first. */
  readonly auditErrors: readonly TranscriptAuditError[];
  /** The entries matching `query`, in order. */
  filter(query?: TranscriptQuery): TranscriptEntry[];
  /** The last entry matching `query`, or undefined. */
  last(query?: TranscriptQuery): TranscriptEntry | undefined;
  /**
   * One compact line per entry: `research → writer ask clarify delivered`, followed by
   * the code (`denied POLICY_DENIED`, `expired TIMEOUT`) or who decided (`approved by
   * alice`). Stable with the preset's ids and clock, so good for `toEqual` and snapshots.
   */
  lines(query?: TranscriptQuery, options?: LineOptions): string[];
  /** `lines()` joined with newlines: for `toMatchInlineSnapshot()`. */
  text(query?: TranscriptQuery, options?: LineOptions): string;
  /** Forgets the entries so far; recording goes on. */
  clear(): void;
  /** Unsubscribes from the bus; the entries stay. Idempotent. */
  stop(): void;
}

/** What the transcript subscribes to: a bus, or anything with its `events`. */
export type TranscriptSource = { readonly events: BusEventSource };

function envelopeFields(e: Envelope): Omit<TranscriptEntry, 'event' | 'at'> {
  const out: { -readonly [K in keyof TranscriptEntry]?: TranscriptEntry[K] } = {
    id: e.id,
    type: e.type,
    from: e.from,
    to: e.to,
    intent: e.intent,
    payload: e.payload,
    conversationId: e.conversationId,
  };
  if (e.causationId !== undefined) out.causationId = e.causationId;
  if (e.inReplyTo !== undefined) out.inReplyTo = e.inReplyTo;
  out.depth = e.depth;
  return out as Omit<TranscriptEntry, 'event' | 'at'>;
}

function matches<T>(want: OneOrMany<T> | undefined, value: T | undefined): boolean {
  if (want === undefined) return true;
  if (Array.isArray(want)) return (want as readonly T[]).includes(value as T);
  return want === value;
}

function select(entries: readonly TranscriptEntry[], q: TranscriptQuery = {}): TranscriptEntry[] {
  return entries.filter(
    (e) =>
      matches(q.event, e.event) &&
      matches(q.from, e.from) &&
      matches(q.to, e.to) &&
      matches(q.type, e.type) &&
      matches(q.intent, e.intent) &&
      matches(q.id, e.id) &&
      matches(q.conversationId, e.conversationId) &&
      matches(q.code, e.code),
  );
}

/** One entry as a line: `research → writer ask clarify denied POLICY_DENIED`. */
export function formatEntry(e: TranscriptEntry, options: LineOptions = {}): string {
  let line = `${e.from} → ${e.to} ${e.type} ${e.intent} ${e.event}`;
  if (e.code !== undefined) line += ` ${e.code}`;
  if (e.by !== undefined && (e.event === 'approved' || e.event === 'rejected')) line += ` by ${e.by}`;
  if (options.ids === true) line = `${e.id} ${line}`;
  if (options.time === true) {
    if (e.at === undefined) throw new Error('transcript lines: { time: true } needs a transcript recorded with recordTranscript(bus, { time: true })');
    line = `+${e.at}ms ${line}`;
  }
  return line;
}

/**
 * Starts recording everything that crosses `bus`: every envelope sent, delivered, replied,
 * expired, failed or dead, every refusal (with code and rule), every hold and approval
 * decision, in the order the bus emitted them. Call it before the sends you want to see.
 * It stops by itself when the bus closes; `stop()` stops it sooner.
 *
 * With {@link createTestBus} (ids `msg-1`, …), the entries and lines are the same on every
 * run, so they can be snapshotted. With `{ time: true }` each entry also says when it
 * happened (`at`), which is stable under fake timers.
 *
 * @example
 * const transcript = recordTranscript(bus);
 * await research.ask('writer', 'clarify', { q: 'Audience?' });
 * expect(transcript.lines()).toEqual([
 *   'research → writer ask clarify sent',
 *   'research → writer ask clarify delivered',
 *   'writer → research reply clarify replied',
 * ]);
 * expect(transcript.filter({ event: 'denied' })).toEqual([]);
 * expect(transcript.text({ event: ['delivered', 'replied'] }, { ids: true })).toMatchInlineSnapshot();
 */
export function recordTranscript(bus: TranscriptSource, options: TranscriptOptions = {}): Transcript {
  const clock = options.clock ?? clockOf(bus) ?? fakeableClock;
  const timed = options.time === true;
  const start = clock.now();
  const entries: TranscriptEntry[] = [];
  const auditErrors: TranscriptAuditError[] = [];
  const at = (): { at?: number } => (timed ? { at: clock.now() - start } : {});
  const push = (event: TranscriptEvent, fields: Omit<TranscriptEntry, 'event' | 'at'>): void => {
    entries.push(Object.freeze({ event, ...at(), ...fields }));
  };

  // Every event about messages and approvals; not `agent:lost` nor `operator:refused` (no message crossed), which the bus warns about when nobody listens, nor `audit:backpressure` (messages only wait).
  const listeners: { [K in Exclude<keyof BusEvents, 'agent:lost' | 'operator:refused' | 'audit:backpressure'>]: (event: BusEvents[K]) => void } = {
    'message:sent': ({ envelope }) => push('sent', envelopeFields(envelope)),
    'message:delivered': ({ envelope }) => push('delivered', envelopeFields(envelope)),
    'message:denied': ({ attempt, code, reason, rule }) =>
      push('denied', {
        id: attempt.id,
        type: attempt.type,
        from: attempt.from,
        to: attempt.to,
        intent: attempt.intent,
        code,
        reason,
        ...(rule !== undefined ? { rule } : {}),
      }),
    'approval:requested': ({ approval }) =>
      push('held', { ...envelopeFields(approval.envelope), approvalId: approval.id, ...(approval.rule !== undefined ? { rule: approval.rule } : {}) }),
    'approval:decided': ({ approval, decision, by, note, reason }) => {
      const event: TranscriptEvent = decision === 'approved' || decision === 'rejected' ? decision : decision === 'expired' ? 'approval-expired' : 'approval-cancelled';
      push(event, {
        ...envelopeFields(approval.envelope),
        approvalId: approval.id,
        ...(decision === 'expired' ? { code: 'APPROVAL_EXPIRED' as const } : {}),
        ...(by !== undefined ? { by } : {}),
        ...(note !== undefined ? { note } : {}),
        ...(reason !== undefined ? { reason } : {}),
      });
    },
    'message:replied': ({ envelope }) => push('replied', envelopeFields(envelope)),
    'message:expired': ({ envelope, code }) => push('expired', { ...envelopeFields(envelope), code }),
    'message:failed': ({ envelope, code, reason }) => push('failed', { ...envelopeFields(envelope), code, reason }),
    'message:dead': ({ envelope, reason }) => push('dead', { ...envelopeFields(envelope), reason }),
    'audit:error': ({ error, records }) => {
      auditErrors.push(Object.freeze({ ...at(), message: error.message, records }));
    },
  };

  const names = Object.keys(listeners) as (keyof typeof listeners)[];
  for (const name of names) bus.events.on(name, listeners[name] as never);
  let stopped = false;

  return Object.freeze({
    entries,
    auditErrors,
    filter: (query?: TranscriptQuery) => select(entries, query),
    last: (query?: TranscriptQuery) => select(entries, query).at(-1),
    lines: (query?: TranscriptQuery, lineOptions?: LineOptions) => select(entries, query).map((e) => formatEntry(e, lineOptions)),
    text: (query?: TranscriptQuery, lineOptions?: LineOptions) =>
      select(entries, query)
        .map((e) => formatEntry(e, lineOptions))
        .join('\n'),
    clear: () => {
      entries.length = 0;
      auditErrors.length = 0;
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      for (const name of names) bus.events.off(name, listeners[name] as never);
    },
  });
}
