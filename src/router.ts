import { ApprovalQueue, type ApprovalResult, type ApproveOptions, type Hold, type PendingApproval, type RejectOptions } from './approvals.js';
import type { ApprovalDecision, AttemptRecord, AuditDecision, AuditOutcome, AuditRecord } from './audit/types.js';
import type { Clock } from './clock.js';
import { checkSize, copyPlainJson, decodePayload, encodePayload, hashPayload, type EncodedPayload } from './codec.js';
import { describeIssues, type Contracts } from './contracts.js';
import { DeadlineQueue } from './deadlines.js';
import type { Envelope, MessageType, Priority, RuleType } from './envelope.js';
import { BusError, type BusErrorDetails, type ErrorCode } from './errors.js';
import type { Attempt, BusEmitter } from './events.js';
import type { NotifyOptions, NotifyReceipt, SendOptions } from './handler.js';
import { TokenBucket } from './limits.js';
import { checkContract, checkDepth, checkIntent, checkNotifyRecipients, checkOptions, checkRecipient, checkSender, contractOf, MAX_INTENT_LENGTH, NOTIFY_OPTION_KEYS, SEND_OPTION_KEYS } from './checks.js';
import { describe, errorText, isThenable, MAX_TEXT_LENGTH } from './describe.js';
import { Context } from './handler-context.js';
import type { PolicyDecision } from './policy.js';
import type { PolicyStore } from './policy-store.js';
import type { AgentRecord } from './registry.js';
import { Delivery, PendingRequest, type Job, type Progress } from './request.js';
import type { GroupCommit } from './group-commit.js';

/** What the router needs from its owner; it never reaches back into the orchestrator. */
export interface RouterConfig {
  readonly registry: ReadonlyMap<string, AgentRecord>;
  readonly policy: PolicyStore;
  readonly commit: GroupCommit;
  readonly events: BusEmitter;
  readonly clock: Clock;
  readonly nextId: () => string;
  readonly contracts: Contracts | undefined;
  readonly maxPayloadBytes: number;
  readonly maxDepth: number;
  readonly askMs: number;
  readonly delegateMs: number;
  readonly approvalTtlMs: number;
  readonly maxPending: number;
  readonly maxPendingPerSender: number;
  readonly globalRate: TokenBucket | undefined;
  /** Capture each ask's call site for its TIMEOUT stack. */
  readonly callSites: boolean;
}

/** A held message: the approval queue's item plus what the router needs to finish it. */
interface HeldMessage extends Hold {
  readonly pending: PendingRequest | undefined;
  readonly parent: Delivery | undefined;
}

/** What is known about a send while it is being checked; enough to audit a refusal. */
interface Draft {
  readonly id: string;
  readonly ts: number;
  readonly type: MessageType;
  readonly from: string;
  to: string;
  readonly intent: string;
  readonly conversationId: string;
  readonly causationId: string | undefined;
  readonly inReplyTo?: string;
  encoded: EncodedPayload | undefined;
  hash: string;
  decision: PolicyDecision | undefined;
}

const RESOLVED = Promise.resolve();
const MAX_NOTE_LENGTH = MAX_TEXT_LENGTH;

/**
 * The send pipeline. A send enters at a handle, passes the checks in the SPEC's fixed
 * order (closed → arguments → size → rate → policy), is audited, and only then delivered.
 * Replies, deadlines, cancellation and approval decisions end here too.
 */
export class Router {
  closed = false;
  private readonly pending = new Map<string, PendingRequest>();
  private readonly deadlines: DeadlineQueue<PendingRequest>;
  readonly approvals: ApprovalQueue<HeldMessage>;

  constructor(private readonly config: RouterConfig) {
    this.deadlines = new DeadlineQueue(config.clock, (p) => this.expire(p));
    this.approvals = new ApprovalQueue<HeldMessage>(config.clock, config.maxPending, config.maxPendingPerSender, (hold) =>
      this.expireHold(hold),
    );
  }

  // ---- Sending ------------------------------------------------------------------------

  /** An ask or delegate. Never throws; refusals are rejected promises. */
  request(sender: AgentRecord, type: 'ask' | 'delegate', to: unknown, intent: unknown, payload: unknown, options: SendOptions | undefined, parent: Delivery | undefined): Job {
    try {
      return this.tryRequest(sender, type, to, intent, payload, options, parent);
    } catch (error) {
      // Only reachable if something before the checks throws (e.g. a custom id generator).
      const job = Promise.reject(asBusError(error)) as Job & { id: string; onProgress: Job['onProgress']; cancel: Job['cancel'] };
      job.id = '';
      job.onProgress = () => job;
      job.cancel = () => undefined;
      return job;
    }
  }

  private tryRequest(sender: AgentRecord, type: 'ask' | 'delegate', to: unknown, intent: unknown, payload: unknown, options: SendOptions | undefined, parent: Delivery | undefined): Job {
    const { clock } = this.config;
    const id = this.config.nextId();
    const now = clock.now();
    let resolve!: (value: unknown) => void;
    let reject!: (error: BusError) => void;
    const promise = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    let pendingRef: PendingRequest | undefined;
    // Only a delegate is a Job; an ask stays a plain promise (no closures, no extra shape).
    if (type === 'delegate') {
      const job = promise as Job & { id: string; onProgress: Job['onProgress']; cancel: Job['cancel'] };
      job.id = id;
      job.onProgress = (listener) => {
        if (typeof listener !== 'function') throw new BusError('INVALID_ARGUMENT', 'onProgress(listener): listener must be a function');
        if (pendingRef !== undefined) (pendingRef.progressListeners ??= []).push(listener);
        return job;
      };
      job.cancel = (reason) => {
        if (pendingRef !== undefined) this.cancel(pendingRef, reason ?? 'cancelled by the sender');
      };
    }

    const draft = this.draft(id, now, type, sender, to, intent, parent);
    try {
      this.checkOpen();
      checkSender(sender);
      const recipient = checkRecipient(this.config.registry, sender, to);
      checkIntent(intent);
      const timeoutMs = options?.timeoutMs ?? (type === 'ask' ? this.config.askMs : this.config.delegateMs);
      const priority = checkOptions(options, timeoutMs, SEND_OPTION_KEYS);
      const depth = checkDepth(parent, this.config.maxDepth);
      this.encode(draft, payload, type);
      this.checkRate(sender, now);
      const decision = this.decide(draft, sender);

      let deadline = now + timeoutMs;
      const parentDeadline = parent?.envelope.deadline;
      if (parentDeadline !== undefined && parentDeadline < deadline) deadline = parentDeadline;
      const envelope = this.envelope(draft, priority, depth, deadline);
      // Where the call was made, so a TIMEOUT's stack points at the caller. Costs ~2-4 µs, as
      // much as the rest of an ask, so only with `diagnostics.callSites`.
      let callSite: { stack?: string } | undefined;
      if (this.config.callSites) Error.captureStackTrace((callSite = {}), this.request);
      const p = new PendingRequest(envelope, sender, recipient, deadline - now, resolve, reject, callSite);
      pendingRef = p;

      if (decision.decision === 'approval') {
        this.hold(draft, envelope, p, parent, deadline);
      } else {
        this.deliver(this.config.commit.enabled ? this.attemptRecord(draft, 'allowed', undefined, 'delivered') : undefined, envelope, recipient, p, parent);
        if (this.config.events.has('message:sent')) this.config.events.emit('message:sent', { envelope });
      }
      const signal = options?.signal;
      if (signal !== undefined) this.linkSignal(p, signal);
    } catch (error) {
      this.refuse(draft, error, reject);
    }
    return promise as Job;
  }

  /** A notify to listed recipients or to everyone else. Never throws. */
  notify(sender: AgentRecord, intent: unknown, payload: unknown, options: NotifyOptions | undefined, parent: Delivery | undefined): Promise<NotifyReceipt> {
    try {
      return this.tryNotify(sender, intent, payload, options, parent);
    } catch (error) {
      return Promise.reject(asBusError(error));
    }
  }

  private tryNotify(sender: AgentRecord, intent: unknown, payload: unknown, options: NotifyOptions | undefined, parent: Delivery | undefined): Promise<NotifyReceipt> {
    const id = this.config.nextId();
    const now = this.config.clock.now();
    const draft = this.draft(id, now, 'notify', sender, '*', intent, parent);
    try {
      this.checkOpen();
      checkSender(sender);
      const listed = checkNotifyRecipients(sender, options?.to);
      checkIntent(intent);
      const priority = checkOptions(options, undefined, NOTIFY_OPTION_KEYS);
      const depth = checkDepth(parent, this.config.maxDepth);
      this.encode(draft, payload, 'notify');
      this.checkRate(sender, now);
      return this.fanOut(draft, sender, listed, priority, depth, parent);
    } catch (error) {
      return new Promise((_, reject) => this.refuse(draft, error, reject));
    }
  }

  /** An explicit reply to a pending ask or delegate. Never throws. */
  reply(sender: AgentRecord, inReplyTo: unknown, payload: unknown): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const id = this.config.nextId();
      const now = this.config.clock.now();
      const p = typeof inReplyTo === 'string' ? this.pending.get(inReplyTo) : undefined;
      const draft: Draft = {
        id,
        ts: now,
        type: 'reply',
        from: sender.id,
        to: p?.sender.id ?? '?',
        intent: p?.envelope.intent ?? '?',
        conversationId: p?.envelope.conversationId ?? id,
        causationId: typeof inReplyTo === 'string' ? inReplyTo : undefined,
        inReplyTo: typeof inReplyTo === 'string' ? inReplyTo.slice(0, 256) : String(inReplyTo).slice(0, 256),
        encoded: undefined,
        hash: '',
        decision: undefined,
      };
      try {
        this.checkOpen();
        checkSender(sender);
        if (typeof inReplyTo !== 'string' || inReplyTo === '') {
          throw new BusError('INVALID_ARGUMENT', `reply(inReplyTo): expected a message id, got ${describe(inReplyTo)}`);
        }
        if (p === undefined || p.state !== 'pending' || p.delivery?.handedOver !== true) {
          throw new BusError('INVALID_REPLY', `no pending ask or delegate "${inReplyTo}" to reply to (unknown, not yet delivered, already answered or expired)`);
        }
        if (p.recipient !== sender) {
          throw new BusError('INVALID_REPLY', `${sender.id} cannot reply to "${inReplyTo}": it was addressed to ${p.recipient.id}`);
        }
        const encoded = this.encodeReply(p, payload, 'replier');
        draft.encoded = encoded;
        p.repliedExplicitly = true;
        // The replier hears "sent" only once its reply's row is committed, like any sender.
        this.answer(p, encoded, () => resolve(), (error) => reject(asBusError(error, id)));
      } catch (error) {
        this.refuse(draft, error, reject);
      }
    });
  }

  // ---- Checks, in the SPEC's order ------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new BusError('CLOSED', 'the orchestrator is closed');
  }

  /** Plain JSON, then the contract, then size: serialize once, measure, hash only if it will be audited. */
  private encode(draft: Draft, payload: unknown, type: RuleType): void {
    const max = this.config.maxPayloadBytes;
    const plain = copyPlainJson(payload, max);
    checkContract(this.config.contracts, type, draft.intent, plain.copy);
    draft.encoded = checkSize(plain, max);
    if (this.config.commit.enabled) draft.hash = hashPayload(draft.encoded);
  }

  private checkRate(sender: AgentRecord, now: number): void {
    const wait = sender.bucket?.take(now) ?? 0;
    if (wait > 0) {
      throw new BusError('RATE_LIMITED', `${sender.id} is sending too fast (limit ${sender.bucket!.spec.perSecond}/s, burst ${sender.bucket!.spec.burst}); retry in ${Math.ceil(wait)}ms`, {
        retryAfterMs: Math.ceil(wait),
      });
    }
    const global = this.config.globalRate;
    const globalWait = global?.take(now) ?? 0;
    if (globalWait > 0) {
      throw new BusError('RATE_LIMITED', `the bus is over its global rate (${global!.spec.perSecond}/s); retry in ${Math.ceil(globalWait)}ms`, {
        retryAfterMs: Math.ceil(globalWait),
      });
    }
  }

  /** Policy for one recipient: throws POLICY_DENIED; returns allow or approval. */
  private decide(draft: Draft, sender: AgentRecord): PolicyDecision {
    const policy = this.config.policy.current;
    const decision = policy.evaluate({ from: sender.id, to: draft.to, type: draft.type as RuleType, intent: draft.intent, trust: sender.trust });
    draft.decision = decision;
    if (decision.decision === 'deny') {
      throw new BusError('POLICY_DENIED', `${sender.id} may not ${draft.type} ${draft.to} ("${draft.intent}"): ${decision.reason}`, withRule({}, decision));
    }
    return decision;
  }

  // ---- Delivery -------------------------------------------------------------------------

  private draft(id: string, ts: number, type: MessageType, sender: AgentRecord, to: unknown, intent: unknown, parent: Delivery | undefined): Draft {
    return {
      id,
      ts,
      type,
      from: sender.id,
      to: typeof to === 'string' ? to.slice(0, 256) : describe(to),
      intent: typeof intent === 'string' ? intent.slice(0, MAX_INTENT_LENGTH) : describe(intent),
      conversationId: parent?.envelope.conversationId ?? id,
      causationId: parent?.envelope.id,
      encoded: undefined,
      hash: '',
      decision: undefined,
    };
  }

  /** The frozen envelope for the recipient, with a fresh frozen copy of the payload. */
  private envelope(draft: Draft, priority: Priority, depth: number, deadline: number | undefined, payload?: unknown): Envelope {
    const envelope: {
      -readonly [K in keyof Envelope]: Envelope[K];
    } = {
      id: draft.id,
      type: draft.type,
      from: draft.from,
      to: draft.to,
      intent: draft.intent,
      payload: payload !== undefined ? payload : decodePayload(draft.encoded!),
      ts: draft.ts,
      conversationId: draft.conversationId,
      priority,
      depth,
    };
    if (draft.causationId !== undefined) envelope.causationId = draft.causationId;
    if (draft.inReplyTo !== undefined) envelope.inReplyTo = draft.inReplyTo;
    if (deadline !== undefined) envelope.deadline = deadline;
    return Object.freeze(envelope);
  }

  /**
   * Reserves the recipient's mailbox, stages `record`, and hands the message over once the
   * record is committed. Throws NO_HANDLER / MAILBOX_FULL.
   */
  private deliver(record: AuditRecord | undefined, envelope: Envelope, recipient: AgentRecord, p: PendingRequest | undefined, parent: Delivery | undefined): void {
    const delivery = this.reserve(envelope, recipient, p, parent);
    if (p !== undefined) {
      this.pending.set(envelope.id, p);
      this.deadlines.add(p);
      p.sender.outgoing.add(p);
      recipient.incoming.add(p);
    }
    this.config.commit.stage(
      record,
      () => this.handOver(delivery),
      (error) => {
        this.drop(delivery);
        if (p !== undefined) this.fail(p, asBusError(error, envelope.id), undefined);
      },
    );
  }

  /** After the commit: tell listeners, then put the message in the mailbox (which may start the handler at once). */
  private handOver(delivery: Delivery): void {
    if (delivery.withdrawn) return;
    delivery.handedOver = true;
    const { events } = this.config;
    if (events.has('message:delivered')) events.emit('message:delivered', { envelope: delivery.envelope });
    const parent = delivery.parent;
    delivery.recipient.mailbox.push(delivery, parent !== undefined && parent.chainPassesThrough(delivery.recipient.id));
  }

  private reserve(envelope: Envelope, recipient: AgentRecord, p: PendingRequest | undefined, parent: Delivery | undefined): Delivery {
    if (!recipient.handlers.has(envelope.intent) && !recipient.handlers.has('*')) {
      throw new BusError('NO_HANDLER', `${recipient.id} has no handler for "${envelope.intent}" and no "*" fallback`, { agentId: recipient.id });
    }
    // A message whose chain already passes through this busy agent is let in at once, full or not.
    const reentrant = parent !== undefined && parent.chainPassesThrough(recipient.id);
    if (!recipient.mailbox.reserve(reentrant)) {
      const box = recipient.mailbox;
      throw new BusError('MAILBOX_FULL', `${recipient.id}'s mailbox is full (${box.running} running, ${box.queued} waiting, maxQueue ${box.maxQueue})`, {
        agentId: recipient.id,
      });
    }
    const delivery = new Delivery(envelope, recipient, p, parent, this.execute);
    if (p !== undefined) p.delivery = delivery;
    recipient.deliveries.add(delivery);
    return delivery;
  }

  /** A delivery that will not run after all (withdrawn before it started). */
  private drop(delivery: Delivery): void {
    delivery.recipient.mailbox.withdraw(delivery);
    delivery.recipient.deliveries.delete(delivery);
  }

  /** The handler is done (or never ran): nothing more to abort or wait for. */
  private finish(delivery: Delivery): void {
    delivery.finished = true;
    delivery.recipient.deliveries.delete(delivery);
  }

  private fanOut(draft: Draft, sender: AgentRecord, listed: string[] | undefined, priority: Priority, depth: number, parent: Delivery | undefined): Promise<NotifyReceipt> {
    const { registry, commit, events } = this.config;
    const targets = listed ?? [...registry.keys()].filter((id) => id !== sender.id);
    const receipt = { id: draft.id, delivered: [] as string[], denied: [] as string[], pending: [] as string[], failed: [] as string[] };
    const records: AuditRecord[] = [];
    const deliveries: Delivery[] = [];
    const holds: HeldMessage[] = [];
    const payload = decodePayload(draft.encoded!); // frozen, so one copy serves every recipient

    if (targets.length === 0 && commit.enabled) {
      records.push(this.attemptRecord({ ...draft, to: '*' }, 'allowed', undefined, undefined, 'no other agent is registered'));
    }
    for (const to of targets) {
      const d: Draft = { ...draft, to, decision: undefined };
      const recipient = registry.get(to);
      try {
        if (recipient === undefined) throw new BusError('UNKNOWN_AGENT', `no agent "${to}" is registered`, { agentId: to });
        const decision = this.decide(d, sender);
        const envelope = this.envelope(d, priority, depth, undefined, payload);
        if (decision.decision === 'approval') {
          const refusal = this.approvals.checkCapacity(sender.id);
          if (refusal !== undefined) throw refusal;
          const hold = this.makeHold(d, envelope, undefined, parent, draft.ts + this.config.approvalTtlMs);
          this.approvals.add(hold);
          holds.push(hold);
          receipt.pending.push(to);
          if (commit.enabled) records.push(this.attemptRecord(d, 'pending'));
        } else {
          const delivery = this.reserve(envelope, recipient!, undefined, parent);
          deliveries.push(delivery);
          receipt.delivered.push(to);
          if (commit.enabled) records.push(this.attemptRecord(d, 'allowed', undefined, 'delivered'));
          if (events.has('message:sent')) events.emit('message:sent', { envelope });
        }
      } catch (error) {
        const e = asBusError(error);
        (e.code === 'POLICY_DENIED' ? receipt.denied : receipt.failed).push(to);
        if (commit.enabled) records.push(this.refusalRecord(d, e));
        this.emitDenied(d, e);
      }
    }

    return new Promise<NotifyReceipt>((resolve, reject) => {
      commit.stage(
        records,
        () => {
          for (const delivery of deliveries) {
            if (delivery.withdrawn) {
              // Withdrawn in the same tick (unregister, close): it never reached the mailbox.
              receipt.delivered.splice(receipt.delivered.indexOf(delivery.recipient.id), 1);
              receipt.failed.push(delivery.recipient.id);
              const code = this.closed ? 'CLOSED' : 'UNKNOWN_AGENT';
              this.recordOutcome(delivery.envelope, 'failed', code, `${delivery.recipient.id} left before the notify reached it`);
              if (events.has('message:dead')) events.emit('message:dead', { envelope: delivery.envelope, reason: `${delivery.recipient.id} left before the notify reached it` });
            } else this.handOver(delivery);
          }
          for (const hold of holds) if (events.has('approval:requested')) events.emit('approval:requested', { approval: hold.approval });
          resolve(Object.freeze(receipt));
        },
        (error) => {
          for (const delivery of deliveries) this.drop(delivery);
          for (const hold of holds) this.approvals.take(hold.approval.id);
          reject(asBusError(error, draft.id));
        },
      );
    });
  }

  /** Runs a handler (the mailbox calls this when the job's turn comes). Never rejects. */
  private readonly execute = (d: Delivery): Promise<void> => {
    const p = d.pending;
    if (p !== undefined && p.state === 'settled') {
      this.finish(d);
      return RESOLVED;
    }
    const handlers = d.recipient.handlers;
    const handler = handlers.get(d.envelope.intent) ?? handlers.get('*');
    if (handler === undefined) {
      this.finish(d);
      this.handlerFailed(d, new BusError('NO_HANDLER', `${d.recipient.id} has no handler for "${d.envelope.intent}" any more`), 'NO_HANDLER');
      return RESOLVED;
    }
    let out: unknown;
    try {
      out = handler(d.envelope.payload, new Context(this, d));
    } catch (error) {
      this.finish(d);
      this.handlerFailed(d, error, 'HANDLER_FAILED');
      return RESOLVED;
    }
    if (isThenable(out)) {
      return Promise.resolve(out).then(
        (value) => {
          this.finish(d);
          this.handlerReturned(d, value);
        },
        (error) => {
          this.finish(d);
          this.handlerFailed(d, error, 'HANDLER_FAILED');
        },
      );
    }
    this.finish(d);
    this.handlerReturned(d, out);
    return RESOLVED;
  };

  private handlerReturned(d: Delivery, value: unknown): void {
    const p = d.pending;
    if (p === undefined) return;
    if (p.repliedExplicitly) return; // answered through reply(): the return value is ignored
    if (p.state === 'settled') {
      this.deadLetter(d, value);
      return;
    }
    let encoded: EncodedPayload;
    try {
      encoded = this.encodeReply(p, value, 'handler');
    } catch (error) {
      this.handlerFailed(d, error, 'HANDLER_FAILED');
      return;
    }
    this.answer(p, encoded);
  }

  /** Checks a reply against the contract and the codec. `who` decides the code of a refusal. */
  private encodeReply(p: PendingRequest, value: unknown, who: 'handler' | 'replier'): EncodedPayload {
    const output = contractOf(this.config.contracts, p.envelope.intent)?.output;
    if (output !== undefined) {
      const result = output.safeParse(value);
      if (!result.success) {
        const message = `reply to "${p.envelope.intent}" does not match its contract: ${describeIssues(result.error)}`;
        throw new BusError(who === 'handler' ? 'HANDLER_FAILED' : 'INVALID_PAYLOAD', message);
      }
    }
    return encodePayload(value, this.config.maxPayloadBytes, 'reply');
  }

  /** Settles a request with its reply: audit the reply, then resolve the asker. */
  private answer(p: PendingRequest, encoded: EncodedPayload, onCommit?: () => void, onFail?: (error: BusError) => void): void {
    this.settle(p);
    const { commit, events, clock } = this.config;
    const ask = p.envelope;
    const draft: Draft = {
      id: this.config.nextId(),
      ts: clock.now(),
      type: 'reply',
      from: p.recipient.id,
      to: p.sender.id,
      intent: ask.intent,
      conversationId: ask.conversationId,
      causationId: ask.id,
      inReplyTo: ask.id,
      encoded,
      hash: commit.enabled ? hashPayload(encoded) : '',
      decision: undefined,
    };
    // The reply row is also the record of the ask's outcome 'replied' (the log folds it in).
    const records = commit.enabled ? this.attemptRecord(draft, 'allowed', undefined, 'delivered') : undefined;
    commit.stage(
      records,
      () => {
        const payload = decodePayload(encoded);
        p.resolve(payload);
        onCommit?.();
        if (events.has('message:replied')) events.emit('message:replied', { envelope: this.envelope(draft, ask.priority, ask.depth, undefined, payload) });
      },
      (error) => {
        p.reject(asBusError(error, ask.id));
        onFail?.(error);
      },
    );
  }

  private handlerFailed(d: Delivery, error: unknown, code: 'HANDLER_FAILED' | 'NO_HANDLER'): void {
    const reason = errorText(error);
    const p = d.pending;
    const envelope = d.envelope;
    if (p === undefined) {
      this.recordOutcome(envelope, 'failed', code, reason);
      if (this.config.events.has('message:failed')) this.config.events.emit('message:failed', { envelope, code, reason });
      return;
    }
    if (p.repliedExplicitly || p.state === 'settled') return;
    // `reason` is read safely (errorText): a thrown value can be a revoked Proxy.
    const failure = new BusError(code, `${d.recipient.id} failed handling "${envelope.intent}": ${reason}`, { messageId: envelope.id, agentId: d.recipient.id });
    this.fail(p, failure, 'failed');
  }

  /** A reply that came after its request was settled: dropped, audited, and emitted as dead. */
  private deadLetter(d: Delivery, value: unknown): void {
    if (this.closed) return;
    const ask = d.envelope;
    let encoded: EncodedPayload | undefined;
    try {
      encoded = encodePayload(value, this.config.maxPayloadBytes, 'reply');
    } catch {
      encoded = undefined;
    }
    const { commit, events } = this.config;
    const draft: Draft = {
      id: this.config.nextId(),
      ts: this.config.clock.now(),
      type: 'reply',
      from: d.recipient.id,
      to: ask.from,
      intent: ask.intent,
      conversationId: ask.conversationId,
      causationId: ask.id,
      inReplyTo: ask.id,
      encoded,
      hash: commit.enabled && encoded !== undefined ? hashPayload(encoded) : '',
      decision: undefined,
    };
    const reason = `late reply to "${ask.id}": the request was already settled`;
    if (commit.enabled) commit.stage(this.attemptRecord(draft, 'denied', undefined, 'late-reply', reason));
    if (events.has('message:dead')) {
      const payload = encoded === undefined ? null : decodePayload(encoded);
      events.emit('message:dead', { envelope: this.envelope(draft, ask.priority, ask.depth, undefined, payload), reason });
    }
  }

  // ---- Endings: deadline, cancel, failure ------------------------------------------------

  /** Takes the request out of every index. Idempotent. */
  private settle(p: PendingRequest): void {
    if (p.state === 'settled') return;
    p.state = 'settled';
    this.pending.delete(p.envelope.id);
    this.deadlines.remove(p);
    p.sender.outgoing.delete(p);
    p.recipient.incoming.delete(p);
  }

  /** Stops the handler side of a request: withdraws it if still queued, aborts its signal if running. */
  private stopDelivery(p: PendingRequest, reason: BusError): void {
    const d = p.delivery;
    if (d === undefined) return;
    if (!d.started) this.drop(d);
    d.abort(reason);
  }

  /** Settles with an error now; audits the outcome (no data crosses, so no need to wait). */
  private fail(p: PendingRequest, error: BusError, outcome: AuditOutcome | undefined): void {
    if (p.state === 'settled') return;
    this.settle(p);
    this.stopDelivery(p, error);
    if (outcome !== undefined) {
      this.recordOutcome(p.envelope, outcome, error.code, error.message);
      const { events } = this.config;
      if (outcome === 'expired' && events.has('message:expired')) events.emit('message:expired', { envelope: p.envelope, code: 'TIMEOUT' });
      else if (outcome !== 'expired' && events.has('message:failed')) events.emit('message:failed', { envelope: p.envelope, code: error.code, reason: error.message });
    }
    p.reject(error);
  }

  private expire(p: PendingRequest): void {
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
      const hold = this.approvals.take(p.envelope.id);
      if (hold !== undefined) this.decided(hold, 'cancelled', undefined, undefined, reason);
    }
    this.fail(p, error, 'cancelled');
  }

  private linkSignal(p: PendingRequest, signal: AbortSignal): void {
    const onAbort = () => this.cancel(p, `the signal was aborted (${String(signal.reason)})`);
    signal.addEventListener('abort', onAbort, { once: true });
    // Drop the listener once settled, so a long-lived signal does not pin the request.
    const remove = () => signal.removeEventListener('abort', onAbort);
    const { resolve, reject } = p;
    (p as { resolve: (v: unknown) => void }).resolve = (v) => {
      remove();
      resolve(v);
    };
    (p as { reject: (e: BusError) => void }).reject = (e) => {
      remove();
      reject(e);
    };
  }

  /** Reports progress from a handler to the delegator, asynchronously and only while pending. */
  progress(d: Delivery, fraction: unknown, note: unknown): void {
    if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
      throw new BusError('INVALID_ARGUMENT', `progress(fraction): expected a number from 0 to 1, got ${describe(fraction)}`);
    }
    if (note !== undefined && (typeof note !== 'string' || note.length > MAX_NOTE_LENGTH)) {
      throw new BusError('INVALID_ARGUMENT', `progress(fraction, note): note must be a string of at most ${MAX_NOTE_LENGTH} characters`);
    }
    const p = d.pending;
    if (p === undefined || p.state !== 'pending' || p.progressListeners === undefined) return;
    const report: Progress = Object.freeze(note === undefined ? { fraction } : { fraction, note });
    const listeners = p.progressListeners;
    queueMicrotask(() => {
      if (p.state !== 'pending') return;
      for (const listener of listeners) {
        try {
          listener(report);
        } catch {
          // A progress listener is the sender's code; it must not break the handler.
        }
      }
    });
  }

  // ---- Approvals ---------------------------------------------------------------------------

  private makeHold(draft: Draft, envelope: Envelope, p: PendingRequest | undefined, parent: Delivery | undefined, expiresAt: number): HeldMessage {
    const approval: PendingApproval = Object.freeze({
      id: envelope.type === 'notify' ? `${envelope.id}/${envelope.to}` : envelope.id,
      envelope,
      ...(draft.decision?.ruleLabel !== undefined ? { rule: draft.decision.ruleLabel } : {}),
      payloadHash: draft.hash !== '' ? draft.hash : hashPayload(draft.encoded!),
      payloadBytes: draft.encoded!.bytes,
      requestedAt: draft.ts,
      expiresAt,
    });
    return { approval, encoded: draft.encoded!, from: draft.from, pending: p, parent, deadline: expiresAt, heapIndex: -1 };
  }

  private hold(draft: Draft, envelope: Envelope, p: PendingRequest, parent: Delivery | undefined, deadline: number): void {
    const refusal = this.approvals.checkCapacity(draft.from);
    if (refusal !== undefined) throw refusal;
    const hold = this.makeHold(draft, envelope, p, parent, deadline);
    p.state = 'held';
    this.approvals.add(hold);
    this.pending.set(envelope.id, p);
    p.sender.outgoing.add(p);
    const { commit, events } = this.config;
    if (events.has('message:sent')) events.emit('message:sent', { envelope });
    commit.stage(
      commit.enabled ? this.attemptRecord(draft, 'pending') : undefined,
      () => {
        if (events.has('approval:requested') && this.approvals.get(hold.approval.id) === hold) events.emit('approval:requested', { approval: hold.approval });
      },
      (error) => {
        this.approvals.take(hold.approval.id);
        this.fail(p, asBusError(error, envelope.id), undefined);
      },
    );
  }

  approve(id: unknown, options: ApproveOptions | undefined, addAllowRule: (envelope: Envelope) => void): ApprovalResult {
    const by = checkDecisionText(options?.by, 'by', 256);
    const note = checkDecisionText(options?.note, 'note', MAX_NOTE_LENGTH);
    if (options?.always !== undefined && typeof options.always !== 'boolean') throw new BusError('INVALID_ARGUMENT', `approve(): always must be a boolean`);
    const hold = this.takeHold(id, 'approve');
    const envelope = hold.approval.envelope;
    this.decided(hold, 'approved', by, note, undefined);

    const p = hold.pending;
    const { registry, policy } = this.config;
    const sender = registry.get(envelope.from);
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
      if (options?.always === true) addAllowRule(envelope);
      if (p !== undefined) {
        p.state = 'pending';
        this.pending.delete(envelope.id); // deliver() indexes it again
      }
      // The attempt row exists already (decision 'pending'): only the outcome is new.
      this.deliver(this.config.commit.enabled ? this.outcomeRecord(envelope, 'delivered') : undefined, envelope, recipient, p, hold.parent);
      return { delivered: true };
    } catch (error) {
      const e = asBusError(error, envelope.id);
      if (p !== undefined) this.fail(p, e, 'failed');
      else this.recordOutcome(envelope, 'failed', e.code, e.message);
      return { delivered: false, code: e.code, reason: e.message };
    }
  }

  reject(id: unknown, options: RejectOptions | undefined): void {
    const by = checkDecisionText(options?.by, 'by', 256);
    const reason = checkDecisionText(options?.reason, 'reason', MAX_NOTE_LENGTH);
    const hold = this.takeHold(id, 'reject');
    this.decided(hold, 'rejected', by, reason, reason);
    const p = hold.pending;
    const envelope = hold.approval.envelope;
    const error = new BusError('APPROVAL_REJECTED', `${envelope.type} to ${envelope.to} ("${envelope.intent}") was rejected${by !== undefined ? ` by ${by}` : ''}${reason !== undefined ? `: ${reason}` : ''}`, {
      messageId: envelope.id,
      ...(reason !== undefined ? { reason } : {}),
    });
    if (p !== undefined) this.fail(p, error, 'failed');
    else this.recordOutcome(envelope, 'failed', error.code, error.message);
  }

  private takeHold(id: unknown, verb: string): HeldMessage {
    if (this.closed) throw new BusError('CLOSED', 'the orchestrator is closed');
    if (typeof id !== 'string') throw new BusError('INVALID_ARGUMENT', `${verb}(id): expected an approval id, got ${describe(id)}`);
    const hold = this.approvals.take(id);
    if (hold === undefined) {
      throw new BusError('INVALID_ARGUMENT', `${verb}("${id}"): no message is held under that id (unknown, already decided or expired)`, { messageId: id });
    }
    if (hold.approval.expiresAt <= this.config.clock.now()) {
      // Past its deadline, though the expiry timer has not run yet: it expired.
      this.expireHold(hold);
      throw new BusError('INVALID_ARGUMENT', `${verb}("${id}"): the held message expired before the decision`, { messageId: id });
    }
    return hold;
  }

  private expireHold(hold: HeldMessage): void {
    const envelope = hold.approval.envelope;
    const timeoutMs = hold.approval.expiresAt - hold.approval.requestedAt;
    this.decided(hold, 'expired', undefined, undefined, undefined);
    const error = new BusError('APPROVAL_EXPIRED', `${envelope.type} to ${envelope.to} ("${envelope.intent}") was not approved within ${timeoutMs}ms`, {
      messageId: envelope.id,
      timeoutMs,
    });
    if (hold.pending !== undefined) {
      const p = hold.pending;
      this.settle(p);
      this.recordOutcome(envelope, 'expired', 'APPROVAL_EXPIRED', error.message);
      p.reject(error);
    } else {
      this.recordOutcome(envelope, 'expired', 'APPROVAL_EXPIRED', error.message);
    }
    if (this.config.events.has('message:expired')) this.config.events.emit('message:expired', { envelope, code: 'APPROVAL_EXPIRED' });
  }

  /** Audits a human (or automatic) decision and emits `approval:decided`. */
  private decided(hold: HeldMessage, decision: ApprovalDecision, by: string | undefined, note: string | undefined, reason: string | undefined): void {
    const { commit, events, clock, policy } = this.config;
    const envelope = hold.approval.envelope;
    if (commit.enabled) {
      commit.stage({
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
      });
    }
    if (events.has('approval:decided')) {
      events.emit('approval:decided', {
        approval: hold.approval,
        decision,
        ...(by !== undefined ? { by } : {}),
        ...(note !== undefined ? { note } : {}),
        ...(reason !== undefined ? { reason } : {}),
      });
    }
  }

  // ---- Leaving: unregister and close ----------------------------------------------------------

  /** Fails what was addressed to the agent, cancels what it sent, aborts its handlers. */
  unregister(record: AgentRecord): void {
    record.alive = false;
    const gone = new BusError('UNKNOWN_AGENT', `${record.id} was unregistered`, { agentId: record.id });
    for (const p of [...record.incoming]) this.fail(p, new BusError('UNKNOWN_AGENT', `${record.id} was unregistered before replying`, { messageId: p.envelope.id, agentId: record.id }), 'failed');
    for (const p of [...record.outgoing]) this.cancel(p, `${record.id} was unregistered`);
    for (const hold of this.approvals.takeWhere((h) => h.approval.envelope.to === record.id || h.from === record.id)) {
      this.decided(hold, 'cancelled', undefined, undefined, `${record.id} was unregistered`);
      if (hold.pending !== undefined) this.fail(hold.pending, gone, 'cancelled');
      else this.recordOutcome(hold.approval.envelope, 'cancelled', 'UNKNOWN_AGENT', gone.message);
    }
    this.abortDeliveries(record, gone);
  }

  /** Refuses new sends and fails everything pending with CLOSED. */
  shutdown(): void {
    this.closed = true;
    for (const hold of this.approvals.takeWhere(() => true)) {
      this.decided(hold, 'cancelled', undefined, undefined, 'the orchestrator closed');
      if (hold.pending !== undefined) this.fail(hold.pending, closedError(hold.pending), 'cancelled');
      else this.recordOutcome(hold.approval.envelope, 'cancelled', 'CLOSED', 'the orchestrator closed');
    }
    for (const p of [...this.pending.values()]) this.fail(p, closedError(p), 'cancelled');
    const closing = new BusError('CLOSED', 'the orchestrator is closing');
    for (const record of this.config.registry.values()) this.abortDeliveries(record, closing);
    this.deadlines.clear();
  }

  /** Withdraws what waits in the agent's mailbox and aborts the signals of what runs. */
  private abortDeliveries(record: AgentRecord, reason: BusError): void {
    for (const d of [...record.deliveries]) {
      if (!d.started) this.drop(d);
      d.abort(reason);
    }
  }

  // ---- Audit records and refusals ------------------------------------------------------------

  private refuse(draft: Draft, error: unknown, reject: (error: BusError) => void): void {
    const e = asBusError(error, draft.id);
    if (e.code !== 'CLOSED' && this.config.commit.enabled) {
      this.config.commit.stage(this.refusalRecord(draft, e));
    }
    this.emitDenied(draft, e);
    reject(e);
  }

  private emitDenied(draft: Draft, e: BusError): void {
    const { events } = this.config;
    if (!events.has('message:denied')) return;
    const attempt: Attempt = Object.freeze({ id: draft.id, type: draft.type, from: draft.from, to: draft.to, intent: draft.intent });
    events.emit('message:denied', { attempt, code: e.code, reason: e.message, ...(e.rule !== undefined ? { rule: e.rule } : {}) });
  }

  /**
   * A refused attempt: decision 'denied', except when the policy allowed it and only the
   * delivery failed (NO_HANDLER, MAILBOX_FULL): then 'allowed' with outcome 'failed', so
   * the log never blames the policy for a missing handler or a full mailbox.
   */
  private refusalRecord(draft: Draft, e: BusError): AttemptRecord {
    if (draft.decision?.decision === 'allow' && (e.code === 'NO_HANDLER' || e.code === 'MAILBOX_FULL')) {
      return this.attemptRecord(draft, 'allowed', e, 'failed');
    }
    return this.attemptRecord(draft, 'denied', e);
  }

  private attemptRecord(draft: Draft, decision: AuditDecision, error?: BusError, outcome?: AuditOutcome, reason?: string): AttemptRecord {
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
      policyVersion: d?.policyVersion ?? this.config.policy.current.version,
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
    return record;
  }

  private outcomeRecord(envelope: Envelope, outcome: AuditOutcome, code?: ErrorCode, reason?: string): AuditRecord {
    return {
      kind: 'outcome',
      ts: this.config.clock.now(),
      messageId: envelope.id,
      to: envelope.to,
      from: envelope.from,
      conversationId: envelope.conversationId,
      outcome,
      ...(code !== undefined ? { code } : {}),
      ...(reason !== undefined ? { reason } : {}),
    };
  }

  private recordOutcome(envelope: Envelope, outcome: AuditOutcome, code?: ErrorCode, reason?: string): void {
    const { commit } = this.config;
    if (commit.enabled) commit.stage(this.outcomeRecord(envelope, outcome, code, reason));
  }
}

function closedError(p: PendingRequest): BusError {
  return new BusError('CLOSED', `the orchestrator closed before "${p.envelope.intent}" to ${p.envelope.to} was answered`, { messageId: p.envelope.id });
}

function withRule(details: BusErrorDetails, decision: PolicyDecision): BusErrorDetails {
  return decision.ruleLabel !== undefined ? { ...details, rule: decision.ruleLabel } : details;
}

function checkDecisionText(value: unknown, key: string, max: number): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length > max) {
    throw new BusError('INVALID_ARGUMENT', `${key} must be a string of at most ${max} characters, got ${describe(value)}`);
  }
  return value;
}

/** Any thrown value as a BusError (unexpected ones become INVALID_ARGUMENT with the cause). */
function asBusError(error: unknown, messageId?: string): BusError {
  if (error instanceof BusError) {
    if (messageId === undefined || error.messageId !== undefined) return error;
    const copy = new BusError(error.code, error.message, {
      messageId,
      ...(error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {}),
      ...(error.rule !== undefined ? { rule: error.rule } : {}),
      ...(error.timeoutMs !== undefined ? { timeoutMs: error.timeoutMs } : {}),
      ...(error.reason !== undefined ? { reason: error.reason } : {}),
      ...(error.agentId !== undefined ? { agentId: error.agentId } : {}),
      ...(error.cause !== undefined ? { cause: error.cause } : {}),
    });
    if (error.stack !== undefined) copy.stack = error.stack;
    return copy;
  }
  return new BusError('INVALID_ARGUMENT', errorText(error), { cause: error, ...(messageId !== undefined ? { messageId } : {}) });
}




