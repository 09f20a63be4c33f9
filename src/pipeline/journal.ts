import type { PendingApproval } from '../approvals.js';
import { UNVERIFIED, type ApprovalDecision, type ApprovalRecord, type AttemptRecord, type AuditDecision, type AuditOutcome, type AuditRecord } from '../audit/types.js';
import type { Envelope } from '../envelope.js';
import type { BusError, ErrorCode } from '../errors.js';
import type { Attempt } from '../events.js';
import type { PipelineConfig } from './config.js';
import type { Draft } from './draft.js';
import type { RefusalSummaries } from './refusal-summary.js';

/**
 * Every audit row and every event of the pipeline: refused, sent, delivered, replied,
 * failed, expired, decided. Rows are only built when the log is on, events only when
 * someone listens.
 */
export class Journal {
  readonly #config: PipelineConfig;
  /** The peer node of each envelope that crossed nodes, so its later rows name both nodes. */
  readonly #peers = new WeakMap<Envelope, string>();
  /** False until a message crosses nodes: a one-node bus never looks in `#peers`. */
  #crossed = false;

  constructor(config: PipelineConfig) {
    this.#config = config;
  }

  /** Marks `envelope` as crossing to or from `peerNode`: its outcome and approval rows name both nodes. */
  markRemote(envelope: Envelope, peerNode: string): void {
    this.#crossed = true;
    this.#peers.set(envelope, peerNode);
  }

  /** The peer node of an envelope marked by {@link markRemote}. */
  peerOf(envelope: Envelope): string | undefined {
    return this.#crossed ? this.#peers.get(envelope) : undefined;
  }

  /** True when rows are written (audit on). */
  get enabled(): boolean {
    return this.#config.commit.enabled;
  }

  /**
   * A refused send: its row (none for CLOSED: the log may be closing) and `message:denied`.
   * Beyond its sender's rate the row is counted in a summary row instead (see
   * {@link RefusalSummaries}); the event is emitted for every refusal all the same.
   */
  refused(draft: Draft, e: BusError): void {
    if (e.code !== 'CLOSED' && this.enabled) this.#config.refusals.record(this.refusal(draft, e));
    this.denied(draft, e);
  }

  /** `message:denied` for one attempt. */
  denied(draft: Draft, e: BusError): void {
    const { events } = this.#config;
    if (!events.has('message:denied')) return;
    const attempt: Attempt = Object.freeze({ id: draft.id, type: draft.type, from: draft.from, to: draft.to, intent: draft.intent });
    events.emit('message:denied', { attempt, code: e.code, reason: e.message, ...(e.rule !== undefined ? { rule: e.rule } : {}) });
  }

  /**
   * A refused attempt: decision 'denied', except when the policy allowed it and only the
   * delivery failed (NO_HANDLER, MAILBOX_FULL): then 'allowed' with outcome 'failed', so
   * the log never blames the policy for a missing handler or a full mailbox.
   */
  refusal(draft: Draft, e: BusError): AttemptRecord {
    if (draft.decision?.decision === 'allow' && (e.code === 'NO_HANDLER' || e.code === 'MAILBOX_FULL')) {
      return this.attempt(draft, 'allowed', e, 'failed');
    }
    return this.attempt(draft, 'denied', e);
  }

  attempt(draft: Draft, decision: AuditDecision, error?: BusError, outcome?: AuditOutcome, reason?: string): AttemptRecord {
    const d = draft.decision;
    const record: { -readonly [K in keyof AttemptRecord]: AttemptRecord[K] } = {
      kind: 'attempt',
      ts: draft.ts,
      messageId: draft.id,
      from: draft.from,
      to: draft.to,
      type: draft.type,
      intent: draft.intent,
      payloadHash: draft.hash,
      payloadBytes: draft.encoded?.bytes ?? 0,
      decision,
      policyVersion: d?.policyVersion ?? this.#config.policy.current.version,
      conversationId: draft.conversationId,
    };
    const why = reason ?? error?.message ?? (d !== undefined && decision !== 'allowed' ? d.reason : undefined);
    if (why !== undefined) record.reason = why;
    const rule = error?.rule ?? d?.ruleLabel;
    if (rule !== undefined) record.rule = rule;
    if (error !== undefined) record.code = error.code;
    if (outcome !== undefined) record.outcome = outcome;
    if (draft.causationId !== undefined) record.causationId = draft.causationId;
    if (draft.inReplyTo !== undefined) record.inReplyTo = draft.inReplyTo;
    if (draft.peerNode !== undefined) {
      record.node = this.#config.node;
      record.peerNode = draft.peerNode;
      const proof = draft.proof ?? this.#unverified();
      if (proof !== undefined) record.proof = proof;
    }
    return record;
  }

  outcome(envelope: Envelope, outcome: AuditOutcome, code?: ErrorCode, reason?: string): AuditRecord {
    const peer = this.peerOf(envelope);
    return {
      kind: 'outcome',
      ts: this.#config.clock.now(),
      messageId: envelope.id,
      to: envelope.to,
      from: envelope.from,
      conversationId: envelope.conversationId,
      outcome,
      ...(code !== undefined ? { code } : {}),
      ...(reason !== undefined ? { reason } : {}),
      ...(peer !== undefined ? { node: this.#config.node, peerNode: peer, ...this.#unverifiedField() } : {}),
    };
  }

  /** {@link UNVERIFIED} when this node's transport cannot prove who sent what (an insecure fleet). */
  #unverified(): string | undefined {
    return this.#config.transport.unverified === true ? UNVERIFIED : undefined;
  }

  #unverifiedField(): { proof?: string } {
    return this.#config.transport.unverified === true ? { proof: UNVERIFIED } : {};
  }

  /** Stages an outcome row (audit on). */
  recordOutcome(envelope: Envelope, outcome: AuditOutcome, code?: ErrorCode, reason?: string): void {
    if (this.enabled) this.#config.commit.stage(this.outcome(envelope, outcome, code, reason));
  }

  /** A request ended badly: its outcome row and `message:expired` / `message:failed`. */
  ended(envelope: Envelope, outcome: AuditOutcome, error: BusError): void {
    this.recordOutcome(envelope, outcome, error.code, error.message);
    this.emitEnded(envelope, outcome, error);
  }

  /** `message:expired` / `message:failed` for an outcome whose row is written elsewhere. */
  emitEnded(envelope: Envelope, outcome: AuditOutcome, error: BusError): void {
    const { events } = this.#config;
    if (outcome === 'expired') {
      if (events.has('message:expired')) events.emit('message:expired', { envelope, code: 'TIMEOUT' });
    } else if (events.has('message:failed')) events.emit('message:failed', { envelope, code: error.code, reason: error.message });
  }

  /** A human (or automatic) decision: its row and `approval:decided`. */
  decided(approval: PendingApproval, decision: ApprovalDecision, by: string | undefined, note: string | undefined, reason: string | undefined): void {
    if (this.enabled) this.#config.commit.stage(this.decision(approval, decision, by, note));
    this.emitDecided(approval, decision, by, note, reason);
  }

  /** The row of a decision (written by the caller: staged, or in the file's own transaction for a durable hold). */
  decision(approval: PendingApproval, decision: ApprovalDecision, by: string | undefined, note: string | undefined): ApprovalRecord {
    const { clock, policy } = this.#config;
    const envelope = approval.envelope;
    const peer = this.peerOf(envelope);
    return {
      kind: 'approval',
      ts: clock.now(),
      messageId: envelope.id,
      to: envelope.to,
      from: envelope.from,
      conversationId: envelope.conversationId,
      approval: decision,
      ...(by !== undefined ? { decidedBy: by } : {}),
      ...(note !== undefined ? { note } : {}),
      policyVersion: policy.current.version,
      ...(peer !== undefined ? { node: this.#config.node, peerNode: peer, ...this.#unverifiedField() } : {}),
    };
  }

  /** `approval:decided`. */
  emitDecided(approval: PendingApproval, decision: ApprovalDecision, by: string | undefined, note: string | undefined, reason: string | undefined): void {
    const { events } = this.#config;
    if (events.has('approval:decided')) {
      events.emit('approval:decided', {
        approval,
        decision,
        ...(by !== undefined ? { by } : {}),
        ...(note !== undefined ? { note } : {}),
        ...(reason !== undefined ? { reason } : {}),
      });
    }
  }
}
