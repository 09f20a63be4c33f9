import { toBusError, type BusError } from '../errors.js';
import type { CommitInfo } from '../telemetry-port.js';
import type { HeldMessage, Ledger } from './ledger.js';
import type { PipelineConfig } from './config.js';
import type { PendingRequest } from './records.js';

/**
 * What follows an audit write, written once. A send stages its rows in the group commit
 * with one continuation for the commit and one for a failed write; those continuations are
 * made of these steps (and of `Deliveries.handOver` / `Delivery.drop` for a delivery), so
 * what "committed" and "not written" mean for a request and a hold is decided here.
 */
export class AfterCommit {
  readonly #config: PipelineConfig;
  readonly #ledger: Ledger;

  constructor(config: PipelineConfig, ledger: Ledger) {
    this.#config = config;
    this.#ledger = ledger;
  }

  /** A request's attempt row is committed: it goes on; a traced send reports the commit. */
  requestCommitted(p: PendingRequest, committed: CommitInfo | undefined): void {
    p.committed = true;
    if (p.trace !== undefined && committed !== undefined) this.#config.telemetry.sendCommitted(p.trace, committed);
  }

  /** A request's row could not be written: the asker gets AUDIT_UNAVAILABLE (fail closed). */
  requestFailed(p: PendingRequest, error: BusError): void {
    this.#ledger.fail(p, toBusError(error, 'AUDIT_UNAVAILABLE', p.envelope.id), undefined);
  }

  /**
   * A hold's 'pending' row is committed: the operators hear of it (`approval:requested`).
   * With `onlyIfHeld`, not when it was decided or cancelled while its row was written.
   */
  holdCommitted(hold: HeldMessage, onlyIfHeld = false): void {
    // From now on its absence from the audit file means another process decided it (durable approvals).
    hold.stored = hold.durable;
    const { events } = this.#config;
    if (!events.has('approval:requested')) return;
    if (onlyIfHeld && this.#ledger.holds.get(hold.approval.id) !== hold) return;
    events.emit('approval:requested', { approval: hold.approval });
  }

  /** A hold's row could not be written: it was never held. */
  holdFailed(hold: HeldMessage): void {
    this.#ledger.holds.take(hold.approval.id);
  }
}
