import mittModule, { type Emitter } from 'mitt';

// mitt ships CommonJS-style typings beside its ES module: under NodeNext the types see the
// module object, while at run time the default import is the function itself.
const mitt = ((mittModule as unknown as { default?: unknown }).default ?? mittModule) as unknown as <T extends Record<string, unknown>>() => Emitter<T>;
import { escapeText } from './escape-text.js';
import type { Envelope, MessageType } from './envelope.js';
import { BusError, describe, type ErrorCode } from './errors.js';
import type { ApprovalDecision } from './audit/types.js';
import type { PendingApproval } from './approvals.js';

/** A send that was refused before an envelope existed: what was attempted. */
export interface Attempt {
  readonly id: string;
  readonly type: MessageType;
  readonly from: string;
  readonly to: string;
  readonly intent: string;
}

/** The events the bus emits, by name, with what each carries. */
export interface BusEvents {
  /** A message passed every check and is on its way (audit commit, then delivery). */
  'message:sent': { envelope: Envelope };
  /** A message was committed to the audit log and handed to the recipient's mailbox. */
  'message:delivered': { envelope: Envelope };
  /** A send was refused: by policy, a limit, a bad argument, … */
  'message:denied': { attempt: Attempt; code: ErrorCode; reason: string; rule?: string };
  /** A reply reached the asker. `envelope` is the reply. */
  'message:replied': { envelope: Envelope };
  /** An ask or delegate passed its deadline (`TIMEOUT`) or its approval expired. */
  'message:expired': { envelope: Envelope; code: 'TIMEOUT' | 'APPROVAL_EXPIRED' };
  /** A delivered message ended in failure (handler threw, cancelled, recipient left, …). */
  'message:failed': { envelope: Envelope; code: ErrorCode; reason: string };
  /** A late or extra reply, dropped; or a notify whose recipient left before it arrived. */
  'message:dead': { envelope: Envelope; reason: string };
  /** A message is held for a human decision. */
  'approval:requested': { approval: PendingApproval };
  /** A held message was approved, rejected, expired or cancelled. */
  'approval:decided': {
    approval: PendingApproval;
    decision: ApprovalDecision;
    by?: string;
    note?: string;
    reason?: string;
  };
  /** The audit log could not be written; the batch's messages were refused. */
  'audit:error': { error: Error; records: number };
  /**
   * A file log's WAL passed three quarters of `audit.maxWalBytes` (`walBytes` now):
   * checkpoints are not keeping up (or a reader holds an old snapshot), so commits wait for
   * one rather than grow the WAL, and messages are delivered later. Once per episode.
   */
  'audit:backpressure': { walBytes: number; maxWalBytes: number };
  /**
   * Another node took over an agent id this node served (this node missed its lease
   * renewals): the local agent was unregistered and its handle is dead; `ready()` rejects
   * with DUPLICATE_AGENT until the id is registered here again. Re-register it (possibly
   * under another id) once the cause is fixed.
   */
  'agent:lost': { agentId: string; holder: string; error: BusError };
  /**
   * With nodes: a request of the fleet's approval desk (an operator listing or deciding this
   * node's held messages) was refused before it reached the queue: its signer is no operator
   * of this node's roster, its signature does not verify, it is stale or a replay, it names
   * another bus or node, or it is malformed. Nothing was listed or decided. `operator` and
   * `messageId` are as the request names them (unverified), cut short. A process warning
   * (`SWITCHBOARD_OPERATOR_REFUSED`, at most ten a minute plus a summary) when nobody listens.
   */
  'operator:refused': { request: 'list' | 'decide'; operator?: string; messageId?: string; code: ErrorCode; reason: string };
}

export type BusEventName = keyof BusEvents;

/** Every event name, so a misspelled one is an error rather than a listener that never runs. */
const EVENT_NAMES: ReadonlySet<string> = new Set<BusEventName>(
  Object.keys({
    'message:sent': 1,
    'message:delivered': 1,
    'message:denied': 1,
    'message:replied': 1,
    'message:expired': 1,
    'message:failed': 1,
    'message:dead': 1,
    'approval:requested': 1,
    'approval:decided': 1,
    'audit:error': 1,
    'audit:backpressure': 1,
    'agent:lost': 1,
    'operator:refused': 1,
  } satisfies Record<BusEventName, 1>) as BusEventName[],
);
export type BusListener<K extends BusEventName> = (event: BusEvents[K]) => void;

/** The public side of the bus's emitter: subscribe and unsubscribe. */
export interface BusEventSource {
  /** Subscribes `listener`; returns the function that unsubscribes it (like `off`). */
  on<K extends BusEventName>(name: K, listener: BusListener<K>): () => void;
  off<K extends BusEventName>(name: K, listener: BusListener<K>): void;
}

/**
 * The face of `emitter` that whoever holds a bus (or a fleet desk) gets: on/off only, frozen,
 * so a holder may listen but never emit a forged event or clear the listeners of the console,
 * the transcript or the telemetry.
 */
export function eventsFace(emitter: BusEmitter): BusEventSource {
  return Object.freeze({
    on: <K extends BusEventName>(name: K, listener: BusListener<K>): (() => void) => emitter.on(name, listener),
    off: <K extends BusEventName>(name: K, listener: BusListener<K>): void => emitter.off(name, listener),
  });
}

type Wrapped = (event: unknown) => void;

/**
 * mitt, made safe for a bus: a listener that throws is reported to the process
 * (`queueMicrotask` rethrow would crash it, so we use `process.emitWarning`) and never
 * breaks the send that emitted the event. `has()` lets the hot path skip building event
 * objects nobody listens to.
 */
export class BusEmitter implements BusEventSource {
  private readonly emitter: Emitter<Record<BusEventName, unknown>> = mitt();
  private readonly wrappers = new Map<BusEventName, Map<Function, Wrapped>>();

  on<K extends BusEventName>(name: K, listener: BusListener<K>): () => void {
    if (typeof name !== 'string' || !EVENT_NAMES.has(name)) {
      throw new BusError('INVALID_ARGUMENT', `events.on(${describe(name)}): no such event (expected one of ${[...EVENT_NAMES].join(', ')})`);
    }
    if (typeof listener !== 'function') throw new BusError('INVALID_ARGUMENT', `events.on("${name}"): listener must be a function, got ${describe(listener)}`);
    let byListener = this.wrappers.get(name);
    if (byListener === undefined) this.wrappers.set(name, (byListener = new Map()));
    const unsubscribe = () => this.off(name, listener);
    if (byListener.has(listener)) return unsubscribe;
    const wrapped: Wrapped = (event) => {
      try {
        listener(event as BusEvents[K]);
      } catch (error) {
        // What it threw is read safely (a getter of it may throw too) and escaped: it may quote an agent's text.
        process.emitWarning(`agent-switchboard: a "${name}" listener threw: ${escapeText(messageOf(error))}`, {
          code: 'SWITCHBOARD_LISTENER_ERROR',
        });
      }
    };
    byListener.set(listener, wrapped);
    this.emitter.on(name, wrapped);
    return unsubscribe;
  }

  off<K extends BusEventName>(name: K, listener: BusListener<K>): void {
    const wrapped = this.wrappers.get(name)?.get(listener);
    if (wrapped === undefined) return;
    this.wrappers.get(name)!.delete(listener);
    this.emitter.off(name, wrapped);
  }

  /** True when at least one listener is subscribed to `name`. */
  has(name: BusEventName): boolean {
    const list = this.emitter.all.get(name);
    return list !== undefined && list.length > 0;
  }

  emit<K extends BusEventName>(name: K, event: BusEvents[K]): void {
    // Every listener gets the same object: frozen, so one cannot change what the next one reads.
    this.emitter.emit(name, Object.freeze(event));
  }

  clear(): void {
    this.emitter.all.clear();
    this.wrappers.clear();
  }
}

/** The message of a thrown value, never throwing itself (a getter, a revoked Proxy). */
function messageOf(error: unknown): string {
  try {
    const message = (error as { message?: unknown } | null)?.message;
    return String(message ?? error);
  } catch {
    return 'a value that cannot be read';
  }
}
