import type { PendingApproval } from '../approvals.js';
import type { Clock } from '../clock.js';
import type { EncodedPayload } from '../codec.js';
import { DeadlineQueue, type Expirable } from '../deadlines.js';
import { BusError } from '../errors.js';

/** A held message inside the queue. */
export interface Hold extends Expirable {
  readonly approval: PendingApproval;
  readonly encoded: EncodedPayload;
  /** The sender's id (for per-sender caps). */
  readonly from: string;
}

/**
 * The held messages: caps per sender and overall, expiry by one timer, insertion order
 * for `list()`. Deciding what a decision does is the ApprovalFlow's (approval-flow.ts).
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
