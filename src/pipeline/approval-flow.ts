import type { ApprovalResult, ApproveOptions, PendingApproval, RejectOptions } from '../approvals.js';
import { hashPayload } from '../codec.js';
import type { Envelope, RuleType } from '../envelope.js';
import { BusError, describe, MAX_TEXT_LENGTH, toBusError } from '../errors.js';
import type { PipelineConfig } from './config.js';
import type { Deliveries, PipelineParts } from './delivery.js';
import type { Draft } from './draft.js';
import type { Journal } from './journal.js';
import { closedError, type HeldMessage, type Ledger } from './ledger.js';
import type { AgentRecord, Delivery, PendingRequest } from './records.js';
import { checkWellFormed, withRule } from './checks.js';
import { commitInfo, requestEnded } from './tracing.js';

/**
 * Messages held for a human: hold, approve (re-check policy and hash, then deliver),
 * reject, expire, and cancel when an agent leaves or the bus closes.
 */
export class ApprovalFlow {
  readonly #config: PipelineConfig;
  readonly #journal: Journal;
  readonly #ledger: Ledger;
  readonly #deliveries: Deliveries;

  constructor({ config, journal, ledger, deliveries }: PipelineParts) {
    this.#config = config;
    this.#journal = journal;
    this.#ledger = ledger;
    this.#deliveries = deliveries;
  }

  list(): PendingApproval[] {
    return this.#ledger.holds.list();
  }

  /** A held message (not yet added): APPROVAL_QUEUE_FULL when the sender or the queue is at its cap. */
  makeHold(draft: Draft, envelope: Envelope, p: PendingRequest | undefined, parent: Delivery | undefined, expiresAt: number, sender?: AgentRecord): HeldMessage {
    const refusal = this.#ledger.holds.checkCapacity(draft.from);
    if (refusal !== undefined) throw refusal;
    const approval: PendingApproval = Object.freeze({
      id: envelope.type === 'notify' ? `${envelope.id}/${envelope.to}` : envelope.id,
      envelope,
      ...(draft.decision?.ruleLabel !== undefined ? { rule: draft.decision.ruleLabel } : {}),
      payloadHash: draft.hash !== '' ? draft.hash : hashPayload(draft.encoded!),
      payloadBytes: draft.encoded!.bytes,
      requestedAt: draft.ts,
      expiresAt,
    });
    const hold: HeldMessage = { approval, encoded: draft.encoded!, from: draft.from, pending: p, parent, deadline: expiresAt, heapIndex: -1 };
    return sender === undefined ? hold : { ...hold, sender };
  }

  /** Holds one copy of a notify (its row is the caller's to stage): APPROVAL_QUEUE_FULL when full. */
  holdCopy(draft: Draft, envelope: Envelope, parent: Delivery | undefined, sender?: AgentRecord): HeldMessage {
    const hold = this.makeHold(draft, envelope, undefined, parent, draft.ts + this.#config.approvalTtlMs, sender);
    this.#ledger.holds.add(hold);
    return hold;
  }

  /** Holds an ask or delegate: its 'pending' row, then `approval:requested` once committed. */
  hold(draft: Draft, envelope: Envelope, p: PendingRequest, parent: Delivery | undefined, deadline: number): void {
    const hold = this.makeHold(draft, envelope, p, parent, deadline, p.sender.node !== undefined ? p.sender : undefined);
    const ledger = this.#ledger;
    ledger.holds.add(hold);
    ledger.trackHeld(p);
    const { commit, events, telemetry } = this.#config;
    if (p.trace !== undefined) telemetry.sendHeld(p.trace, hold.approval.rule);
    if (events.has('message:sent')) events.emit('message:sent', { envelope });
    commit.stage(
      commit.enabled ? this.#journal.attempt(draft, 'pending') : undefined,
      () => {
        if (events.has('approval:requested') && ledger.holds.get(hold.approval.id) === hold) events.emit('approval:requested', { approval: hold.approval });
      },
      (error) => {
        ledger.holds.take(hold.approval.id);
        ledger.fail(p, toBusError(error, 'AUDIT_UNAVAILABLE', envelope.id), undefined);
      },
    );
  }

  /**
   * Approves: re-checks the sender, the recipient, the policy in force and the payload
   * hash, then stages the delivery behind the audit commit. Returns `{ staged: true }`
   * (the outcome reaches the sender, `message:delivered` or `message:failed`, once the
   * row is committed) or `{ staged: false, delivered: false, code, reason }` when the
   * re-check refused it (the sender got the same code).
   */
  approve(id: unknown, options: ApproveOptions | undefined, closed: boolean): ApprovalResult {
    const o = readDecisionOptions(options, 'approve', ['by', 'note', 'always']);
    const by = checkDecisionText(o.by, 'by', 256);
    const note = checkDecisionText(o.note, 'note', MAX_TEXT_LENGTH);
    if (o.always !== undefined && typeof o.always !== 'boolean') throw new BusError('INVALID_ARGUMENT', `approve(): always must be a boolean, got ${describe(o.always)}`);
    const hold = this.#take(id, 'approve', closed);
    const envelope = hold.approval.envelope;
    this.#journal.decided(hold.approval, 'approved', by, note, undefined);

    const p = hold.pending;
    const { registry, policy } = this.#config;
    // A message from another node names its sender's stand-in (with the trust this node grants it, `remoteTrust`).
    const sender = hold.sender ?? registry.get(envelope.from);
    const recipient = registry.get(envelope.to);
    try {
      if (sender === undefined || !sender.alive) throw new BusError('UNKNOWN_AGENT', `${envelope.from} is no longer registered`, { agentId: envelope.from });
      if (recipient === undefined) throw new BusError('UNKNOWN_AGENT', `${envelope.to} is no longer registered`, { agentId: envelope.to });
      const decision = policy.current.evaluate({ from: envelope.from, to: envelope.to, type: envelope.type as RuleType, intent: envelope.intent, trust: sender.trust });
      if (decision.decision === 'deny') {
        throw new BusError('POLICY_DENIED', `approved, but the policy in force (version ${decision.policyVersion}) now denies it: ${decision.reason}`, withRule({}, decision));
      }
      if (hashPayload(hold.encoded) !== hold.approval.payloadHash) {
        throw new BusError('INVALID_PAYLOAD', 'approved, but the held payload no longer matches its recorded hash');
      }
      // Only after the re-check: "always" must not re-grant what the policy took away meanwhile.
      if (o.always === true) policy.allowExactly(envelope);
      if (p !== undefined) this.#ledger.release(p);
      // The attempt row exists already (decision 'pending'): only the outcome is new.
      const committed = p?.trace === undefined ? undefined : commitInfo('pending', hold.approval.rule, decision.policyVersion);
      this.#deliveries.deliver(this.#journal.enabled ? this.#journal.outcome(envelope, 'delivered') : undefined, envelope, recipient, p, hold.parent, committed);
      return STAGED;
    } catch (error) {
      const e = toBusError(error, 'INVALID_ARGUMENT', envelope.id);
      if (p !== undefined) this.#ledger.fail(p, e, 'failed');
      else this.#journal.recordOutcome(envelope, 'failed', e.code, e.message);
      return Object.freeze({ staged: false, delivered: false, code: e.code, reason: e.message });
    }
  }

  /** Rejects: the sender gets APPROVAL_REJECTED with the reason. */
  reject(id: unknown, options: RejectOptions | undefined, closed: boolean): void {
    const o = readDecisionOptions(options, 'reject', ['by', 'reason']);
    const by = checkDecisionText(o.by, 'by', 256);
    const reason = checkDecisionText(o.reason, 'reason', MAX_TEXT_LENGTH);
    const hold = this.#take(id, 'reject', closed);
    this.#journal.decided(hold.approval, 'rejected', by, reason, reason);
    const envelope = hold.approval.envelope;
    const error = new BusError('APPROVAL_REJECTED', `${envelope.type} to ${envelope.to} ("${envelope.intent}") was rejected${by !== undefined ? ` by ${by}` : ''}${reason !== undefined ? `: ${reason}` : ''}`, {
      messageId: envelope.id,
      ...(reason !== undefined ? { reason } : {}),
    });
    this.#end(hold, error, 'failed');
  }

  #take(id: unknown, verb: string, closed: boolean): HeldMessage {
    if (closed) throw new BusError('CLOSED', 'the orchestrator is closed');
    if (typeof id !== 'string') throw new BusError('INVALID_ARGUMENT', `${verb}(id): expected an approval id, got ${describe(id)}`);
    const hold = this.#ledger.holds.take(id);
    if (hold === undefined) {
      throw new BusError('INVALID_ARGUMENT', `${verb}("${id}"): no message is held under that id (unknown, already decided or expired)`, { messageId: id });
    }
    if (hold.approval.expiresAt <= this.#config.clock.now()) {
      // Past its deadline, though the expiry timer has not run yet: it expired.
      this.expire(hold);
      throw new BusError('INVALID_ARGUMENT', `${verb}("${id}"): the held message expired before the decision`, { messageId: id });
    }
    return hold;
  }

  /** A hold reached its deadline: APPROVAL_EXPIRED. */
  expire(hold: HeldMessage): void {
    const envelope = hold.approval.envelope;
    const timeoutMs = hold.approval.expiresAt - hold.approval.requestedAt;
    this.#journal.decided(hold.approval, 'expired', undefined, undefined, undefined);
    const error = new BusError('APPROVAL_EXPIRED', `${envelope.type} to ${envelope.to} ("${envelope.intent}") was not approved within ${timeoutMs}ms`, {
      messageId: envelope.id,
      timeoutMs,
    });
    const p = hold.pending;
    if (p !== undefined) this.#ledger.settle(p);
    this.#journal.recordOutcome(envelope, 'expired', 'APPROVAL_EXPIRED', error.message);
    if (p !== undefined) requestEnded(this.#config.telemetry, p, error);
    p?.reject(error);
    const { events } = this.#config;
    if (events.has('message:expired')) events.emit('message:expired', { envelope, code: 'APPROVAL_EXPIRED' });
  }

  /** Cancels what `record` sent or was sent that is still held. */
  cancelFor(record: AgentRecord, gone: BusError): void {
    for (const hold of this.#ledger.holds.takeWhere((h) => h.approval.envelope.to === record.id || h.from === record.id)) {
      this.#journal.decided(hold.approval, 'cancelled', undefined, undefined, `${record.id} was unregistered`);
      this.#end(hold, gone, 'cancelled');
    }
  }

  /** Cancels every hold: the bus is closing. */
  cancelAll(): void {
    for (const hold of this.#ledger.holds.takeWhere(() => true)) {
      this.#journal.decided(hold.approval, 'cancelled', undefined, undefined, 'the orchestrator closed');
      const p = hold.pending;
      if (p !== undefined) this.#ledger.fail(p, closedError(p), 'cancelled');
      else this.#journal.recordOutcome(hold.approval.envelope, 'cancelled', 'CLOSED', 'the orchestrator closed');
    }
  }

  #end(hold: HeldMessage, error: BusError, outcome: 'failed' | 'cancelled'): void {
    if (hold.pending !== undefined) this.#ledger.fail(hold.pending, error, outcome);
    else this.#journal.recordOutcome(hold.approval.envelope, outcome, error.code, error.message);
  }
}

const STAGED: ApprovalResult = Object.freeze({ staged: true });

/** The decision's options, each read once into a plain object; unknown keys refused. */
function readDecisionOptions(options: unknown, verb: string, known: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (options === undefined) return out;
  if (typeof options !== 'object' || options === null) throw new BusError('INVALID_ARGUMENT', `${verb}(id, options): options must be an object, got ${describe(options)}`);
  try {
    for (const key of Object.keys(options)) {
      if (!known.includes(key)) throw new BusError('INVALID_ARGUMENT', `${verb}(): unknown option "${key}" (expected ${known.join(', ')})`);
      out[key] = (options as Record<string, unknown>)[key];
    }
  } catch (error) {
    throw toBusError(error, 'INVALID_ARGUMENT', undefined, `${verb}(): cannot read the options: `);
  }
  return out;
}

function checkDecisionText(value: unknown, key: string, max: number): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length > max) {
    throw new BusError('INVALID_ARGUMENT', `${key} must be a string of at most ${max} characters, got ${describe(value)}`);
  }
  checkWellFormed(value, key);
  return value;
}
