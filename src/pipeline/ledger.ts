import { ApprovalQueue, type Hold } from './approval-queue.js';
import type { AuditOutcome } from '../audit/types.js';
import { DeadlineQueue } from '../deadlines.js';
import { BusError, type ErrorCode } from '../errors.js';
import type { Telemetry } from '../telemetry-port.js';
import type { PipelineConfig } from './config.js';
import type { Journal } from './journal.js';
import type { AgentRecord, Delivery, PendingRequest } from './records.js';
import { requestEnded } from './tracing.js';

/** A held message: the approval queue's item plus what finishing it needs. */
export interface HeldMessage extends Hold {
  readonly pending: PendingRequest | undefined;
  readonly parent: Delivery | undefined;
  /** The sender's stand-in when another node sent it (it is not in this node's registry). */
  readonly sender?: AgentRecord;
  /**
   * Stored in the audit file beside its `pending` row (durable approvals): its decision is
   * taken through the file (first wins), and closing the bus leaves it held.
   */
  readonly durable: boolean;
  /** The sender's trust when it was held (the approval's policy re-check uses it for a restored message). */
  readonly trust: number;
  /** Its pending row (and stored copy) is committed: from then on, its absence from the file means decided elsewhere. */
  stored?: boolean;
}

/** Decides how a cancelled hold's decision is recorded (approvals.ts: in the file for a durable hold). */
export interface HoldEnds {
  expire(hold: HeldMessage): void;
  /** Records the cancellation; false when the hold was already decided elsewhere. */
  cancel(hold: HeldMessage, reason: string): boolean;
}

/**
 * What is in flight: pending requests by id (with their deadlines) and held messages.
 * Everything that ends a request ends here: settle, fail, expire, cancel.
 */
export class Ledger {
  readonly #pending = new Map<string, PendingRequest>();
  readonly #deadlines: DeadlineQueue<PendingRequest>;
  readonly #journal: Journal;
  readonly #telemetry: Telemetry;
  /** Held messages; their expiry is decided by approval-flow.ts, through `onHoldExpired`. */
  readonly holds: ApprovalQueue<HeldMessage>;

  readonly #ends: HoldEnds;

  constructor(config: PipelineConfig, journal: Journal, ends: HoldEnds) {
    this.#journal = journal;
    this.#telemetry = config.telemetry;
    this.#ends = ends;
    this.#deadlines = new DeadlineQueue(config.clock, (p) => this.expire(p));
    this.holds = new ApprovalQueue<HeldMessage>(config.clock, config.maxPending, config.maxPendingPerSender, (hold) => ends.expire(hold));
    if (config.telemetry.enabled) this.holds.onSize = (count) => config.telemetry.approvalsHeld(count);
  }

  get(id: string): PendingRequest | undefined {
    return this.#pending.get(id);
  }

  /** Tracks a request on its way to its recipient: by id, by deadline, by both agents. */
  track(p: PendingRequest): void {
    this.#pending.set(p.envelope.id, p);
    this.#deadlines.add(p);
    p.sender.outgoing.add(p);
    p.recipient.incoming.add(p);
  }

  /** Tracks a held request (no deadline of its own: the hold's expiry is it). */
  trackHeld(p: PendingRequest): void {
    p.state = 'held';
    this.#pending.set(p.envelope.id, p);
    p.sender.outgoing.add(p);
  }

  /** A held request was approved: untracked, to be tracked again by its delivery. */
  release(p: PendingRequest): void {
    p.state = 'pending';
    this.#pending.delete(p.envelope.id);
    p.sender.outgoing.delete(p);
  }

  /** Takes the request out of every index. Idempotent. */
  settle(p: PendingRequest): void {
    if (p.state === 'settled') return;
    p.state = 'settled';
    this.#pending.delete(p.envelope.id);
    this.#deadlines.remove(p);
    p.sender.outgoing.delete(p);
    p.recipient.incoming.delete(p);
    const onSettle = p.onSettle;
    if (onSettle !== undefined) {
      p.onSettle = undefined;
      onSettle();
    }
  }

  /** Settles with an error now and audits the outcome (no data crosses, so no need to wait). */
  fail(p: PendingRequest, error: BusError, outcome: AuditOutcome | undefined): void {
    if (p.state === 'settled') return;
    this.settle(p);
    const d = p.delivery;
    if (d !== undefined) {
      if (!d.started) d.drop();
      d.abort(error);
    }
    if (outcome !== undefined) this.#journal.ended(p.envelope, outcome, error);
    requestEnded(this.#telemetry, p, error);
    p.reject(error);
  }

  expire(p: PendingRequest): void {
    const e = p.envelope;
    const error = new BusError('TIMEOUT', `${e.type} to ${e.to} ("${e.intent}") got no reply within ${p.timeoutMs}ms`, {
      messageId: e.id,
      timeoutMs: p.timeoutMs,
      agentId: e.to,
    });
    const stack = p.callSite?.stack;
    if (stack !== undefined) error.stack = `${error.name}: ${error.message}\n${stack.split('\n').slice(1).join('\n')}`;
    this.fail(p, error, 'expired');
  }

  /** Cancels a request: held, queued or running. */
  cancel(p: PendingRequest, reason: string, code: ErrorCode = 'CANCELLED'): void {
    if (p.state === 'settled') return;
    const error = new BusError(code, `${p.envelope.type} to ${p.envelope.to} ("${p.envelope.intent}") was cancelled: ${reason}`, {
      messageId: p.envelope.id,
      reason,
    });
    if (p.state === 'held') {
      const hold = this.holds.take(p.envelope.id);
      if (hold !== undefined) this.#ends.cancel(hold, reason);
    }
    this.fail(p, error, 'cancelled');
  }

  /** Aborting `signal` cancels `p`; the listener goes when `p` settles, so a long-lived signal pins nothing. */
  linkSignal(p: PendingRequest, signal: AbortSignal): void {
    const onAbort = () => this.cancel(p, `the signal was aborted (${String(signal.reason)})`);
    signal.addEventListener('abort', onAbort, { once: true });
    const before = p.onSettle;
    p.onSettle = () => {
      signal.removeEventListener('abort', onAbort);
      before?.();
    };
  }

  /** Fails what was addressed to `record` and cancels what it sent. */
  dropAgent(record: AgentRecord): void {
    for (const p of [...record.incoming]) {
      this.fail(p, new BusError('UNKNOWN_AGENT', `${record.id} was unregistered before replying`, { messageId: p.envelope.id, agentId: record.id }), 'failed');
    }
    for (const p of [...record.outgoing]) this.cancel(p, `${record.id} was unregistered`);
  }

  /** Fails every pending request with CLOSED. */
  closeAll(): void {
    for (const p of [...this.#pending.values()]) {
      this.fail(p, closedError(p), 'cancelled');
    }
    this.#deadlines.clear();
  }
}

export function closedError(p: PendingRequest): BusError {
  return new BusError('CLOSED', `the orchestrator closed before "${p.envelope.intent}" to ${p.envelope.to} was answered`, { messageId: p.envelope.id });
}
