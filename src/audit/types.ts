import type { ErrorCode } from '../errors.js';
import type { MessageType } from '../envelope.js';

/** The policy's verdict on one message and recipient, as recorded. */
export type AuditDecision = 'allowed' | 'denied' | 'pending';

/** What finally became of a message (for one recipient). */
export type AuditOutcome =
  | 'delivered'
  | 'replied'
  | 'failed'
  | 'expired'
  | 'cancelled'
  | 'late-reply'
  /** Found without an outcome when a file log was opened after the process that sent it stopped (a crash). */
  | 'interrupted';

/** The human decision on a held message. */
export type ApprovalDecision = 'approved' | 'rejected' | 'expired' | 'cancelled';

/**
 * A send attempt: one per message and recipient, refused ones included.
 * Written by the orchestrator before anything is delivered.
 */
export interface AttemptRecord {
  readonly kind: 'attempt';
  readonly ts: number;
  readonly messageId: string;
  readonly from: string;
  readonly to: string;
  readonly type: MessageType;
  readonly intent: string;
  /** Hex SHA-256 of the payload's JSON bytes; '' when the payload could not be serialized. */
  readonly payloadHash: string;
  readonly payloadBytes: number;
  readonly decision: AuditDecision;
  /** Why: the policy reason, or the refusal's message. */
  readonly reason?: string;
  /** Label of the deciding rule, when one decided. */
  readonly rule?: string;
  readonly policyVersion: number;
  /** The refusal's code, for refused attempts. */
  readonly code?: ErrorCode;
  /** Initial outcome: 'delivered' for an allowed attempt, 'late-reply' for a dropped reply, else absent. */
  readonly outcome?: AuditOutcome;
  readonly conversationId: string;
  readonly causationId?: string;
  readonly inReplyTo?: string;
  /** The node that wrote the record, on records of a message that crossed nodes. */
  readonly node?: string;
  /** The node at the other end of that message (the sender's or the recipient's). */
  readonly peerNode?: string;
  /** The sending node's proof on a receipt (JSON), or {@link UNVERIFIED} on a cross-node row of an insecure fleet. */
  readonly proof?: string;
  /**
   * On a `pending` attempt whose held copy the file keeps: what its restoring acts on (`HoldFacts`
   * of `hold-facts.ts`, as the JSON `encodeHoldFacts` makes). Part of the row and its
   * hash, so an edit of the file cannot change a restored hold's trust, life or envelope.
   */
  readonly hold?: string;
  /**
   * On a `pending` attempt written to a log that keeps held messages ({@link HoldStore}): the
   * held copy, stored beside the row in its transaction. Not part of the row or its hash.
   */
  readonly held?: HeldCopy;
  /**
   * On a reply row answering a restored message (its sender's promise died with an earlier
   * process): the reply's JSON, kept for `result()`. Not part of the row or its hash.
   */
  readonly keptReply?: string;
  /**
   * Set on a refusal-summary row: this row stands for `count` refusals of its sender beyond
   * its rate (its own message is the first of them), which were counted, not written one by one.
   */
  readonly refusals?: RefusalSummary;
}

/**
 * What a refusal-summary row counts: the refusals of one sender beyond its rate between
 * `first` and `last`, by code. The counts of `codes` add up to `count`.
 */
export interface RefusalSummary {
  /** How many refusals the row stands for, its own message included (at least 1). */
  readonly count: number;
  /** Epoch ms of the first of them. */
  readonly first: number;
  /** Epoch ms of the last of them. */
  readonly last: number;
  /** How many of them were refused with each code. */
  readonly codes: Readonly<Partial<Record<ErrorCode, number>>>;
}

/**
 * What a {@link HoldStore} keeps of a held message besides its attempt row. Only `payload`
 * is read back when it is restored (checked against the row's hash); the other fields are
 * copies of what the row's `hold` column and rule record, kept for readers of the file.
 */
export interface HeldCopy {
  /** The envelope's fields its attempt row does not record, as JSON: `{ priority, depth, deadline? }`. */
  readonly envelope: string;
  /** The payload's JSON (whose SHA-256 is the attempt row's payloadHash). */
  readonly payload: string;
  readonly requestedAt: number;
  readonly expiresAt: number;
  readonly rule?: string;
  /** The sender's trust when it was held (a copy: the re-check at approval uses the row's). */
  readonly trust: number;
}

/** A held message as a {@link HoldStore} restores it. */
export interface StoredHold extends HeldCopy {
  /** Approved by an earlier process, which had no recipient to deliver it to yet. */
  readonly approved: boolean;
  readonly messageId: string;
  readonly to: string;
  /** Seq of its `pending` attempt row. */
  readonly seq: number;
  /** That row as stored (the values of its columns, in ROW_COLUMNS order), or undefined when retention dropped it. */
  readonly attempt: readonly unknown[] | undefined;
}

/** One decision taken against a {@link HoldStore}: its rows are written only if the hold is still there. */
export interface HoldDecision {
  readonly messageId: string;
  readonly to: string;
  readonly records: readonly AuditRecord[];
  /**
   * Approved, but its recipient is not registered yet: the hold is kept, marked approved,
   * until its delivery is recorded (a decision with `approved: true`) or its deadline.
   */
  readonly keep?: boolean;
  /** This decision is about an approved hold (its delivery or failure), not a pending one. */
  readonly approved?: boolean;
}

/**
 * A log that keeps held messages (the SQLite log on a file): written with their `pending`
 * rows, deleted with the row of their decision, so the database is the arbiter of who
 * decides first. Optional: a log without it (`:memory:`, a custom log) holds in memory only.
 */
export interface HoldStore {
  /** True when this log keeps held messages (a file; a `:memory:` log does not). */
  readonly keepsHolds: boolean;
  /** Every held message, oldest first (only those whose pending row's seq is above `afterSeq`, when given). */
  holds(afterSeq?: number): StoredHold[];
  /**
   * Writes each decision's records, in one transaction, only if its hold is still stored
   * (deleting it): true for each decision taken here, false for one already taken elsewhere.
   * @throws BusError AUDIT_UNAVAILABLE when the transaction fails (nothing written, nothing taken).
   */
  decide(decisions: readonly HoldDecision[]): boolean[];
  /** The key of every held message and whether it was approved (1) or awaits a decision (0): a cheap look at what changed. */
  holdStates(): [messageId: string, to: string, approved: number][];
  /** Every stored record naming `messageId` (its attempt, follow-ups, replies to it), oldest first, as column values. */
  messageRecords(messageId: string): unknown[][];
  /** The kept reply of `messageId`, deleted as it is read (`remove`), or undefined. */
  keptReply(messageId: string, remove: boolean): string | undefined;
}

/** True for a log that implements {@link HoldStore} (check `keepsHolds` for whether it keeps them). */
export function isHoldStore(log: AuditLog): log is AuditLog & HoldStore {
  const l = log as Partial<HoldStore>;
  return typeof l.keepsHolds === 'boolean' && typeof l.holds === 'function' && typeof l.holdStates === 'function' && typeof l.decide === 'function' && typeof l.messageRecords === 'function' && typeof l.keptReply === 'function';
}

/** A later outcome of a message for one recipient (replied, failed, expired, …). */
export interface OutcomeRecord {
  readonly kind: 'outcome';
  readonly ts: number;
  readonly messageId: string;
  readonly to: string;
  readonly outcome: AuditOutcome;
  readonly code?: ErrorCode;
  readonly reason?: string;
  /** The message's sender, so the record is found among both parties' records (schema v3). */
  readonly from?: string;
  /** The message's conversation: follow-ups are found through it (schema v3; without it, by message id). */
  readonly conversationId?: string;
  /** The node that wrote the record, on records of a message that crossed nodes. */
  readonly node?: string;
  /** The node at the other end of that message (the sender's or the recipient's). */
  readonly peerNode?: string;
  /** {@link UNVERIFIED} on a cross-node row of an insecure fleet. */
  readonly proof?: string;
}

/** A human decision on a held message. */
export interface ApprovalRecord {
  readonly kind: 'approval';
  readonly ts: number;
  readonly messageId: string;
  readonly to: string;
  readonly approval: ApprovalDecision;
  readonly decidedBy?: string;
  readonly note?: string;
  /** The policy version the decision was checked against. */
  readonly policyVersion: number;
  /** The message's sender (schema v3). */
  readonly from?: string;
  /** The message's conversation (schema v3). */
  readonly conversationId?: string;
  /** The node that wrote the record, on records of a message that crossed nodes. */
  readonly node?: string;
  /** The node at the other end of that message (the sender's or the recipient's). */
  readonly peerNode?: string;
  /** {@link UNVERIFIED} on a cross-node row of an insecure fleet. */
  readonly proof?: string;
}

/** The `proof` of a cross-node row whose sender no roster vouched for (`natsTransport({ insecure: true })`). */
export const UNVERIFIED = 'unverified';

/**
 * A peer node's signed digest (`proof: 'digest'`): the covers of frames that node sent this
 * one under a MAC only, in a signed frame of their own, as the transport verified it. A record
 * of the nodes, not of a message: no agent sent it, it belongs to no conversation and has no
 * message type, so it is never a {@link MessageLogEntry}. Chained and hashed like every record;
 * `switchboard verify --roster` reads its proof as covering the MAC'd receipts it lists.
 */
export interface DigestRecord {
  readonly kind: 'digest';
  /** When this node recorded it (epoch ms, this node's clock; the signed time is in the proof's `line`). */
  readonly ts: number;
  /** The digest frame's id, as the signing node wrote it (stored in the message id column). */
  readonly digestId: string;
  /** Hex SHA-256 of the frame's body, which the signature covers (a digest frame's body is empty). */
  readonly payloadHash: string;
  /** This node, which recorded it. */
  readonly node?: string;
  /** The node that signed it. */
  readonly peerNode: string;
  /** The signing node's proof (JSON: `node`, `key`, `sig`, `subject`, `seal`, `line`, `covers`). */
  readonly proof: string;
}

export type AuditRecord = AttemptRecord | OutcomeRecord | ApprovalRecord | DigestRecord;

/** One {@link DigestRecord} as stored, read back by {@link PeerDigestQuery} (`SqliteAuditLog#peerDigests`). */
export interface PeerDigestEntry {
  /** Its place in the log (the same sequence as message entries). */
  seq: number;
  digestId: string;
  /** When this node recorded it (epoch ms). */
  ts: number;
  /** The node that recorded it, when the log names it. */
  node?: string;
  /** The node that signed it. */
  peerNode: string;
  /** Hex SHA-256 of the frame's body, which the signature covers. */
  payloadHash: string;
  /** The signing node's proof (JSON), which `switchboard verify --roster` checks against the roster. */
  proof: string;
}

/** Filters of `SqliteAuditLog#peerDigests`: oldest first. */
export interface PeerDigestQuery {
  /** Only records with a larger `seq`, oldest first: pass the last `seq` of a page to get the next. */
  afterSeq?: number;
  /** Only records with a smaller `seq`, newest first (as `getMessageLog`): pass the last `seq` of a page to get the next older one. Not with `afterSeq`. */
  beforeSeq?: number;
  /** Only records at or after this epoch-ms time. */
  since?: number;
  /** Only those signed by this node. */
  peerNode?: string;
  /** At most this many (default 50, at most 10,000). */
  limit?: number;
}

/** One entry of {@link AuditLog.query}: a message and recipient, with its latest state. */
export interface MessageLogEntry {
  /** The attempt's place in the log: unique, increasing, never reused. Page with `beforeSeq` / `afterSeq`. */
  seq: number;
  messageId: string;
  ts: number;
  from: string;
  to: string;
  type: MessageType;
  intent: string;
  payloadHash: string;
  payloadBytes: number;
  decision: AuditDecision;
  reason?: string;
  rule?: string;
  policyVersion: number;
  /** The refusal's code, when refused or when the latest outcome carried one. */
  code?: ErrorCode;
  approval?: ApprovalDecision;
  decidedBy?: string;
  outcome?: AuditOutcome;
  conversationId: string;
  /** The message whose handler sent this one, inside a chain. */
  causationId?: string;
  inReplyTo?: string;
  /** On a refusal-summary row: how many refusals of its sender it stands for, when, and their codes. */
  refusals?: RefusalSummary;
  /** Strings that were stored capped, with their original lengths (e.g. `{ reason: 500000 }`). */
  truncated?: Record<string, number>;
  /** The node that recorded the message, when it crossed nodes. */
  node?: string;
  /** The node at the other end (the sender's on the receiving node, the recipient's on the sending one). */
  peerNode?: string;
  /**
   * On a receipt from another node: the sending node's proof as verified against the roster
   * (JSON: `node`, `key`, `sig`, `subject`, `seal`, `line`), which `switchboard verify
   * --roster` checks again against the entry's `payloadHash`.
   */
  proof?: string;
  /** True on a cross-node entry of an insecure fleet (no roster): nobody proved who sent it. */
  unverified?: true;
}

/** Filters for {@link AuditLog.query}. */
export interface MessageLogQuery {
  /** Matches the sender or the recipient. */
  agentId?: string;
  /** At most this many entries (default 50, at most 10,000). */
  limit?: number;
  /** Only entries strictly older than this epoch-ms time. */
  before?: number;
  /** Only entries at or after this epoch-ms time. */
  since?: number;
  /** Only entries with a smaller `seq` (newest first): pass the last `seq` of a page to get the next. */
  beforeSeq?: number;
  /** Only entries with a larger `seq`, oldest first: pass the last `seq` of a page to get the next. */
  afterSeq?: number;
  type?: MessageType;
  decision?: AuditDecision;
  conversationId?: string;
}

/** Result of checking the hash chain end to end. */
export interface VerifyResult {
  ok: boolean;
  /** Rows checked. */
  checked: number;
  /** The sequence number of the first row that does not match, when `ok` is false. */
  firstBad?: number;
  /** What is wrong with that row, when the log can tell. */
  reason?: string;
  /** Where verification started when older rows were dropped by retention (or lost with a replaced file). */
  anchor?: ChainHead;
}

/** A point of the chain: a record's seq and hash. `{ seq: 0, hash: '0'.repeat(64) }` for an empty log. */
export interface ChainHead {
  seq: number;
  hash: string;
}

/** Options of {@link AuditLog.verify}. */
export interface VerifyOptions {
  /** A head kept elsewhere: verification fails when the log no longer holds it (a truncated tail). */
  head?: ChainHead;
}

/**
 * Where the orchestrator records everything. The SQLite log is the default; anything that
 * implements this (synchronously) can stand in.
 */
export interface AuditLog {
  /**
   * Writes the records in one transaction: all or none. Throws when they cannot be
   * written; the caller then refuses the batch's messages with AUDIT_UNAVAILABLE.
   */
  append(records: readonly AuditRecord[]): void;
  /** Entries newest first. */
  query(filter?: MessageLogQuery): MessageLogEntry[];
  /** Checks the hash chain end to end (and, given `head`, that the log still holds it). */
  verify(options?: VerifyOptions): VerifyResult;
  /** The last committed record's seq and hash (optional for custom logs). */
  head?(): ChainHead;
  /**
   * The digest records (a peer node's signed covers, {@link DigestRecord}), oldest first
   * (optional for custom logs: without it, a restarted node cannot refuse a digest frame
   * captured before its restart by its id, only by its signed time).
   */
  peerDigests?(filter?: PeerDigestQuery): PeerDigestEntry[];
  /** Closes the underlying store. Idempotent. */
  close(): void;
}

/**
 * An audit log that can also write without blocking: `appendAsync` calls `done` once the
 * records are committed (or with AUDIT_UNAVAILABLE when they cannot be), in the order the
 * appends were made. The bus delivers a batch's messages only in that callback.
 */
export interface AsyncAuditLog extends AuditLog {
  appendAsync(records: readonly AuditRecord[], done: (error?: Error) => void): void;
  /** Blocks until every append in flight is answered, running their callbacks. */
  drain(): void;
}

/** True for a log that supports pipelined appends. */
export function isAsyncAuditLog(log: AuditLog): log is AsyncAuditLog {
  return typeof (log as Partial<AsyncAuditLog>).appendAsync === 'function' && typeof (log as Partial<AsyncAuditLog>).drain === 'function';
}
