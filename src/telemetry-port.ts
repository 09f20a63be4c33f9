// The one narrow port through which the send pipeline reports what happens, for tracing and
// metrics. The core depends only on this interface; agent-switchboard/otel implements it on
// @opentelemetry/api (an optional peer). Without telemetry the pipeline uses NOOP_TELEMETRY,
// whose every method returns at once without allocating.
import type { Envelope, MessageType } from './envelope.js';
import type { ErrorCode } from './errors.js';
import { escapeText } from './escape-text.js';

/** What a send is known to be at its entry, before any check. */
export interface SendDraft {
  readonly id: string;
  readonly type: MessageType;
  readonly from: string;
  /** The recipient; `'*'` for a broadcast notify, the ids joined by `,` for a listed one (`'<n> agents'` past 256 characters). */
  readonly to: string;
  readonly intent: string;
  /** Unknown for a send refused before its conversation was resolved. */
  readonly conversationId?: string | undefined;
  readonly depth?: number | undefined;
}

/**
 * An envelope as the pipeline delivers it: with the W3C trace context of its send, if any.
 * The `traceparent` key exists only on envelopes of a traced send (a bus with an enabled
 * telemetry); `Envelope` itself keeps its public shape.
 */
export type TracedEnvelope = Envelope & { readonly traceparent?: string | undefined };

const TRACEPARENT = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * `value` when it is a well-formed W3C `traceparent` (version 00, lowercase hex, non-zero
 * ids), else undefined. The one check every traceparent passes before it goes on an
 * envelope: from a telemetry's token, or from another node's message.
 */
export function checkTraceparent(value: unknown): string | undefined {
  return typeof value === 'string' && value.length === 55 && TRACEPARENT.test(value) ? value : undefined;
}

/** The W3C `traceparent` an envelope carries (undefined when its send was not traced). */
export function traceparentOf(envelope: Envelope): string | undefined {
  return (envelope as TracedEnvelope).traceparent;
}

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
 * `recipient`) or `sendSettled`; a second end is ignored. Implementations should never
 * throw; the bus guards every call anyway (see {@link guardTelemetry}), so one that does
 * cannot break a send.
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

const METHODS = ['sendStarted', 'sendRefused', 'sendHeld', 'sendCommitted', 'sendSettled', 'handlerStarted', 'handlerEnded', 'commitTimed', 'mailboxDepth', 'agentRemoved', 'approvalsHeld'] as const;

/** True when `value` has every method of a {@link Telemetry} and a boolean `enabled` (for the options schema). */
export function isTelemetry(value: unknown): value is Telemetry {
  if (typeof value !== 'object' || value === null) return false;
  try {
    const t = value as Record<string, unknown>;
    return typeof t.enabled === 'boolean' && METHODS.every((m) => typeof t[m] === 'function');
  } catch {
    return false; // a throwing getter (or a revoked Proxy) is not a telemetry
  }
}

/**
 * The telemetry as the bus calls it: `enabled` and every method read once, each call in a
 * try/catch (the first throw is reported as a process warning, then they are ignored), each
 * token ended at most once, and a token's `traceparent` read once and checked. A telemetry
 * whose `enabled` is not `true` becomes {@link NOOP_TELEMETRY}. So a telemetry that throws,
 * returns garbage or calls back twice cannot break a send, a handler run or a commit.
 * @internal The orchestrator applies it to the `telemetry` option.
 */
export function guardTelemetry(telemetry: Telemetry): Telemetry {
  if (telemetry === NOOP_TELEMETRY) return telemetry;
  try {
    if (telemetry.enabled !== true) return NOOP_TELEMETRY;
    return new GuardedTelemetry(telemetry);
  } catch {
    return NOOP_TELEMETRY;
  }
}

class GuardedSend implements SendToken {
  ended = false;
  constructor(
    readonly inner: SendToken,
    readonly traceparent: string | undefined,
  ) {}
}

class GuardedRun {
  ended = false;
  constructor(readonly inner: RunToken) {}
}

const NOOP_GUARDED_SEND = new GuardedSend(NOOP_SEND, undefined);

class GuardedTelemetry implements Telemetry {
  readonly enabled = true;
  readonly #target: Telemetry;
  readonly #m: { [K in (typeof METHODS)[number]]: Function };
  #warned = false;

  constructor(target: Telemetry) {
    this.#target = target;
    const m = {} as { [K in (typeof METHODS)[number]]: Function };
    for (const name of METHODS) m[name] = target[name];
    this.#m = m;
  }

  #call(name: (typeof METHODS)[number], ...args: unknown[]): unknown {
    try {
      return Reflect.apply(this.#m[name], this.#target, args);
    } catch (error) {
      this.#report(name, error);
      return undefined;
    }
  }

  #report(name: string, error: unknown): void {
    if (this.#warned) return;
    this.#warned = true;
    let text: string;
    try {
      text = error instanceof Error ? error.message : String(error);
    } catch {
      text = 'an unprintable value';
    }
    process.emitWarning(`agent-switchboard: the telemetry threw in ${name}(): ${escapeText(text)} (the bus goes on; further throws are not reported)`, { code: 'SWITCHBOARD_TELEMETRY' });
  }

  sendStarted(draft: SendDraft, within?: RunToken): SendToken {
    const token = this.#call('sendStarted', draft, within instanceof GuardedRun ? within.inner : undefined);
    if (typeof token !== 'object' || token === null) return NOOP_GUARDED_SEND;
    let traceparent: string | undefined;
    try {
      traceparent = checkTraceparent((token as SendToken).traceparent);
    } catch (error) {
      this.#report('sendStarted', error);
    }
    return new GuardedSend(token as SendToken, traceparent);
  }

  #end(token: SendToken): SendToken | undefined {
    if (!(token instanceof GuardedSend) || token.ended || token === NOOP_GUARDED_SEND) return undefined;
    token.ended = true;
    return token.inner;
  }

  #open(token: SendToken): SendToken | undefined {
    return token instanceof GuardedSend && !token.ended && token !== NOOP_GUARDED_SEND ? token.inner : undefined;
  }

  sendRefused(token: SendToken, code: ErrorCode, info?: RefusalInfo): void {
    const inner = info?.recipient === undefined ? this.#end(token) : this.#open(token);
    if (inner !== undefined) this.#call('sendRefused', inner, code, info);
  }

  sendHeld(token: SendToken, rule?: string): void {
    const inner = this.#open(token);
    if (inner !== undefined) this.#call('sendHeld', inner, rule);
  }

  sendCommitted(token: SendToken, info: CommitInfo): void {
    const inner = this.#open(token);
    if (inner !== undefined) this.#call('sendCommitted', inner, info);
  }

  sendSettled(token: SendToken, code?: ErrorCode): void {
    const inner = this.#end(token);
    if (inner !== undefined) this.#call('sendSettled', inner, code);
  }

  handlerStarted<T>(envelope: TracedEnvelope, fn: (run: RunToken) => T): T {
    let ran = false;
    let out!: T;
    // fn runs once, whatever the telemetry does with it (never, twice, later, or throws around it).
    const once = (run: unknown): T => {
      if (!ran) {
        ran = true;
        out = fn(new GuardedRun(typeof run === 'object' && run !== null ? run : NOOP_RUN));
      }
      return out;
    };
    this.#call('handlerStarted', envelope, once);
    if (!ran) once(NOOP_RUN);
    return out;
  }

  handlerEnded(run: RunToken, code?: ErrorCode): void {
    if (!(run instanceof GuardedRun) || run.ended) return;
    run.ended = true;
    this.#call('handlerEnded', run.inner, code);
  }

  commitTimed(ms: number, records: number): void {
    this.#call('commitTimed', ms, records);
  }

  mailboxDepth(agentId: string, depth: number): void {
    this.#call('mailboxDepth', agentId, depth);
  }

  agentRemoved(agentId: string): void {
    this.#call('agentRemoved', agentId);
  }

  approvalsHeld(count: number): void {
    this.#call('approvalsHeld', count);
  }
}
