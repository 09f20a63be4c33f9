import type { Envelope } from './envelope.js';
import type { HandlerContext, NotifyOptions, NotifyReceipt, SendOptions } from './handler.js';
import type { Delivery, Job } from './request.js';
import type { Router } from './router.js';

/** The `ctx` a handler gets: sends inside the chain, progress, signal. */
export class Context implements HandlerContext {
  constructor(
    private readonly router: Router,
    private readonly delivery: Delivery,
  ) {}

  get message(): Envelope {
    return this.delivery.envelope;
  }

  get agentId(): string {
    return this.delivery.recipient.id;
  }

  get signal(): AbortSignal {
    return this.delivery.signal;
  }

  progress(fraction: number, note?: string): void {
    this.router.progress(this.delivery, fraction, note);
  }

  ask(to: string, intent: string, payload: unknown, options?: SendOptions): Promise<never> {
    return this.router.request(this.delivery.recipient, 'ask', to, intent, payload, options, this.delivery) as unknown as Promise<never>;
  }

  delegate(to: string, intent: string, payload: unknown, options?: SendOptions): Job<never> {
    return this.router.request(this.delivery.recipient, 'delegate', to, intent, payload, options, this.delivery) as unknown as Job<never>;
  }

  notify(intent: string, payload: unknown, options?: NotifyOptions): Promise<NotifyReceipt> {
    return this.router.notify(this.delivery.recipient, intent, payload, options, this.delivery);
  }
}

