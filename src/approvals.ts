import type { EncodedPayload } from './codec.js';
import { DeadlineQueue, type Expirable } from './deadlines.js';
import type { Clock } from './clock.js';
import type { Envelope } from './envelope.js';
import { BusError, type ErrorCode } from './errors.js';

/** A message held for a human decision, as `approvals.list()` shows it. */
export interface PendingApproval {
  /** The approval id: the message id, or `messageId/recipient` for a notify. */
  readonly id: string;
  /** The message exactly as it will be delivered if approved. */
  readonly envelope: Envelope;
  /** Label of the rule that asked for approval. */
  readonly rule?: string;
  readonly payloadHash: string;
  readonly payloadBytes: number;
  /** Epoch ms when it was held. */
  readonly requestedAt: number;
  /** Epoch ms when it expires as APPROVAL_EXPIRED. */
  readonly expiresAt: number;
  /**
   * True when it was held by an earlier process and restored from the audit file (durable
   * approvals): its sender's promise is gone, and its result is read with `bus.result(id)`.
   */
  readonly restored?: true;
}

/** Options of `approvals.approve()`. */
export interface ApproveOptions {
  /** Who approved (recorded in the audit log). */
  by?: string;
  /** A note for the audit log. */
  note?: string;
  /** Also add an allow rule for this pair, type and intent (a new policy version). */
  always?: boolean;
}

/** Options of `approvals.reject()`. */
export interface RejectOptions {
  /** Who rejected (recorded in the audit log). */
  by?: string;
  /** Why; the sender's APPROVAL_REJECTED error carries it. */
  reason?: string;
}

/** The operator's side of the approval queue (`bus.approvals`). */
export interface Approvals {
  /** Held messages, oldest first. */
  list(): PendingApproval[];
  /**
   * Approves a held message: re-checks the policy in force and the payload hash, then
   * stages its delivery behind the audit commit and returns `{ staged: true }`. Staged is
   * not delivered: the message reaches its recipient only once its row is committed, and
   * the outcome is the sender's (a reply, or e.g. AUDIT_UNAVAILABLE when the log refuses
   * the row) and the events' (`message:delivered`, `message:failed`).
   * When the re-check or the reservation refuses it, returns
   * `{ staged: false, delivered: false, code, reason }` and the sender gets that code.
   * Throws INVALID_ARGUMENT for an unknown, decided or expired id (and for bad options).
   * The decision is recorded either way.
   */
  approve(id: string, options?: ApproveOptions): ApprovalResult;
  /** Refuses a held message: the sender gets APPROVAL_REJECTED with the reason. */
  reject(id: string, options?: RejectOptions): void;
}

/**
 * What `approve()` did: staged for delivery behind the audit commit, or refused by the
 * re-check (the sender got the same code). It never claims a delivery that has not happened.
 */
export type ApprovalResult =
  | { readonly staged: true }
  | {
      readonly staged: false;
      readonly delivered: false;
      /** Why not (the sender got the same code). */
      readonly code: ErrorCode;
      readonly reason: string;
    };

/** A held message inside the queue. */
export interface Hold extends Expirable {
  readonly approval: PendingApproval;
  readonly encoded: EncodedPayload;
  /** The sender's id (for per-sender caps). */
  readonly from: string;
}

/**
 * The held messages: caps per sender and overall, expiry by one timer, insertion order
 * for `list()`. Deciding what a decision does is the pipeline's (src/pipeline/approvals.ts).
 */
export class ApprovalQueue<H extends Hold> {
  private readonly holds = new Map<string, H>();
  private readonly perSender = new Map<string, number>();
  private readonly expiry: DeadlineQueue<H>;
  /** Told the number held whenever it changes (the telemetry's gauge), when set. */
  onSize: ((count: number) => void) | undefined = undefined;

  constructor(
    clock: Clock,
    private readonly maxPending: number,
    private readonly maxPendingPerSender: number,
    onExpire: (hold: H) => void,
  ) {
    this.expiry = new DeadlineQueue(clock, (hold) => {
      this.forget(hold);
      onExpire(hold);
    });
  }

  get size(): number {
    return this.holds.size;
  }

  /** The refusal for one more hold from `from`, or undefined when it fits. */
  checkCapacity(from: string): BusError | undefined {
    if (this.holds.size >= this.maxPending) {
      return new BusError('APPROVAL_QUEUE_FULL', `approval queue is full (${this.holds.size} of ${this.maxPending} held)`);
    }
    const mine = this.perSender.get(from) ?? 0;
    if (mine >= this.maxPendingPerSender) {
      return new BusError('APPROVAL_QUEUE_FULL', `${from} already has ${mine} messages held for approval (limit ${this.maxPendingPerSender})`);
    }
    return undefined;
  }

  add(hold: H): void {
    this.holds.set(hold.approval.id, hold);
    this.perSender.set(hold.from, (this.perSender.get(hold.from) ?? 0) + 1);
    this.expiry.add(hold);
    this.onSize?.(this.holds.size);
  }

  get(id: string): H | undefined {
    return this.holds.get(id);
  }

  /** Removes and returns the hold, or undefined if it is not (or no longer) held. */
  take(id: string): H | undefined {
    const hold = this.holds.get(id);
    if (hold !== undefined) this.forget(hold);
    return hold;
  }

  list(): PendingApproval[] {
    return Array.from(this.holds.values(), (hold) => hold.approval);
  }

  /** All holds matching `predicate`, removed. */
  takeWhere(predicate: (hold: H) => boolean): H[] {
    const taken: H[] = [];
    for (const hold of this.holds.values()) if (predicate(hold)) taken.push(hold);
    for (const hold of taken) this.forget(hold);
    return taken;
  }

  private forget(hold: H): void {
    this.holds.delete(hold.approval.id);
    this.expiry.remove(hold);
    const left = (this.perSender.get(hold.from) ?? 1) - 1;
    if (left === 0) this.perSender.delete(hold.from);
    else this.perSender.set(hold.from, left);
    this.onSize?.(this.holds.size);
  }
}
