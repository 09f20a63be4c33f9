import { hashPayload, type EncodedPayload } from '../codec.js';
import { isRuleType, type Envelope, type Priority } from '../envelope.js';
import { BusError, describe, errorText, toBusError, type ErrorCode } from '../errors.js';
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
import type { InboundHandle, InboundMessage, InboundPort, RemoteAgent, Responder } from './transport.js';
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

/** What the receiving side is built from: the pipeline's parts, the approval flow, the sending side, and whether the bus closed. */
export interface InboundParts extends PipelineParts {
  readonly approvals: ApprovalFlow;
  readonly remote: RemoteSends;
  readonly closed: () => boolean;
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
export class Inbound implements Pick<InboundPort, 'receive'> {
  /** The pipeline's parts, read by name where used (an inbound message is not the hot path of a local ask). */
  readonly #parts: InboundParts;
  /** Keys of recently admitted inbound messages (insertion order is age): a repeat is dropped. */
  readonly #seen = new Set<string>();
  /** A bucket per known remote sender (node and agent), plus one for unknown ones, least recently used first. */
  readonly #buckets = new Map<string, TokenBucket>();
  /** The last `remoteAgents()` array seen, and its entries by id. */
  #directory: readonly RemoteAgent[] | undefined;
  #byId = new Map<string, RemoteAgent>();

  constructor(parts: InboundParts) {
    this.#parts = parts;
  }

  receive(inbound: InboundMessage, responder: Responder): InboundHandle {
    const answer = once(responder);
    const now = this.#parts.config.clock.now();
    let f: Fields;
    try {
      f = readFields(inbound);
    } catch (error) {
      // Unreadable (not an object, a throwing getter): refused and audited like any other refusal.
      this.#refuse(inboundDraft(UNREAD, now), toBusError(error, 'INVALID_ARGUMENT', undefined, 'the inbound message could not be read: '), answer);
      return NO_HANDLE;
    }
    const draft = inboundDraft(f, now);
    try {
      if (this.#parts.closed()) throw new BusError('CLOSED', 'the orchestrator is closed');
      return this.#admit(f, draft, now, answer);
    } catch (error) {
      this.#refuse(draft, toBusError(error, 'INVALID_ARGUMENT', typeof f.id === 'string' ? draft.id : undefined), answer);
      return NO_HANDLE;
    }
  }

  /** A refused inbound message: its row (naming both nodes), `message:denied`, and the sender's answer. */
  #refuse(draft: Draft, e: BusError, answer: Responder): void {
    this.#parts.journal.refused(draft, e);
    answer.error(e.code, e.message);
  }

  /** The checks, in order, then the hold or the delivery. Throws the refusal. */
  #admit(f: Fields, draft: Draft, now: number, answer: Responder): InboundHandle {
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
      return NO_HANDLE;
    }
    const decision = (draft.decision = checkPolicy(policy.current, sender, to, type, intent));

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
        : this.#request(draft, envelope, recipient, sender, parent, budgetMs!, held, answer);
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
  #request(draft: Draft, envelope: Envelope, recipient: AgentRecord, sender: AgentRecord, parent: Delivery | undefined, budgetMs: number, held: boolean, answer: Responder): InboundHandle {
    const p = new PendingRequest(
      envelope,
      sender,
      recipient,
      budgetMs,
      (payload) => answer.reply(JSON.stringify(payload)),
      (error) => answer.error(error.code, error.message),
      undefined,
    );
    if (envelope.type === 'delegate') p.progressListeners = [(report) => answer.progress(report.fraction, report.note)];
    if (held) this.#parts.approvals.hold(draft, envelope, p, parent, envelope.deadline!);
    else this.#parts.deliveries.deliverAllowed(draft, envelope, recipient, p, parent);
    const ledger = this.#parts.ledger;
    return { cancel: (reason) => ledger.cancel(p, `cancelled by the sender: ${recordedText(reason, 1000)}`) };
  }

  /** A notify: acknowledged once its receipt row is committed (delivered, or held here). */
  #notify(draft: Draft, envelope: Envelope, recipient: AgentRecord, sender: AgentRecord, parent: Delivery | undefined, held: boolean, answer: Responder): InboundHandle {
    const { commit, events } = this.#parts.config;
    const journal = this.#parts.journal;
    if (held) {
      const hold = this.#parts.approvals.holdCopy(draft, envelope, parent, sender);
      commit.stage(
        journal.enabled ? journal.attempt(draft, 'pending') : undefined,
        () => {
          if (events.has('approval:requested')) events.emit('approval:requested', { approval: hold.approval });
          answer.reply(NOTIFY_ACK.pending);
        },
        (error) => {
          this.#parts.ledger.holds.take(hold.approval.id);
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

/** Each of the responder's answers at most once (progress any number of times before one), and never a throw back into the pipeline. */
function once(responder: Responder): Responder {
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
      guard(() => responder.reply(json));
    },
    error: (code: ErrorCode, message) => {
      if (done) return;
      done = true;
      guard(() => responder.error(code, message));
    },
    progress: (fraction, note) => {
      if (!done) guard(() => responder.progress(fraction, note));
    },
  };
}
