import type { Envelope } from './envelope.js';
import type { ErrorCode } from './errors.js';

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
  /** The node that holds it, in a fleet's queue (`fleetApprovals` from agent-switchboard/nats); absent in a bus's own. */
  readonly node?: string;
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
