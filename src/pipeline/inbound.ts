import { hashPayload, type EncodedPayload } from '../codec.js';
import { isRuleType, type Envelope, type Priority } from '../envelope.js';
import { BusError, describe, errorText, toBusError, type ErrorCode } from '../errors.js';
import type { DigestRecord } from '../audit/types.js';
import { isAgentId } from '../ids.js';
import { TokenBucket } from '../limits.js';
import type { ApprovalFlow } from './approval-flow.js';
import { checkContract, checkDepthLimit, checkIntent, checkPolicy, checkPriority, checkRate, checkWellFormed, recordedText, unknownAgent } from './checks.js';
import type { PipelineParts } from './delivery.js';
import { envelopeOf, type Draft } from './draft.js';
import { PendingRequest, type AgentRecord, type Delivery } from './records.js';
import { decodeJson, NOTIFY_ACK, remoteRecord } from './remote.js';
import type { RemoteSends } from './remote-send.js';
import { routeOf } from './route.js';
import { InboundShare, LOCAL_WORK_WINDOW_MS, type Slot } from './inbound-share.js';
import type { DigestReport, InboundHandle, InboundMessage, InboundPort, RefusedInbound, RemoteAgent, Responder } from './transport.js';
import { checkTraceparent } from '../telemetry-port.js';

/** Admitted inbound (node, message id, recipient) triples remembered, to drop a repeated one. */
export const SEEN_IDS = 10_000;
/** Known remote senders with a rate bucket of their own at most (the least recently seen is forgotten); unknown ones share one. */
export const REMOTE_BUCKETS = 10_000;
/** The longest budget an inbound message may carry (setTimeout's limit, as for timeoutMs). */
const MAX_BUDGET_MS = 2_147_483_647;
/** Ids, conversation and causation ids from another node are at most this long. */
const MAX_ID_LENGTH = 256;

/** The bucket key every sender this node's directory does not know shares (no agent id holds a NUL). */
const UNKNOWN_SENDERS = '\u0000unknown';
const NO_HANDLE: InboundHandle = Object.freeze({ cancel: () => undefined });
/** The slot of a message no share counts (fair share off, or refused before admission). */
const NO_SLOT: Slot = Object.freeze({ release: () => undefined });

/** When this node's own agents last sent (the bus clock): the fair shares hold while they send. */
export interface LocalActivity {
  lastLocalSend: number;
}

/**
 * What the receiving side is built from: the pipeline's parts, the approval flow, the
 * sending side, whether the bus closed, and when a local agent last sent.
 */
export interface InboundParts extends PipelineParts {
  readonly approvals: ApprovalFlow;
  readonly remote: RemoteSends;
  readonly closed: () => boolean;
  readonly activity: LocalActivity;
}

/** A message as it arrived: its fields, read once, and how to answer it. */
interface Arrived {
  readonly f: Fields;
  readonly responder: Responder;
}

/** An inbound message's fields, each read once. */
interface Fields {
  id: unknown;
  type: unknown;
  from: unknown;
  fromNode: unknown;
  to: unknown;
  intent: unknown;
  payloadJson: unknown;
  conversationId: unknown;
  causationId: unknown;
  priority: unknown;
  depth: unknown;
  budgetMs: unknown;
  traceparent: unknown;
  proof: unknown;
  sealed: unknown;
}

/**
 * The receiving side of a message from another node, which it treats as hostile: every
 * field is read once and checked again here (recipient, forged sender, ids, depth, budget,
 * codec and size, contract, a rate bucket per remote sender, this node's policy with the
 * trust this node grants the sender, `remoteTrust`, never the sending node's word), a
 * repeated id is dropped (and audited), the receipt row (naming this node
 * and the sender's) is committed before delivery, and an 'approval' decision is held here.
 * From then on it is a local delivery: the handler's return, a throw, `reply()`,
 * `ctx.progress` and the deadline reach the sender through the responder.
 */
export class Inbound implements Pick<InboundPort, 'receive' | 'refused'> {
  /** The pipeline's parts, read by name where used (an inbound message is not the hot path of a local ask). */
  readonly #parts: InboundParts;
  /** Keys of recently admitted inbound messages (insertion order is age): a repeat is dropped. */
  readonly #seen = new Set<string>();
  /** A bucket per known remote sender (node and agent), plus one for unknown ones, least recently used first. */
  readonly #buckets = new Map<string, TokenBucket>();
  /** The last `remoteAgents()` array seen, and its entries by id. */
  #directory: readonly RemoteAgent[] | undefined;
  #byId = new Map<string, RemoteAgent>();
  /** Each peer node's fair share of this node, or undefined when `limits.inboundPerNode` is false. */
  readonly #share: InboundShare<Arrived> | undefined;

  constructor(parts: InboundParts) {
    this.#parts = parts;
    const { config, activity } = parts;
    const spec = config.inboundShare;
    this.#share =
      spec === false
        ? undefined
        : new InboundShare<Arrived>(
            spec,
            {
              admit: (m, slot, waitedFrom) => this.#run(m, slot, waitedFrom),
              refuse: (m, e) => this.#refuse(inboundDraft(m.f, config.clock.now()), e, once(m.responder, NO_SLOT)),
            },
            () => config.clock.now(),
            () => config.clock.now() - activity.lastLocalSend < LOCAL_WORK_WINDOW_MS,
          );
  }

  receive(inbound: InboundMessage, responder: Responder): InboundHandle {
    let f: Fields;
    try {
      f = readFields(inbound);
    } catch (error) {
      // Unreadable (not an object, a throwing getter): refused and audited like any other refusal.
      this.#refuse(inboundDraft(UNREAD, this.#parts.config.clock.now()), toBusError(error, 'INVALID_ARGUMENT', undefined, 'the inbound message could not be read: '), once(responder, NO_SLOT));
      return NO_HANDLE;
    }
    // Over the size limit: refused at once (unparsed), never held in a queue.
    const bytes = typeof f.payloadJson === 'string' ? f.payloadJson.length : 0;
    if (this.#share === undefined || bytes > this.#parts.config.maxPayloadBytes) return this.#run({ f, responder }, NO_SLOT, undefined);
    return this.#share.offer(this.#shareKey(f), { f, responder }, bytes);
  }

  /**
   * The fair share a message counts against: its node's when this node's directory places
   * its sender there, else the one share of every sender it does not know (made-up node ids
   * buy no fresh share).
   */
  #shareKey(f: Fields): string {
    const { from, fromNode } = f;
    if (typeof from !== 'string' || typeof fromNode !== 'string') return UNKNOWN_SENDERS;
    return this.#known(from, fromNode) !== undefined ? fromNode : UNKNOWN_SENDERS;
  }

  /**
   * Checks and delivers (or holds) one message its node's share admitted; `slot` is freed
   * once it is answered or held. A message that waited for its turn has that much less of
   * its budget left, and none left is a TIMEOUT.
   */
  #run(m: Arrived, slot: Slot, waitedFrom: number | undefined): InboundHandle {
    const answer = once(m.responder, slot);
    const now = this.#parts.config.clock.now();
    const f = m.f;
    const draft = inboundDraft(f, now);
    try {
      if (this.#parts.closed()) throw new BusError('CLOSED', 'the orchestrator is closed');
      if (waitedFrom !== undefined && typeof f.budgetMs === 'number' && f.type !== 'notify') {
        const waited = now - waitedFrom;
        if (f.budgetMs - waited <= 0) {
          throw new BusError('TIMEOUT', `waited ${waited}ms for its turn in node ${draft.peerNode}'s share here, past its budget of ${f.budgetMs}ms`, { timeoutMs: f.budgetMs });
        }
        f.budgetMs -= waited;
      }
      return this.#admit(f, draft, now, answer, slot);
    } catch (error) {
      this.#refuse(draft, toBusError(error, 'INVALID_ARGUMENT', typeof f.id === 'string' ? draft.id : undefined), answer);
      return NO_HANDLE;
    }
  }

  /** A frame the transport refused before reading it (proof, roster, replay): its row and `message:denied`, no answer. */
  refused(report: RefusedInbound): void {
    let f: Fields;
    let e: BusError;
    try {
      const { id, type, from, to, fromNode, code, reason } = report;
      f = { ...UNREAD, id: id ?? '?', type, from: from ?? '?', to: to ?? '?', fromNode, intent: '?' };
      e = new BusError(typeof code === 'string' ? code : 'POLICY_DENIED', recordedText(reason, 1000), typeof id === 'string' ? { messageId: recordedText(id, MAX_ID_LENGTH) } : {});
    } catch {
      f = UNREAD;
      e = new BusError('POLICY_DENIED', 'a frame refused by the transport');
    }
    const draft = inboundDraft(f, this.#parts.config.clock.now());
    // A refused answer (a forged reply) is recorded as a reply, not as the notify a draft defaults to.
    this.#parts.journal.refused(f.type === 'reply' ? { ...draft, type: 'reply' } : draft, e);
  }

  /**
   * A peer node's signed digest: one record of its own kind ({@link DigestRecord}: the signing
   * node, the frame's id, the proof and the hash the signature covers), naming no agent and no
   * conversation, since no agent sent anything. No event, no delivery.
   *
   * @throws BusError `INVALID_ARGUMENT` naming the field of a malformed report (nothing recorded).
   */
  digest(report: DigestReport): void {
    const { journal, config } = this.#parts;
    if (!journal.enabled) return;
    const { id, fromNode, proof, payloadHash } = readDigestReport(report);
    const record: DigestRecord = { kind: 'digest', ts: config.clock.now(), digestId: id, payloadHash, node: config.node, peerNode: fromNode, proof };
    config.commit.stage(record);
  }

  /** A refused inbound message: its row (naming both nodes), `message:denied`, and the sender's answer. */
  #refuse(draft: Draft, e: BusError, answer: Responder): void {
    this.#parts.journal.refused(draft, e);
    answer.error(e.code, e.message);
  }

  /** The checks, in order, then the hold or the delivery. Throws the refusal. */
  #admit(f: Fields, draft: Draft, now: number, answer: Responder, slot: Slot): InboundHandle {
    const { registry, transport, maxDepth, maxPayloadBytes, contracts, policy } = this.#parts.config;
    const fromNode = checkNodeId(f.fromNode);
    const id = checkText(f.id, 'id');
    const type = f.type;
    if (!isRuleType(type)) throw new BusError('INVALID_ARGUMENT', `type must be ask, delegate or notify, got ${describe(type)}`);
    const from = f.from;
    if (!isAgentId(from)) throw new BusError('INVALID_ARGUMENT', `from must be an agent id, got ${describe(from)}`);
    // A node may speak only for agents it serves: never as this node, never as one of ours, never as another node's.
    if (fromNode === this.#parts.config.node) throw new BusError('POLICY_DENIED', `a message from another node cannot claim to come from this node (${fromNode})`, { agentId: from });
    if (registry.has(from)) throw new BusError('POLICY_DENIED', `node ${fromNode} cannot send as "${from}": that agent is served by this node`, { agentId: from });
    const home = transport.nodeOf(from);
    if (home !== undefined && home !== fromNode) throw new BusError('POLICY_DENIED', `node ${fromNode} cannot send as "${from}": that agent is served by node ${home}`, { agentId: from });
    const to = f.to;
    if (!isAgentId(to)) throw new BusError('INVALID_ARGUMENT', `to must be an agent id, got ${describe(to)}`);
    const recipient = registry.get(to);
    if (recipient === undefined || !recipient.alive) throw unknownAgent(to);
    checkIntent(f.intent);
    const intent = f.intent;
    const conversationId = checkText(f.conversationId, 'conversationId');
    const causationId = f.causationId === undefined ? undefined : checkText(f.causationId, 'causationId');
    const priority = checkPriority(f.priority);
    const depth = f.depth;
    if (typeof depth !== 'number' || !Number.isSafeInteger(depth) || depth < 0) throw new BusError('INVALID_ARGUMENT', `depth must be a whole number >= 0, got ${describe(depth)}`);
    checkDepthLimit(depth, maxDepth);
    const budgetMs = type === 'notify' ? undefined : checkBudget(f.budgetMs);
    const encoded: EncodedPayload = decodeJson(f.payloadJson, maxPayloadBytes, 'payload');
    draft.encoded = encoded;
    if (this.#parts.journal.enabled) draft.hash = hashPayload(encoded);
    checkContract(contracts, type, intent, encoded.copy);

    const known = this.#known(from, fromNode);
    // Trust is what this node grants (remoteTrust), never what the sending node's claim says.
    const sender = remoteRecord(from, fromNode, this.#parts.config.remoteTrust.get(from) ?? 0, known?.capabilities);
    checkRate({ ...sender, bucket: this.#bucket(known === undefined ? undefined : `${fromNode}\u0000${from}`, now) }, undefined, now);
    // A notify keeps one id for all its recipients: a repeat is the same id from the same node to the same agent.
    const key = `${fromNode}\u0000${id}\u0000${to}`;
    if (this.#seen.has(key)) {
      this.#dropRepeat(draft, priority, depth);
      slot.release();
      return NO_HANDLE;
    }
    const decision = (draft.decision = checkPolicy(policy.current, sender, recipient, type, intent));
    if (decision.sealed === true && f.sealed !== true) {
      throw new BusError('POLICY_DENIED', `${decision.reason} requires sealing, and this message from node ${fromNode} arrived unsealed`, { agentId: from, ...(decision.ruleLabel === undefined ? {} : { rule: decision.ruleLabel }) });
    }

    const deadline = budgetMs === undefined ? undefined : now + budgetMs;
    // The sender's trace context, checked like every field: the run here is its send's child.
    if (this.#parts.config.telemetry.enabled) draft.traceparent = checkTraceparent(f.traceparent);
    const envelope = envelopeOf({ ...draft, id, from, to, intent, conversationId, causationId }, priority, depth, deadline, encoded.copy);
    this.#parts.journal.markRemote(envelope, fromNode);
    const parent = this.#parts.remote.chainOf(causationId, from);
    const held = routeOf(recipient, decision) === 'hold';
    const handle =
      type === 'notify'
        ? this.#notify(draft, envelope, recipient, sender, parent, held, answer)
        : this.#request(draft, envelope, recipient, sender, parent, budgetMs!, held, answer, slot);
    // Only an admitted message is remembered: refusals cannot fill the memory or burn an id.
    this.#remember(key);
    return handle;
  }

  /** This node's directory entry for `from` on `fromNode`, by a map rebuilt only when `remoteAgents()` hands out a new array. */
  #known(from: string, fromNode: string): RemoteAgent | undefined {
    const agents = this.#parts.config.transport.remoteAgents();
    if (agents !== this.#directory) {
      this.#directory = agents;
      this.#byId = new Map(agents.map((a) => [a.id, a]));
    }
    const known = this.#byId.get(from);
    return known !== undefined && known.node === fromNode ? known : undefined;
  }

  /** An ask or delegate: a pending request whose answer goes to the responder. */
  #request(draft: Draft, envelope: Envelope, recipient: AgentRecord, sender: AgentRecord, parent: Delivery | undefined, budgetMs: number, held: boolean, answer: Responder, slot: Slot): InboundHandle {
    const p = new PendingRequest(
      envelope,
      sender,
      recipient,
      budgetMs,
      (payload) => answer.reply(JSON.stringify(payload)),
      (error) => answer.error(error.code, error.message),
      undefined,
    );
    p.replyAhead = (json) => answer.reply(json);
    if (envelope.type === 'delegate') p.progressListeners = [(report) => answer.progress(report.fraction, report.note)];
    if (held) {
      this.#parts.approvals.hold(draft, envelope, p, parent, envelope.deadline!);
      // A human decides when: a held message does not keep its node's share.
      slot.release();
    } else this.#parts.deliveries.deliverAllowed(draft, envelope, recipient, p, parent);
    const ledger = this.#parts.ledger;
    return { cancel: (reason) => ledger.cancel(p, `cancelled by the sender: ${recordedText(reason, 1000)}`) };
  }

  /** A notify: acknowledged once its receipt row is committed (delivered, or held here). */
  #notify(draft: Draft, envelope: Envelope, recipient: AgentRecord, sender: AgentRecord, parent: Delivery | undefined, held: boolean, answer: Responder): InboundHandle {
    const { commit } = this.#parts.config;
    const journal = this.#parts.journal;
    if (held) {
      const hold = this.#parts.approvals.holdCopy(draft, envelope, parent, sender);
      commit.stage(
        journal.enabled ? journal.attempt(draft, 'pending') : undefined,
        () => {
          this.#parts.after.holdCommitted(hold);
          answer.reply(NOTIFY_ACK.pending);
        },
        (error) => {
          this.#parts.after.holdFailed(hold);
          answer.error('AUDIT_UNAVAILABLE', errorText(error));
        },
      );
      return NO_HANDLE;
    }
    const delivery = this.#parts.deliveries.reserve(envelope, recipient, undefined, parent);
    commit.stage(
      journal.enabled ? journal.attempt(draft, 'allowed', undefined, 'delivered') : undefined,
      () => {
        this.#parts.deliveries.handOver(delivery);
        answer.reply(NOTIFY_ACK.delivered);
      },
      (error) => {
        delivery.drop();
        answer.error('AUDIT_UNAVAILABLE', errorText(error));
      },
    );
    return {
      cancel: (reason) => {
        if (!delivery.started) delivery.drop();
        delivery.abort(new BusError('CANCELLED', `cancelled by the sender: ${recordedText(reason, 1000)}`, { messageId: envelope.id }));
      },
    };
  }

  /** Remembers an admitted message's key among the last {@link SEEN_IDS}. */
  #remember(key: string): void {
    this.#seen.add(key);
    if (this.#seen.size > SEEN_IDS) this.#seen.delete(this.#seen.values().next().value!);
  }

  /** A repeated id is neither delivered nor answered (the first one is answered): its row and `message:dead` say so. */
  #dropRepeat(draft: Draft, priority: Priority, depth: number): void {
    const reason = `repeated message id "${draft.id}" from node ${draft.peerNode}: dropped`;
    if (this.#parts.journal.enabled) this.#parts.config.commit.stage(this.#parts.journal.attempt(draft, 'denied', undefined, undefined, reason));
    const { events } = this.#parts.config;
    if (events.has('message:dead')) events.emit('message:dead', { envelope: envelopeOf(draft, priority, depth, undefined, null), reason });
  }

  /**
   * The rate bucket of one remote sender this node's directory knows (`key`), or the one
   * bucket all unknown senders share, so made-up sender or node ids buy no fresh rate.
   * Undefined when rate limits are off. At most {@link REMOTE_BUCKETS}, least recently used forgotten.
   */
  #bucket(key: string | undefined, now: number): TokenBucket | undefined {
    const spec = this.#parts.config.remoteRate;
    if (spec === false) return undefined;
    const k = key ?? UNKNOWN_SENDERS;
    let bucket = this.#buckets.get(k);
    if (bucket !== undefined) this.#buckets.delete(k);
    else bucket = new TokenBucket(spec, now);
    this.#buckets.set(k, bucket);
    if (this.#buckets.size > REMOTE_BUCKETS) this.#buckets.delete(this.#buckets.keys().next().value!);
    return bucket;
  }
}

/** The longest proof a record keeps (as for a receipt's). */
const MAX_PROOF_LENGTH = 16_384;

/** The fields of a digest report, each read once and checked. */
function readDigestReport(report: DigestReport): { id: string; fromNode: string; proof: string; payloadHash: string } {
  if (typeof report !== 'object' || report === null) throw new BusError('INVALID_ARGUMENT', `expected a digest report object, got ${describe(report)}`);
  const { id, fromNode, proof, payloadHash } = report;
  if (typeof id !== 'string' || id === '' || id.length > MAX_ID_LENGTH) throw new BusError('INVALID_ARGUMENT', `a digest's id must be a non-empty string of at most ${MAX_ID_LENGTH} characters, got ${describe(id)}`);
  const node = checkNodeId(fromNode);
  if (typeof proof !== 'string' || proof === '' || proof.length > MAX_PROOF_LENGTH) throw new BusError('INVALID_ARGUMENT', `a digest's proof must be a non-empty string of at most ${MAX_PROOF_LENGTH} characters, got ${describe(proof)}`);
  if (typeof payloadHash !== 'string' || !/^[0-9a-f]{64}$/.test(payloadHash)) throw new BusError('INVALID_ARGUMENT', `a digest's payloadHash must be 64 lowercase hex characters, got ${describe(payloadHash)}`);
  return { id, fromNode: node, proof, payloadHash };
}

/** Reads every field of the message once (a getter runs once; a throwing one refuses the message). */
function readFields(m: InboundMessage): Fields {
  if (typeof m !== 'object' || m === null) throw new BusError('INVALID_ARGUMENT', `expected a message object, got ${describe(m)}`);
  return {
    id: m.id,
    type: m.type,
    from: m.from,
    fromNode: m.fromNode,
    to: m.to,
    intent: m.intent,
    payloadJson: m.payloadJson,
    conversationId: m.conversationId,
    causationId: m.causationId,
    priority: m.priority,
    depth: m.depth,
    budgetMs: m.budgetMs,
    traceparent: m.traceparent,
    proof: m.proof,
    sealed: m.sealed,
  };
}

/** A message that could not be read: its receipt records this. */
const UNREAD: Fields = Object.freeze({
  id: '?',
  type: undefined,
  from: undefined,
  fromNode: undefined,
  to: undefined,
  intent: undefined,
  payloadJson: undefined,
  conversationId: undefined,
  causationId: undefined,
  priority: undefined,
  depth: undefined,
  budgetMs: undefined,
  traceparent: undefined,
  proof: undefined,
  sealed: undefined,
});

/**
 * The receipt's draft: whatever the fields are, recorded short and printable (a bad type as
 * 'notify'), naming the peer node as the message does (`?` when it names none).
 */
function inboundDraft(f: Fields, now: number): Draft {
  const id = recordedText(f.id, MAX_ID_LENGTH);
  const causation = f.causationId === undefined ? undefined : recordedText(f.causationId, MAX_ID_LENGTH);
  return {
    id: id === '' ? '?' : id,
    ts: now,
    type: isRuleType(f.type) ? f.type : 'notify',
    from: recordedText(f.from, MAX_ID_LENGTH),
    to: recordedText(f.to, MAX_ID_LENGTH),
    intent: recordedText(f.intent, 128),
    conversationId: typeof f.conversationId === 'string' && f.conversationId !== '' ? recordedText(f.conversationId, MAX_ID_LENGTH) : id === '' ? '?' : id,
    causationId: causation,
    encoded: undefined,
    hash: '',
    decision: undefined,
    peerNode: typeof f.fromNode === 'string' && f.fromNode !== '' ? recordedText(f.fromNode, MAX_ID_LENGTH) : '?',
    traceparent: undefined,
    // The transport's verified proof of the sender, kept with the receipt (bounded like every recorded field).
    ...(typeof f.proof === 'string' && f.proof.length <= 16_384 ? { proof: f.proof } : {}),
  };
}

function checkNodeId(node: unknown): string {
  if (!isAgentId(node)) throw new BusError('INVALID_ARGUMENT', `fromNode must be a node id, got ${describe(node)}`);
  return node;
}

/** An id from another node: a non-empty, well-formed string of at most 256 characters. */
function checkText(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '' || value.length > MAX_ID_LENGTH) {
    throw new BusError('INVALID_ARGUMENT', `${what} must be a non-empty string of at most ${MAX_ID_LENGTH} characters, got ${describe(value)}`);
  }
  checkWellFormed(value, what);
  return value;
}

function checkBudget(budgetMs: unknown): number {
  if (typeof budgetMs !== 'number' || !Number.isFinite(budgetMs) || budgetMs <= 0 || budgetMs > MAX_BUDGET_MS) {
    throw new BusError('INVALID_ARGUMENT', `budgetMs must be a positive number of ms (at most ${MAX_BUDGET_MS}), got ${describe(budgetMs)}`);
  }
  return budgetMs;
}

/**
 * Each of the responder's answers at most once (progress any number of times before one),
 * and never a throw back into the pipeline. The first answer frees the message's `slot`.
 */
function once(responder: Responder, slot: Slot): Responder {
  let done = false;
  const guard = (fn: () => void): void => {
    try {
      fn();
    } catch {
      // The transport's responder must not throw into the pipeline; an answer that cannot leave is lost like a network loss.
    }
  };
  return {
    reply: (json) => {
      if (done) return;
      done = true;
      slot.release();
      guard(() => responder.reply(json));
    },
    error: (code: ErrorCode, message) => {
      if (done) return;
      done = true;
      slot.release();
      guard(() => responder.error(code, message));
    },
    progress: (fraction, note) => {
      if (!done) guard(() => responder.progress(fraction, note));
    },
  };
}
