/**
 * The carriage of messages between nodes, independent of the orchestrator.
 *
 * Sending: {@link Link.request} publishes an ask or delegate on `<bus>.in.<to>.<from>.<type>`
 * with a reply subject under the node's private inbox, and reports back once through its
 * callbacks: the reply, or an error (the peer's `{ code, message }`, `TIMEOUT` when the
 * budget runs out here at the sender, `UNKNOWN_AGENT` when NATS says nobody serves the
 * subject). Progress of a delegate arrives on the sender's own inbound subject. A reply that
 * arrives after its request ended is a dead letter ({@link LinkOptions.onDead}).
 *
 * Receiving: {@link Link.serve} subscribes to one local agent's inbound subject and hands each
 * decoded, validated message to a callback with a {@link LinkResponder}. It drops a repeated
 * message id (a bounded window), aborts the inbound's `signal` at its own deadline or on the
 * sender's cancel, and answers a malformed request with an error instead of leaving its
 * sender to time out.
 */
import type { Msg, Subscription } from '@nats-io/transport-node';
import { BusError, toBusError } from '../errors.js';
import { TokenBucket } from '../limits.js';
import type { NodeConnection } from './connection.js';
import { escapeToken, type Subjects } from './subjects.js';
import { DIGEST_BODY_HASH, DIGEST_MS, MAX_PROOF_LINE, Proofs, readDigestLine } from './proofs.js';
import type { RosterIndex } from './roster.js';
import { answerLine, claimedId, decodeAbout, decodeAnswer, decodeMessage, errorBody, MAX_BUDGET_MS, messageLine, type DecodedMessage, type WireError, type WireMeta } from './wire.js';

/** An ask or delegate (or notify) leaving this node. */
export interface Outbound extends WireMeta {
  readonly type: 'ask' | 'delegate' | 'notify';
  readonly from: string;
  readonly to: string;
  /** The payload, already serialized by the sender's codec. */
  readonly payloadJson: string;
  /** The node that serves `to` (sealed frames are encrypted for it). */
  readonly peer?: string;
  /** Seal this message (and its cancel) even when the link does not seal everything. */
  readonly seal?: boolean;
}

/** How a request ends (exactly one of `reply`/`error`), and what it reports meanwhile. */
export interface RequestCallbacks {
  /** The reply's payload as the UTF-8 text that arrived (the sender's pipeline parses and checks it). */
  reply(payloadJson: string, payloadBytes: number, proof?: string): void;
  error(error: BusError): void;
  /** A delegate's progress report. */
  progress?(payload: unknown): void;
}

/** Cancels a request in flight: the peer's `signal` aborts; a later reply is a dead letter. */
export interface RequestHandle {
  cancel(reason?: string): void;
}

/** A message that arrived for a local agent, decoded and validated. */
export interface LinkInbound extends Omit<DecodedMessage, 'causationId' | 'budgetMs' | 'traceparent' | 'node'> {
  readonly causationId: string | undefined;
  /** What was left of the sender's deadline (asks and delegates; undefined for a notify). */
  readonly budgetMs: number | undefined;
  readonly traceparent: string | undefined;
  /** The node the sender says it is (checked by the transport against the claim of `from`). */
  readonly node: string | undefined;
  readonly type: 'ask' | 'delegate' | 'notify';
  /** From the subject, which the broker pins to the sender's credentials. */
  readonly from: string;
  readonly to: string;
  /** The node whose signature the message carries (verified against the roster; as written on an insecure fleet). */
  readonly signer: string;
  /** Whether it arrived sealed. */
  readonly sealed: boolean;
  /** The sender's proof (JSON) to keep with the receipt; undefined on an insecure fleet. */
  readonly proof: string | undefined;
  /** Aborts at the receiver's own deadline (reason `TIMEOUT`) or on the sender's cancel (`CANCELLED`). Made on first read. */
  readonly signal: AbortSignal;
  /** True once the signal aborted (read without making the signal). */
  readonly ended: boolean;
  /**
   * Hands the sender's cancel to `target` (at once if it came already), without an
   * `AbortSignal` listener: the receiving orchestrator's handle of this inbound.
   */
  follow(target: { cancel(reason: string): void }): void;
}

/**
 * How a receiver answers one inbound. Every method is a no-op returning false once settled.
 * While the connection is down they throw `TRANSPORT_UNAVAILABLE`: the answer is lost and
 * the sender ends with `TIMEOUT` (at most once).
 */
export interface LinkResponder {
  /** Sends the reply (asks and delegates). */
  reply(payloadJson: string): boolean;
  /** Sends an error: only its code and message cross. */
  error(error: WireError): boolean;
  /** Reports progress to the sender of a delegate. */
  progress(payloadJson: string): boolean;
}

/** An answer that arrived for a request that had already ended. */
export interface DeadAnswer {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly answer: { kind: 'reply'; payloadJson: string } | { kind: 'error'; error: WireError };
}

/** Something a peer sent that was refused before delivery. */
export interface RejectedInbound {
  readonly subject: string;
  readonly error: BusError;
}

/**
 * A frame refused because its proof failed (signature, roster, sealing) or it was a replay:
 * never delivered, never answered; the transport records it.
 */
export interface DeniedFrame {
  readonly subject: string;
  readonly error: BusError;
  /** What the subject says (when it parses): recipient, sender and kind. */
  readonly to?: string;
  readonly from?: string;
  readonly kind?: string;
  /** The message id the frame names, when readable. */
  readonly id?: string;
  /** The node the proof line names (unverified when the signature failed). */
  readonly node?: string;
}

export interface LinkOptions {
  connection: NodeConnection;
  subjects: Subjects;
  /** This node's id: its inbox prefix is derived from it. */
  node: string;
  /** The largest payload (or reply) this node accepts from a peer, in bytes. */
  maxPayloadBytes: number;
  /**
   * How many recent message ids the receiver remembers to refuse repeats. Past it, the
   * oldest is forgotten and, so that it cannot come back, every message its node signed at
   * or before that one's time is refused too. @default 100000
   */
  dedupeWindow?: number;
  /** How many ended requests the sender remembers to recognise a late reply. @default 10000 */
  deadWindow?: number;
  /** How many inbound asks and delegates may be unanswered at once; more get `MAILBOX_FULL`. @default 10000 */
  maxInbound?: number;
  onDead?(dead: DeadAnswer): void;
  onRejected?(rejected: RejectedInbound): void;
  /** Signs, seals, verifies and opens every frame. @default unsigned frames (an insecure fleet) */
  proofs?: Proofs;
  /** The roster (absent on an insecure fleet): a signer may speak only for agents it may serve. */
  roster?: RosterIndex;
  /** Seal every frame this node sends, and refuse unsealed ones. @default false */
  seal?: boolean;
  /** How far a message's timestamp may be from this node's clock, and how long its id is remembered. @default 120000 */
  freshnessMs?: number;
  /** Epoch ms now. @default Date.now */
  now?: () => number;
  /** A frame refused for its proof or as a replay. */
  onDenied?(denied: DeniedFrame): void;
  /** A peer's signed digest frame (digest proofs): record it. */
  onDigest?(digest: DigestFrame): void;
}

/**
 * A peer's signed digest frame, verified against the roster and fresh: the covers of MAC'd
 * frames it sent this node that no signed frame listed yet. The receiving bus records it as a
 * digest record (no agent, no conversation: not a message).
 */
export interface DigestFrame {
  readonly id: string;
  /** The signer. (The agents of its subject are only its route: they are in the proof, and in no record.) */
  readonly node: string;
  /** The proof (JSON) to keep with its record: the signature, the signed line and the covers it lists. */
  readonly proof: string;
  /** The SHA-256 (hex) of its empty body, which the signature covers: the record's payload hash. */
  readonly payloadHash: string;
}

/**
 * How many digest frames a node takes from one peer node: an honest one sends at most one
 * per {@link DIGEST_MS} (and one at close), so twice that rate with a burst leaves room for
 * delays, while a peer that floods them (each is a row) is refused, its refusals summarized
 * like any sender's.
 */
const DIGEST_RATE = { perSecond: 2000 / DIGEST_MS, burst: 8 };

/** Receives what arrives for one served agent. */
export type Receiver = (inbound: LinkInbound, responder: LinkResponder) => void;

/**
 * The reply token of message `id` to `to`: one per recipient, since a notify keeps one id
 * for all of them. `__` never occurs inside an escaped token (`_` is always followed by two
 * hex digits there), so the pair is read back unambiguously.
 */
function replyToken(id: string, to: string): string {
  return `${escapeToken(id)}__${escapeToken(to)}`;
}

/** One request in flight: also its {@link RequestHandle} (one object per request, no closures). */
class Pending implements RequestHandle {
  timer: NodeJS.Timeout | undefined;
  peer: string | undefined;
  sealed = false;
  constructor(
    /** Its {@link replyToken}: the key of the link's tables and the last token of its reply subject. */
    readonly key: string,
    readonly id: string,
    readonly from: string,
    readonly to: string,
    readonly type: 'ask' | 'delegate' | 'notify',
    readonly budgetMs: number,
    readonly callbacks: RequestCallbacks,
    readonly canceller: (p: Pending, reason: string | undefined) => void,
  ) {}

  cancel(reason?: string): void {
    this.canceller(this, reason);
  }
}

/** What the inbound side of a link lends each {@link Arrival}: made once per link. */
interface Carrier {
  readonly conn: NodeConnection;
  readonly subjects: Subjects;
  readonly proofs: Proofs;
  readonly seal: boolean;
  /** Inbound asks/delegates being handled: `to \0 from \0 id`. */
  readonly running: Map<string, Arrival>;
  /** Sends the pending covers in a digest frame soon, unless a signed frame lists them first. */
  readonly digestSoon: () => void;
}

/**
 * One inbound message: the decoded fields, its deadline, and its answer (it is the
 * {@link LinkResponder} too). One object per message; the `AbortSignal` is made only if read.
 */
class Arrival implements LinkInbound, LinkResponder {
  readonly id: string;
  readonly intent: string;
  readonly ts: number;
  readonly conversationId: string;
  readonly causationId: string | undefined;
  readonly depth: number;
  readonly priority: DecodedMessage['priority'];
  readonly budgetMs: number | undefined;
  readonly traceparent: string | undefined;
  readonly node: string | undefined;
  readonly payloadJson: string;
  readonly payloadBytes: number;
  readonly signer: string;
  readonly sealed: boolean;
  readonly proof: string | undefined;
  readonly #carrier: Carrier;
  readonly #msg: Msg;
  readonly #key: string;
  #settled: boolean;
  #timer: NodeJS.Timeout | undefined;
  #controller: AbortController | undefined;
  #reason: BusError | undefined;
  #target: { cancel(reason: string): void } | undefined;

  constructor(
    carrier: Carrier,
    msg: Msg,
    decoded: DecodedMessage,
    readonly type: 'ask' | 'delegate' | 'notify',
    readonly from: string,
    readonly to: string,
    key: string,
    opened: { node: string; sealed: boolean; proof: string | undefined },
  ) {
    this.signer = opened.node;
    this.sealed = opened.sealed;
    this.proof = opened.proof;
    this.id = decoded.id;
    this.intent = decoded.intent;
    this.ts = decoded.ts;
    this.conversationId = decoded.conversationId;
    this.causationId = decoded.causationId;
    this.depth = decoded.depth;
    this.priority = decoded.priority;
    this.budgetMs = decoded.budgetMs;
    this.traceparent = decoded.traceparent;
    this.node = decoded.node;
    this.payloadJson = decoded.payloadJson;
    this.payloadBytes = decoded.payloadBytes;
    this.#carrier = carrier;
    this.#msg = msg;
    this.#key = key;
    // A notify is answered (acknowledged) once when its sender asked for an answer.
    this.#settled = type === 'notify' && msg.reply === undefined;
    if (type !== 'notify') {
      this.#timer = setTimeout(expire, this.budgetMs!, this);
      carrier.running.set(key, this);
    }
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#reason !== undefined) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  get ended(): boolean {
    return this.#reason !== undefined;
  }

  follow(target: { cancel(reason: string): void }): void {
    this.#target = target;
    if (this.#reason?.code !== 'CANCELLED') return;
    try {
      target.cancel(this.#reason.message);
    } catch {
      // The handle's own failure must not break the carriage.
    }
  }

  /** Ends this inbound's deadline and aborts its signal with `reason` (once). */
  abort(reason: BusError): void {
    this.#stop();
    if (this.#reason !== undefined) return;
    this.#reason = reason;
    this.#controller?.abort(reason);
    if (reason.code === 'CANCELLED' && this.#target !== undefined) {
      try {
        this.#target.cancel(reason.message);
      } catch {
        // The handle's own failure must not break the carriage.
      }
    }
  }

  /** The receiver's own deadline passed. */
  expire(): void {
    this.#timer = undefined;
    this.abort(new BusError('TIMEOUT', `${this.type} ${this.id} from "${this.from}" passed its deadline (${this.budgetMs} ms) at the receiver`, { messageId: this.id, timeoutMs: this.budgetMs! }));
  }

  reply(payloadJson: string): boolean {
    return this.#answer('r', payloadJson);
  }

  error(error: WireError): boolean {
    return this.#answer('e', errorBody(error));
  }

  progress(payloadJson: string): boolean {
    if (this.#settled || this.type !== 'delegate') return false;
    const c = this.#carrier;
    c.conn.assertUp(`progress of ${this.id}`);
    const subject = c.subjects.inbound(this.from, this.to, 'progress');
    c.conn.nc.publish(subject, c.proofs.wrap(subject, answerLine('a', this.id), payloadJson, this.signer, this.sealed || c.seal, c.subjects.inbound(this.from, this.to, 'digest')));
    c.digestSoon();
    return true;
  }

  #answer(kind: 'r' | 'e', body: string): boolean {
    const reply = this.#msg.reply;
    if (this.#settled || reply === undefined) return false;
    this.#settled = true;
    this.#stop();
    const c = this.#carrier;
    c.conn.assertUp(`answer to ${this.id}`);
    const sent = this.#msg.respond(c.proofs.wrap(reply, answerLine(kind, this.id), body, this.signer, this.sealed || c.seal, c.subjects.inbound(this.from, this.to, 'digest')));
    c.digestSoon();
    return sent;
  }

  #stop(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#carrier.running.get(this.#key) === this) this.#carrier.running.delete(this.#key);
  }
}

function expire(arrival: Arrival): void {
  arrival.expire();
}

/** One node's side of the carriage. Create after the connection; {@link close} ends it. */
export class Link {
  readonly #conn: NodeConnection;
  readonly #subjects: Subjects;
  readonly #inbox: string;
  readonly #maxBytes: number;
  readonly #dedupeWindow: number;
  readonly #deadWindow: number;
  readonly #maxInbound: number;
  readonly #onDead: ((dead: DeadAnswer) => void) | undefined;
  readonly #onRejected: ((r: RejectedInbound) => void) | undefined;
  readonly #onDenied: ((d: DeniedFrame) => void) | undefined;
  readonly #proofs: Proofs;
  readonly #roster: RosterIndex | undefined;
  readonly #seal: boolean;
  readonly #freshnessMs: number;
  readonly #now: () => number;
  /** Requests in flight by {@link replyToken} (message id and recipient). */
  readonly #pending = new Map<string, Pending>();
  /** Requests that ended (timed out, cancelled), by reply token, oldest first. */
  readonly #ended = new Map<string, Pending>();
  /** Recently admitted: `to \0 from \0 id` → when, oldest first. */
  readonly #seen = new Map<string, Seen>();
  /** Nothing signed before this is taken (see {@link refuseSignedBefore}). */
  #signedFloor = -Infinity;
  /** Per signing node: the latest signed time among its forgotten ids; nothing signed at or before it is taken. */
  readonly #floors = new Map<string, number>();
  /** Inbound asks/delegates being handled: `to \0 from \0 id`. */
  readonly #running = new Map<string, Arrival>();
  readonly #carrier: Carrier;
  readonly #cancelRequest = (p: Pending, reason: string | undefined): void => {
    if (this.#finish(p.key) === undefined || !this.#conn.up) return;
    const subject = this.#subjects.inbound(p.to, p.from, 'cancel');
    this.#conn.nc.publish(subject, this.#proofs.wrap(subject, answerLine('a', p.id), JSON.stringify(reason ?? null), p.peer, this.#seal || p.sealed, this.#subjects.inbound(p.to, p.from, 'digest')));
    this.#digestSoon();
  };
  readonly #onDigest: ((d: DigestFrame) => void) | undefined;
  /** Per signing node (roster nodes only): its budget of digest frames. */
  readonly #digestBudgets = new Map<string, TokenBucket>();
  #digestTimer: NodeJS.Timeout | undefined;
  readonly #digestSoon = (): void => {
    if (this.#digestTimer !== undefined || this.#closed || !this.#proofs.pending) return;
    this.#digestTimer = setTimeout(this.#digestDue, DIGEST_MS);
    this.#digestTimer.unref();
  };
  readonly #digestDue = (): void => {
    this.#digestTimer = undefined;
    this.#flushDigests();
  };
  readonly #served = new Map<string, Subscription>();
  readonly #inboxSub: Subscription;
  #closed = false;

  constructor(options: LinkOptions) {
    this.#conn = options.connection;
    this.#subjects = options.subjects;
    this.#inbox = options.subjects.inboxPrefix(options.node);
    this.#maxBytes = options.maxPayloadBytes;
    this.#dedupeWindow = options.dedupeWindow ?? 100_000;
    this.#deadWindow = options.deadWindow ?? 10_000;
    this.#maxInbound = options.maxInbound ?? 10_000;
    this.#onDead = options.onDead;
    this.#onRejected = options.onRejected;
    this.#onDenied = options.onDenied;
    this.#onDigest = options.onDigest;
    this.#proofs = options.proofs ?? new Proofs({ bus: options.subjects.bus, node: options.node });
    this.#roster = options.roster;
    this.#seal = options.seal ?? false;
    this.#freshnessMs = options.freshnessMs ?? 120_000;
    this.#now = options.now ?? Date.now;
    this.#carrier = { conn: this.#conn, subjects: this.#subjects, proofs: this.#proofs, seal: this.#seal, running: this.#running, digestSoon: this.#digestSoon };
    this.#inboxSub = this.#conn.nc.subscribe(`${this.#inbox}.*`, { callback: (_err, msg) => this.#onAnswer(msg) });
  }

  /** Requests in flight (for tests and diagnostics). */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * Sends an ask or delegate, or a notify whose receipt the receiver acknowledges with one
   * answer. Throws `TRANSPORT_UNAVAILABLE` at once while the connection is down (nothing is
   * buffered), `CLOSED` after {@link close}. `budgetMs` is required: how long this end waits
   * (a notify does not carry it, so the receiver sets no deadline for it).
   */
  request(message: Outbound & { budgetMs: number }, callbacks: RequestCallbacks): RequestHandle {
    this.#assertOpen(`${message.type} ${message.id} to "${message.to}"`);
    const { id, from, to, type } = message;
    // A notify to several agents keeps one id: what must be unique is the id and its recipient.
    const key = replyToken(id, to);
    if (this.#pending.has(key)) throw new BusError('INVALID_ARGUMENT', `message ${id} to "${to}" is already in flight`, { messageId: id });
    const budgetMs = message.budgetMs;
    if (!(budgetMs >= 1 && budgetMs <= MAX_BUDGET_MS)) throw new BusError('INVALID_ARGUMENT', `${type} ${id}: budgetMs must be from 1 to ${MAX_BUDGET_MS}, got ${budgetMs}`, { messageId: id });
    const pending = new Pending(key, id, from, to, type, budgetMs, callbacks, this.#cancelRequest);
    pending.peer = message.peer;
    pending.sealed = message.seal === true;
    pending.timer = setTimeout(Link.#expire, budgetMs, this, pending);
    this.#pending.set(key, pending);
    const { budgetMs: _wait, ...unbudgeted } = message;
    const subject = this.#subjects.inbound(to, from, type);
    const reply = `${this.#inbox}.${key}`;
    try {
      const data = this.#proofs.wrap(subject, messageLine(type === 'notify' ? unbudgeted : message), message.payloadJson, message.peer, this.#seal || message.seal === true, this.#subjects.inbound(to, from, 'digest'));
      this.#conn.nc.publish(subject, data, { reply });
      this.#digestSoon();
    } catch (cause) {
      this.#finish(key);
      throw new BusError('TRANSPORT_UNAVAILABLE', `${type} ${id} to "${to}" could not be published: ${(cause as Error).message}`, { messageId: id, cause });
    }
    return pending;
  }

  /** A request's budget ran out here at the sender. */
  static #expire(link: Link, p: Pending): void {
    if (link.#finish(p.key) !== undefined) {
      p.callbacks.error(new BusError('TIMEOUT', `${p.type} ${p.id} to "${p.to}" got no reply within ${p.budgetMs} ms`, { messageId: p.id, timeoutMs: p.budgetMs, agentId: p.to }));
    }
  }

  /** Sends a notify to one remote agent (at most once, no answer). Throws like {@link request}. */
  notify(message: Outbound & { type: 'notify' }): void {
    this.#assertOpen(`notify ${message.id} to "${message.to}"`);
    const subject = this.#subjects.inbound(message.to, message.from, 'notify');
    this.#conn.nc.publish(subject, this.#proofs.wrap(subject, messageLine(message), message.payloadJson, message.peer, this.#seal, this.#subjects.inbound(message.to, message.from, 'digest')));
    this.#digestSoon();
  }

  /**
   * Subscribes to what is addressed to local agent `agent`; resolves once the server has the
   * subscription. The returned function unsubscribes.
   */
  async serve(agent: string, receiver: Receiver): Promise<() => void> {
    this.#assertOpen(`serve "${agent}"`);
    if (this.#served.has(agent)) throw new BusError('DUPLICATE_AGENT', `"${agent}" is already served by this link`, { agentId: agent });
    const sub = this.#conn.nc.subscribe(this.#subjects.inboundFor(agent), { callback: (_err, msg) => this.#onInbound(msg, receiver) });
    this.#served.set(agent, sub);
    await this.#conn.nc.flush();
    return () => {
      if (this.#served.get(agent) === sub) this.#served.delete(agent);
      sub.unsubscribe();
    };
  }

  /**
   * Fails every request in flight with `CLOSED`, aborts every inbound, sends the covers still
   * pending in digest frames (the connection's drain delivers them), unsubscribes.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#digestTimer);
    this.#digestTimer = undefined;
    for (const [key, p] of [...this.#pending]) {
      this.#finish(key);
      p.callbacks.error(new BusError('CLOSED', `${p.type} ${p.id} to "${p.to}" ended: the link closed`, { messageId: p.id }));
    }
    for (const r of [...this.#running.values()]) r.abort(new BusError('CLOSED', 'the link closed'));
    this.#running.clear();
    // After the aborts: an answer they send at once is covered too.
    this.#flushDigests();
    for (const sub of this.#served.values()) sub.unsubscribe();
    this.#served.clear();
    this.#inboxSub.unsubscribe();
  }

  /** Publishes the pending covers of every peer in signed digest frames (lost while the connection is down). */
  #flushDigests(): void {
    if (!this.#conn.up) return;
    try {
      for (const d of this.#proofs.digests()) this.#conn.nc.publish(d.subject, d.data);
    } catch {
      // A connection closing under us: those rows stay MAC-only, as before a digest.
    }
  }

  #assertOpen(what: string): void {
    if (this.#closed) throw new BusError('CLOSED', `${what}: the link is closed`);
    this.#conn.assertUp(what);
  }

  /**
   * Ends the request of reply token `key` if pending. Unless it ended by its answer
   * (`answered`: the one response the broker lets its recipient send), remembers it to
   * recognise a late answer.
   */
  #finish(key: string, answered = false): Pending | undefined {
    const p = this.#pending.get(key);
    if (p === undefined) return undefined;
    clearTimeout(p.timer);
    this.#pending.delete(key);
    if (!answered) {
      this.#ended.set(key, p);
      if (this.#ended.size > this.#deadWindow) this.#ended.delete(this.#ended.keys().next().value!);
    }
    return p;
  }

  #onAnswer(msg: Msg): void {
    const token = msg.subject.slice(this.#inbox.length + 1);
    if (msg.headers?.code === 503) {
      // No responders: nobody serves the recipient's subject.
      const p = this.#finish(token);
      if (p !== undefined) p.callbacks.error(new BusError('UNKNOWN_AGENT', `no node serves agent "${p.to}" (${p.type} ${p.id})`, { messageId: p.id, agentId: p.to }));
      return;
    }
    let opened;
    try {
      opened = this.#proofs.open(msg.subject, msg.data, this.#seal);
      const p = this.#pending.get(token) ?? this.#ended.get(token);
      if (this.#roster !== undefined && p !== undefined && !this.#roster.mayServe(opened.node, p.to)) {
        throw new BusError('POLICY_DENIED', `refused before reading: an answer to ${p.id} signed by node "${opened.node}", which the roster does not let serve "${p.to}"`);
      }
    } catch (e) {
      // A forged answer settles nothing: the request waits for the real one, or its deadline.
      // Recorded as what it says it is: an answer from the asked agent to the asker.
      const p = this.#pending.get(token) ?? this.#ended.get(token);
      this.#onDenied?.({ subject: msg.subject, error: toBusError(e, 'POLICY_DENIED'), ...(p === undefined ? {} : { id: p.id, from: p.to, to: p.from, kind: 'reply' }), ...proofNode(msg.data) });
      return;
    }
    let answer;
    try {
      answer = decodeAnswer(opened.frame, this.#maxBytes);
      const waiting = this.#pending.get(token) ?? this.#ended.get(token);
      if (waiting !== undefined && waiting.id !== answer.id) throw new BusError('INVALID_REPLY', `answer for message ${answer.id} arrived on the inbox of another message`);
    } catch (e) {
      const p = this.#finish(token);
      if (p !== undefined) p.callbacks.error(toBusError(e, 'INVALID_REPLY'));
      else this.#onRejected?.({ subject: msg.subject, error: toBusError(e, 'INVALID_REPLY') });
      return;
    }
    const p = this.#finish(token, true);
    if (p !== undefined) {
      if (answer.kind === 'reply') p.callbacks.reply(answer.payloadJson, answer.payloadBytes, opened.proof);
      else p.callbacks.error(new BusError(answer.error.code, answer.error.message, { messageId: answer.id, agentId: p.to }));
      return;
    }
    const ended = this.#ended.get(token);
    if (ended !== undefined) {
      this.#ended.delete(token);
      this.#onDead?.({
        id: answer.id,
        from: ended.from,
        to: ended.to,
        answer: answer.kind === 'reply' ? { kind: 'reply', payloadJson: answer.payloadJson } : { kind: 'error', error: answer.error },
      });
    }
  }

  #onInbound(msg: Msg, receiver: Receiver): void {
    let route;
    try {
      route = this.#subjects.parseInbound(msg.subject);
    } catch (e) {
      this.#onRejected?.({ subject: msg.subject, error: toBusError(e, 'INVALID_ARGUMENT') });
      return;
    }
    const { to, from, kind } = route;
    // The proof first: nothing of a frame is read, answered or delivered before its signer
    // is known to be a roster node that may speak for `from`.
    let opened;
    try {
      // A digest frame has no body to seal.
      opened = this.#proofs.open(msg.subject, msg.data, this.#seal && kind !== 'digest');
      if (this.#roster !== undefined && !this.#roster.mayServe(opened.node, from)) {
        throw new BusError('POLICY_DENIED', `refused before reading: node "${opened.node}" signed a ${kind} from "${from}", but the roster does not let it serve "${from}"`, { agentId: from });
      }
    } catch (e) {
      this.#onDenied?.({ subject: msg.subject, error: toBusError(e, 'POLICY_DENIED'), to, from, kind, ...proofNode(msg.data) });
      return;
    }
    if (kind === 'progress' || kind === 'cancel') {
      this.#onAbout(msg.subject, opened.frame, kind, to, from);
      return;
    }
    if (kind === 'digest') {
      this.#onDigestFrame(msg.subject, opened, to, from);
      return;
    }
    let decoded: DecodedMessage;
    try {
      decoded = decodeMessage(opened.frame, this.#maxBytes, kind !== 'notify');
    } catch (e) {
      const error = toBusError(e, 'INVALID_ARGUMENT');
      this.#onRejected?.({ subject: msg.subject, error });
      const id = claimedId(opened.frame);
      if (kind !== 'notify' && msg.reply !== undefined && id !== undefined) {
        msg.respond(this.#proofs.wrap(msg.reply, answerLine('e', id), errorBody({ code: error.code, message: error.message }), opened.node, opened.sealed || this.#seal));
      }
      return;
    }
    const now = this.#now();
    const refusal =
      this.#roster !== undefined && decoded.node !== opened.node
        ? `the message says it comes from node "${decoded.node ?? '(none)'}" but node "${opened.node}" signed it`
        : Math.abs(now - decoded.ts) > this.#freshnessMs
          ? `its signed time ${new Date(decoded.ts).toISOString()} is more than ${this.#freshnessMs} ms from this node's clock (a replay, or clocks out of sync)`
          : this.#seen.has(`${to}\0${from}\0${decoded.id}`)
            ? `message id ${decoded.id} from "${from}" was admitted already (a replay)`
            : decoded.ts <= (this.#floors.get(opened.node) ?? -Infinity)
              ? `it was signed at or before the newest message of node "${opened.node}" this node no longer remembers (a replay, or more than ${this.#dedupeWindow} messages within the freshness window)`
              : decoded.ts < this.#signedFloor
                ? `it was signed before this node started, and its log did not outlive the last run to name the ids it took then (a replay)`
                : undefined;
    if (refusal !== undefined) {
      const error = new BusError('POLICY_DENIED', `${kind} ${decoded.id} refused: ${refusal}`, { messageId: decoded.id });
      this.#onDenied?.({ subject: msg.subject, error, to, from, kind, id: decoded.id, node: opened.node });
      return;
    }
    const key = `${to}\0${from}\0${decoded.id}`;
    if (kind !== 'notify' && this.#running.size >= this.#maxInbound) {
      const error = new BusError('MAILBOX_FULL', `node is handling ${this.#running.size} requests already (maxInbound); ${kind} ${decoded.id} from "${from}" refused`, { messageId: decoded.id, agentId: to });
      this.#onRejected?.({ subject: msg.subject, error });
      if (msg.reply !== undefined) msg.respond(this.#proofs.wrap(msg.reply, answerLine('e', decoded.id), errorBody({ code: error.code, message: error.message }), opened.node, opened.sealed || this.#seal));
      return;
    }
    this.#remember(key, { at: now, node: opened.node, ts: decoded.ts });
    const arrival = new Arrival(this.#carrier, msg, decoded, kind, from, to, key, opened);
    receiver(arrival, arrival);
  }

  /** A peer's digest frame, its proof verified: refused unless signed with covers, well-formed and fresh; else recorded once. */
  #onDigestFrame(subject: string, opened: { node: string; covers: boolean; frame: Uint8Array; proof: string | undefined }, to: string, from: string): void {
    const line = readDigestLine(opened.frame);
    const now = this.#now();
    const key = line === undefined ? '' : digestKey(opened.node, line.id);
    const refusal =
      this.#roster === undefined || opened.proof === undefined
        ? 'digest frames are taken only with a roster'
        : !opened.covers
          ? 'a digest frame must be signed and list covers'
          : line === undefined
            ? 'a malformed digest frame'
            : Math.abs(now - line.ts) > this.#freshnessMs
              ? `its signed time ${new Date(line.ts).toISOString()} is more than ${this.#freshnessMs} ms from this node's clock (a replay, or clocks out of sync)`
              : this.#seen.has(key)
                ? `digest ${line.id} from "${from}" was taken already (a replay)`
                : line.ts <= (this.#floors.get(opened.node) ?? -Infinity)
                  ? `it was signed at or before the newest message of node "${opened.node}" this node no longer remembers (a replay)`
                  : line.ts < this.#signedFloor
                    ? `it was signed before this node started, and its log did not outlive the last run to name the digests it took then (a replay)`
                    : undefined;
    const flood = refusal === undefined && !this.#digestAllowed(opened.node, now) ? `node "${opened.node}" sent more than ${DIGEST_RATE.perSecond} digest frames a second (burst ${DIGEST_RATE.burst})` : undefined;
    if (refusal !== undefined || flood !== undefined) {
      const error = new BusError('POLICY_DENIED', `digest ${line?.id ?? '?'} refused: ${refusal ?? flood}`, line === undefined ? {} : { messageId: line.id });
      this.#onDenied?.({ subject, error, to, from, kind: 'digest', ...(line === undefined ? {} : { id: line.id }), node: opened.node });
      return;
    }
    this.#remember(key, { at: now, node: opened.node, ts: line!.ts });
    this.#onDigest?.({ id: line!.id, node: opened.node, proof: opened.proof!, payloadHash: DIGEST_BODY_HASH });
  }

  /** Spends one of `node`'s digest frames (a verified roster node: the map stays as small as the roster). */
  #digestAllowed(node: string, now: number): boolean {
    let budget = this.#digestBudgets.get(node);
    if (budget === undefined) this.#digestBudgets.set(node, (budget = new TokenBucket(DIGEST_RATE, now)));
    return budget.take(now) === 0;
  }

  /**
   * Remembers an admitted message id for twice the freshness window (a peer's clock may be
   * ahead by up to one window), forgetting the oldest beyond `dedupeWindow` ids.
   */
  #remember(key: string, seen: Seen): void {
    this.#seen.delete(key);
    this.#seen.set(key, seen);
    const horizon = seen.at - 2 * this.#freshnessMs;
    for (const [k, old] of this.#seen) {
      if (old.at >= horizon && this.#seen.size <= this.#dedupeWindow) break;
      this.#seen.delete(k);
      // Forgotten while still fresh: raise its node's floor so that it cannot be replayed.
      if (old.node !== undefined && old.at >= horizon && old.ts > (this.#floors.get(old.node) ?? -Infinity)) this.#floors.set(old.node, old.ts);
    }
  }

  /**
   * Refuses every message signed before `ts` (epoch ms) as a replay: for a node whose log
   * cannot name the ids it took before a restart.
   */
  refuseSignedBefore(ts: number): void {
    this.#signedFloor = ts;
  }

  /** Message ids admitted earlier (recovered from the audit log at a restart): their repeats are refused. */
  admitted(entries: Iterable<{ to: string; from: string; id: string; at: number }>): void {
    for (const e of entries) this.#remember(`${e.to}\0${e.from}\0${e.id}`, { at: e.at, node: undefined, ts: e.at });
  }

  /** Digest frames recorded earlier (read back from the audit log at a restart): their repeats are refused. */
  admittedDigests(entries: Iterable<{ node: string; id: string; at: number }>): void {
    for (const e of entries) this.#remember(digestKey(e.node, e.id), { at: e.at, node: undefined, ts: e.at });
  }

  #onAbout(subject: string, frame: Uint8Array, kind: 'progress' | 'cancel', to: string, from: string): void {
    let about;
    try {
      about = decodeAbout(frame, this.#maxBytes);
    } catch (e) {
      this.#onRejected?.({ subject, error: toBusError(e, 'INVALID_ARGUMENT') });
      return;
    }
    if (kind === 'cancel') {
      const key = `${to}\0${from}\0${about.id}`;
      const r = this.#running.get(key);
      if (r === undefined) return;
      const reason = typeof about.payload === 'string' ? about.payload.slice(0, 512) : undefined;
      r.abort(new BusError('CANCELLED', `${about.id} was cancelled by its sender "${from}"${reason === undefined ? '' : `: ${reason}`}`, { messageId: about.id, ...(reason === undefined ? {} : { reason }) }));
      return;
    }
    // Progress: only from the delegate's recipient, to its sender.
    let key: string;
    try {
      key = replyToken(about.id, from);
    } catch {
      return; // an id no message of ours can have
    }
    const p = this.#pending.get(key);
    if (p === undefined || p.type !== 'delegate' || p.from !== to || p.to !== from) return;
    p.callbacks.progress?.(about.payload);
  }
}

/**
 * Where a digest frame is remembered among admitted ids: by its signing node, since it is a
 * frame of the node, not of the agents of its route (an empty first part: no agent id is empty).
 */
function digestKey(node: string, id: string): string {
  return `\0${node}\0${id}`;
}

/** An admitted message id: when it arrived, and which node signed it when (unknown for ids read back from the log). */
interface Seen {
  readonly at: number;
  readonly node: string | undefined;
  readonly ts: number;
}

/** The node a proof line names, unverified (for the record of a refusal). */
function proofNode(data: Uint8Array): { node?: string } {
  // A signed frame's proof line may list covers (digest proofs).
  const end = data.subarray(0, MAX_PROOF_LINE).indexOf(0x0a);
  if (end < 0) return {};
  const node = Buffer.from(data.buffer, data.byteOffset, end).toString('latin1').split(' ', 3)[1];
  return node !== undefined && /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(node) ? { node } : {};
}


