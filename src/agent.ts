import type { Contracts, InputOf, IntentsOf, OutputOf } from './contracts.js';
import { BusError, describe, toBusError } from './errors.js';
import type { HandlerFor, Handler, Job, NotifyOptions, NotifyReceipt, SendInput, Sender, SendOptions } from './types.js';
import type { AgentRecord } from './pipeline/records.js';
import { freezeClass } from './frozen.js';

/** What a handle may ask of the bus: its sends and discovery, always as its own record. @internal */
export interface AgentPort {
  request(sender: AgentRecord, type: 'ask' | 'delegate', to: unknown, intent: unknown, payload: unknown, options: unknown, parent: undefined): Job;
  notify(sender: AgentRecord, intent: unknown, payload: unknown, options: unknown, parent: undefined): Promise<NotifyReceipt>;
  reply(sender: AgentRecord, inReplyTo: unknown, payload: unknown): Promise<void>;
  discover(from: AgentRecord, capability: string): string[];
}

const SEND_KEYS: ReadonlySet<string> = new Set(['type', 'to', 'intent', 'payload', 'from', 'timeoutMs', 'signal', 'priority', 'inReplyTo']);

/**
 * An agent's handle: the only way to send as that agent. `from` is always this handle's
 * id; it holds no reference to any other agent. Get one from `bus.register()`.
 *
 * @example
 * const research = bus.register('research');
 * const answer = await research.ask('writer', 'clarify', { q: 'Which audience?' });
 */
// `any` as the default so a typed handle fits where `Agent` is expected (see Orchestrator).
export class Agent<C extends Contracts = any> implements Sender<C> {
  // True private fields: an agent (or the LLM driving it) cannot reach the bus's internals.
  readonly #record: AgentRecord;
  readonly #port: AgentPort;

  /** @internal Handles come from `Orchestrator#register()`. */
  constructor(record: AgentRecord, port: AgentPort) {
    this.#record = record;
    this.#port = port;
    Object.freeze(this);
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
    return this.#port.request(this.#record, 'ask', to, intent, payload, options, undefined) as Promise<OutputOf<C, K>>;
  }

  delegate<K extends IntentsOf<C, 'delegate'>>(to: string, intent: K, payload: InputOf<C, K>, options?: SendOptions): Job<OutputOf<C, K>> {
    return this.#port.request(this.#record, 'delegate', to, intent, payload, options, undefined) as Job<OutputOf<C, K>>;
  }

  notify<K extends IntentsOf<C, 'notify'>>(intent: K, payload: InputOf<C, K>, options?: NotifyOptions): Promise<NotifyReceipt> {
    return this.#port.notify(this.#record, intent, payload, options, undefined);
  }

  /**
   * The generic form of every send. The message is read once (each own key, once) into a
   * plain snapshot before anything is checked. A `from` key is refused unless it is this
   * agent's own id: the sender is always the handle.
   */
  send(message: SendInput): Promise<unknown> {
    let m: Record<string, unknown>;
    try {
      m = readMessage(message);
    } catch (error) {
      return Promise.reject(toBusError(error, 'INVALID_ARGUMENT', undefined, 'send(): cannot read the message: '));
    }
    if (m.from !== undefined && m.from !== this.#record.id) {
      return Promise.reject(new BusError('INVALID_ARGUMENT', `send(): "from" cannot be set; messages from this handle are always from ${this.#record.id}`));
    }
    const { type, to, intent, payload } = m;
    switch (type) {
      case 'ask':
      case 'delegate': {
        if (m.inReplyTo !== undefined) return Promise.reject(new BusError('INVALID_ARGUMENT', `send(): inReplyTo is only for a reply`));
        const options: Record<string, unknown> = {};
        if ('timeoutMs' in m) options.timeoutMs = m.timeoutMs;
        if ('signal' in m) options.signal = m.signal;
        if ('priority' in m) options.priority = m.priority;
        return this.#port.request(this.#record, type, to, intent, payload, options, undefined);
      }
      case 'notify': {
        if (m.timeoutMs !== undefined || m.signal !== undefined || m.inReplyTo !== undefined) {
          return Promise.reject(new BusError('INVALID_ARGUMENT', `send(): a notify takes to, intent, payload and priority only`));
        }
        const options: Record<string, unknown> = {};
        if (to !== undefined) options.to = typeof to === 'string' ? [to] : to;
        if (m.priority !== undefined) options.priority = m.priority;
        return this.#port.notify(this.#record, intent, payload, options, undefined);
      }
      case 'reply':
        return this.#port.reply(this.#record, m.inReplyTo, payload);
      default:
        return Promise.reject(new BusError('INVALID_ARGUMENT', `send(): type must be ask, delegate, notify or reply, got ${describe(type)}`));
    }
  }

  /**
   * Answers a pending ask or delegate addressed to this agent, from inside or outside its
   * handler. The handler's own return value is then ignored. Rejects with INVALID_REPLY
   * for a message that is not this agent's to answer, unknown, settled or expired.
   */
  reply(inReplyTo: string, payload: unknown): Promise<void> {
    return this.#port.reply(this.#record, inReplyTo, payload);
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
    return this.#port.discover(this.#record, capability);
  }

  /** Keeps `console.log(handle)` from listing anything but the id. */
  toJSON(): { id: string; alive: boolean } {
    return { id: this.id, alive: this.alive };
  }
}

// Frozen: a handler holding one handle cannot patch the methods every other handle calls.
freezeClass(Agent);

/** A send's message, each own key read once into a null-prototype snapshot; unknown keys refused. */

function readMessage(message: unknown): Record<string, unknown> {
  if (typeof message !== 'object' || message === null) {
    throw new BusError('INVALID_ARGUMENT', `send(message): expected an object, got ${describe(message)}`);
  }
  const m: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const key of Object.keys(message)) {
    if (!SEND_KEYS.has(key)) throw new BusError('INVALID_ARGUMENT', `send(): unknown key "${key}" (expected ${[...SEND_KEYS].join(', ')})`);
    m[key] = (message as Record<string, unknown>)[key];
  }
  return m;
}
