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
import type { NodeConnection } from './connection.js';
import { escapeToken, unescapeToken, type Subjects } from './subjects.js';
import {
  claimedId,
  decodeAbout,
  decodeAnswer,
  decodeMessage,
  encodeAbout,
  encodeError,
  encodeMessage,
  encodeReply,
  MAX_BUDGET_MS,
  type DecodedMessage,
  type WireError,
  type WireMeta,
} from './wire.js';

/** An ask or delegate (or notify) leaving this node. */
export interface Outbound extends WireMeta {
  readonly type: 'ask' | 'delegate' | 'notify';
  readonly from: string;
  readonly to: string;
  /** The payload, already serialized by the sender's codec. */
  readonly payloadJson: string;
}

/** How a request ends (exactly one of `reply`/`error`), and what it reports meanwhile. */
export interface RequestCallbacks {
  /** The reply's payload as the UTF-8 text that arrived (the sender's pipeline parses and checks it). */
  reply(payloadJson: string, payloadBytes: number): void;
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

export interface LinkOptions {
  connection: NodeConnection;
  subjects: Subjects;
  /** This node's id: its inbox prefix is derived from it. */
  node: string;
  /** The largest payload (or reply) this node accepts from a peer, in bytes. */
  maxPayloadBytes: number;
  /** How many recent message ids the receiver remembers to drop repeats. @default 10000 */
  dedupeWindow?: number;
  /** How many ended requests the sender remembers to recognise a late reply. @default 10000 */
  deadWindow?: number;
  /** How many inbound asks and delegates may be unanswered at once; more get `MAILBOX_FULL`. @default 10000 */
  maxInbound?: number;
  onDead?(dead: DeadAnswer): void;
  onRejected?(rejected: RejectedInbound): void;
}

/** Receives what arrives for one served agent. */
export type Receiver = (inbound: LinkInbound, responder: LinkResponder) => void;

/** One request in flight: also its {@link RequestHandle} (one object per request, no closures). */
class Pending implements RequestHandle {
  timer: NodeJS.Timeout | undefined;
  constructor(
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
  /** Inbound asks/delegates being handled: `to \0 from \0 id`. */
  readonly running: Map<string, Arrival>;
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
  ) {
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
    return this.#answer(encodeReply, payloadJson);
  }

  error(error: WireError): boolean {
    return this.#answer(encodeError, error);
  }

  progress(payloadJson: string): boolean {
    if (this.#settled || this.type !== 'delegate') return false;
    this.#carrier.conn.assertUp(`progress of ${this.id}`);
    this.#carrier.conn.nc.publish(this.#carrier.subjects.inbound(this.from, this.to, 'progress'), encodeAbout(this.id, payloadJson));
    return true;
  }

  #answer<T>(encode: (id: string, value: T) => Uint8Array, value: T): boolean {
    if (this.#settled || this.#msg.reply === undefined) return false;
    this.#settled = true;
    this.#stop();
    this.#carrier.conn.assertUp(`answer to ${this.id}`);
    return this.#msg.respond(encode(this.id, value));
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
  readonly #pending = new Map<string, Pending>();
  /** Requests that ended (timed out, cancelled): id → route, oldest first. */
  readonly #ended = new Map<string, Pending>();
  /** Recently received: `to \0 from \0 id`, oldest first. */
  readonly #seen = new Set<string>();
  /** Inbound asks/delegates being handled: `to \0 from \0 id`. */
  readonly #running = new Map<string, Arrival>();
  readonly #carrier: Carrier;
  readonly #cancelRequest = (p: Pending, reason: string | undefined): void => {
    if (this.#finish(p.id) === undefined || !this.#conn.up) return;
    this.#conn.nc.publish(this.#subjects.inbound(p.to, p.from, 'cancel'), encodeAbout(p.id, JSON.stringify(reason ?? null)));
  };
  readonly #served = new Map<string, Subscription>();
  readonly #inboxSub: Subscription;
  #closed = false;

  constructor(options: LinkOptions) {
    this.#conn = options.connection;
    this.#subjects = options.subjects;
    this.#inbox = options.subjects.inboxPrefix(options.node);
    this.#maxBytes = options.maxPayloadBytes;
    this.#dedupeWindow = options.dedupeWindow ?? 10_000;
    this.#deadWindow = options.deadWindow ?? 10_000;
    this.#maxInbound = options.maxInbound ?? 10_000;
    this.#onDead = options.onDead;
    this.#onRejected = options.onRejected;
    this.#carrier = { conn: this.#conn, subjects: this.#subjects, running: this.#running };
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
    if (this.#pending.has(id)) throw new BusError('INVALID_ARGUMENT', `message ${id} is already in flight`, { messageId: id });
    const budgetMs = message.budgetMs;
    if (!(budgetMs >= 1 && budgetMs <= MAX_BUDGET_MS)) throw new BusError('INVALID_ARGUMENT', `${type} ${id}: budgetMs must be from 1 to ${MAX_BUDGET_MS}, got ${budgetMs}`, { messageId: id });
    const pending = new Pending(id, from, to, type, budgetMs, callbacks, this.#cancelRequest);
    pending.timer = setTimeout(Link.#expire, budgetMs, this, pending);
    this.#pending.set(id, pending);
    const { budgetMs: _wait, ...unbudgeted } = message;
    const data = encodeMessage(type === 'notify' ? unbudgeted : message, message.payloadJson);
    try {
      this.#conn.nc.publish(this.#subjects.inbound(to, from, type), data, { reply: `${this.#inbox}.${escapeToken(id)}` });
    } catch (cause) {
      this.#finish(id);
      throw new BusError('TRANSPORT_UNAVAILABLE', `${type} ${id} to "${to}" could not be published: ${(cause as Error).message}`, { messageId: id, cause });
    }
    return pending;
  }

  /** A request's budget ran out here at the sender. */
  static #expire(link: Link, p: Pending): void {
    if (link.#finish(p.id) !== undefined) {
      p.callbacks.error(new BusError('TIMEOUT', `${p.type} ${p.id} to "${p.to}" got no reply within ${p.budgetMs} ms`, { messageId: p.id, timeoutMs: p.budgetMs, agentId: p.to }));
    }
  }

  /** Sends a notify to one remote agent (at most once, no answer). Throws like {@link request}. */
  notify(message: Outbound & { type: 'notify' }): void {
    this.#assertOpen(`notify ${message.id} to "${message.to}"`);
    this.#conn.nc.publish(this.#subjects.inbound(message.to, message.from, 'notify'), encodeMessage(message, message.payloadJson));
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

  /** Fails every request in flight with `CLOSED`, aborts every inbound, unsubscribes. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const [id, p] of [...this.#pending]) {
      this.#finish(id);
      p.callbacks.error(new BusError('CLOSED', `${p.type} ${id} to "${p.to}" ended: the link closed`, { messageId: id }));
    }
    for (const r of [...this.#running.values()]) r.abort(new BusError('CLOSED', 'the link closed'));
    this.#running.clear();
    for (const sub of this.#served.values()) sub.unsubscribe();
    this.#served.clear();
    this.#inboxSub.unsubscribe();
  }

  #assertOpen(what: string): void {
    if (this.#closed) throw new BusError('CLOSED', `${what}: the link is closed`);
    this.#conn.assertUp(what);
  }

  /**
   * Ends request `id` if pending. Unless it ended by its answer (`answered`: the one
   * response the broker lets its recipient send), remembers it to recognise a late answer.
   */
  #finish(id: string, answered = false): Pending | undefined {
    const p = this.#pending.get(id);
    if (p === undefined) return undefined;
    clearTimeout(p.timer);
    this.#pending.delete(id);
    if (!answered) {
      this.#ended.set(id, p);
      if (this.#ended.size > this.#deadWindow) this.#ended.delete(this.#ended.keys().next().value!);
    }
    return p;
  }

  #onAnswer(msg: Msg): void {
    const token = msg.subject.slice(this.#inbox.length + 1);
    if (msg.headers?.code === 503) {
      // No responders: nobody serves the recipient's subject.
      const id = safeUnescape(token);
      const p = id === undefined ? undefined : this.#pending.get(id);
      if (id !== undefined && p !== undefined && this.#finish(id)) {
        p.callbacks.error(new BusError('UNKNOWN_AGENT', `no node serves agent "${p.to}" (${p.type} ${id})`, { messageId: id, agentId: p.to }));
      }
      return;
    }
    let answer;
    try {
      answer = decodeAnswer(msg.data, this.#maxBytes);
      if (escapeToken(answer.id) !== token) throw new BusError('INVALID_REPLY', `answer for message ${answer.id} arrived on the inbox of another message`);
    } catch (e) {
      const id = safeUnescape(token);
      const p = id === undefined ? undefined : this.#pending.get(id);
      if (id !== undefined && p !== undefined && this.#finish(id)) p.callbacks.error(toBusError(e, 'INVALID_REPLY'));
      else this.#onRejected?.({ subject: msg.subject, error: toBusError(e, 'INVALID_REPLY') });
      return;
    }
    const p = this.#finish(answer.id, true);
    if (p !== undefined) {
      if (answer.kind === 'reply') p.callbacks.reply(answer.payloadJson, answer.payloadBytes);
      else p.callbacks.error(new BusError(answer.error.code, answer.error.message, { messageId: answer.id, agentId: p.to }));
      return;
    }
    const ended = this.#ended.get(answer.id);
    if (ended !== undefined) {
      this.#ended.delete(answer.id);
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
    if (kind === 'progress' || kind === 'cancel') {
      this.#onAbout(msg, kind, to, from);
      return;
    }
    let decoded: DecodedMessage;
    try {
      decoded = decodeMessage(msg.data, this.#maxBytes, kind !== 'notify');
    } catch (e) {
      const error = toBusError(e, 'INVALID_ARGUMENT');
      this.#onRejected?.({ subject: msg.subject, error });
      const id = claimedId(msg.data);
      if (kind !== 'notify' && msg.reply !== undefined && id !== undefined) msg.respond(encodeError(id, { code: error.code, message: error.message }));
      return;
    }
    const key = `${to}\0${from}\0${decoded.id}`;
    if (kind !== 'notify' && this.#running.size >= this.#maxInbound) {
      const error = new BusError('MAILBOX_FULL', `node is handling ${this.#running.size} requests already (maxInbound); ${kind} ${decoded.id} from "${from}" refused`, { messageId: decoded.id, agentId: to });
      this.#onRejected?.({ subject: msg.subject, error });
      if (msg.reply !== undefined) msg.respond(encodeError(decoded.id, { code: error.code, message: error.message }));
      return;
    }
    if (this.#seen.has(key)) {
      this.#onRejected?.({ subject: msg.subject, error: new BusError('INVALID_ARGUMENT', `repeated message id ${decoded.id} from "${from}" dropped`, { messageId: decoded.id }) });
      return;
    }
    this.#seen.add(key);
    if (this.#seen.size > this.#dedupeWindow) this.#seen.delete(this.#seen.values().next().value!);

    const arrival = new Arrival(this.#carrier, msg, decoded, kind, from, to, key);
    receiver(arrival, arrival);
  }

  #onAbout(msg: Msg, kind: 'progress' | 'cancel', to: string, from: string): void {
    let about;
    try {
      about = decodeAbout(msg.data, this.#maxBytes);
    } catch (e) {
      this.#onRejected?.({ subject: msg.subject, error: toBusError(e, 'INVALID_ARGUMENT') });
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
    const p = this.#pending.get(about.id);
    if (p === undefined || p.type !== 'delegate' || p.from !== to || p.to !== from) return;
    p.callbacks.progress?.(about.payload);
  }
}

function safeUnescape(token: string): string | undefined {
  try {
    return unescapeToken(token);
  } catch {
    return undefined;
  }
}
