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
  /** The transport cannot reach its broker: sends that need it fail at once (fail closed). */
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
  // Declared, not defined: a field a refusal does not carry is absent (`'rule' in e` is false),
  // not an own property holding undefined.
  declare readonly messageId?: string;
  declare readonly retryAfterMs?: number;
  declare readonly rule?: string;
  declare readonly timeoutMs?: number;
  declare readonly reason?: string;
  declare readonly agentId?: string;

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
  try {
    const v = value as { name?: unknown; code?: unknown };
    return v.name === 'BusError' && typeof v.code === 'string' && codes.has(v.code);
  } catch {
    return false; // a throwing getter or a revoked Proxy is not a BusError
  }
}

/**
 * The one normalizer of thrown values. A BusError of this copy of the package passes
 * through (re-made with `messageId` when it lacks one, every other own field and the stack
 * kept as they are); anything else becomes a BusError of `fallback` (HANDLER_FAILED for a
 * handler's throw, INVALID_ARGUMENT for a caller's value that could not be read,
 * TRANSPORT_UNAVAILABLE for a broker's) whose `cause` is the thrown value. Its text is
 * {@link errorText}: capped at {@link MAX_TEXT_LENGTH}, and read without throwing even when
 * a getter or a revoked Proxy throws. Never throws.
 * @internal
 */
export function toBusError(error: unknown, fallback: ErrorCode, messageId?: string, prefix?: string): BusError {
  try {
    if (error instanceof BusError) {
      if (messageId === undefined || error.messageId !== undefined) return error;
      const descriptors = Object.getOwnPropertyDescriptors(error) as PropertyDescriptorMap;
      descriptors.messageId = { value: messageId, enumerable: true, writable: false, configurable: true };
      return Object.create(Object.getPrototypeOf(error) as object, descriptors) as BusError;
    }
  } catch {
    // A Proxy around a BusError whose traps throw: normalized like any unreadable value.
  }
  const text = errorText(error);
  return new BusError(fallback, prefix === undefined ? text : `${prefix}${text}`, { cause: error, ...(messageId !== undefined ? { messageId } : {}) });
}

/** Longest error or reason text that crosses between agents. @internal */
export const MAX_TEXT_LENGTH = 1000;

/** A short, safe description of a bad value for error messages (never throws, even on a revoked Proxy). @internal */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
  if (value === null || typeof value !== 'object') return typeof value === 'function' ? 'a function' : String(value);
  try {
    return Array.isArray(value) ? 'an array' : 'an object';
  } catch {
    return 'a revoked proxy';
  }
}

/** The message of a thrown value, never its stack: only the message crosses agents. @internal */
export function errorText(error: unknown): string {
  let text: string;
  try {
    text = error instanceof Error ? String(error.message) : typeof error === 'string' ? error : describe(error);
  } catch {
    text = 'a thrown value that could not be read'; // a getter or a revoked Proxy threw
  }
  return text.length > MAX_TEXT_LENGTH ? `${text.slice(0, MAX_TEXT_LENGTH)}…` : text;
}

/** "an ask", "a delegate", "a notify". @internal */
export function article(type: string): string {
  return `${type === 'ask' ? 'an' : 'a'} ${type}`;
}
