/**
 * The NATS implementation of the pipeline's {@link Transport} seam: one node of a bus.
 *
 * - **Connection.** {@link natsTransport} checks that the broker answers, then `attach(node)`
 *   opens the node's own connection with the private inbox prefix `<bus>._r.<node>` (what
 *   `switchboard nats-config` lets the node subscribe to), its claims bucket and its link.
 * - **Directory.** Every node watches the claims bucket, so `locate`, `nodeOf` and
 *   `remoteAgents` answer synchronously; a dead node's agents vanish when their lease runs out.
 * - **Receiving.** One subscription per claimed agent (`<bus>.in.<agent>.*.*`, the subscribe
 *   permission nats-config generates). An inbound is delivered only for an agent this node
 *   holds, and only when the bus-wide claim of its `from` names the node its `Sb-Node`
 *   header names (the broker pins `from` to the publishing node's credentials; on an open
 *   server this check is what stops a forged header).
 * - **Sending** never throws: every failure reaches the sink as a code.
 */
import { BusError, toBusError, type ErrorCode } from '../errors.js';
import { AGENT_ID_PATTERN } from '../ids.js';
import type {
  InboundHandle,
  InboundMessage,
  InboundPort,
  Location,
  OutboundHandle,
  OutboundMessage,
  OutboundSink,
  RemoteAgent,
  Responder,
  Transport,
} from '../pipeline/transport.js';
import { Claims } from './claims.js';
import { NodeConnection, type Refusal } from './connection.js';
import { DeskService } from './desk-service.js';
import { Directory } from './directory.js';
import { rememberFleet } from './fleet-of.js';
import { keysFromSeed, type NodeKeys } from './keys.js';
import { Link, type DeadAnswer, type DeniedFrame, type DigestFrame, type LinkInbound, type LinkResponder, type RequestCallbacks, type RequestHandle } from './link.js';
import { checkNatsOptions, natsOptionError, type NatsTransportOptions } from './options.js';
import { Proofs } from './proofs.js';
import { loadRoster, RosterIndex } from './roster.js';
import { Subjects } from './subjects.js';
import { freezeClass } from '../frozen.js';

const NONE: readonly RemoteAgent[] = Object.freeze([]);
const NOOP: OutboundHandle = Object.freeze({ cancel: () => undefined });
/** How many ended requests keep their sink, to report a late reply as dead. */
const DEAD_WINDOW = 10_000;
/**
 * How long the transport keeps waiting for a notify's acknowledgement when the outbound
 * carries no budget (the pipeline's own timer decides first and cancels).
 */
const NOTIFY_WAIT_MS = 10 * 60_000;
/** The longest progress note that crosses (longer ones are cut by the sender). */
const MAX_NOTE = 1_024;
/** How many claim look-ups (for senders the watch has not shown yet) may be in flight at once. */
const MAX_LOOKUPS = 256;
/** The payload bound when the server does not say its `max_payload`. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** What exists once the node is attached and connected. */
interface Parts {
  readonly conn: NodeConnection;
  readonly claims: Claims;
  readonly directory: Directory;
  readonly link: Link;
  /** Answers the fleet's operators (a secure fleet whose bus has an approval queue). */
  readonly desk: DeskService | undefined;
}

/**
 * One ask, delegate or notify this node sent, kept after a TIMEOUT or cancel for a late
 * reply. It is the link's callbacks and the pipeline's {@link OutboundHandle} at once (one
 * object per message, no closures); everything it holds is `#private`.
 */
class Sent implements RequestCallbacks, OutboundHandle {
  /** Its key in the transport's map: message id and recipient (a notify's copies share the id). */
  readonly #id: string;
  readonly #sink: OutboundSink;
  readonly #route: string;
  /** The transport's sent messages, which this one leaves when it is answered. */
  readonly #all: Map<string, Sent>;
  /** Still waiting for its answer. */
  #live = true;
  #handle: RequestHandle | undefined;

  constructor(id: string, sink: OutboundSink, to: string, from: string, type: string, all: Map<string, Sent>) {
    this.#id = sentKey(id, to);
    this.#sink = sink;
    this.#route = `${to}\0${from}\0${type}`;
    this.#all = all;
  }

  set handle(handle: RequestHandle) {
    this.#handle = handle;
  }

  reply(json: string, _bytes?: number, proof?: string): void {
    this.#all.delete(this.#id);
    if (!this.#live) return;
    this.#live = false;
    guard(() => (proof === undefined ? this.#sink.reply(json) : this.#sink.reply(json, proof)));
  }

  error(e: BusError): void {
    // After a TIMEOUT at this end, a reply may still come: keep the sink for it.
    if (e.code !== 'TIMEOUT') this.#all.delete(this.#id);
    if (!this.#live) return;
    this.#live = false;
    guard(() => this.#sink.error(e.code, e.message));
  }

  progress(payload: unknown): void {
    const p = readProgress(payload);
    if (p !== undefined) guard(() => this.#sink.progress(p.fraction, p.note));
  }

  cancel(reason: string): void {
    this.#live = false;
    try {
      this.#handle?.cancel(typeof reason === 'string' ? reason.slice(0, 512) : undefined);
    } catch {
      // The connection dropped: the receiver ends at its own deadline.
    }
  }

  /** Whether this is a live message from `from` to `to` of kind `type`. */
  waitsOn(to: string, from: string, type: string): boolean {
    return this.#live && this.#route === `${to}\0${from}\0${type}`;
  }

  /** Ends it with `code` (the broker refused its publish). */
  refuse(code: ErrorCode, message: string): void {
    this.#live = false;
    this.#all.delete(this.#id);
    guard(() => this.#handle?.cancel('refused by the broker'));
    guard(() => this.#sink.error(code, message));
  }

  /** A late answer: `message:dead` at the sender. */
  dead(reason: string, payloadJson?: string): void {
    this.#all.delete(this.#id);
    guard(() => (payloadJson === undefined ? this.#sink.dead(reason) : this.#sink.dead(reason, payloadJson)));
  }
}

/** One agent this node claims. */
interface Held {
  readonly settled: Promise<void>;
  released: boolean;
  unserve: (() => void) | undefined;
}

/**
 * Connects to NATS and returns the transport of one node, for
 * `new Orchestrator({ node, transport })`.
 *
 * Checks `options` once (`INVALID_ARGUMENT` naming a bad key), then checks that the broker
 * answers within `connectTimeoutMs`: if it does not (or refuses the credentials) the promise
 * rejects with `TRANSPORT_UNAVAILABLE` naming the servers. The node's own connection, with its
 * private inbox prefix, is opened when the orchestrator attaches it; `ready()` reports it.
 *
 * The returned object holds the connection and the credentials in `#private` fields only.
 *
 * @example
 * const transport = await natsTransport({ servers: 'nats://127.0.0.1:4222', bus: 'shop' });
 * const bus = new Orchestrator({ node: 'billing-1', transport });
 * bus.register('payment', { handlers });
 * await bus.ready();
 */
export async function natsTransport(options: NatsTransportOptions): Promise<Transport> {
  const checked = checkNatsOptions(options);
  const subjects = new Subjects(checked.bus);
  let trust: Trust | undefined;
  if (checked.roster !== undefined) {
    let roster: RosterIndex;
    try {
      roster = new RosterIndex(loadRoster(checked.roster));
    } catch (e) {
      throw natsOptionError('roster', (e as Error).message, e);
    }
    if (roster.roster.bus !== checked.bus) throw natsOptionError('roster', `the roster is for bus "${roster.roster.bus}", not "${checked.bus}"`);
    let keys: NodeKeys;
    try {
      keys = keysFromSeed(checked.nkeySeed!);
    } catch (e) {
      throw natsOptionError('nkeySeed', (e as Error).message, e);
    }
    if (roster.nodeOfKey(keys.publicKey) === undefined) {
      throw natsOptionError('nkeySeed', `the seed given is that of key ${keys.publicKey}, which no node of the roster of bus "${checked.bus}" has (nodes: ${Object.keys(roster.roster.nodes).join(', ')})`);
    }
    trust = { roster, keys };
  } else {
    warnInsecure();
  }
  const probe = await NodeConnection.open({
    servers: checked.servers,
    inboxPrefix: `${subjects.bus}._r`,
    name: `switchboard ${subjects.bus} (probe)`,
    ...(checked.nkeySeed === undefined ? {} : { nkeySeed: checked.nkeySeed }),
    ...(checked.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: checked.connectTimeoutMs }),
  });
  await probe.close();
  const transport = new NatsTransport(checked, subjects, trust);
  if (trust !== undefined) rememberFleet(transport, { servers: checked.servers, roster: trust.roster, subjects, ...(checked.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: checked.connectTimeoutMs }) });
  return transport;
}

/** A secure fleet's roster and this node's keys. */
interface Trust {
  readonly roster: RosterIndex;
  readonly keys: NodeKeys;
}

let warned = false;
/** One warning per process: an insecure fleet believes whatever the broker delivers. */
function warnInsecure(): void {
  if (warned) return;
  warned = true;
  process.emitWarning(
    'natsTransport runs with insecure: true: no roster, nothing signed or checked; any client of the broker can speak as any agent and read every message. Use `switchboard fleet init` and pass roster and nkeySeed outside tests and local demos.',
    { code: 'SWITCHBOARD_INSECURE_FLEET' },
  );
}

class NatsTransport implements Transport {
  readonly #options: Readonly<NatsTransportOptions>;
  readonly #subjects: Subjects;
  #node: string | undefined;
  #port: InboundPort | undefined;
  #started: Promise<Parts> | undefined;
  #parts: Parts | undefined;
  readonly #held = new Map<string, Held>();
  /** Claims that failed (DUPLICATE_AGENT, a lost lease, …): `ready()` rejects with the first. */
  readonly #failures = new Map<string, BusError>();
  /** Outbound messages by {@link sentKey}, kept after a TIMEOUT or cancel for a late reply. */
  readonly #sent = new Map<string, Sent>();
  #closing: Promise<void> | undefined;
  #lookups = 0;
  /** Releases in flight: `close()` waits for them before draining. */
  readonly #releasing = new Set<Promise<void>>();

  readonly #trust: Trust | undefined;

  constructor(options: Readonly<NatsTransportOptions>, subjects: Subjects, trust: Trust | undefined) {
    this.#options = options;
    this.#subjects = subjects;
    this.#trust = trust;
  }

  get unverified(): boolean {
    return this.#trust === undefined;
  }

  attach(node: string, port: InboundPort): void {
    if (this.#node !== undefined) throw new BusError('INVALID_ARGUMENT', `this NATS transport is already attached to node "${this.#node}"; create one transport per orchestrator`);
    if (typeof node !== 'string' || !AGENT_ID_PATTERN.test(node)) throw new BusError('INVALID_ARGUMENT', `node id ${JSON.stringify(node)} does not match ${AGENT_ID_PATTERN}`);
    if (typeof port?.receive !== 'function') throw new BusError('INVALID_ARGUMENT', 'attach needs an InboundPort with a receive() method');
    const trust = this.#trust;
    if (trust !== undefined) {
      const entry = trust.roster.node(node);
      if (entry === undefined) {
        const own = trust.roster.nodeOfKey(trust.keys.publicKey);
        throw new BusError('INVALID_ARGUMENT', `node "${node}" is not in the roster of bus "${this.#subjects.bus}" (nodes: ${Object.keys(trust.roster.roster.nodes).join(', ')})${own === undefined ? '' : `; the seed given is node "${own}"'s: pass \`node: ${JSON.stringify(own)}\` to the Orchestrator`}`);
      }
      if (entry.signingKey !== trust.keys.publicKey) {
        const owner = trust.roster.nodeOfKey(trust.keys.publicKey);
        throw new BusError(
          'INVALID_ARGUMENT',
          `node "${node}" was given the seed of key ${trust.keys.publicKey}${owner === undefined ? '' : ` (node "${owner}" in the roster)`}, but the roster lists node "${node}" with key ${entry.signingKey}: start it with its own .nk file`,
        );
      }
      if (entry.sealingKey !== trust.keys.sealingKey) {
        // Peers would seal and MAC for a key this node does not hold: nothing sealed to it would open.
        throw new BusError(
          'INVALID_ARGUMENT',
          `node "${node}": its seed's sealing key is ${trust.keys.sealingKey}, but the roster lists node "${node}" with sealing key ${entry.sealingKey}: the roster entry does not match the seed (use the roster.json written with this .nk file)`,
        );
      }
    }
    this.#node = node;
    this.#port = port;
    this.#started = this.#start(node);
    this.#started.catch(() => undefined);
  }

  locate(agentId: string): Location {
    return this.#parts?.directory.remoteNodeOf(agentId) === undefined ? 'unknown' : 'remote';
  }

  nodeOf(agentId: string): string | undefined {
    return this.#parts?.directory.remoteNodeOf(agentId);
  }

  remoteAgents(): readonly RemoteAgent[] {
    return this.#parts?.directory.remote() ?? NONE;
  }

  claim(agent: RemoteAgent): Promise<void> {
    let id: string;
    let info: { capabilities: string[]; trust: number };
    try {
      id = String(agent.id);
      info = { capabilities: [...agent.capabilities].map(String), trust: Number(agent.trust) };
    } catch (e) {
      return Promise.reject(new BusError('INVALID_ARGUMENT', `claim needs { id, capabilities, trust }: ${(e as Error).message}`));
    }
    if (this.#closing !== undefined) return Promise.reject(new BusError('CLOSED', `cannot claim "${id}": the NATS transport is closed`, { agentId: id }));
    if (this.#started === undefined) return Promise.reject(new BusError('INVALID_ARGUMENT', `cannot claim "${id}": the NATS transport is not attached to an orchestrator`, { agentId: id }));
    if (this.#held.has(id)) return Promise.reject(new BusError('DUPLICATE_AGENT', `agent id "${id}" is already claimed by this node "${this.#node}"`, { agentId: id }));
    const started = this.#started;
    const held: Held = { settled: undefined as unknown as Promise<void>, released: false, unserve: undefined };
    const settled = (async () => {
      const parts = await started;
      await parts.claims.claim(id, info);
      if (held.released || this.#closing !== undefined) {
        // Released while claiming: give the id back, unless a newer claim of it took over.
        if (!this.#held.has(id)) await parts.claims.release(id).catch(() => undefined);
        return;
      }
      const unserve = await parts.link.serve(id, (inbound, responder) => this.#receive(parts, inbound, responder));
      if (held.released) unserve();
      else held.unserve = unserve;
      this.#failures.delete(id);
    })();
    (held as { settled: Promise<void> }).settled = settled;
    this.#held.set(id, held);
    settled.catch((e: unknown) => {
      if (this.#held.get(id) === held) this.#held.delete(id);
      this.#failures.set(id, toBusError(e, 'TRANSPORT_UNAVAILABLE'));
    });
    return settled;
  }

  release(agentId: string): void {
    const held = this.#held.get(agentId);
    if (held === undefined) return;
    this.#held.delete(agentId);
    held.released = true;
    held.unserve?.();
    const claims = this.#parts?.claims;
    if (claims?.holds(agentId) !== true) return;
    const releasing = claims.release(agentId).catch(() => undefined);
    this.#releasing.add(releasing);
    void releasing.finally(() => this.#releasing.delete(releasing));
  }

  send(outbound: OutboundMessage, sink: OutboundSink): OutboundHandle {
    try {
      return this.#send(outbound, sink);
    } catch (e) {
      const error = toBusError(e, 'TRANSPORT_UNAVAILABLE');
      guard(() => sink.error(error.code, error.message));
      return NOOP;
    }
  }

  async ready(): Promise<void> {
    if (this.#started === undefined) throw new BusError('TRANSPORT_UNAVAILABLE', 'the NATS transport is not attached to an orchestrator yet');
    if (this.#closing !== undefined) throw new BusError('CLOSED', 'the NATS transport is closed');
    const parts = await this.#started;
    // Wait for every claim in flight, including those made while waiting.
    for (let waited = new Set<Promise<void>>(); ; ) {
      const pending = [...this.#held.values()].map((h) => h.settled).filter((p) => !waited.has(p));
      if (pending.length === 0) break;
      await Promise.allSettled(pending);
      waited = new Set([...waited, ...pending]);
    }
    const failure = this.#failures.values().next();
    if (failure.done !== true) throw failure.value;
    await parts.conn.nc.flush().catch((e: unknown) => {
      throw toBusError(e, 'TRANSPORT_UNAVAILABLE');
    });
    // Peers' claims already in the bucket are known before ready() resolves, not whenever
    // the watch happens to deliver them.
    await parts.claims.catchUp().catch((e: unknown) => {
      throw toBusError(e, 'TRANSPORT_UNAVAILABLE');
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #start(node: string): Promise<Parts> {
    const o = this.#options;
    const conn = await NodeConnection.open({
      servers: o.servers,
      inboxPrefix: this.#subjects.inboxPrefix(node),
      name: `switchboard ${this.#subjects.bus} ${node}`,
      ...(o.nkeySeed === undefined ? {} : { nkeySeed: o.nkeySeed }),
      ...(o.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: o.connectTimeoutMs }),
    });
    try {
      const claims = await Claims.open({
        connection: conn,
        subjects: this.#subjects,
        node,
        ...(o.leaseMs === undefined ? {} : { leaseMs: o.leaseMs }),
        onLost: (agent, holder) => this.#lost(agent, holder),
        ...(this.#trust === undefined ? {} : { trust: this.#trust }),
      });
      const directory = new Directory(claims, node);
      claims.onChange(() => directory.invalidate());
      try {
        await claims.watch();
      } catch (e) {
        await claims.close();
        throw e;
      }
      directory.invalidate();
      const maxPayloadBytes = conn.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
      const trust = this.#trust;
      const proofs = new Proofs({ bus: this.#subjects.bus, node, ...(o.proof === undefined ? {} : { proof: o.proof }), ...(trust === undefined ? {} : { roster: trust.roster, keys: trust.keys }) });
      const link = new Link({
        connection: conn,
        subjects: this.#subjects,
        node,
        maxPayloadBytes,
        onDead: (d) => this.#dead(d),
        onDenied: (d) => this.#denied(d),
        onDigest: (d) => this.#digest(d),
        proofs,
        ...(trust === undefined ? {} : { roster: trust.roster }),
        seal: o.seal === 'always',
        ...(o.freshnessMs === undefined ? {} : { freshnessMs: o.freshnessMs }),
      });
      // Ids admitted before a restart stay refused for the freshness window (a replay captured
      // then). A log that did not outlive the last run has none to give: then nothing signed
      // before this node started is taken (a message to it could not have been delivered here
      // before it subscribed), so a capture from before the restart cannot come back either.
      const window = 2 * (o.freshnessMs ?? 120_000);
      const startedAt = Date.now();
      try {
        const recent = this.#port?.admitted?.(startedAt - window, 100_000);
        if (recent === undefined) link.refuseSignedBefore(startedAt);
        else link.admitted(recent.map((r) => ({ to: r.to, from: r.from, id: r.id, at: r.ts })));
        const digests = this.#port?.admittedDigests?.(startedAt - window, 100_000) ?? [];
        link.admittedDigests(digests.map((d) => ({ node: d.node, id: d.id, at: d.ts })));
      } catch {
        // A log that cannot be read now: as with one that did not outlive the last run, nothing
        // signed before this node started is taken.
        link.refuseSignedBefore(startedAt);
      }
      const port = this.#port?.desk;
      const desk = trust === undefined || port === undefined ? undefined : new DeskService({ connection: conn, subjects: this.#subjects, node, roster: trust.roster, keys: trust.keys, desk: port, ...(o.freshnessMs === undefined ? {} : { freshnessMs: o.freshnessMs }) });
      // Operators may list as soon as ready() resolves: the broker has the subscriptions by then.
      if (desk !== undefined) {
        await conn.nc.flush().catch((e: unknown) => {
          desk.close();
          throw e;
        });
      }
      const parts: Parts = { conn, claims, directory, link, desk };
      conn.onRefused((refusal) => this.#refused(refusal));
      if (this.#closing !== undefined) {
        desk?.close();
        link.close();
        await claims.close();
        throw new BusError('CLOSED', 'the NATS transport was closed while it connected');
      }
      this.#parts = parts;
      return parts;
    } catch (e) {
      await conn.close();
      throw e;
    }
  }

  #send(outbound: OutboundMessage, sink: OutboundSink): OutboundHandle {
    const { envelope, payloadJson, budgetMs, traceparent, node: peer, sealed } = outbound;
    const { id, type, from, to, intent, conversationId, causationId, priority, depth } = envelope;
    const what = `${type} ${id} to "${to}"`;
    if (this.#closing !== undefined) throw new BusError('CLOSED', `${what}: the NATS transport is closed`, { messageId: id });
    const parts = this.#parts;
    if (parts === undefined) throw new BusError('TRANSPORT_UNAVAILABLE', `${what}: the NATS transport is not connected (yet)`, { messageId: id });
    parts.conn.assertUp(what);
    const meta = {
      id,
      intent,
      // The signed time is when this node carries it (a message held for approval here may be
      // old): the receiver's freshness window counts from it.
      ts: Date.now(),
      conversationId,
      ...(causationId === undefined ? {} : { causationId }),
      depth,
      priority,
      node: this.#node!,
      ...(traceparent === undefined ? {} : { traceparent }),
    };
    if (type !== 'ask' && type !== 'delegate' && type !== 'notify') throw new BusError('INVALID_ARGUMENT', `${what}: only ask, delegate and notify cross nodes`, { messageId: id });
    let wait: number;
    if (type === 'notify' && budgetMs === undefined) wait = NOTIFY_WAIT_MS;
    else if (typeof budgetMs !== 'number' || Number.isNaN(budgetMs)) throw new BusError('INVALID_ARGUMENT', `${what}: an ask or delegate needs budgetMs`, { messageId: id });
    else if (budgetMs < 1) throw new BusError('TIMEOUT', `${what}: its deadline passed before it left this node`, { messageId: id });
    else wait = budgetMs;
    const sent = new Sent(id, sink, to, from, type, this.#sent);
    if (sealed === true && this.#trust === undefined) {
      throw new BusError('POLICY_DENIED', `${what}: its rule requires sealing, and this node has no roster (insecure: true) to seal with`, { messageId: id });
    }
    sent.handle = parts.link.request({ ...meta, type, from, to, payloadJson, budgetMs: wait, peer, ...(sealed === true ? { seal: true } : {}) }, sent);
    const key = sentKey(id, to);
    this.#sent.delete(key);
    this.#sent.set(key, sent);
    if (this.#sent.size > DEAD_WINDOW) this.#sent.delete(this.#sent.keys().next().value!);
    return sent;
  }

  /**
   * The broker refused a publish (nats-config permissions: this node may publish only as its
   * own agents). Ends the asks and delegates sent on that subject at once instead of at
   * their deadline. Rare, so a scan is fine.
   */
  #refused(refusal: Refusal): void {
    if (refusal.operation !== 'publish') return;
    let route;
    try {
      route = this.#subjects.parseInbound(refusal.subject);
    } catch {
      return;
    }
    const { to, from, kind } = route;
    for (const [key, sent] of [...this.#sent]) {
      if (!sent.waitsOn(to, from, kind)) continue;
      const id = key.slice(0, key.indexOf('\0'));
      sent.refuse('POLICY_DENIED', `the NATS server refused to let node "${this.#node}" publish ${kind} ${id} as "${from}" to "${to}" (its credentials do not cover "${from}")`);
    }
  }

  /** A frame refused for its proof or as a replay: the receiving bus records it (`message:denied`). */
  #denied(d: DeniedFrame): void {
    try {
      this.#port?.refused?.({
        code: d.error.code,
        // A progress report or a cancel is no message type of its own: its row says what it was.
        reason: d.kind === 'progress' || d.kind === 'cancel' ? `a ${d.kind} frame ${d.error.message}` : d.error.message,
        ...(d.id === undefined ? {} : { id: d.id }),
        ...(d.kind === undefined ? {} : { type: d.kind }),
        ...(d.from === undefined ? {} : { from: d.from }),
        ...(d.to === undefined ? {} : { to: d.to }),
        ...(d.node === undefined ? {} : { fromNode: d.node }),
      });
    } catch {
      // The record is the bus's; a failing port must not break the carriage.
    }
  }

  /** A peer's signed digest frame: the receiving bus records it, so the MAC'd rows it covers are proven. */
  #digest(d: DigestFrame): void {
    try {
      this.#port?.digest?.({ id: d.id, fromNode: d.node, proof: d.proof, payloadHash: d.payloadHash });
    } catch {
      // The record is the bus's; a failing port must not break the carriage.
    }
  }

  #dead(dead: DeadAnswer): void {
    const sent = this.#sent.get(sentKey(dead.id, dead.to));
    if (sent === undefined) return;
    if (dead.answer.kind === 'reply') sent.dead(`the reply to ${dead.id} from "${dead.to}" arrived after the request ended`, dead.answer.payloadJson);
    else sent.dead(`the answer to ${dead.id} from "${dead.to}" arrived after the request ended: ${dead.answer.error.code}: ${dead.answer.error.message}`);
  }

  /** A message from a peer for one of this node's agents: check who sent it, then deliver. */
  #receive(parts: Parts, inbound: LinkInbound, responder: LinkResponder): void {
    const { to, from, id } = inbound;
    const held = this.#held.get(to);
    if (held === undefined || held.released || !parts.claims.holds(to)) {
      refuse(responder, 'UNKNOWN_AGENT', `node "${this.#node}" does not serve agent "${to}" (${inbound.type} ${id})`);
      return;
    }
    const known = parts.directory.get(from);
    if (known !== undefined) {
      this.#check(inbound, responder, known);
      return;
    }
    // A claim made just now may not have reached this node's watch yet: read it, a bounded
    // number at a time (senders with made-up ids must not turn into unbounded bucket reads).
    if (this.#lookups >= MAX_LOOKUPS) {
      refuse(responder, 'MAILBOX_FULL', `node "${this.#node}" is checking ${this.#lookups} unknown senders already; ${inbound.type} ${id} from "${from}" refused`);
      return;
    }
    this.#lookups++;
    parts.claims
      .lookup(from)
      .then(
        (found) => this.#check(inbound, responder, found === undefined ? undefined : { id: found.agent, node: found.node, capabilities: found.capabilities, trust: found.trust }),
        (e: unknown) => refuse(responder, 'TRANSPORT_UNAVAILABLE', `cannot check the claim of "${from}": ${toBusError(e, 'TRANSPORT_UNAVAILABLE').message}`),
      )
      .finally(() => this.#lookups--);
  }

  /** Delivers `inbound` if the bus-wide claim of its `from` names the node it says it comes from. */
  #check(inbound: LinkInbound, responder: LinkResponder, owner: RemoteAgent | undefined): void {
    // With a roster the sender's node is the verified signer, never what the message says.
    const said = this.#trust === undefined ? inbound.node : inbound.signer;
    if (owner === undefined || owner.node === this.#node || said !== owner.node) {
      const holder = owner === undefined ? 'no node' : `node "${owner.node}"`;
      refuse(responder, 'POLICY_DENIED', `${inbound.type} ${inbound.id} says it comes from "${inbound.from}" of node ${said === undefined ? '(none)' : `"${said}"`}, but "${inbound.from}" is claimed by ${holder}: refused`);
      return;
    }
    if (inbound.ended || this.#closing !== undefined) return;
    this.#deliver(inbound, responder, owner.node);
  }

  #deliver(inbound: LinkInbound, responder: LinkResponder, fromNode: string): void {
    const message: { -readonly [K in keyof InboundMessage]: InboundMessage[K] } = {
      id: inbound.id,
      type: inbound.type,
      from: inbound.from,
      fromNode,
      to: inbound.to,
      intent: inbound.intent,
      payloadJson: inbound.payloadJson,
      conversationId: inbound.conversationId,
      priority: inbound.priority,
      depth: inbound.depth,
    };
    if (inbound.causationId !== undefined) message.causationId = inbound.causationId;
    if (inbound.budgetMs !== undefined) message.budgetMs = inbound.budgetMs;
    if (inbound.traceparent !== undefined) message.traceparent = inbound.traceparent;
    if (inbound.proof !== undefined) message.proof = inbound.proof;
    else message.unverified = true;
    message.sealed = inbound.sealed;
    let handle: InboundHandle;
    try {
      handle = this.#port!.receive(Object.freeze(message), Object.freeze(new Answer(responder)));
    } catch (e) {
      const error = toBusError(e, 'HANDLER_FAILED');
      refuse(responder, error.code, error.message);
      return;
    }
    // The sender's cancel reaches the handle (the receiver's own deadline is the pipeline's).
    inbound.follow(handle);
  }

  #lost(agent: string, holder: string): void {
    const held = this.#held.get(agent);
    // Claimed again since (the claims renew the new claim): this report is about the old one.
    if (held === undefined || this.#parts?.claims.holds(agent) === true) return;
    this.#held.delete(agent);
    held.released = true; // a subscription still starting for it stops at once
    held.unserve?.();
    this.#failures.set(agent, new BusError('DUPLICATE_AGENT', `agent id "${agent}" was taken over by node "${holder}" after this node "${this.#node}" missed its lease renewals`, { agentId: agent }));
    this.#port?.claimLost?.(agent, holder);
  }

  async #shutdown(): Promise<void> {
    for (const held of this.#held.values()) {
      held.released = true;
      held.unserve?.();
    }
    this.#held.clear();
    const parts = await this.#started?.catch(() => undefined);
    this.#parts = undefined;
    if (parts === undefined) return;
    parts.desk?.close();
    parts.link.close();
    await Promise.allSettled([...this.#releasing]);
    await parts.claims.close();
    await parts.conn.close();
  }
}

/** How the receiving orchestrator answers one inbound: what it says crosses as text, never throws. */
class Answer implements Responder {
  readonly #responder: LinkResponder;

  constructor(responder: LinkResponder) {
    this.#responder = responder;
  }

  reply(payloadJson: string): void {
    try {
      this.#responder.reply(String(payloadJson));
    } catch {
      // The answer is lost; the sender ends at its deadline (at most once).
    }
  }

  error(code: ErrorCode, text: string): void {
    refuse(this.#responder, code, String(text));
  }

  progress(fraction: number, note?: string): void {
    guard(() => this.#responder.progress(JSON.stringify(note === undefined ? { fraction } : { fraction, note: String(note).slice(0, MAX_NOTE) })));
  }
}

/** The key of one outbound message: its id and recipient (a notify keeps one id for all its recipients). */
function sentKey(id: string, to: string): string {
  return `${id}\0${to}`;
}

/** Answers with an error; a dropped connection loses it (the sender ends at its deadline). */
function refuse(responder: LinkResponder, code: ErrorCode, message: string): void {
  try {
    responder.error({ code, message });
  } catch {
    // The answer is lost; the sender ends at its deadline (at most once).
  }
}

/** A progress report from a peer: `{ fraction: 0..1, note?: string }`, else undefined. */
function readProgress(payload: unknown): { fraction: number; note?: string } | undefined {
  if (typeof payload !== 'object' || payload === null) return undefined;
  const { fraction, note } = payload as { fraction?: unknown; note?: unknown };
  if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) return undefined;
  if (note !== undefined && (typeof note !== 'string' || note.length > MAX_NOTE)) return undefined;
  return note === undefined ? { fraction } : { fraction, note };
}

/** Runs `fn`, swallowing what it throws: a sink or a dropped connection must not break the carriage. */
function guard(fn: () => unknown): void {
  try {
    fn();
  } catch {
    // The answer is lost; the other side ends at its deadline (at most once).
  }
}

// Frozen: what the transport hands out (itself, carriage handles, responders) cannot be patched by one holder for all.
freezeClass(NatsTransport);
freezeClass(Sent);
freezeClass(Answer);
