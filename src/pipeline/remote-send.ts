import type { AuditRecord } from '../audit/types.js';
import { decodePayload, hashPayload, type EncodedPayload } from '../codec.js';
import { describeIssues, validate } from '../contracts.js';
import type { Envelope } from '../envelope.js';
import type { Progress } from '../types.js';
import { BusError, errorText, MAX_TEXT_LENGTH, toBusError, type ErrorCode } from '../errors.js';
import { isAgentId } from '../ids.js';
import { contractOf } from './checks.js';
import type { AfterCommit } from './after-commit.js';
import type { PipelineConfig } from './config.js';
import type { Deliveries, PipelineParts } from './delivery.js';
import { envelopeOf, replyDraft, type Draft } from './draft.js';
import type { Journal } from './journal.js';
import type { Ledger } from './ledger.js';
import type { AgentRecord, Delivery, PendingRequest } from './records.js';
import { decodeJson, readNotifyAck, remoteCode, remoteRecord, remoteText, type NotifyAck } from './remote.js';
import type { OutboundHandle, OutboundMessage, OutboundSink } from './transport.js';
import { traceparentOf, type CommitInfo } from '../telemetry-port.js';
import { commitInfo } from './tracing.js';
import { freezeClass } from '../frozen.js';

/** A remote notify's answer for one recipient: acknowledged, or refused with a BusError. */
export type NotifyAnswer = NotifyAck | BusError;

/** An outbound request sent from inside a handler: what an inbound call back into its chain needs. */
interface ChainLink {
  readonly to: string;
  readonly parent: Delivery;
}

/**
 * The sending side of a message to an agent another node serves. The pipeline has run its
 * own checks (arguments, codec, contract, size, rate, policy); this commits the attempt row
 * (naming this node and the peer), hands the message to the transport, and turns what comes
 * back through the sink into the same settlement a local reply or refusal would be.
 * TIMEOUT stays the ledger's, on this node's clock; a settled request cancels its carriage.
 */
export class RemoteSends {
  readonly #config: PipelineConfig;
  readonly #journal: Journal;
  readonly #ledger: Ledger;
  readonly #deliveries: Deliveries;
  readonly #after: AfterCommit;
  /** Requests in flight that a handler sent: an inbound message caused by one re-enters its chain. */
  readonly #links = new Map<string, ChainLink>();
  /** Envelopes whose deciding rule says `sealed`: the transport must encrypt them. */
  readonly #sealed = new WeakSet<Envelope>();
  /** Notifies waiting for their acknowledgement: closing answers them (and clears their timers). */
  readonly #acks = new Set<(answer: NotifyAnswer) => void>();

  constructor({ config, journal, ledger, deliveries, after }: PipelineParts) {
    this.#after = after;
    this.#config = config;
    this.#journal = journal;
    this.#ledger = ledger;
    this.#deliveries = deliveries;
  }

  /** The stand-in for `id` when another node serves it, else undefined (also when the transport names no valid node id). */
  recipient(id: string): AgentRecord | undefined {
    const { transport } = this.#config;
    if (transport.locate(id) !== 'remote') return undefined;
    const node = transport.nodeOf(id);
    // Its trust is what this node grants it (remoteTrust), for rules with minRecipientTrust.
    return isAgentId(node) ? remoteRecord(id, node, this.#config.remoteTrust.get(id) ?? 0) : undefined;
  }

  /**
   * The local delivery an inbound message from `from` re-enters: the handler that sent
   * `causationId` to `from` and still waits on it (A → B → A across nodes).
   */
  chainOf(causationId: string | undefined, from: string): Delivery | undefined {
    if (causationId === undefined) return undefined;
    const link = this.#links.get(causationId);
    return link !== undefined && link.to === from ? link.parent : undefined;
  }

  /**
   * Names `peer` on every row of a message to a remote agent (its attempt row included,
   * whether allowed or held here for approval).
   */
  mark(draft: Draft, envelope: Envelope, peer: string): void {
    draft.peerNode = peer;
    this.#journal.markRemote(envelope, peer);
    // The deciding rule says sealed: the transport encrypts it (also once approved here).
    if (draft.decision?.sealed === true) this.#sealed.add(envelope);
  }

  /**
   * An ask or delegate to a remote agent, checked and allowed by this node's policy: commit
   * the attempt row, then carry it. (One this node's policy holds for approval is held here
   * first, see {@link approved}; the receiving node's policy decides again.)
   */
  request(draft: Draft, envelope: Envelope, p: PendingRequest, parent: Delivery | undefined): void {
    const peer = p.recipient.node!;
    this.mark(draft, envelope, peer);
    const record = this.#journal.enabled ? this.#journal.attempt(draft, 'allowed', undefined, 'delivered', `forwarded to node ${peer}`) : undefined;
    const committed = p.trace === undefined ? undefined : commitInfo('allowed', draft.decision?.ruleLabel, draft.decision?.policyVersion);
    this.#forward(record, envelope, draft.encoded!, p, parent, peer, committed);
    const { events } = this.#config;
    if (events.has('message:sent')) events.emit('message:sent', { envelope });
  }

  /**
   * A message to a remote agent that this node held for approval was approved here: its
   * outcome row (the attempt row is the 'pending' one), then it is carried like any other.
   * An ask or delegate settles from the sink; a notify's answer is recorded when it comes.
   */
  approved(envelope: Envelope, encoded: EncodedPayload, p: PendingRequest | undefined, parent: Delivery | undefined, peer: string, committed: CommitInfo | undefined): void {
    this.#journal.markRemote(envelope, peer);
    const record = this.#journal.enabled ? this.#journal.outcome(envelope, 'delivered', undefined, `approved here, forwarded to node ${peer}`) : undefined;
    if (p !== undefined) {
      this.#forward(record, envelope, encoded, p, parent, peer, committed);
      return;
    }
    this.#config.commit.stage(
      record,
      () => void this.notify(envelope, encoded, peer),
      // Not carried: its end is `failed`, written once the log works (the approval's row is held too), never `delivered`.
      (error) => this.#journal.recordOutcome(envelope, 'failed', 'AUDIT_UNAVAILABLE', toBusError(error, 'AUDIT_UNAVAILABLE', envelope.id).message),
    );
  }

  /** Tracks `p`, stages `record`, and carries the message once it is committed. */
  #forward(record: AuditRecord | undefined, envelope: Envelope, encoded: EncodedPayload, p: PendingRequest, parent: Delivery | undefined, peer: string, committed: CommitInfo | undefined): void {
    this.#ledger.track(p);
    if (parent !== undefined) {
      const id = envelope.id;
      this.#links.set(id, { to: envelope.to, parent });
      const before = p.onSettle;
      p.onSettle = () => {
        this.#links.delete(id);
        before?.();
      };
    }
    this.#config.commit.stage(
      record,
      () => {
        this.#after.requestCommitted(p, committed);
        if (p.state === 'pending') this.#carry(envelope, encoded, p, peer);
      },
      (error) => this.#after.requestFailed(p, error),
    );
  }

  /** The attempt row of one remote recipient of a notify that this node's policy allowed (after {@link mark}). */
  notifyRecord(d: Draft, peer: string): AuditRecord | undefined {
    return this.#journal.enabled ? this.#journal.attempt(d, 'allowed', undefined, 'delivered', `forwarded to node ${peer}`) : undefined;
  }

  /**
   * Carries a committed notify to its remote recipient and waits for its acknowledgement,
   * at most `timeouts.askMs`: the receipt lists the recipient by what its node answered
   * (delivered, pending approval there, denied by its policy, failed). Never rejects.
   */
  notify(envelope: Envelope, encoded: EncodedPayload, peer: string): Promise<NotifyAnswer> {
    return new Promise<NotifyAnswer>((resolve) => {
      const { askMs } = this.#config;
      let done = false;
      let handle: OutboundHandle | undefined;
      const timer = setTimeout(() => finish(new BusError('TIMEOUT', `node ${peer} did not acknowledge the notify within ${askMs}ms`, { messageId: envelope.id, timeoutMs: askMs })), askMs);
      const finish = (answer: NotifyAnswer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#acks.delete(finish);
        if (answer instanceof BusError) {
          if (answer.code === 'TIMEOUT') cancelCarriage(handle, 'the notify was not acknowledged in time');
          // Its row and `message:failed` say why this recipient is listed failed or denied.
          this.#journal.ended(envelope, 'failed', answer);
        }
        resolve(answer);
      };
      const sink: OutboundSink = {
        reply: (json) => finish(readNotifyAck(json) ?? new BusError('TRANSPORT_UNAVAILABLE', `node ${peer} answered the notify with something that is not an acknowledgement`)),
        error: (code, message) => finish(remoteError(code, message, envelope, peer)),
        progress: () => undefined,
        dead: () => undefined,
      };
      this.#acks.add(finish);
      handle = this.#send(outbound(envelope, encoded.json, undefined, peer, this.#sealed.has(envelope)), sink);
    });
  }

  /** The bus is closing: every notify still waiting for its acknowledgement fails with CLOSED. */
  closeAll(): void {
    for (const finish of [...this.#acks]) finish(new BusError('CLOSED', 'the orchestrator closed before the notify was acknowledged'));
  }

  /** After the attempt's commit: hand it to the transport; the sink settles it like a local reply would. */
  #carry(envelope: Envelope, encoded: EncodedPayload, p: PendingRequest, peer: string): void {
    const sink = new RemoteSink(this.#answers, envelope, p, peer);
    const before = p.onSettle;
    p.onSettle =
      before === undefined
        ? sink.settled
        : () => {
            before();
            sink.settled();
          };
    const budgetMs = p.deadline - this.#config.clock.now();
    if (!(budgetMs > 0)) {
      // The deadline passed while the attempt was being committed: nothing is left to give the receiver.
      this.#ledger.expire(p);
      return;
    }
    sink.handle = this.#send(outbound(envelope, encoded.json, budgetMs, peer, this.#sealed.has(envelope)), sink);
    if (sink.answered && p.state === 'settled') cancelCarriage(sink.handle, 'the sender settled the request');
  }

  /** What every {@link RemoteSink} of this node calls back (made once, not per message). */
  readonly #answers: SinkTarget = {
    reply: (sink, p, json, proof) => {
      let reply: EncodedPayload;
      try {
        reply = this.#readReply(p, json);
      } catch (error) {
        const envelope = p.envelope;
        this.#ledger.fail(p, new BusError('HANDLER_FAILED', `${envelope.to} on node ${sink.peer} replied to "${envelope.intent}" with a refused reply: ${errorText(error)}`, { messageId: envelope.id, agentId: envelope.to }), 'failed');
        return;
      }
      this.#deliveries.answer(p, reply, undefined, undefined, typeof proof === 'string' && proof.length <= 16_384 ? proof : undefined);
    },
    fail: (p, e) => this.#ledger.fail(p, e, e.code === 'TIMEOUT' ? 'expired' : 'failed'),
    dead: (envelope, peer, reason, json) => this.#dead(envelope, peer, reason, json),
  };

  /** `transport.send`, which must not throw; if it does, the message could not leave. */
  #send(outbound: OutboundMessage, sink: OutboundSink): OutboundHandle {
    try {
      return this.#config.transport.send(outbound, sink);
    } catch (error) {
      sink.error('TRANSPORT_UNAVAILABLE', `the transport failed to send: ${errorText(error)}`);
      return NO_HANDLE;
    }
  }

  /** A remote reply: JSON within the size limit, plain data, and what the output contract allows. */
  #readReply(p: PendingRequest, json: unknown): EncodedPayload {
    const encoded = decodeJson(json, this.#config.maxPayloadBytes, 'reply');
    const output = contractOf(this.#config.contracts, p.envelope.intent)?.output;
    if (output !== undefined) {
      const result = validate(output, encoded.copy, `the output of "${p.envelope.intent}"`);
      if (!result.success) throw new BusError('INVALID_PAYLOAD', `reply to "${p.envelope.intent}" does not match its contract: ${describeIssues(result.error)}`);
    }
    return encoded;
  }

  /** A reply that came too late (here or at the receiver): audited and `message:dead`. */
  #dead(ask: Envelope, peer: string, reason: string, json: unknown): void {
    if (this.#deliveries.closed) return;
    let encoded: EncodedPayload | undefined;
    try {
      encoded = json === undefined ? undefined : decodeJson(json, this.#config.maxPayloadBytes, 'reply');
    } catch {
      encoded = undefined;
    }
    const { commit, events, clock, nextId } = this.#config;
    const draft = replyDraft(nextId(), clock.now(), ask.to, ask, encoded, commit.enabled && encoded !== undefined ? hashPayload(encoded) : '');
    draft.peerNode = peer;
    if (commit.enabled) commit.stage(this.#journal.attempt(draft, 'denied', undefined, 'late-reply', reason));
    if (events.has('message:dead')) {
      const payload = encoded === undefined ? null : decodePayload(encoded);
      events.emit('message:dead', { envelope: envelopeOf(draft, ask.priority, ask.depth, undefined, payload), reason });
    }
  }
}

const NO_HANDLE: OutboundHandle = Object.freeze({ cancel: () => undefined });

/** What a {@link RemoteSink} hands back to its {@link RemoteSends}. */
interface SinkTarget {
  reply(sink: RemoteSink, p: PendingRequest, json: string, proof: unknown): void;
  fail(p: PendingRequest, error: BusError): void;
  dead(ask: Envelope, peer: string, reason: string, json: unknown): void;
}

/**
 * How the answer to one remote ask or delegate comes back: the sink the transport calls
 * (one object per message instead of a closure per method; it settles the request like a
 * local reply or refusal would).
 */
class RemoteSink implements OutboundSink {
  /** The request settled, here or by its answer: a later answer is a dead letter. */
  answered = false;
  handle: OutboundHandle | undefined;
  /** One dead letter of each kind per message, however often a peer repeats it: a peer's calls cost bounded disk. */
  #lateReply = false;
  #deadReport = false;
  /** The latest report of a progress burst, told before the answer it came ahead of (or at the end of the tick). */
  #latest: Progress | undefined;
  /** For `p.onSettle`: the sender settled (deadline, cancel, unregister, close) before an answer. */
  readonly settled = (): void => {
    if (this.answered) return;
    this.answered = true;
    cancelCarriage(this.handle, 'the sender settled the request (deadline, cancel, unregister or close)');
  };
  /** Made for the first progress report only (asks never report). */
  #flush: (() => void) | undefined;

  constructor(
    readonly target: SinkTarget,
    readonly envelope: Envelope,
    readonly p: PendingRequest,
    readonly peer: string,
  ) {}

  reply(json: string, proof?: string): void {
    if (this.answered || this.p.state !== 'pending') {
      if (this.#lateReply) return;
      this.#lateReply = true;
      this.target.dead(this.envelope, this.peer, `late reply to "${this.envelope.id}" from node ${this.peer}: the request was already settled`, json);
      return;
    }
    this.answered = true;
    this.#flushProgress();
    this.target.reply(this, this.p, json, proof);
  }

  error(code: ErrorCode, message: string): void {
    if (this.answered || this.p.state !== 'pending') return;
    this.answered = true;
    this.#flushProgress();
    this.target.fail(this.p, remoteError(code, message, this.envelope, this.peer));
  }

  progress(fraction: number, note?: string): void {
    if (this.answered) return;
    const report = readProgress(fraction, note);
    if (report === undefined) return;
    // A burst is told as its latest report: a flood holds one report, not one per call.
    if (this.#latest === undefined) queueMicrotask((this.#flush ??= () => this.#flushProgress()));
    this.#latest = report;
  }

  dead(reason: string, json?: string): void {
    if (this.#deadReport) return;
    this.#deadReport = true;
    this.target.dead(this.envelope, this.peer, remoteText(reason), json);
  }

  #flushProgress(): void {
    const last = this.#latest;
    if (last === undefined) return;
    this.#latest = undefined;
    this.p.reportProgress(last);
  }
}

/**
 * Tells the transport to stop carrying a message. The handle is the transport's (user code):
 * one that is not an object, lacks `cancel` or throws must not keep the request from settling.
 */
function cancelCarriage(handle: OutboundHandle | undefined, reason: string): void {
  try {
    handle?.cancel(reason);
  } catch {
    // The carriage could not be told: its late answers are dead letters, like any other.
  }
}

/** The message the transport carries, with the send's W3C trace context when it was traced. */
function outbound(envelope: Envelope, payloadJson: string, budgetMs: number | undefined, node: string, sealed: boolean): OutboundMessage {
  const traceparent = traceparentOf(envelope);
  const out: OutboundMessage = traceparent === undefined ? { envelope, payloadJson, budgetMs, node } : { envelope, payloadJson, budgetMs, node, traceparent };
  return sealed ? { ...out, sealed: true } : out;
}

/** A refusal from the receiving node as this node's BusError (an unknown code is TRANSPORT_UNAVAILABLE). */
function remoteError(code: unknown, message: unknown, envelope: Envelope, peer: string): BusError {
  const c = remoteCode(code);
  const text = remoteText(message);
  return new BusError(c, `${text === '' ? c : text} (node ${peer})`, { messageId: envelope.id, agentId: envelope.to });
}

/** A remote delegate's progress report, or undefined unless it is what ctx.progress accepts. */
function readProgress(fraction: unknown, note: unknown): Progress | undefined {
  if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) return undefined;
  if (note !== undefined && (typeof note !== 'string' || note.length > MAX_TEXT_LENGTH)) return undefined;
  return Object.freeze(note === undefined ? { fraction } : { fraction, note: remoteText(note) });
}

// Frozen: the transport holds sinks; none can patch what every other sink runs.
freezeClass(RemoteSink);
