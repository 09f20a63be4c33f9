import type { AnyContracts, Contracts, InputOf, IntentsOf, OutputOf } from './contracts.js';
import { BusError } from './errors.js';
import type { HandlerFor, NotifyOptions, NotifyReceipt, SendInput, Sender, SendOptions } from './handler.js';
import type { AgentRecord, Handler } from './registry.js';
import type { Job } from './request.js';
import { describe } from './describe.js';
import type { Router } from './router.js';

/** What the handle needs from the orchestrator beyond the router. */
export interface AgentHooks {
  discover(from: AgentRecord, capability: string): string[];
}

/**
 * An agent's handle: the only way to send as that agent. `from` is always this handle's
 * id; it holds no reference to any other agent. Get one from `bus.register()`.
 *
 * @example
 * const research = bus.register('research');
 * const answer = await research.ask('writer', 'clarify', { q: 'Which audience?' });
 */
export class Agent<C extends Contracts = AnyContracts> implements Sender<C> {
  // True private fields: an agent (or the LLM driving it) cannot reach the bus's internals.
  readonly #record: AgentRecord;
  readonly #router: Router;
  readonly #hooks: AgentHooks;

  /** @internal Handles come from `Orchestrator#register()`. */
  constructor(record: AgentRecord, router: Router, hooks: AgentHooks) {
    this.#record = record;
    this.#router = router;
    this.#hooks = hooks;
  }

  /** This agent's id. */
  get id(): string {
    return this.#record.id;
  }

  /** False once the agent was unregistered: a dead handle stays dead, even if the id returns. */
  get alive(): boolean {
    return this.#record.alive;
  }

  ask<K extends IntentsOf<C, 'ask'>>(to: string, intent: K, payload: InputOf<C, K>, options?: SendOptions): Promise<OutputOf<C, K>> {
    return this.#router.request(this.#record, 'ask', to, intent, payload, options, undefined) as Promise<OutputOf<C, K>>;
  }

  delegate<K extends IntentsOf<C, 'delegate'>>(to: string, intent: K, payload: InputOf<C, K>, options?: SendOptions): Job<OutputOf<C, K>> {
    return this.#router.request(this.#record, 'delegate', to, intent, payload, options, undefined) as Job<OutputOf<C, K>>;
  }

  notify<K extends IntentsOf<C, 'notify'>>(intent: K, payload: InputOf<C, K>, options?: NotifyOptions): Promise<NotifyReceipt> {
    return this.#router.notify(this.#record, intent, payload, options, undefined);
  }

  /**
   * The generic form of every send. A `from` key is refused unless it is this agent's own
   * id: the sender is always the handle.
   */
  send(message: SendInput): Promise<unknown> {
    if (typeof message !== 'object' || message === null) {
      return Promise.reject(new BusError('INVALID_ARGUMENT', `send(message): expected an object, got ${describe(message)}`));
    }
    const m = message as SendInput & { from?: unknown };
    try {
      if (m.from !== undefined && m.from !== this.#record.id) {
        return Promise.reject(new BusError('INVALID_ARGUMENT', `send(): "from" cannot be set; messages from this handle are always from ${this.#record.id}`));
      }
      return this.#dispatch(m);
    } catch (error) {
      return Promise.reject(error instanceof BusError ? error : new BusError('INVALID_ARGUMENT', `send(): cannot read the message: ${(error as Error)?.message ?? String(error)}`, { cause: error }));
    }
  }

  #dispatch(m: SendInput): Promise<unknown> {
    switch (m.type) {
      case 'ask':
      case 'delegate': {
        // `from` was checked above; the router refuses any other unknown key.
        const { to, intent, payload, type, from: _from, ...options } = m as typeof m & { from?: unknown };
        return this.#router.request(this.#record, type, to, intent, payload, options, undefined);
      }
      case 'notify': {
        const to = m.to === undefined ? undefined : typeof m.to === 'string' ? [m.to] : m.to;
        const options: NotifyOptions = {};
        if (to !== undefined) options.to = to;
        if (m.priority !== undefined) options.priority = m.priority;
        return this.#router.notify(this.#record, m.intent, m.payload, options, undefined);
      }
      case 'reply':
        return this.#router.reply(this.#record, m.inReplyTo, m.payload);
      default:
        return Promise.reject(
          new BusError('INVALID_ARGUMENT', `send(): type must be ask, delegate, notify or reply, got ${describe((m as { type?: unknown }).type)}`),
        );
    }
  }

  /**
   * Answers a pending ask or delegate addressed to this agent, from inside or outside its
   * handler. The handler's own return value is then ignored. Rejects with INVALID_REPLY
   * for a message that is not this agent's to answer, unknown, settled or expired.
   */
  reply(inReplyTo: string, payload: unknown): Promise<void> {
    return this.#router.reply(this.#record, inReplyTo, payload);
  }

  /** Adds or replaces the handler of one intent; `'*'` takes every intent without its own. */
  handle<K extends (keyof C & string) | '*'>(intent: K, handler: K extends '*' ? Handler : HandlerFor<C, K>): this {
    if (!this.#record.alive) throw new BusError('UNKNOWN_AGENT', `${this.#record.id}'s handle is dead: it was unregistered`, { agentId: this.#record.id });
    if (typeof intent !== 'string' || intent.length === 0) throw new BusError('INVALID_ARGUMENT', `handle(intent): expected a non-empty string, got ${describe(intent)}`);
    if (typeof handler !== 'function') throw new BusError('INVALID_ARGUMENT', `handle("${intent}", handler): handler must be a function, got ${describe(handler)}`);
    this.#record.handlers.set(intent, handler as Handler);
    return this;
  }

  /** Ids of the agents with `capability` that this agent may ask or delegate to under the current policy. */
  discover(capability: string): string[] {
    if (typeof capability !== 'string' || capability.length === 0) {
      throw new BusError('INVALID_ARGUMENT', `discover(capability): expected a non-empty string, got ${describe(capability)}`);
    }
    return this.#hooks.discover(this.#record, capability);
  }

  /** Keeps `console.log(handle)` from listing anything but the id. */
  toJSON(): { id: string; alive: boolean } {
    return { id: this.id, alive: this.alive };
  }
}
