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
import { Kvm, KvWatchInclude, type KV, type KvEntry } from '@nats-io/kv';
import { BusError, toBusError } from '../errors.js';
import { AGENT_ID_PATTERN } from '../ids.js';
import type { NodeConnection } from './connection.js';
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
}

/** What this node last saw of one key: newer revisions replace older ones. */
interface Seen {
  revision: number;
  claim: (ClaimRecord & { leaseMs: number }) | undefined;
  created: number;
}

interface Held {
  revision: number;
  value: Uint8Array;
}

const MAX_VALUE_BYTES = 64 * 1024;
const utf8 = new TextEncoder();

/**
 * Creates the bucket, or opens it when it exists with the same settings. Two nodes creating
 * it at the same moment can make the server refuse the slower one (nats-server 2.9 answers
 * "subjects overlap" instead of "already exists"): the retry then finds the bucket made.
 */
async function createBucket(kvm: Kvm, bucket: string): Promise<KV> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await kvm.create(bucket, { history: 1, maxValueSize: MAX_VALUE_BYTES });
    } catch (e) {
      if (attempt >= 3 || !isCreateRace(e)) throw e;
      await new Promise((resolve) => setTimeout(resolve, 20 * attempt));
    }
  }
}

/** This node's claims, and the view of everyone's. {@link close} releases them. */
export class Claims {
  readonly #kv: KV;
  readonly #subjects: Subjects;
  readonly #node: string;
  readonly #leaseMs: number;
  readonly #now: () => number;
  readonly #onLost: ((agent: string, holder: string) => void) | undefined;
  readonly #held = new Map<string, Held>();
  readonly #seen = new Map<string, Seen>();
  #watching: Promise<void> | undefined;
  #watcher: { stop(): void } | undefined;
  readonly #changes = new Set<() => void>();
  readonly #timer: NodeJS.Timeout;
  /** The renewal in flight, if any. */
  #renewing: Promise<void> | undefined;
  #closed = false;

  private constructor(kv: KV, options: ClaimsOptions) {
    this.#kv = kv;
    this.#subjects = options.subjects;
    this.#node = options.node;
    this.#leaseMs = options.leaseMs ?? 15_000;
    this.#now = options.now ?? Date.now;
    this.#onLost = options.onLost;
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
    try {
      const kv = await createBucket(new Kvm(options.connection.nc), bucket);
      return new Claims(kv, options);
    } catch (cause) {
      throw new BusError('TRANSPORT_UNAVAILABLE', `cannot open the claims bucket "${bucket}" (JetStream enabled on the server?): ${(cause as Error).message}`, { cause });
    }
  }

  /**
   * Claims `agent` for this node. Rejects with `DUPLICATE_AGENT` naming the holder when a
   * live node holds it; takes over a claim whose lease has run out, or one this node id
   * left behind (a restart).
   */
  async claim(agent: string, info: { capabilities?: readonly string[]; trust?: number } = {}): Promise<void> {
    this.#assertOpen();
    const value = utf8.encode(JSON.stringify({ v: 1, node: this.#node, capabilities: [...(info.capabilities ?? [])], trust: info.trust ?? 0, leaseMs: this.#leaseMs }));
    const key = this.#subjects.claimKey(agent);
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const revision = await this.#kv.create(key, value);
        this.#held.set(agent, { revision, value });
        return;
      } catch (e) {
        if (!isWrongSequence(e)) throw unavailable(`claim "${agent}"`, e);
      }
      const entry = await this.#kv.get(key);
      if (entry === null || entry.operation !== 'PUT') continue;
      const holder = readClaim(agent, entry);
      if (holder !== undefined && holder.node !== this.#node && this.#live(entry, holder.leaseMs)) {
        throw new BusError('DUPLICATE_AGENT', `agent id "${agent}" is already claimed by node "${holder.node}"`, { agentId: agent });
      }
      try {
        const revision = await this.#kv.update(key, value, entry.revision);
        this.#held.set(agent, { revision, value });
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
        try {
          held.revision = await this.#kv.update(key, held.value, held.revision);
        } catch (e) {
          if (!isWrongSequence(e) || this.#held.get(agent) !== held) return;
          const entry = await this.#kv.get(key).catch(() => null);
          // Released or claimed again while this looked: that is the news, not this answer.
          if (this.#held.get(agent) !== held) return;
          const holder = entry === null ? undefined : readClaim(agent, entry);
          if (entry !== null && holder?.node === this.#node) {
            held.revision = entry.revision; // still ours (a write of ours this node had not seen answered)
            return;
          }
          this.#held.delete(agent);
          this.#onLost?.(agent, holder?.node ?? '(released)');
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
      const expires = created + claim.leaseMs;
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
    if (seen?.claim === undefined || seen.created + seen.claim.leaseMs <= this.#now()) return undefined;
    const { node, capabilities, trust } = seen.claim;
    return { agent, node, capabilities, trust };
  }

  /** Calls `listener` after each change {@link watch} sees; returns the function that stops it. */
  onChange(listener: () => void): () => void {
    this.#changes.add(listener);
    return () => this.#changes.delete(listener);
  }

  async #readAll(into: Map<string, Seen>): Promise<void> {
    const keys: string[] = [];
    try {
      for await (const k of await this.#kv.keys()) keys.push(k);
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
    const claim = entry.operation === 'PUT' ? readClaim(agent, entry) : undefined;
    into.set(agent, { revision: entry.revision, claim, created: entry.created.getTime() });
  }

  #liveIn(seen: Map<string, Seen>): ClaimRecord[] {
    const now = this.#now();
    const out: ClaimRecord[] = [];
    for (const { claim, created } of seen.values()) {
      if (claim !== undefined && created + claim.leaseMs > now) out.push({ agent: claim.agent, node: claim.node, capabilities: claim.capabilities, trust: claim.trust });
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

  #live(entry: KvEntry, leaseMs: number): boolean {
    return entry.created.getTime() + leaseMs > this.#now();
  }

  #assertOpen(): void {
    if (this.#closed) throw new BusError('CLOSED', 'the claims of this node are closed');
  }
}

/** A claim written by a peer: hostile until it parses. */
function readClaim(agent: string, entry: KvEntry): (ClaimRecord & { leaseMs: number }) | undefined {
  if (entry.value.byteLength > MAX_VALUE_BYTES) return undefined;
  let v: unknown;
  try {
    v = entry.json();
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const { node, capabilities, trust, leaseMs } = v as Record<string, unknown>;
  if (typeof node !== 'string' || !AGENT_ID_PATTERN.test(node)) return undefined;
  if (!Array.isArray(capabilities) || capabilities.length > 256 || !capabilities.every((c) => typeof c === 'string' && c.length > 0 && c.length <= 128)) return undefined;
  if (typeof trust !== 'number' || !Number.isFinite(trust)) return undefined;
  if (typeof leaseMs !== 'number' || !Number.isInteger(leaseMs) || leaseMs < 150 || leaseMs > 3_600_000) return undefined;
  return { agent, node, capabilities: Object.freeze([...(capabilities as string[])]), trust, leaseMs };
}

/** JetStream's answers to a stream created by someone else at the same moment: "already in use", "subjects overlap". */
function isCreateRace(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === 10058 || code === 10065 || /already in use|subjects overlap/i.test(String((e as Error)?.message ?? ''));
}

function isWrongSequence(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === 10071 || code === 10164 || /wrong last sequence/i.test(String((e as Error)?.message ?? ''));
}

function unavailable(what: string, cause: unknown): BusError {
  return toBusError(cause, 'TRANSPORT_UNAVAILABLE', undefined, `${what}: the claims bucket cannot be reached: `);
}
