import type { Envelope } from '../envelope.js';
import type { HandlerContext, Job, NotifyOptions, NotifyReceipt, SendOptions } from '../types.js';
import type { AgentRecord, Delivery } from './records.js';
import { freezeClass } from '../frozen.js';

/** What a handler's ctx may ask of the pipeline: sends inside its chain, and progress. */
export interface ChainPort {
  request(sender: AgentRecord, type: 'ask' | 'delegate', to: unknown, intent: unknown, payload: unknown, options: unknown, parent: Delivery | undefined): Job;
  notify(sender: AgentRecord, intent: unknown, payload: unknown, options: unknown, parent: Delivery | undefined): Promise<NotifyReceipt>;
  progress(delivery: Delivery, fraction: unknown, note: unknown): void;
}

/**
 * The `ctx` a handler gets: a face over the pipeline's port. It holds `#private` fields
 * only, so nothing reachable from it (properties, prototype, symbols) leads to the
 * pipeline, the registry, another agent or a pending request.
 */
export class Context implements HandlerContext {
  readonly #port: ChainPort;
  readonly #delivery: Delivery;

  constructor(port: ChainPort, delivery: Delivery) {
    this.#port = port;
    this.#delivery = delivery;
    Object.freeze(this);
  }

  get message(): Envelope {
    return this.#delivery.envelope;
  }

  get agentId(): string {
    return this.#delivery.recipient.id;
  }

  get signal(): AbortSignal {
    return this.#delivery.signal;
  }

  progress(fraction: number, note?: string): void {
    this.#port.progress(this.#delivery, fraction, note);
  }

  ask(to: string, intent: string, payload: unknown, options?: SendOptions): Promise<never> {
    return this.#port.request(this.#delivery.recipient, 'ask', to, intent, payload, options, this.#delivery) as unknown as Promise<never>;
  }

  delegate(to: string, intent: string, payload: unknown, options?: SendOptions): Job<never> {
    return this.#port.request(this.#delivery.recipient, 'delegate', to, intent, payload, options, this.#delivery) as unknown as Job<never>;
  }

  notify(intent: string, payload: unknown, options?: NotifyOptions): Promise<NotifyReceipt> {
    return this.#port.notify(this.#delivery.recipient, intent, payload, options, this.#delivery);
  }

  /** Keeps `console.log(ctx)` to what the handler may know. */
  toJSON(): { agentId: string; messageId: string } {
    return { agentId: this.agentId, messageId: this.message.id };
  }
}

// Frozen: a handler cannot patch `ask` on the prototype that every other ctx shares.
freezeClass(Context);
