// The one narrow port through which the send pipeline reports what happens, for tracing and
// metrics. The core depends only on this interface; agent-switchboard/otel implements it on
// @opentelemetry/api (an optional peer). Without telemetry the pipeline uses NOOP_TELEMETRY,
// whose every method returns at once without allocating.
import type { Envelope, MessageType } from './envelope.js';
import type { ErrorCode } from './errors.js';

/** What a send is known to be at its entry, before any check. */
export interface SendDraft {
  readonly id: string;
  readonly type: MessageType;
  readonly from: string;
  /** The recipient; `'*'` for a broadcast notify, the ids joined by `,` for a listed one. */
  readonly to: string;
  readonly intent: string;
  /** Unknown for a send refused before its conversation was resolved. */
  readonly conversationId?: string | undefined;
  readonly depth?: number | undefined;
}

/** An envelope as the pipeline delivers it: with the W3C trace context of its send, if any. */
export type TracedEnvelope = Envelope & { readonly traceparent?: string | undefined };

/** One send in flight, from `sendStarted` to `sendRefused` or `sendSettled`. Opaque. */
export interface SendToken {
  /** The W3C `traceparent` to stamp on the envelope(s) of this send; undefined when not tracing. */
  readonly traceparent: string | undefined;
}

/** One handler run, from `handlerStarted` to `handlerEnded`. Opaque. */
export type RunToken = object;

/** How the policy let a send through, as the audit row records it. */
export interface CommitInfo {
  readonly decision: 'allowed' | 'pending';
  /** Label of the deciding rule. */
  readonly rule?: string | undefined;
  readonly policyVersion?: number | undefined;
}

/** What a refusal adds beside its code. */
export interface RefusalInfo {
  /** Label of the deciding rule (POLICY_DENIED, approvals). */
  readonly rule?: string | undefined;
  /** For a notify: the one recipient refused; the send goes on for the others. */
  readonly recipient?: string | undefined;
}

/**
 * The pipeline's hook points. Every token is ended exactly once, by `sendRefused` (without
 * `recipient`) or `sendSettled`; a second end is ignored. Implementations never throw.
 */
export interface Telemetry {
  /** False for the no-op: the pipeline may skip work it does only for telemetry. */
  readonly enabled: boolean;
  /**
   * Send entry (handle or handler ctx), before the first check. `within` is the handler run
   * the send is made from (ctx.ask / ctx.delegate / ctx.notify / reply), so the send's span
   * is its child even without a context manager; otherwise the active context is the parent.
   */
  sendStarted(draft: SendDraft, within?: RunToken): SendToken;
  /** A check refused the send (or, with `recipient`, one recipient of a notify). */
  sendRefused(token: SendToken, code: ErrorCode, info?: RefusalInfo): void;
  /** The send is held for a human decision. */
  sendHeld(token: SendToken, rule?: string): void;
  /** The send's audit row is committed and it goes to delivery. */
  sendCommitted(token: SendToken, info: CommitInfo): void;
  /** The send is over: its reply arrived (no code), or it failed after commit (TIMEOUT, HANDLER_FAILED, …). A notify settles once every recipient was handled. */
  sendSettled(token: SendToken, code?: ErrorCode): void;
  /** A handler is about to run for `envelope`: runs `fn` inside the run's context and returns what it returns. */
  handlerStarted<T>(envelope: TracedEnvelope, fn: (run: RunToken) => T): T;
  /** The handler's result (or throw) is known. */
  handlerEnded(run: RunToken, code?: ErrorCode): void;
  /** One group commit took `ms` for `records` rows. */
  commitTimed(ms: number, records: number): void;
  /** An agent's mailbox holds `depth` messages (queued + running). */
  mailboxDepth(agentId: string, depth: number): void;
  /** The agent left: forget its gauge. */
  agentRemoved(agentId: string): void;
  /** Messages held for approval now. */
  approvalsHeld(count: number): void;
}

const NOOP_SEND: SendToken = Object.freeze({ traceparent: undefined });
const NOOP_RUN: RunToken = Object.freeze({});
const nothing = (): void => {};

/** The telemetry of a bus without any: each hook returns at once, allocating nothing. */
export const NOOP_TELEMETRY: Telemetry = Object.freeze({
  enabled: false,
  sendStarted: () => NOOP_SEND,
  sendRefused: nothing,
  sendHeld: nothing,
  sendCommitted: nothing,
  sendSettled: nothing,
  handlerStarted: <T>(_envelope: TracedEnvelope, fn: (run: RunToken) => T): T => fn(NOOP_RUN),
  handlerEnded: nothing,
  commitTimed: nothing,
  mailboxDepth: nothing,
  agentRemoved: nothing,
  approvalsHeld: nothing,
});
