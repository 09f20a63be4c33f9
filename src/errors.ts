/**
 * Every refusal the bus makes is a {@link BusError} with a stable `code`.
 * Codes are public API and are written to the audit log: renaming one is a breaking change.
 */

/** The stable error codes, each with when it happens. */
export const ErrorCode = {
  /** An argument is malformed: a bad id, an empty intent, a bad option, a bad rule set. */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** The payload (or a reply) is not plain JSON, or fails its contract's input schema. */
  INVALID_PAYLOAD: 'INVALID_PAYLOAD',
  /** The recipient (or the sender's own handle) is not registered. */
  UNKNOWN_AGENT: 'UNKNOWN_AGENT',
  /** `register()` was called with an id that is already registered. */
  DUPLICATE_AGENT: 'DUPLICATE_AGENT',
  /** An agent tried to message itself. */
  SELF_MESSAGE: 'SELF_MESSAGE',
  /** The serialized payload is larger than `limits.maxPayloadBytes`. */
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** The sender's token bucket (or the global one) is empty; see `retryAfterMs`. */
  RATE_LIMITED: 'RATE_LIMITED',
  /** No rule allows this message, or a rule denies it; see `rule`. */
  POLICY_DENIED: 'POLICY_DENIED',
  /** A human rejected the held message; see `reason`. */
  APPROVAL_REJECTED: 'APPROVAL_REJECTED',
  /** The held message reached its deadline (or `approvals.ttlMs`) before a decision. */
  APPROVAL_EXPIRED: 'APPROVAL_EXPIRED',
  /** Too many messages are already held for approval (per sender or in total). */
  APPROVAL_QUEUE_FULL: 'APPROVAL_QUEUE_FULL',
  /** No reply arrived before the deadline; see `timeoutMs`. */
  TIMEOUT: 'TIMEOUT',
  /** The sender cancelled (`job.cancel()`, an aborted `signal`, or `unregister`). */
  CANCELLED: 'CANCELLED',
  /** The recipient has no handler for the intent and no `'*'` fallback. */
  NO_HANDLER: 'NO_HANDLER',
  /** The recipient's handler threw, or returned a value its contract refuses. */
  HANDLER_FAILED: 'HANDLER_FAILED',
  /** A reply by someone other than the addressee, to an unknown, settled or expired message, or a second one. */
  INVALID_REPLY: 'INVALID_REPLY',
  /** The recipient's mailbox already holds `maxQueue` messages. */
  MAILBOX_FULL: 'MAILBOX_FULL',
  /** The causal chain is deeper than `limits.maxDepth`. */
  MAX_DEPTH: 'MAX_DEPTH',
  /** The audit log cannot be written, so the bus refuses to deliver (fail closed). */
  AUDIT_UNAVAILABLE: 'AUDIT_UNAVAILABLE',
  /** The orchestrator is closed (or closing). */
  CLOSED: 'CLOSED',
  /** The message must cross nodes and the broker cannot be reached right now (never buffered). */
  TRANSPORT_UNAVAILABLE: 'TRANSPORT_UNAVAILABLE',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Extra, code-specific fields a caller may need to react to a refusal. */
export interface BusErrorDetails {
  /** The message the refusal is about, when one was created. */
  messageId?: string;
  /** For `RATE_LIMITED`: how long until a token is available. */
  retryAfterMs?: number;
  /** For `POLICY_DENIED` (and approvals): the label of the deciding rule. */
  rule?: string;
  /** For `TIMEOUT` and `APPROVAL_EXPIRED`: the deadline that passed, in ms. */
  timeoutMs?: number;
  /** For `APPROVAL_REJECTED` / `CANCELLED`: the reason given. */
  reason?: string;
  /** The agent the refusal concerns (recipient, or unknown id). */
  agentId?: string;
  /** The underlying error, e.g. the handler's or SQLite's. */
  cause?: unknown;
}

/**
 * The one error type the bus rejects with.
 *
 * @example
 * try { await research.ask('writer', 'clarify', { q }) }
 * catch (e) { if (isBusError(e) && e.code === 'RATE_LIMITED') await sleep(e.retryAfterMs ?? 100) }
 */
export class BusError extends Error {
  override readonly name = 'BusError';
  readonly code: ErrorCode;
  readonly messageId?: string;
  readonly retryAfterMs?: number;
  readonly rule?: string;
  readonly timeoutMs?: number;
  readonly reason?: string;
  readonly agentId?: string;

  constructor(code: ErrorCode, message: string, details: BusErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    if (details.messageId !== undefined) this.messageId = details.messageId;
    if (details.retryAfterMs !== undefined) this.retryAfterMs = details.retryAfterMs;
    if (details.rule !== undefined) this.rule = details.rule;
    if (details.timeoutMs !== undefined) this.timeoutMs = details.timeoutMs;
    if (details.reason !== undefined) this.reason = details.reason;
    if (details.agentId !== undefined) this.agentId = details.agentId;
  }
}

const codes = new Set<string>(Object.values(ErrorCode));

/**
 * True for a {@link BusError}, checked by shape rather than `instanceof`, so it holds
 * when two copies of the package end up in one app.
 */
export function isBusError(value: unknown): value is BusError {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { name?: unknown; code?: unknown };
  return v.name === 'BusError' && typeof v.code === 'string' && codes.has(v.code);
}
