import type { Expirable } from './deadlines.js';
import type { Envelope } from './envelope.js';
import type { BusError } from './errors.js';
import type { MailboxJob } from './mailbox.js';
import type { AgentRecord } from './registry.js';

/** A progress report from a delegate's handler. */
export interface Progress {
  /** From 0 to 1. */
  readonly fraction: number;
  readonly note?: string;
}

/**
 * A delegate in flight: a promise of the handler's result that can also report progress
 * and be cancelled.
 */
export interface Job<T = unknown> extends Promise<T> {
  /** The delegate's message id. */
  readonly id: string;
  /** Calls `listener` on every progress report; returns the job for chaining. */
  onProgress(listener: (progress: Progress) => void): Job<T>;
  /** Rejects the job with CANCELLED and aborts the handler's `ctx.signal`. */
  cancel(reason?: string): void;
}

/** What the router keeps for an ask or delegate until it is answered or given up. */
export class PendingRequest implements Expirable {
  deadline: number;
  heapIndex = -1;
  /** held: awaiting approval; pending: delivered or about to be; settled: done, whatever the outcome. */
  state: 'held' | 'pending' | 'settled' = 'pending';
  /** Answered through `reply()`, so the handler's return value is ignored. */
  repliedExplicitly = false;
  delivery: Delivery | undefined;
  progressListeners: ((progress: Progress) => void)[] | undefined;

  constructor(
    readonly envelope: Envelope,
    readonly sender: AgentRecord,
    readonly recipient: AgentRecord,
    readonly timeoutMs: number,
    readonly resolve: (value: unknown) => void,
    readonly reject: (error: BusError) => void,
    /** Where the call was made (with `diagnostics.callSites`), so a TIMEOUT's stack points at the caller. */
    readonly callSite: { stack?: string } | undefined,
  ) {
    this.deadline = envelope.deadline!;
  }
}

/**
 * One message on its way into one handler: a mailbox job, and the node of the causal
 * chain its handler's own sends hang from (for reentrancy and chained deadlines).
 */
export class Delivery implements MailboxJob {
  withdrawn = false;
  /** Committed to the audit log and put in the recipient's mailbox. */
  handedOver = false;
  started = false;
  finished = false;
  private controller: AbortController | undefined;
  private abortReason: BusError | undefined;

  constructor(
    readonly envelope: Envelope,
    readonly recipient: AgentRecord,
    readonly pending: PendingRequest | undefined,
    /** The delivery whose handler sent this message, when sent from inside a handler. */
    readonly parent: Delivery | undefined,
    readonly execute: (delivery: Delivery) => Promise<void>,
  ) {}

  get priority(): Envelope['priority'] {
    return this.envelope.priority;
  }

  run(): Promise<void> {
    return this.execute(this);
  }

  /** The handler's signal, created on first use: most handlers never read it. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.abortReason !== undefined) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  abort(reason: BusError): void {
    if (this.abortReason !== undefined) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }

  get aborted(): boolean {
    return this.abortReason !== undefined;
  }

  /** True when this chain already runs a handler of `agentId` that is waiting on it. */
  chainPassesThrough(agentId: string): boolean {
    for (let d: Delivery | undefined = this; d !== undefined; d = d.parent) {
      if (d.recipient.id === agentId && d.started && !d.finished) return true;
    }
    return false;
  }
}
