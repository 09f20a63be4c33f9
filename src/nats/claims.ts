/**
 * Agent ids claimed bus-wide in a JetStream key-value bucket.
 *
 * A claim is created if absent (`kv.create`); a live node renews each of its claims every
 * third of the lease with a compare-and-set on the revision it last wrote. A claim whose last
 * write is older than its lease belongs to a dead node and is taken over with the same
 * compare-and-set, so two nodes racing for it cannot both win.
 *
 * Works on nats-server 2.9 and later: the lease is the server's timestamp of the entry's last
 * write plus the lease stored in it, not the per-key TTL of 2.11 (which 2.9 lacks). Node
 * clocks must agree with the server's within a fraction of the lease (NTP), since the age of
 * an entry is judged against the local clock.
 */
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, KvWatchInclude, type KV, type KvEntry } from '@nats-io/kv';
import { BusError, toBusError } from '../errors.js';
import { AGENT_ID_PATTERN } from '../ids.js';
import { MAX_CLAIM_BYTES, openClaimsStream } from './bucket.js';
import type { NodeConnection } from './connection.js';
import { verifySignature, type NodeKeys } from './keys.js';
import type { RosterIndex } from './roster.js';
import { unescapeToken, type Subjects } from './subjects.js';

/** One claimed agent, as `agents()` and `discover()` see it across the bus. */
export interface ClaimRecord {
  readonly agent: string;
  readonly node: string;
  readonly capabilities: readonly string[];
  readonly trust: number;
}

export interface ClaimsOptions {
  connection: NodeConnection;
  subjects: Subjects;
  /** This node's id, recorded in each claim. */
  node: string;
  /** How long a claim outlives its node's last renewal. @default 15000 */
  leaseMs?: number;
  /** Epoch ms now. @default Date.now */
  now?: () => number;
  /** Called when a claim this node held was taken by another (it missed its renewals). */
  onLost?(agent: string, holder: string): void;
  /**
   * The roster and this node's keys: claims are signed, and a claim is believed only when
   * its signature verifies under the roster key of the node it names and that node may
   * serve the agent. Without it (an insecure fleet) claims are unsigned and believed as
   * written, and this node creates the bucket when it is missing.
   */
  trust?: { roster: RosterIndex; keys: NodeKeys };
}

/** A claim as read: what it says and until when its signer vouched for it. */
type ReadClaim = ClaimRecord & { leaseMs: number; ts: number };

/** What this node last saw of one key: newer revisions replace older ones. */
interface Seen {
  revision: number;
  claim: ReadClaim | undefined;
  created: number;
}

interface Held {
  revision: number;
  value: Uint8Array;
  /** The value of a write in flight (its watch event may come before its answer). */
  writing?: Uint8Array | undefined;
  readonly info: { capabilities?: readonly string[]; trust?: number };
}

const MAX_VALUE_BYTES = MAX_CLAIM_BYTES;
const utf8 = new TextEncoder();
/** What a claim's signature covers, before the claim's own fields: the bus binds it. */
const CLAIM_DOMAIN = 'sb-claim1';

/** This node's claims, and the view of everyone's. {@link close} releases them. */
export class Claims {
  readonly #kv: KV;
  readonly #subjects: Subjects;
  readonly #node: string;
  readonly #leaseMs: number;
  readonly #now: () => number;
  readonly #onLost: ((agent: string, holder: string) => void) | undefined;
  readonly #trust: ClaimsOptions['trust'];
  readonly #held = new Map<string, Held>();
  readonly #seen = new Map<string, Seen>();
  #watching: Promise<void> | undefined;
  #watcher: { stop(): void } | undefined;
  readonly #changes = new Set<() => void>();
  readonly #timer: NodeJS.Timeout;
  /** The renewal in flight, if any. */
  #renewing: Promise<void> | undefined;
  #closed = false;

  readonly #jsm: JetStreamManager;

  private constructor(kv: KV, jsm: JetStreamManager, options: ClaimsOptions) {
    this.#kv = kv;
    this.#jsm = jsm;
    this.#subjects = options.subjects;
    this.#node = options.node;
    this.#leaseMs = options.leaseMs ?? 15_000;
    this.#now = options.now ?? Date.now;
    this.#onLost = options.onLost;
    this.#trust = options.trust;
    this.#timer = setInterval(() => void this.renew().catch(() => {}), Math.max(50, Math.floor(this.#leaseMs / 3)));
    this.#timer.unref();
  }

  /** Opens (creating if needed) the bus's claims bucket. */
  static async open(options: ClaimsOptions): Promise<Claims> {
    const leaseMs = options.leaseMs ?? 15_000;
    if (!Number.isInteger(leaseMs) || leaseMs < 150 || leaseMs > 3_600_000) {
      throw new BusError('INVALID_ARGUMENT', `leaseMs must be an integer from 150 to 3600000, got ${JSON.stringify(options.leaseMs)}`);
    }
    const bucket = options.subjects.claimsBucket();
    let info;
    try {
      info = await openClaimsStream(options.connection.nc, options.subjects.bus, options.trust === undefined);
    } catch (cause) {
      if (cause instanceof BusError) throw cause;
      throw new BusError('TRANSPORT_UNAVAILABLE', `cannot open the claims bucket "${bucket}" (JetStream enabled on the server?): ${(cause as Error).message}`, { cause });
    }
    const kv = await new Kvm(options.connection.nc).open(bucket, { allow_direct: info.config.allow_direct === true });
    return new Claims(kv, await jetstreamManager(options.connection.nc), options);
  }

  /** This node's claim of `agent`, as written to the bucket: signed when there is a roster. */
  #value(agent: string, info: { capabilities?: readonly string[]; trust?: number }): Uint8Array {
    const body = { v: 2, node: this.#node, agent, capabilities: [...(info.capabilities ?? [])], trust: info.trust ?? 0, leaseMs: this.#leaseMs, ts: this.#now() };
    if (this.#trust === undefined) return utf8.encode(JSON.stringify(body));
    const sig = this.#trust.keys.sign(utf8.encode(`${CLAIM_DOMAIN}\n${this.#subjects.bus}\n${JSON.stringify(body)}`)).toString('base64');
    return utf8.encode(JSON.stringify({ ...body, sig }));
  }

  /**
   * Claims `agent` for this node. Rejects with `DUPLICATE_AGENT` naming the holder when a
   * live node holds it; takes over a claim whose lease has run out, or one this node id
   * left behind (a restart).
   */
  async claim(agent: string, info: { capabilities?: readonly string[]; trust?: number } = {}): Promise<void> {
    this.#assertOpen();
    const { roster } = this.#trust ?? {};
    const key = this.#subjects.claimKey(agent);
    if (roster !== undefined && !roster.mayServe(this.#node, agent)) {
      const entries = JSON.stringify(roster.node(this.#node)?.agents ?? []);
      // An id another node holds now is a taken id first (DUPLICATE_AGENT naming the holder),
      // and this node could not have it anyway.
      const entry = await this.#kv.get(key).catch(() => null);
      const holder = entry === null || entry.operation !== 'PUT' ? undefined : this.#read(agent, entry);
      if (holder !== undefined && holder.node !== this.#node && this.#alive(entry!, holder)) {
        throw new BusError('DUPLICATE_AGENT', `agent id "${agent}" is already claimed by node "${holder.node}" (and node "${this.#node}" may not serve it: its roster entry lists ${entries})`, { agentId: agent });
      }
      throw new BusError('POLICY_DENIED', `node "${this.#node}" may not serve agent "${agent}": its roster entry lists ${entries}`, { agentId: agent });
    }
    const value = this.#value(agent, info);
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const revision = await this.#kv.create(key, value);
        this.#held.set(agent, { revision, value, info });
        return;
      } catch (e) {
        if (!isWrongSequence(e)) throw unavailable(`claim "${agent}"`, e);
      }
      const entry = await this.#kv.get(key);
      if (entry === null || entry.operation !== 'PUT') continue;
      const holder = this.#read(agent, entry);
      if (holder !== undefined && holder.node !== this.#node && this.#alive(entry, holder)) {
        throw new BusError('DUPLICATE_AGENT', `agent id "${agent}" is already claimed by node "${holder.node}"`, { agentId: agent });
      }
      try {
        const revision = await this.#kv.update(key, value, entry.revision);
        this.#held.set(agent, { revision, value, info });
        return;
      } catch (e) {
        if (!isWrongSequence(e)) throw unavailable(`claim "${agent}"`, e);
      }
    }
    throw new BusError('DUPLICATE_AGENT', `agent id "${agent}" is being claimed by another node at the same time`, { agentId: agent });
  }

  /** Gives up this node's claim of `agent` (only if still this node's). */
  async release(agent: string): Promise<void> {
    const held = this.#held.get(agent);
    if (held === undefined) return;
    this.#held.delete(agent);
    try {
      await this.#kv.delete(this.#subjects.claimKey(agent), { previousSeq: held.revision });
    } catch (e) {
      if (!isWrongSequence(e)) throw unavailable(`release "${agent}"`, e);
    }
  }

  /** True while this node holds `agent`'s claim. */
  holds(agent: string): boolean {
    return this.#held.has(agent);
  }

  /**
   * Renews every claim this node holds; a claim another node took meanwhile is reported
   * lost. One renewal at a time (a slow one is not overlapped by the next tick, whose
   * compare-and-set would fail on the revision the first just wrote).
   */
  renew(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#renewing ??= this.#renewAll().finally(() => (this.#renewing = undefined));
    return this.#renewing;
  }

  async #renewAll(): Promise<void> {
    await Promise.all(
      [...this.#held].map(async ([agent, held]) => {
        const key = this.#subjects.claimKey(agent);
        // Signed claims carry their time: each renewal signs it afresh.
        const value = this.#trust === undefined ? held.value : this.#value(agent, held.info);
        held.writing = value;
        try {
          held.revision = await this.#kv.update(key, value, held.revision);
          held.value = value;
        } catch (e) {
          if (!isWrongSequence(e) || this.#held.get(agent) !== held) return;
          const entry = await this.#kv.get(key).catch(() => null);
          // Released or claimed again while this looked: that is the news, not this answer.
          if (this.#held.get(agent) !== held) return;
          const holder = entry === null || entry.operation !== 'PUT' ? undefined : this.#read(agent, entry);
          if (holder !== undefined && holder.node !== this.#node) {
            // Only a valid claim by another node the roster lets serve the id takes it away.
            this.#held.delete(agent);
            this.#onLost?.(agent, holder.node);
            return;
          }
          // Still ours (a write of ours this node had not seen answered), or missing, or
          // written by someone who may not claim it: claim it again.
          try {
            held.revision = entry === null || entry.operation !== 'PUT' ? await this.#kv.create(key, value) : await this.#kv.update(key, value, entry.revision);
            held.value = value;
          } catch {
            // Raced again: the next renewal looks once more.
          }
        } finally {
          if (held.writing === value) held.writing = undefined;
        }
      }),
    );
  }

  /** Every live claim on the bus, read now, sorted by agent id. Entries that do not parse are skipped. */
  async list(): Promise<ClaimRecord[]> {
    this.#assertOpen();
    const seen = new Map<string, Seen>();
    await this.#readAll(seen);
    return this.#liveIn(seen);
  }

  /**
   * Starts following the bucket so that {@link snapshot} answers synchronously; resolves once
   * the current claims are loaded. Idempotent.
   */
  watch(): Promise<void> {
    this.#assertOpen();
    this.#watching ??= (async () => {
      try {
        const updates = await this.#kv.watch({ include: KvWatchInclude.UpdatesOnly });
        this.#watcher = updates;
        void (async () => {
          for await (const e of updates) {
            this.#apply(this.#seen, e);
            this.#reclaimIfGone(e);
            for (const l of this.#changes) l();
          }
        })().catch(() => {});
        await this.#readAll(this.#seen);
      } catch (e) {
        throw unavailable('watch agents', e);
      }
    })();
    return this.#watching;
  }

  /**
   * Reads every claim of the bucket again into the watched view: the watch delivers a peer's
   * claim a little after the bucket has it, and `ready()` promises agents claimed before it.
   */
  async catchUp(): Promise<void> {
    this.#assertOpen();
    await this.watch();
    await this.#readAll(this.#seen);
    for (const l of this.#changes) l();
  }

  /** The live claims as last seen by {@link watch} (empty before it resolved), sorted by agent id. */
  snapshot(): ClaimRecord[] {
    return this.#liveIn(this.#seen);
  }

  /**
   * The live claims as last seen by {@link watch}, unsorted, and the epoch ms at which the
   * first of them runs out of lease (`Infinity` when there are none): a cache of this view
   * stays right until that time or the next {@link onChange}.
   */
  view(): { claims: ClaimRecord[]; until: number } {
    const now = this.#now();
    const claims: ClaimRecord[] = [];
    let until = Infinity;
    for (const { claim, created } of this.#seen.values()) {
      if (claim === undefined) continue;
      const expires = Math.min(created, claim.ts) + claim.leaseMs;
      if (expires <= now) continue;
      claims.push({ agent: claim.agent, node: claim.node, capabilities: claim.capabilities, trust: claim.trust });
      if (expires < until) until = expires;
    }
    return { claims, until };
  }

  /**
   * Reads `agent`'s claim from the bucket now (for an id the watch has not shown yet) and
   * records it in the watched view. Resolves with the live claim, or undefined.
   */
  async lookup(agent: string): Promise<ClaimRecord | undefined> {
    this.#assertOpen();
    let entry: KvEntry | null;
    try {
      entry = await this.#kv.get(this.#subjects.claimKey(agent));
    } catch (e) {
      throw unavailable(`look up "${agent}"`, e);
    }
    if (entry === null) return undefined;
    this.#apply(this.#seen, entry);
    const seen = this.#seen.get(agent);
    if (seen?.claim === undefined || Math.min(seen.created, seen.claim.ts) + seen.claim.leaseMs <= this.#now()) return undefined;
    const { node, capabilities, trust } = seen.claim;
    return { agent, node, capabilities, trust };
  }

  /** Calls `listener` after each change {@link watch} sees; returns the function that stops it. */
  onChange(listener: () => void): () => void {
    this.#changes.add(listener);
    return () => this.#changes.delete(listener);
  }

  async #readAll(into: Map<string, Seen>): Promise<void> {
    // The stream's subject counts name every key in one request (the client pages them):
    // no consumer whose end must be detected, which could miss it under concurrent writes.
    const prefix = `$KV.${this.#subjects.claimsBucket()}.`;
    let keys: string[];
    try {
      const info = await this.#jsm.streams.info(`KV_${this.#subjects.claimsBucket()}`, { subjects_filter: `${prefix}>` });
      keys = Object.keys(info.state.subjects ?? {})
        .filter((s) => s.startsWith(prefix))
        .map((s) => s.slice(prefix.length));
    } catch (e) {
      throw unavailable('list agents', e);
    }
    const entries = await Promise.all(keys.map((k) => this.#kv.get(k).catch(() => null)));
    for (const entry of entries) if (entry !== null) this.#apply(into, entry);
  }

  /** Records `entry` unless a newer revision of its key is already known. */
  #apply(into: Map<string, Seen>, entry: KvEntry): void {
    let agent: string;
    try {
      agent = unescapeToken(entry.key);
    } catch {
      return;
    }
    const known = into.get(agent);
    if (known !== undefined && known.revision >= entry.revision) return;
    const claim = entry.operation === 'PUT' ? this.#read(agent, entry) : undefined;
    if (this.#trust !== undefined && entry.operation === 'PUT' && claim === undefined && known?.claim !== undefined) {
      // A claim that does not verify is ignored: the last valid claim stands, its lease still
      // counted from its own write.
      into.set(agent, { ...known, revision: entry.revision });
      return;
    }
    into.set(agent, { revision: entry.revision, claim, created: entry.created.getTime() });
  }

  /**
   * After the watch saw `entry`: when it is a key this node holds and no longer this node's
   * current claim (deleted, overwritten by a claim that does not verify, or by an older claim
   * of this node written back), renews now rather than at the next renewal: the renewal
   * claims it again, or finds a valid takeover and reports it.
   */
  #reclaimIfGone(entry: KvEntry): void {
    if (this.#closed || this.#held.size === 0) return;
    let agent: string;
    try {
      agent = unescapeToken(entry.key);
    } catch {
      return;
    }
    const held = this.#held.get(agent);
    if (held === undefined || entry.revision <= held.revision) return;
    // This node's own write (seen before its answer), or its current claim written again.
    if (entry.operation === 'PUT' && (sameBytes(entry.value, held.value) || (held.writing !== undefined && sameBytes(entry.value, held.writing)))) return;
    // Anything else: deleted, a claim that does not verify, or an older claim of this node
    // written back (a replay, whose old time would make peers think the lease ran out).
    // (Another node's valid claim is a takeover: the renewal finds it and reports it lost.)
    void this.renew().catch(() => {});
  }

  #liveIn(seen: Map<string, Seen>): ClaimRecord[] {
    const now = this.#now();
    const out: ClaimRecord[] = [];
    for (const { claim, created } of seen.values()) {
      if (claim !== undefined && Math.min(created, claim.ts) + claim.leaseMs > now) out.push({ agent: claim.agent, node: claim.node, capabilities: claim.capabilities, trust: claim.trust });
    }
    return out.sort((a, b) => (a.agent < b.agent ? -1 : a.agent > b.agent ? 1 : 0));
  }

  /** Stops renewing and releases every claim this node holds. */
  async close(): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#timer);
    this.#watcher?.stop();
    await Promise.allSettled([...this.#held.keys()].map((a) => this.release(a)));
    this.#closed = true;
  }

  /** Stops renewing without releasing (what a crash looks like to the others; for tests). */
  abandon(): void {
    clearInterval(this.#timer);
    this.#watcher?.stop();
    this.#held.clear();
    this.#closed = true;
  }

  #alive(entry: KvEntry, claim: ReadClaim): boolean {
    return Math.min(entry.created.getTime(), claim.ts) + claim.leaseMs > this.#now();
  }

  /** A claim as this node believes it, or undefined (unreadable, unsigned or not the roster's). */
  #read(agent: string, entry: KvEntry): ReadClaim | undefined {
    return readClaim(agent, entry, this.#subjects.bus, this.#trust?.roster);
  }

  #assertOpen(): void {
    if (this.#closed) throw new BusError('CLOSED', 'the claims of this node are closed');
  }
}

/**
 * A claim written by a peer: hostile until it parses and, with a roster, until its signature
 * verifies under the key of the node it names and that node may serve `agent` (the key of
 * the entry). The node is the signer's; a claim naming another node than its signer does not
 * verify.
 */
function readClaim(agent: string, entry: KvEntry, bus: string, roster: RosterIndex | undefined): ReadClaim | undefined {
  if (entry.value.byteLength > MAX_VALUE_BYTES) return undefined;
  let v: unknown;
  try {
    v = entry.json();
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const { v: version, node, agent: named, capabilities, trust, leaseMs, ts, sig } = v as Record<string, unknown>;
  if (typeof node !== 'string' || !AGENT_ID_PATTERN.test(node)) return undefined;
  if (!Array.isArray(capabilities) || capabilities.length > 256 || !capabilities.every((c) => typeof c === 'string' && c.length > 0 && c.length <= 128)) return undefined;
  if (typeof trust !== 'number' || !Number.isFinite(trust)) return undefined;
  if (typeof leaseMs !== 'number' || !Number.isInteger(leaseMs) || leaseMs < 150 || leaseMs > 3_600_000) return undefined;
  const stamped = typeof ts === 'number' && Number.isSafeInteger(ts) ? ts : Infinity;
  if (roster !== undefined) {
    if (version !== 2 || named !== agent || stamped === Infinity || typeof sig !== 'string') return undefined;
    const key = roster.verifier(node);
    if (key === undefined || !roster.mayServe(node, agent)) return undefined;
    const body = JSON.stringify({ v: 2, node, agent, capabilities, trust, leaseMs, ts: stamped });
    if (!verifySignature(key, utf8.encode(`${CLAIM_DOMAIN}\n${bus}\n${body}`), Buffer.from(sig, 'base64'))) return undefined;
  }
  return { agent, node, capabilities: Object.freeze([...(capabilities as string[])]), trust, leaseMs, ts: stamped };
}

function isWrongSequence(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === 10071 || code === 10164 || /wrong last sequence/i.test(String((e as Error)?.message ?? ''));
}

function unavailable(what: string, cause: unknown): BusError {
  return toBusError(cause, 'TRANSPORT_UNAVAILABLE', undefined, `${what}: the claims bucket cannot be reached: `);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}
