import type { ApprovalResult, ApproveOptions, PendingApproval, RejectOptions } from '../approvals.js';
import type { AttemptRecord, AuditRecord, HeldCopy, HoldDecision, HoldStore, StoredHold } from '../audit/types.js';
import { DeadlineQueue } from '../deadlines.js';
import type { PolicyDecision } from '../policy.js';
import { absentRecord, noRecipient, readStoredHold, REDECIDED, unreadableApproval, UNVOUCHED } from './restore.js';
import { COL } from '../audit/migrations.js';
import { encodeHoldFacts } from '../audit/hold-facts.js';
import { hashPayload } from '../codec.js';
import type { Envelope, RuleType } from '../envelope.js';
import { BusError, describe, MAX_TEXT_LENGTH, toBusError } from '../errors.js';
import type { AfterCommit } from './after-commit.js';
import type { PipelineConfig } from './config.js';
import type { Deliveries, PipelineParts } from './delivery.js';
import type { Draft } from './draft.js';
import type { Journal } from './journal.js';
import type { RemoteSends } from './remote-send.js';
import { closedError, type HeldMessage, type Ledger } from './ledger.js';
import { PendingRequest, type AgentRecord, type Delivery } from './records.js';
import { checkWellFormed, withRule } from './checks.js';
import { commitInfo, requestEnded } from './tracing.js';

/**
 * Messages held for a human: hold, approve (re-check policy and hash, then deliver),
 * reject, expire, and cancel when an agent leaves or the bus closes.
 *
 * With a file log (durable approvals) a hold is stored beside its `pending` row, every
 * decision on it is taken through the file (`HoldStore.decide`: the first connection to
 * decide wins, whichever process it is in), `close()` leaves it held, and a bus opened on
 * the file restores it (`restore`).
 */
export class ApprovalFlow {
  readonly #config: PipelineConfig;
  readonly #journal: Journal;
  readonly #ledger: Ledger;
  readonly #deliveries: Deliveries;
  /** The file that keeps holds, when the log is one. */
  readonly #store: HoldStore | undefined;
  /** Told about a live request whose hold another process decided: it follows the log from here. */
  readonly #follow: (p: PendingRequest) => void;
  /** Approved durable messages waiting for their recipient to register, until their deadline. */
  readonly #awaiting: DeadlineQueue<HeldMessage>;
  readonly #awaitingFor = new Map<string, Set<HeldMessage>>();
  /** Looks at the file for what other processes held or decided (see `sync`), while the bus is open. */
  readonly #watch: ReturnType<typeof setInterval> | undefined;
  /** The highest pending-row seq among the holds read from the file: rows written since have higher ones. */
  #seenSeq = -1;

  readonly #after: AfterCommit;
  /** Where an approved message to another node's agent is carried. */
  readonly #remote: Pick<RemoteSends, 'recipient' | 'approved'>;

  constructor({ config, journal, ledger, deliveries, after, remote }: PipelineParts & { readonly remote: Pick<RemoteSends, 'recipient' | 'approved'> }, follow: (p: PendingRequest) => void) {
    this.#after = after;
    this.#config = config;
    this.#journal = journal;
    this.#ledger = ledger;
    this.#deliveries = deliveries;
    this.#remote = remote;
    this.#store = config.holdStore?.keepsHolds === true ? config.holdStore : undefined;
    this.#follow = follow;
    this.#awaiting = new DeadlineQueue(config.clock, (hold) => this.#recipientMissed(hold));
    if (this.#store !== undefined) {
      this.#watch = setInterval(() => this.sync(), SYNC_MS);
      this.#watch.unref?.();
    }
  }

  /**
   * Brings this bus in line with the file, which other processes (other buses on it) also
   * hold and decide in: a hold of this bus decided elsewhere leaves the list (a live sender
   * here follows the log for its outcome); one approved elsewhere is delivered here if its
   * recipient is registered here (the file's transaction makes one process deliver it); a
   * message another process held since is listed here too (`restored: true`).
   */
  sync(): void {
    const store = this.#store;
    if (store === undefined) return;
    let states: [string, string, number][];
    try {
      states = store.holdStates();
    } catch {
      return; // the file cannot be read now: next time
    }
    const inFile = new Map<string, number>();
    for (const [messageId, to, approved] of states) inFile.set(`${messageId}\u0000${to}`, approved);
    const keyOf = (hold: HeldMessage) => `${hold.approval.envelope.id}\u0000${hold.approval.envelope.to}`;
    const known = new Set<string>();
    const changed = this.#ledger.holds.takeWhere((hold) => {
      if (!hold.durable) return false;
      const key = keyOf(hold);
      known.add(key);
      return hold.stored === true && inFile.get(key) !== 0;
    });
    for (const hold of changed) {
      if (inFile.get(keyOf(hold)) === 1) {
        const vouched = this.#approvalRecorded(hold.approval.envelope.id, hold.approval.envelope.to);
        if (vouched === undefined) {
          this.#ledger.holds.add(hold); // the log cannot be read now: next time
        } else if (!vouched) {
          this.#refuseUnvouched(hold);
        } else {
          this.#journal.emitDecided(hold.approval, 'approved', undefined, undefined, 'approved by another process');
          this.#await(hold);
        }
      } else {
        this.#lost(hold);
        this.#journal.emitDecided(hold.approval, 'cancelled', undefined, undefined, 'decided by another process');
      }
    }
    for (const [to, waiting] of this.#awaitingFor) {
      for (const hold of waiting) {
        const key = keyOf(hold);
        known.add(key);
        if (inFile.has(key)) continue;
        // Delivered or failed by another process.
        waiting.delete(hold);
        this.#awaiting.remove(hold);
        this.#lost(hold);
      }
      if (waiting.size === 0) this.#awaitingFor.delete(to);
    }
    let fresh = false;
    for (const key of inFile.keys()) if (!known.has(key)) fresh = true;
    if (!fresh) return;
    let stored: StoredHold[];
    try {
      stored = store.holds(this.#seenSeq);
      for (const s of stored) if (s.seq > this.#seenSeq) this.#seenSeq = s.seq;
      stored = stored.filter((s) => !known.has(`${s.messageId}\u0000${s.to}`));
    } catch {
      return;
    }
    const added = this.restore(stored);
    const { events } = this.#config;
    if (events.has('approval:requested')) for (const hold of added) events.emit('approval:requested', { approval: hold.approval });
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
    // Another node's message is held here for its live sender only: it is not kept in the file.
    const durable = this.#store !== undefined && sender === undefined;
    const trust = p?.sender.trust ?? this.#config.registry.get(draft.from)?.trust ?? 0;
    const hold: HeldMessage = { approval, encoded: draft.encoded!, from: draft.from, pending: p, parent, deadline: expiresAt, heapIndex: -1, durable, trust };
    return sender === undefined ? hold : { ...hold, sender };
  }

  /** The `pending` attempt row of a hold, carrying its held copy when the file keeps it. */
  pendingRecord(draft: Draft, hold: HeldMessage): AttemptRecord {
    const record = this.#journal.attempt(draft, 'pending');
    if (!hold.durable) return record;
    const { approval, encoded, trust } = hold;
    const e = approval.envelope;
    // What restoring acts on goes in the chained row; the copy beside it is a cache whose
    // payload is checked against the row's hash and whose other columns restoring ignores.
    const facts = encodeHoldFacts({ trust, expiresAt: approval.expiresAt, priority: e.priority, depth: e.depth, ...(e.deadline !== undefined ? { deadline: e.deadline } : {}) });
    const held: HeldCopy = {
      envelope: `{"priority":"${e.priority}","depth":${e.depth}${e.deadline !== undefined ? `,"deadline":${e.deadline}` : ''}}`,
      payload: encoded.json,
      requestedAt: approval.requestedAt,
      expiresAt: approval.expiresAt,
      ...(approval.rule !== undefined ? { rule: approval.rule } : {}),
      trust,
    };
    return { ...record, hold: facts, held };
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
      commit.enabled ? this.pendingRecord(draft, hold) : undefined,
      () => this.#after.holdCommitted(hold, true),
      (error) => {
        this.#after.holdFailed(hold);
        this.#after.requestFailed(p, error);
      },
    );
  }

  /**
   * Puts back what an earlier process left held in the file: listed (`restored: true`) until
   * decided; those whose deadline passed meanwhile are recorded expired now, and a copy that
   * does not match its chained `pending` row is never delivered (recorded failed, INVALID_PAYLOAD).
   */
  restore(stored: readonly StoredHold[]): HeldMessage[] {
    const store = this.#store;
    const listed: HeldMessage[] = [];
    if (store === undefined || stored.length === 0) return listed;
    for (const s of stored) if (s.seq > this.#seenSeq) this.#seenSeq = s.seq;
    const now = this.#config.clock.now();
    const journal = this.#journal;
    const decisions: HoldDecision[] = [];
    for (const s of stored) {
      // The flag is a column any editor of the file can set: only a chained approval row vouches for it.
      const vouched = s.approved ? this.#approvalRecorded(s.messageId, s.to) : true;
      if (vouched === undefined) continue; // the log cannot be read now: left in the file for the next look
      const copy = vouched ? readStoredHold(s, this.#config.approvalTtlMs) : UNVOUCHED;
      if (typeof copy === 'string') {
        const approval = unreadableApproval(s);
        const why = `the held copy was not restored: ${copy}`;
        const records: AuditRecord[] = [journal.outcome(approval.envelope, 'failed', 'INVALID_PAYLOAD', why)];
        if (!s.approved || !vouched) records.unshift(journal.decision(approval, 'cancelled', undefined, why));
        decisions.push({ messageId: s.messageId, to: s.to, records, approved: s.approved });
        continue;
      }
      // Trust and expiry as the chained row records them (the hold row's columns are a cache an edit could change).
      const { envelope, approval, encoded, trust } = copy;
      const expiresAt = approval.expiresAt;
      if (expiresAt <= now) {
        decisions.push({ messageId: s.messageId, to: s.to, records: this.#expiredRecords(approval, s.approved), approved: s.approved });
        continue;
      }
      let p: PendingRequest | undefined;
      if (envelope.type !== 'notify') {
        const recipient = this.#config.registry.get(envelope.to) ?? absentRecord(envelope.to, 0);
        p = new PendingRequest(envelope, absentRecord(envelope.from, trust), recipient, Math.max(0, (envelope.deadline ?? expiresAt) - now), ignore, ignore, undefined);
        p.keepReply = true;
      }
      const hold: HeldMessage = { approval, encoded, from: envelope.from, pending: p, parent: undefined, deadline: expiresAt, heapIndex: -1, durable: true, trust, stored: true };
      if (s.approved) {
        if (p !== undefined) p.state = 'held';
        this.#await(hold);
      } else {
        this.#ledger.holds.add(hold);
        if (p !== undefined) this.#ledger.trackHeld(p);
        listed.push(hold);
      }
    }
    if (decisions.length > 0) store.decide(decisions);
    return listed;
  }

  /** An agent registered: approved restored messages waiting for it are delivered now. */
  registered(record: AgentRecord): void {
    const waiting = this.#awaitingFor.get(record.id);
    if (waiting === undefined) return;
    this.#awaitingFor.delete(record.id);
    for (const hold of waiting) {
      this.#awaiting.remove(hold);
      this.#deliverApproved(hold, record);
    }
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
    if (hold.durable) return this.#approveDurable(hold, by, note, o.always === true);
    const envelope = hold.approval.envelope;
    this.#journal.decided(hold.approval, 'approved', by, note, undefined);

    const p = hold.pending;
    try {
      const { recipient, decision } = this.#recheck(hold);
      if (recipient === undefined) throw new BusError('UNKNOWN_AGENT', `${envelope.to} is no longer registered`, { agentId: envelope.to });
      // Only after the re-check: "always" must not re-grant what the policy took away meanwhile.
      if (o.always === true) this.#config.policy.allowExactly(envelope);
      if (p !== undefined) this.#ledger.release(p);
      // The attempt row exists already (decision 'pending'): only the outcome is new.
      const committed = p?.trace === undefined ? undefined : commitInfo('pending', hold.approval.rule, decision.policyVersion);
      if (recipient.node !== undefined) {
        // The receiving node's policy decides again (and may hold it there too): the stricter of both holds.
        this.#remote.approved(envelope, hold.encoded, p, hold.parent, recipient.node, committed);
        return STAGED;
      }
      this.#deliveries.deliver(this.#journal.enabled ? this.#journal.outcome(envelope, 'delivered') : undefined, envelope, recipient, p, hold.parent, committed);
      return STAGED;
    } catch (error) {
      const e = toBusError(error, 'INVALID_ARGUMENT', envelope.id);
      if (p !== undefined) this.#ledger.fail(p, e, 'failed');
      else this.#journal.recordOutcome(envelope, 'failed', e.code, e.message);
      return refused(e);
    }
  }

  /**
   * The re-check of an approval: sender (a restored message has none: its trust was kept),
   * recipient (undefined when a restored message's is not registered yet), policy, hash.
   */
  #recheck(hold: HeldMessage): { recipient: AgentRecord | undefined; decision: PolicyDecision } {
    const envelope = hold.approval.envelope;
    const { registry, policy } = this.#config;
    const restored = hold.approval.restored === true;
    let trust = hold.trust;
    if (!restored) {
      // A message from another node names its sender's stand-in (with the trust this node grants it, `remoteTrust`).
      const sender = hold.sender ?? registry.get(envelope.from);
      if (sender === undefined || !sender.alive) throw new BusError('UNKNOWN_AGENT', `${envelope.from} is no longer registered`, { agentId: envelope.from });
      trust = sender.trust;
    }
    // Held here on its way to another node: where that agent is served now (it may have moved).
    const recipient = registry.get(envelope.to) ?? (hold.sender === undefined ? this.#remote.recipient(envelope.to) : undefined);
    if (recipient === undefined && !restored) throw new BusError('UNKNOWN_AGENT', `${envelope.to} is no longer registered`, { agentId: envelope.to });
    const decision = policy.current.evaluate({ from: envelope.from, to: envelope.to, type: envelope.type as RuleType, intent: envelope.intent, trust, recipientTrust: recipient?.trust ?? 0 });
    if (decision.decision === 'deny') {
      throw new BusError('POLICY_DENIED', `approved, but the policy in force (version ${decision.policyVersion}) now denies it: ${decision.reason}`, withRule({}, decision));
    }
    if (hashPayload(hold.encoded) !== hold.approval.payloadHash) {
      throw new BusError('INVALID_PAYLOAD', 'approved, but the held payload no longer matches its recorded hash');
    }
    return { recipient, decision };
  }

  /**
   * Approves a hold the file keeps: the decision and its first outcome are written in one
   * transaction that also takes the hold out of the file, so a second decider (another
   * console, another process) finds it gone. A restored message whose recipient is not
   * registered stays in the file, approved, until it is delivered or its deadline passes.
   */
  #approveDurable(hold: HeldMessage, by: string | undefined, note: string | undefined, always: boolean): ApprovalResult {
    const envelope = hold.approval.envelope;
    const journal = this.#journal;
    const p = hold.pending;
    // A restored hold is a row any editor of the file can put back: one the log shows decided is never delivered.
    if (hold.approval.restored === true && this.#decidedInLog(envelope.id, envelope.to)) {
      const { error, taken } = this.#refuseUnvouched(hold, false, REDECIDED);
      // Not in the file any more: another console or process decided it since this bus listed it.
      if (!taken) throw this.#decidedElsewhere(hold, 'approve');
      return refused(error);
    }
    let failure: BusError | undefined;
    let recipient: AgentRecord | undefined;
    let decision: PolicyDecision | undefined;
    let delivery: Delivery | undefined;
    try {
      ({ recipient, decision } = this.#recheck(hold));
      if (recipient !== undefined) {
        if (p !== undefined) p.recipient = recipient;
        // Another node's agent: carried once the decision is written (its node decides again).
        if (recipient.node === undefined) delivery = this.#deliveries.reserve(envelope, recipient, p, hold.parent);
      }
    } catch (error) {
      failure = toBusError(error, 'INVALID_ARGUMENT', envelope.id);
    }
    const records: AuditRecord[] = [journal.decision(hold.approval, 'approved', by, note)];
    if (failure !== undefined) records.push(journal.outcome(envelope, 'failed', failure.code, failure.message));
    else if (delivery !== undefined) records.push(journal.outcome(envelope, 'delivered'));
    let taken: boolean;
    try {
      taken = this.#decide(hold, records, { keep: failure === undefined && recipient === undefined });
    } catch (error) {
      this.#undoReserve(delivery, p);
      this.#ledger.holds.add(hold); // nothing was written: still held
      throw error;
    }
    if (!taken) {
      this.#undoReserve(delivery, p);
      throw this.#decidedElsewhere(hold, 'approve');
    }
    journal.emitDecided(hold.approval, 'approved', by, note, undefined);
    if (failure !== undefined) {
      this.#failWritten(hold, failure, 'failed');
      return refused(failure);
    }
    if (always) this.#config.policy.allowExactly(envelope);
    if (recipient === undefined) {
      this.#await(hold);
      return STAGED;
    }
    if (p !== undefined) this.#ledger.release(p);
    const committed = p?.trace === undefined ? undefined : commitInfo('pending', hold.approval.rule, decision!.policyVersion);
    if (recipient.node !== undefined) this.#remote.approved(envelope, hold.encoded, p, hold.parent, recipient.node, committed);
    else this.#deliveries.deliverReserved(delivery!, undefined, p, committed);
    return STAGED;
  }

  #undoReserve(delivery: Delivery | undefined, p: PendingRequest | undefined): void {
    if (delivery === undefined) return;
    delivery.drop();
    if (p !== undefined) p.delivery = undefined;
  }

  /** Rejects: the sender gets APPROVAL_REJECTED with the reason. */
  reject(id: unknown, options: RejectOptions | undefined, closed: boolean): void {
    const o = readDecisionOptions(options, 'reject', ['by', 'reason']);
    const by = checkDecisionText(o.by, 'by', 256);
    const reason = checkDecisionText(o.reason, 'reason', MAX_TEXT_LENGTH);
    const hold = this.#take(id, 'reject', closed);
    const envelope = hold.approval.envelope;
    const error = new BusError('APPROVAL_REJECTED', `${envelope.type} to ${envelope.to} ("${envelope.intent}") was rejected${by !== undefined ? ` by ${by}` : ''}${reason !== undefined ? `: ${reason}` : ''}`, {
      messageId: envelope.id,
      ...(reason !== undefined ? { reason } : {}),
    });
    if (hold.durable) {
      let taken: boolean;
      try {
        taken = this.#decide(hold, [this.#journal.decision(hold.approval, 'rejected', by, reason), this.#journal.outcome(envelope, 'failed', error.code, error.message)]);
      } catch (e) {
        this.#ledger.holds.add(hold);
        throw e;
      }
      if (!taken) throw this.#decidedElsewhere(hold, 'reject');
      this.#journal.emitDecided(hold.approval, 'rejected', by, reason, reason);
      this.#failWritten(hold, error, 'failed');
      return;
    }
    this.#journal.decided(hold.approval, 'rejected', by, reason, reason);
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
    const error = expiredError(hold.approval);
    if (hold.durable) {
      const taken = this.#decideOrStage(hold, this.#expiredRecords(hold.approval, false));
      if (!taken) return;
      this.#journal.emitDecided(hold.approval, 'expired', undefined, undefined, undefined);
    } else {
      this.#journal.decided(hold.approval, 'expired', undefined, undefined, undefined);
      this.#journal.recordOutcome(envelope, 'expired', 'APPROVAL_EXPIRED', error.message);
    }
    const p = hold.pending;
    if (p !== undefined) {
      this.#ledger.settle(p);
      requestEnded(this.#config.telemetry, p, error);
      p.reject(error);
    }
    const { events } = this.#config;
    if (events.has('message:expired')) events.emit('message:expired', { envelope, code: 'APPROVAL_EXPIRED' });
  }

  /** The rows of a stored hold whose deadline passed: the decision (unless approved already) and the outcome. */
  #expiredRecords(approval: PendingApproval, approved: boolean): AuditRecord[] {
    const envelope = approval.envelope;
    if (approved) {
      const e = noRecipient(envelope);
      return [this.#journal.outcome(envelope, 'failed', e.code, e.message)];
    }
    return [this.#journal.decision(approval, 'expired', undefined, undefined), this.#journal.outcome(envelope, 'expired', 'APPROVAL_EXPIRED', expiredError(approval).message)];
  }

  /** Records a cancelled hold's decision (the ledger fails its request): false when another process decided it first. */
  cancelled(hold: HeldMessage, reason: string): boolean {
    if (!hold.durable) {
      this.#journal.decided(hold.approval, 'cancelled', undefined, undefined, reason);
      return true;
    }
    const taken = this.#decideOrStage(hold, [this.#journal.decision(hold.approval, 'cancelled', undefined, reason)]);
    if (taken) this.#journal.emitDecided(hold.approval, 'cancelled', undefined, undefined, reason);
    return taken;
  }

  /** Cancels what `record` sent or was sent that is still held (a restored message waits for its recipient instead). */
  cancelFor(record: AgentRecord, gone: BusError): void {
    for (const hold of this.#ledger.holds.takeWhere((h) => h.approval.restored !== true && (h.approval.envelope.to === record.id || h.from === record.id))) {
      const reason = `${record.id} was unregistered`;
      if (!hold.durable) {
        this.#journal.decided(hold.approval, 'cancelled', undefined, undefined, reason);
        this.#end(hold, gone, 'cancelled');
        continue;
      }
      const records = [this.#journal.decision(hold.approval, 'cancelled', undefined, reason), this.#journal.outcome(hold.approval.envelope, 'cancelled', gone.code, gone.message)];
      if (!this.#decideOrStage(hold, records)) continue;
      this.#journal.emitDecided(hold.approval, 'cancelled', undefined, undefined, reason);
      this.#failWritten(hold, gone, 'cancelled');
    }
  }

  /**
   * The bus is closing: a hold the file keeps stays held there (its sender's promise fails
   * with CLOSED, and nothing is recorded); any other is cancelled.
   */
  cancelAll(): void {
    for (const hold of this.#ledger.holds.takeWhere(() => true)) {
      const p = hold.pending;
      if (hold.durable) {
        if (p !== undefined) this.#dropQuietly(p, closedError(p));
        continue;
      }
      this.#journal.decided(hold.approval, 'cancelled', undefined, undefined, 'the orchestrator closed');
      if (p !== undefined) this.#ledger.fail(p, closedError(p), 'cancelled');
      else this.#journal.recordOutcome(hold.approval.envelope, 'cancelled', 'CLOSED', 'the orchestrator closed');
    }
    for (const waiting of this.#awaitingFor.values()) {
      for (const hold of waiting) if (hold.pending !== undefined) this.#dropQuietly(hold.pending, closedError(hold.pending));
    }
    this.#awaitingFor.clear();
    this.#awaiting.clear();
    if (this.#watch !== undefined) clearInterval(this.#watch);
  }

  /** Fails a request without a row: its message stays in the file, whose next process decides it. */
  #dropQuietly(p: PendingRequest, error: BusError): void {
    if (p.state === 'held') this.#ledger.release(p);
    p.state = 'settled';
    requestEnded(this.#config.telemetry, p, error);
    p.reject(error);
  }

  /** Takes a decision through the file; its pending row (and all before it) is written first. */
  #decide(hold: HeldMessage, records: AuditRecord[], options: { keep?: boolean; approved?: boolean } = {}): boolean {
    this.#config.commit.flush();
    const envelope = hold.approval.envelope;
    const [taken] = this.#store!.decide([{ messageId: envelope.id, to: envelope.to, records, ...options }]);
    if (!taken) this.#lost(hold);
    return taken === true;
  }

  /** An automatic decision (expiry, cancel): when the file cannot take it, its rows are staged like any other (the copy stays in the file, and the next process decides it again). */
  #decideOrStage(hold: HeldMessage, records: AuditRecord[], options: { approved?: boolean } = {}): boolean {
    try {
      return this.#decide(hold, records, options);
    } catch {
      if (this.#journal.enabled) this.#config.commit.stage(records);
      return true;
    }
  }

  /** Another process took the decision first: a live sender here follows the log for its outcome. */
  #lost(hold: HeldMessage): void {
    const p = hold.pending;
    if (p === undefined || hold.approval.restored === true) {
      if (p !== undefined && p.state !== 'settled') {
        if (p.state === 'held') this.#ledger.release(p);
        p.state = 'settled';
      }
      return;
    }
    if (p.state === 'held') this.#ledger.release(p);
    this.#follow(p);
  }

  /**
   * Whether the log vouches for a hold the file marks approved: its one decision row is
   * `approved` and no outcome follows it (the flag is set in the transaction of that row,
   * and the first outcome takes the hold out of the file, so a hold put back after its
   * delivery has one); undefined when the log cannot be read.
   */
  #approvalRecorded(messageId: string, to: string): boolean | undefined {
    let rows: unknown[][];
    try {
      rows = this.#store!.messageRecords(messageId);
    } catch {
      return undefined;
    }
    const own = rows.filter((row) => row[COL.message_id] === messageId && row[COL.recipient] === to);
    const decisions = own.filter((row) => row[COL.kind] === 'approval');
    if (decisions.length !== 1 || decisions[0]![COL.approval] !== 'approved') return false;
    const approvedAt = decisions[0]![COL.seq] as number;
    return !own.some((row) => row[COL.kind] === 'outcome' && (row[COL.seq] as number) > approvedAt);
  }

  /** Whether the log records a decision on `messageId` to `to` already (a read failure counts as decided: nothing is delivered on it). */
  #decidedInLog(messageId: string, to: string): boolean {
    try {
      return this.#store!.messageRecords(messageId).some((row) => row[COL.kind] === 'approval' && row[COL.message_id] === messageId && row[COL.recipient] === to);
    } catch {
      return true;
    }
  }

  /**
   * A hold the log does not vouch for (marked approved with no approval row, or decided
   * before): never delivered, recorded cancelled and failed. Returns the sender's error, and
   * whether the file took the rows (false: its hold was gone, decided by another process).
   */
  #refuseUnvouched(hold: HeldMessage, approvedInFile = true, what = UNVOUCHED): { error: BusError; taken: boolean } {
    const envelope = hold.approval.envelope;
    const why = `the held copy was not delivered: ${what}`;
    const error = new BusError('INVALID_PAYLOAD', why, { messageId: envelope.id });
    const records = [this.#journal.decision(hold.approval, 'cancelled', undefined, why), this.#journal.outcome(envelope, 'failed', error.code, error.message)];
    if (!this.#decideOrStage(hold, records, { approved: approvedInFile })) return { error, taken: false };
    this.#journal.emitDecided(hold.approval, 'cancelled', undefined, undefined, why);
    this.#failWritten(hold, error, 'failed');
    return { error, taken: true };
  }

  #decidedElsewhere(hold: HeldMessage, verb: string): BusError {
    return new BusError('INVALID_ARGUMENT', `${verb}("${hold.approval.id}"): already decided (by another console or process)`, { messageId: hold.approval.envelope.id });
  }

  /** The outcome row is written: fail the request (or just tell the listeners) without another. */
  #failWritten(hold: HeldMessage, error: BusError, outcome: 'failed' | 'cancelled'): void {
    const p = hold.pending;
    if (p !== undefined) this.#ledger.fail(p, error, undefined);
    this.#journal.emitEnded(hold.approval.envelope, outcome, error);
  }

  /** An approved restored message waits for its recipient, at most until its deadline. */
  #await(hold: HeldMessage): void {
    const to = hold.approval.envelope.to;
    const recipient = this.#config.registry.get(to);
    if (recipient !== undefined) {
      this.#deliverApproved(hold, recipient);
      return;
    }
    let waiting = this.#awaitingFor.get(to);
    if (waiting === undefined) this.#awaitingFor.set(to, (waiting = new Set()));
    waiting.add(hold);
    this.#awaiting.add(hold);
  }

  /** Delivers an approved message the file still keeps: its 'delivered' row takes it out of the file. */
  #deliverApproved(hold: HeldMessage, recipient: AgentRecord): void {
    const envelope = hold.approval.envelope;
    const p = hold.pending;
    if (p !== undefined) p.recipient = recipient;
    let delivery: Delivery | undefined;
    let failure: BusError | undefined;
    try {
      delivery = this.#deliveries.reserve(envelope, recipient, p, hold.parent);
    } catch (error) {
      failure = toBusError(error, 'INVALID_ARGUMENT', envelope.id);
    }
    const records = [failure === undefined ? this.#journal.outcome(envelope, 'delivered') : this.#journal.outcome(envelope, 'failed', failure.code, failure.message)];
    let taken: boolean;
    try {
      taken = this.#decide(hold, records, { approved: true });
    } catch (error) {
      // The file refused the row: the message stays approved there, for the next process.
      this.#undoReserve(delivery, p);
      if (p !== undefined) this.#dropQuietly(p, toBusError(error, 'AUDIT_UNAVAILABLE', envelope.id));
      return;
    }
    if (!taken) {
      this.#undoReserve(delivery, p);
      return;
    }
    if (failure !== undefined || delivery === undefined) {
      this.#failWritten(hold, failure!, 'failed');
      return;
    }
    if (p !== undefined) this.#ledger.release(p);
    this.#deliveries.deliverReserved(delivery, undefined, p);
  }

  /** An approved message's deadline passed before its recipient registered. */
  #recipientMissed(hold: HeldMessage): void {
    const envelope = hold.approval.envelope;
    this.#awaitingFor.get(envelope.to)?.delete(hold);
    if (this.#awaitingFor.get(envelope.to)?.size === 0) this.#awaitingFor.delete(envelope.to);
    const error = noRecipient(envelope);
    if (!this.#decideOrStage(hold, [this.#journal.outcome(envelope, 'failed', error.code, error.message)], { approved: true })) return;
    this.#failWritten(hold, error, 'failed');
  }

  #end(hold: HeldMessage, error: BusError, outcome: 'failed' | 'cancelled'): void {
    if (hold.pending !== undefined) this.#ledger.fail(hold.pending, error, outcome);
    else this.#journal.recordOutcome(hold.approval.envelope, outcome, error.code, error.message);
  }
}

function ignore(): void {}

/** How often a bus on a file looks at what other processes held or decided in it. */
const SYNC_MS = 500;

function refused(e: BusError): ApprovalResult {
  return Object.freeze({ staged: false, delivered: false, code: e.code, reason: e.message });
}

function expiredError(approval: PendingApproval): BusError {
  const envelope = approval.envelope;
  const timeoutMs = approval.expiresAt - approval.requestedAt;
  return new BusError('APPROVAL_EXPIRED', `${envelope.type} to ${envelope.to} ("${envelope.intent}") was not approved within ${timeoutMs}ms`, {
    messageId: envelope.id,
    timeoutMs,
  });
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
