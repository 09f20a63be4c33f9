/**
 * Where every agent of the bus lives, answered synchronously from the claims bucket as the
 * node's watch last saw it. The view is rebuilt lazily: after a change the watch reported, or
 * once the first claim in it runs out of lease (so a dead node's agents vanish on their own,
 * with no write to the bucket).
 */
import type { RemoteAgent } from '../pipeline/transport.js';
import type { ClaimRecord } from './claims.js';

const NONE: readonly RemoteAgent[] = Object.freeze([]);

/** The source of the view: a {@link Claims} in practice. */
export interface ClaimsView {
  view(): { claims: ClaimRecord[]; until: number };
}

/** The live claims of every node, indexed by agent id. */
export class Directory {
  readonly #source: ClaimsView;
  readonly #node: string;
  readonly #now: () => number;
  #byAgent = new Map<string, RemoteAgent>();
  #remote: readonly RemoteAgent[] = NONE;
  #until = -Infinity;
  #dirty = true;

  /** `node` is this node: its own claims are not remote. */
  constructor(source: ClaimsView, node: string, now: () => number = Date.now) {
    this.#source = source;
    this.#node = node;
    this.#now = now;
  }

  /** Marks the view stale (call on every change the watch reports). */
  invalidate(): void {
    this.#dirty = true;
  }

  /** The live claim of `agent` by any node (this one included), or undefined. */
  get(agent: string): RemoteAgent | undefined {
    this.#fresh();
    return this.#byAgent.get(agent);
  }

  /** The node holding `agent` when it is another node, else undefined. */
  remoteNodeOf(agent: string): string | undefined {
    const found = this.get(agent);
    return found === undefined || found.node === this.#node ? undefined : found.node;
  }

  /** Every agent claimed by another node, sorted by id (the same frozen empty array when none). */
  remote(): readonly RemoteAgent[] {
    this.#fresh();
    return this.#remote;
  }

  #fresh(): void {
    if (!this.#dirty && this.#now() < this.#until) return;
    const { claims, until } = this.#source.view();
    const byAgent = new Map<string, RemoteAgent>();
    const remote: RemoteAgent[] = [];
    claims.sort((a, b) => (a.agent < b.agent ? -1 : a.agent > b.agent ? 1 : 0));
    for (const c of claims) {
      const agent: RemoteAgent = Object.freeze({ id: c.agent, node: c.node, capabilities: c.capabilities, trust: c.trust });
      byAgent.set(c.agent, agent);
      if (c.node !== this.#node) remote.push(agent);
    }
    this.#byAgent = byAgent;
    this.#remote = remote.length === 0 ? NONE : Object.freeze(remote);
    this.#until = until;
    this.#dirty = false;
  }
}
