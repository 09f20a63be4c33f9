/**
 * One node's NATS connection: connects with `@nats-io/transport-node`, reconnects by itself
 * for ever, and tracks whether it is up so that a cross-node send while it is down fails at
 * once with `TRANSPORT_UNAVAILABLE` (never buffered by the client, never left to time out).
 */
import { connect, nkeyAuthenticator, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { BusError } from '../errors.js';

/** How to reach the broker. */
export interface ConnectionOptions {
  /** One URL (`nats://127.0.0.1:4222`) or a list. */
  servers: string | readonly string[];
  /** The node's nkey seed (`SU…`), as written by `switchboard nats-config`. */
  nkeySeed?: string | Uint8Array;
  /** The private prefix of the node's reply inboxes (from {@link Subjects.inboxPrefix}). */
  inboxPrefix: string;
  /** A name the server shows for this client. */
  name?: string;
  /** Give up connecting the first time after this many ms. @default 5000 */
  connectTimeoutMs?: number;
}

/** A publish or subscription the broker refused for lack of permission. */
export interface Refusal {
  readonly operation: 'publish' | 'subscription';
  readonly subject: string;
  readonly queue?: string;
}

/** A connection and its health, as the link and the claims use it. */
export class NodeConnection {
  readonly nc: NatsConnection;
  #up = true;
  #listeners = new Set<(up: boolean) => void>();
  #refusals = new Set<(refusal: Refusal) => void>();

  private constructor(nc: NatsConnection) {
    this.nc = nc;
    void this.#watch();
  }

  /**
   * Connects, or rejects with `TRANSPORT_UNAVAILABLE` naming the servers when the broker
   * cannot be reached (or refuses the credentials).
   */
  static async open(options: ConnectionOptions): Promise<NodeConnection> {
    const servers = typeof options.servers === 'string' ? [options.servers] : [...options.servers];
    if (servers.length === 0 || servers.some((s) => typeof s !== 'string' || s === '')) {
      throw new BusError('INVALID_ARGUMENT', `servers must be a URL or a non-empty list of URLs, got ${JSON.stringify(options.servers)}`);
    }
    const seed = typeof options.nkeySeed === 'string' ? new TextEncoder().encode(options.nkeySeed.trim()) : options.nkeySeed;
    try {
      const nc = await connect({
        servers,
        inboxPrefix: options.inboxPrefix,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        timeout: options.connectTimeoutMs ?? 5_000,
        noEcho: false,
        ...(options.name === undefined ? {} : { name: options.name }),
        ...(seed === undefined ? {} : { authenticator: nkeyAuthenticator(seed) }),
      });
      return new NodeConnection(nc);
    } catch (cause) {
      throw new BusError('TRANSPORT_UNAVAILABLE', `cannot connect to NATS at ${servers.join(', ')}: ${(cause as Error).message}`, { cause });
    }
  }

  /** True while the connection is established. */
  get up(): boolean {
    return this.#up && !this.nc.isClosed();
  }

  /** Throws `TRANSPORT_UNAVAILABLE` unless the connection is up. `what` names the send. */
  assertUp(what: string): void {
    if (!this.up) throw new BusError('TRANSPORT_UNAVAILABLE', `${what}: the NATS connection is down (reconnecting); cross-node sends fail until it is back`);
  }

  /** Calls `listener(up)` on every change; returns the function that stops it. */
  onChange(listener: (up: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Calls `listener` for each publish or subscription the broker refused (permissions). */
  onRefused(listener: (refusal: Refusal) => void): () => void {
    this.#refusals.add(listener);
    return () => this.#refusals.delete(listener);
  }

  /** Drains subscriptions and closes. */
  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    try {
      await this.nc.drain();
    } catch {
      await this.nc.close();
    }
  }

  async #watch(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnecting' || s.type === 'staleConnection') this.#set(false);
      else if (s.type === 'reconnect') this.#set(true);
      else if (s.type === 'close') this.#set(false);
      else if (s.type === 'error' && s.error instanceof PermissionViolationError) {
        const refusal: Refusal = { operation: s.error.operation, subject: s.error.subject, ...(s.error.queue === undefined ? {} : { queue: s.error.queue }) };
        for (const l of this.#refusals) l(refusal);
      }
    }
  }

  #set(up: boolean): void {
    if (this.#up === up) return;
    this.#up = up;
    for (const l of this.#listeners) l(up);
  }
}
