import type { ApprovalResult, ApproveOptions, PendingApproval, RejectOptions } from '../approvals.js';
import type { AuditRecord } from '../audit/types.js';
import { checkSize, copyPlainJson, decodePayload, hashPayload } from '../codec.js';
import type { Envelope, Priority, RuleType } from '../envelope.js';
import { BusError, describe, toBusError } from '../errors.js';
import type { Job, NotifyReceipt } from '../types.js';
import { freezeObject } from '../frozen.js';
import { AfterCommit } from './after-commit.js';
import { ApprovalFlow } from './approval-flow.js';
import { Results } from './results.js';
import type { StoredHold } from '../audit/types.js';
import {
  checkContract,
  checkDepth,
  checkIntent,
  checkNotifyRecipients,
  checkPolicy,
  checkPriority,
  checkRate,
  recordedText,
  checkRecipientId,
  checkSender,
  checkSignal,
  checkTimeout,
  NOTIFY_OPTION_KEYS,
  readOptions,
  SEND_OPTION_KEYS,
  unknownAgent,
} from './checks.js';
import type { PipelineConfig } from './config.js';
import type { ChainPort } from './context.js';
import { Deliveries } from './delivery.js';
import { envelopeOf, makeDraft, replyDraft, type Draft } from './draft.js';
import { Journal } from './journal.js';
import { Ledger, type HeldMessage } from './ledger.js';
import { PendingRequest, type AgentRecord, type Delivery } from './records.js';
import { commitInfo, notifyDestination, refusalInfo, startSend } from './tracing.js';
import type { SendToken } from '../telemetry-port.js';
import { Inbound, type LocalActivity } from './inbound.js';
import { RemoteSends, type NotifyAnswer } from './remote-send.js';
import { routeOf } from './route.js';
import type { InboundPort } from './transport.js';

type MutableJob = Job & { id: string; onProgress: Job['onProgress']; cancel: Job['cancel'] };

/**
 * The send pipeline, top to bottom: request (ask, delegate), notify and reply. Each send
 * is read once, passes the checks in one order (closed → arguments → payload →
 * liveness again → rate → policy), is audited, and only then delivered. Unregister and
 * close end here too. Handles and ctx reach it only through their `#private` port.
 */
export class Pipeline implements ChainPort {
  closed = false;
  readonly #config: PipelineConfig;
  readonly #journal: Journal;
  readonly #ledger: Ledger;
  readonly #deliveries: Deliveries;
  readonly #approvals: ApprovalFlow;
  readonly #remote: RemoteSends;
  readonly #results: Results;
  readonly #after: AfterCommit;
  /** When a local agent last sent: inbound messages from other nodes yield to local work (inbound-share.ts). */
  readonly #activity: LocalActivity = { lastLocalSend: Number.NEGATIVE_INFINITY };
  /** Where the transport hands messages from other nodes (see inbound.ts). */
  readonly inbound: Pick<InboundPort, 'receive'> & Required<Pick<InboundPort, 'refused' | 'digest'>>;

  constructor(config: PipelineConfig) {
    this.#config = config;
    const journal = (this.#journal = new Journal(config));
    const ledger = (this.#ledger = new Ledger(config, journal, {
      expire: (hold) => this.#approvals.expire(hold),
      cancel: (hold, reason) => this.#approvals.cancelled(hold, reason),
    }));
    const after = (this.#after = new AfterCommit(config, ledger));
    const core = { config, journal, ledger, after };
    const parts = { ...core, deliveries: (this.#deliveries = new Deliveries(core, this)) };
    this.#results = new Results(config, ledger);
    const remote = (this.#remote = new RemoteSends(parts));
    const approvals = (this.#approvals = new ApprovalFlow({ ...parts, remote }, (p) => this.#results.follow(p)));
    this.inbound = new Inbound({ ...parts, approvals, remote, closed: () => this.closed, activity: this.#activity });
  }

  // ---- Sending ------------------------------------------------------------------------

  /** An ask or delegate. Never throws; refusals are rejected promises. */
  request(sender: AgentRecord, type: 'ask' | 'delegate', to: unknown, intent: unknown, payload: unknown, options: unknown, parent: Delivery | undefined): Job {
    let id: string;
    try {
      id = this.#config.nextId();
    } catch (error) {
      // A custom id generator threw: nothing was sent, nothing can be audited under an id.
      return failedJob(toBusError(error, 'INVALID_ARGUMENT', undefined, 'the id generator failed: '));
    }
    const { clock, registry } = this.#config;
    const now = clock.now();
    this.#activity.lastLocalSend = now;
    let resolve!: (value: unknown) => void;
    let reject!: (error: BusError) => void;
    const promise = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    let pendingRef: PendingRequest | undefined;
    // Only a delegate is a Job; an ask stays a plain promise (no closures, no extra shape).
    if (type === 'delegate') {
      const job = promise as MutableJob;
      job.id = id;
      job.onProgress = (listener) => {
        if (typeof listener !== 'function') throw new BusError('INVALID_ARGUMENT', 'onProgress(listener): listener must be a function');
        if (pendingRef !== undefined) (pendingRef.progressListeners ??= []).push(listener);
        return job;
      };
      job.cancel = (reason) => {
        if (pendingRef !== undefined) this.#ledger.cancel(pendingRef, typeof reason === 'string' ? reason : 'cancelled by the sender');
      };
      // Frozen: whoever holds the job (it may be passed around) cannot swap its methods.
      freezeObject(job);
    }

    const draft = makeDraft(id, now, type, sender.id, to, intent, parent);
    const trace = startSend(this.#config.telemetry, draft, parent === undefined ? 0 : parent.envelope.depth + 1, parent?.runToken);
    try {
      this.#checkOpen();
      checkSender(sender);
      const toId = checkRecipientId(sender, to);
      // Not local: another node may serve it (its stand-in carries that node), else UNKNOWN_AGENT.
      const recipient = registry.get(toId) ?? this.#remote.recipient(toId);
      if (recipient === undefined) throw unknownAgent(toId);
      checkIntent(intent);
      const o = readOptions(options, SEND_OPTION_KEYS);
      const timeoutMs = o.timeoutMs === undefined ? (type === 'ask' ? this.#config.askMs : this.#config.delegateMs) : checkTimeout(o.timeoutMs);
      const signal = checkSignal(o.signal);
      const priority = checkPriority(o.priority, 'normal');
      const depth = this.#checkTail(draft, sender, recipient, type, payload, parent, now);
      const decision = (draft.decision = checkPolicy(this.#config.policy.current, sender, recipient, type, draft.intent));

      let deadline = now + timeoutMs;
      const parentDeadline = parent?.envelope.deadline;
      if (parentDeadline !== undefined && parentDeadline < deadline) deadline = parentDeadline;
      const envelope = envelopeOf(draft, priority, depth, deadline);
      // Where the call was made, so a TIMEOUT's stack points at the caller. Capturing a stack
      // costs about as much as the rest of an ask, so only with `diagnostics.callSites`.
      let callSite: { stack?: string } | undefined;
      if (this.#config.callSites) Error.captureStackTrace((callSite = {}), this.request);
      const p = new PendingRequest(envelope, sender, recipient, deadline - now, resolve, reject, callSite);
      pendingRef = p;
      p.trace = trace;

      const route = routeOf(recipient, decision);
      if (route === 'carry') this.#remote.request(draft, envelope, p, parent);
      else if (route === 'hold') {
        // Held here first, also on its way to another node's agent (carried once approved).
        if (recipient.node !== undefined) this.#remote.mark(draft, envelope, recipient.node);
        this.#approvals.hold(draft, envelope, p, parent, deadline);
      } else {
        this.#deliveries.deliverAllowed(draft, envelope, recipient, p, parent, trace === undefined ? undefined : commitInfo('allowed', decision.ruleLabel, decision.policyVersion));
        const { events } = this.#config;
        if (events.has('message:sent')) events.emit('message:sent', { envelope });
      }
      if (signal !== undefined) this.#ledger.linkSignal(p, signal);
    } catch (error) {
      this.#refuse(draft, error, reject, trace);
    }
    return promise as Job;
  }

  /** A notify to listed recipients or to everyone else. Never throws. */
  notify(sender: AgentRecord, intent: unknown, payload: unknown, options: unknown, parent: Delivery | undefined): Promise<NotifyReceipt> {
    let id: string;
    try {
      id = this.#config.nextId();
    } catch (error) {
      return Promise.reject(toBusError(error, 'INVALID_ARGUMENT', undefined, 'the id generator failed: '));
    }
    const now = this.#config.clock.now();
    this.#activity.lastLocalSend = now;
    const draft = makeDraft(id, now, 'notify', sender.id, '*', intent, parent);
    const telemetry = this.#config.telemetry;
    let trace: SendToken | undefined;
    try {
      this.#checkOpen();
      checkSender(sender);
      const o = readOptions(options, NOTIFY_OPTION_KEYS);
      const listed = checkNotifyRecipients(sender, o.to);
      if (telemetry.enabled) trace = startSend(telemetry, { ...draft, to: notifyDestination(listed) }, parent === undefined ? 0 : parent.envelope.depth + 1, parent?.runToken);
      draft.traceparent = trace?.traceparent;
      checkIntent(intent);
      const priority = checkPriority(o.priority, 'normal');
      const depth = this.#checkTail(draft, sender, undefined, 'notify', payload, parent, now);
      return this.#fanOut(draft, sender, listed, priority, depth, parent, trace);
    } catch (error) {
      trace ??= startSend(telemetry, draft, parent === undefined ? 0 : parent.envelope.depth + 1, parent?.runToken);
      return new Promise((_, reject) => this.#refuse(draft, error, reject, trace));
    }
  }

  /** An explicit reply to a pending ask or delegate. Never throws. */
  reply(sender: AgentRecord, inReplyTo: unknown, payload: unknown): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let draft: Draft | undefined;
      let trace: SendToken | undefined;
      const telemetry = this.#config.telemetry;
      try {
        const id = this.#config.nextId();
        const p = typeof inReplyTo === 'string' ? this.#ledger.get(inReplyTo) : undefined;
        draft = {
          ...replyDraft(id, this.#config.clock.now(), sender.id, p?.envelope ?? UNKNOWN_ASK, undefined, ''),
          conversationId: p?.envelope.conversationId ?? id,
          causationId: typeof inReplyTo === 'string' ? inReplyTo : undefined,
          inReplyTo: recordedText(inReplyTo, 256),
        };
        trace = startSend(telemetry, draft, p?.envelope.depth ?? 0, p?.delivery?.runToken);
        this.#checkOpen();
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
        const encoded = this.#deliveries.encodeReply(p, payload, 'replier');
        // The payload walk ran caller code: the replier or the asker may be gone now.
        this.#checkLive(sender, undefined);
        if (p.state !== 'pending') throw new BusError('INVALID_REPLY', `"${inReplyTo}" was settled while its reply was being read`);
        draft.encoded = encoded;
        p.repliedExplicitly = true;
        // The replier hears "sent" only once its reply's row is committed, like any sender.
        this.#deliveries.answer(
          p,
          encoded,
          () => {
            if (trace !== undefined) {
              telemetry.sendCommitted(trace, REPLY_COMMITTED);
              telemetry.sendSettled(trace);
            }
            resolve();
          },
          (error) => {
            if (trace !== undefined) telemetry.sendRefused(trace, 'AUDIT_UNAVAILABLE');
            reject(toBusError(error, 'AUDIT_UNAVAILABLE', id));
          },
        );
      } catch (error) {
        if (draft === undefined) reject(toBusError(error, 'INVALID_ARGUMENT', undefined, 'the id generator failed: '));
        else this.#refuse(draft, this.#chargeRefusedReply(sender, error), reject, trace);
      }
    });
  }

  /**
   * A refused reply spends a token from the replier's bucket like any refused send (a valid
   * reply spends none), so an agent cannot flood the log with free refusals: once its bucket
   * is empty, its refused replies are RATE_LIMITED. A refusal never drives a bucket below empty.
   */
  #chargeRefusedReply(sender: AgentRecord, error: unknown): unknown {
    const code = (error as { code?: unknown } | null)?.code;
    if ((code !== 'INVALID_REPLY' && code !== 'INVALID_ARGUMENT') || !sender.alive) return error;
    try {
      // The sender's own bucket only: the global one meters sends, and a reply is not one.
      checkRate(sender, undefined, this.#config.clock.now());
      return error;
    } catch (rateLimited) {
      return rateLimited;
    }
  }

  /** Progress from a handler to its delegator (ctx.progress). */
  progress(delivery: Delivery, fraction: unknown, note: unknown): void {
    this.#deliveries.progress(delivery, fraction, note);
  }

  // ---- Approvals (the operator's side) ------------------------------------------------

  listApprovals(): PendingApproval[] {
    return this.#approvals.list();
  }

  approve(id: unknown, options: ApproveOptions | undefined): ApprovalResult {
    return this.#approvals.approve(id, options, this.closed);
  }

  reject(id: unknown, options: RejectOptions | undefined): void {
    this.#approvals.reject(id, options, this.closed);
  }

  /** Puts back the held messages an earlier process left in the audit file. */
  restore(stored: readonly StoredHold[]): void {
    this.#approvals.restore(stored);
  }

  /** A new agent: approved restored messages waiting for it go to it now. */
  registered(record: AgentRecord): void {
    this.#approvals.registered(record);
  }

  /** The reply or error of a message of the log (see results.ts). */
  result(messageId: unknown): Promise<unknown> {
    return this.#results.result(messageId);
  }

  // ---- Checks that need the bus's state -------------------------------------------------

  #checkOpen(): void {
    if (this.closed) throw new BusError('CLOSED', 'the orchestrator is closed');
  }

  /** After caller code ran (the payload walk): the bus, the sender and the recipient must still be there. */
  #checkLive(sender: AgentRecord, recipient: AgentRecord | undefined): void {
    this.#checkOpen();
    checkSender(sender);
    if (recipient !== undefined && !recipient.alive) throw unknownAgent(recipient.id);
  }

  /**
   * The checks every local send ends with, in this order (after its own: recipient,
   * intent, options, priority): depth, the payload (one walk, then the contract on the
   * copy), liveness again (the walk ran caller code), rate. The policy comes last, per
   * recipient. Returns the depth.
   */
  #checkTail(draft: Draft, sender: AgentRecord, recipient: AgentRecord | undefined, type: RuleType, payload: unknown, parent: Delivery | undefined, now: number): number {
    const depth = checkDepth(parent, this.#config.maxDepth);
    this.#encode(draft, payload, type);
    this.#checkLive(sender, recipient);
    checkRate(sender, this.#config.globalRate, now);
    return depth;
  }

  /** Plain JSON (one read of the payload), then the contract on that copy, then size. */
  #encode(draft: Draft, payload: unknown, type: RuleType): void {
    const max = this.#config.maxPayloadBytes;
    // The walk writes the JSON too when it will be hashed (audit on): one pass instead of two.
    const plain = copyPlainJson(payload, max, 'payload', this.#journal.enabled);
    checkContract(this.#config.contracts, type, draft.intent, plain.copy);
    draft.encoded = checkSize(plain, max);
    if (this.#journal.enabled) draft.hash = hashPayload(draft.encoded);
  }

  #refuse(draft: Draft, error: unknown, reject: (error: BusError) => void, trace: SendToken | undefined): void {
    const e = toBusError(error, 'INVALID_ARGUMENT', draft.id);
    this.#journal.refused(draft, e);
    if (trace !== undefined) this.#config.telemetry.sendRefused(trace, e.code, refusalInfo(e));
    reject(e);
  }

  // ---- Notify fan-out ---------------------------------------------------------------------

  #fanOut(draft: Draft, sender: AgentRecord, listed: string[] | undefined, priority: Priority, depth: number, parent: Delivery | undefined, trace: SendToken | undefined): Promise<NotifyReceipt> {
    const targets = listed ?? broadcastTargets(this.#config.registry, this.#config.transport.remoteAgents(), sender.id);
    const f: FanOut = {
      draft,
      trace,
      receipt: { id: draft.id, delivered: [], denied: [], pending: [], failed: [] },
      records: [],
      deliveries: [],
      holds: [],
      remotes: [],
    };
    const journal = this.#journal;
    if (targets.length === 0 && journal.enabled) {
      f.records.push(journal.attempt({ ...draft, to: '*' }, 'allowed', undefined, undefined, 'no other agent is registered'));
    }
    const payload = decodePayload(draft.encoded!); // frozen, so one copy serves every recipient
    for (const to of targets) this.#fanOutCopy(f, to, sender, priority, depth, parent, payload);
    return new Promise<NotifyReceipt>((resolve, reject) => {
      this.#config.commit.stage(
        f.records,
        () => this.#fanOutCommitted(f, resolve),
        (error) => {
          for (const delivery of f.deliveries) delivery.drop();
          for (const hold of f.holds) this.#after.holdFailed(hold);
          const e = toBusError(error, 'AUDIT_UNAVAILABLE', draft.id);
          if (trace !== undefined) this.#config.telemetry.sendRefused(trace, e.code);
          reject(e);
        },
      );
    });
  }

  /** One recipient of a notify: its policy decision, then its route (its row joins the fan-out's batch). */
  #fanOutCopy(f: FanOut, to: string, sender: AgentRecord, priority: Priority, depth: number, parent: Delivery | undefined, payload: unknown): void {
    const { registry, events, policy, telemetry } = this.#config;
    const journal = this.#journal;
    const { receipt, records, trace } = f;
    const d: Draft = { ...f.draft, to, decision: undefined };
    try {
      const recipient = registry.get(to) ?? this.#remote.recipient(to);
      if (recipient === undefined) throw unknownAgent(to);
      const decision = (d.decision = checkPolicy(policy.current, sender, recipient, 'notify', d.intent));
      const envelope = envelopeOf(d, priority, depth, undefined, payload);
      // Every row of a copy for another node's agent names that node, a held copy's included.
      if (recipient.node !== undefined) this.#remote.mark(d, envelope, recipient.node);
      const route = routeOf(recipient, decision);
      if (route === 'carry') {
        // Another node's agent: its node acknowledges (delivered, held there, denied, failed) after this commit.
        const record = this.#remote.notifyRecord(d, recipient.node!);
        if (record !== undefined) records.push(record);
        f.remotes.push({ envelope, peer: recipient.node! });
        if (events.has('message:sent')) events.emit('message:sent', { envelope });
      } else if (route === 'hold') {
        const hold = this.#approvals.holdCopy(d, envelope, parent);
        f.holds.push(hold);
        receipt.pending.push(to);
        if (journal.enabled) records.push(this.#approvals.pendingRecord(d, hold));
        if (trace !== undefined) telemetry.sendHeld(trace, decision.ruleLabel);
      } else {
        f.deliveries.push(this.#deliveries.reserve(envelope, recipient, undefined, parent));
        receipt.delivered.push(to);
        if (journal.enabled) records.push(journal.attempt(d, 'allowed', undefined, 'delivered'));
        if (events.has('message:sent')) events.emit('message:sent', { envelope });
      }
    } catch (error) {
      const e = toBusError(error, 'INVALID_ARGUMENT');
      (e.code === 'POLICY_DENIED' ? receipt.denied : receipt.failed).push(to);
      if (journal.enabled) records.push(journal.refusal(d, e));
      journal.denied(d, e);
      if (trace !== undefined) telemetry.sendRefused(trace, e.code, refusalInfo(e, to));
    }
  }

  /** After the fan-out's batch committed: hand the local copies over, announce the holds, carry the remote copies. */
  #fanOutCommitted(f: FanOut, resolve: (receipt: NotifyReceipt) => void): void {
    const { policy, telemetry } = this.#config;
    const { receipt, trace } = f;
    for (const delivery of f.deliveries) {
      if (delivery.withdrawn) this.#fanOutWithdrawn(receipt, delivery);
      else this.#deliveries.handOver(delivery);
    }
    for (const hold of f.holds) this.#after.holdCommitted(hold);
    // The notify's span ends once every recipient was handled, those of other nodes included.
    const done = () => {
      if (trace !== undefined) {
        if (receipt.delivered.length > 0) telemetry.sendCommitted(trace, commitInfo('allowed', undefined, policy.current.version));
        telemetry.sendSettled(trace);
      }
      resolve(Object.freeze(receipt));
    };
    const remotes = f.remotes;
    if (remotes.length === 0) {
      done();
      return;
    }
    const encoded = f.draft.encoded!;
    void Promise.all(remotes.map((r) => this.#remote.notify(r.envelope, encoded, r.peer))).then((answers) => {
      answers.forEach((answer, i) => receiptList(receipt, answer).push(remotes[i]!.envelope.to));
      if (trace !== undefined) answers.forEach((answer, i) => answer instanceof BusError && telemetry.sendRefused(trace, answer.code, refusalInfo(answer, remotes[i]!.envelope.to)));
      done();
    });
  }

  /** A local copy withdrawn in the same tick (unregister, close): it never reached the mailbox. */
  #fanOutWithdrawn(receipt: Receipt, delivery: Delivery): void {
    const id = delivery.recipient.id;
    receipt.delivered.splice(receipt.delivered.indexOf(id), 1);
    receipt.failed.push(id);
    const reason = `${id} left before the notify reached it`;
    this.#journal.recordOutcome(delivery.envelope, this.closed ? 'cancelled' : 'failed', this.closed ? 'CLOSED' : 'UNKNOWN_AGENT', reason);
    const { events } = this.#config;
    if (events.has('message:dead')) events.emit('message:dead', { envelope: delivery.envelope, reason });
  }

  // ---- Leaving: unregister and close ----------------------------------------------------------

  /** Fails what was addressed to the agent, cancels what it sent, aborts its handlers. */
  unregister(record: AgentRecord): void {
    record.alive = false;
    const gone = new BusError('UNKNOWN_AGENT', `${record.id} was unregistered`, { agentId: record.id });
    this.#ledger.dropAgent(record);
    this.#approvals.cancelFor(record, gone);
    this.#deliveries.abortAll(record, gone);
  }

  /** Refuses new sends and fails everything pending with CLOSED. */
  shutdown(): void {
    this.closed = true;
    this.#deliveries.closed = true;
    this.#approvals.cancelAll();
    this.#results.close();
    this.#ledger.closeAll();
    this.#remote.closeAll();
    const closing = new BusError('CLOSED', 'the orchestrator is closing');
    for (const record of this.#config.registry.values()) this.#deliveries.abortAll(record, closing);
  }
}

const REPLY_COMMITTED = commitInfo('allowed', undefined, undefined);

/** A broadcast's recipients: every local agent but the sender, then every agent other nodes serve. */
function broadcastTargets(registry: ReadonlyMap<string, AgentRecord>, remote: readonly { readonly id: string }[], sender: string): string[] {
  const targets = [...registry.keys()].filter((id) => id !== sender);
  for (const agent of remote) if (agent.id !== sender && !registry.has(agent.id)) targets.push(agent.id);
  return targets;
}

/** A notify's receipt while it is being filled. */
type Receipt = { id: string; delivered: string[]; denied: string[]; pending: string[]; failed: string[] };

/** One notify's fan-out: what its batch holds, and what follows the commit. */
interface FanOut {
  readonly draft: Draft;
  readonly trace: SendToken | undefined;
  readonly receipt: Receipt;
  readonly records: AuditRecord[];
  readonly deliveries: Delivery[];
  readonly holds: HeldMessage[];
  readonly remotes: { envelope: Envelope; peer: string }[];
}

/** The receipt list a remote recipient goes in, by its node's answer. */
function receiptList(receipt: Receipt, answer: NotifyAnswer): string[] {
  if (answer === 'delivered') return receipt.delivered;
  if (answer === 'pending') return receipt.pending;
  return answer.code === 'POLICY_DENIED' ? receipt.denied : receipt.failed;
}

/** What a reply to an unknown id is recorded against. */
const UNKNOWN_ASK = Object.freeze({ id: '?', from: '?', intent: '?', conversationId: '?' }) as unknown as import('../envelope.js').Envelope;

/** A job that failed before it had an id. */
function failedJob(error: BusError): Job {
  const job = Promise.reject(error) as MutableJob;
  job.id = '';
  job.onProgress = () => job;
  job.cancel = () => undefined;
  return freezeObject(job);
}
