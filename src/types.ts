import type { AnyContracts, Contracts, InputOf, IntentsOf, OutputOf, PayloadOf } from './contracts.js';
import type { Envelope, Priority } from './envelope.js';

// The public API types of sends, handlers and their ctx. Types only: no code lives here.

/** A message handler: gets the payload and a context, returns the reply (ask, delegate). */
export type Handler<In = unknown, Out = unknown> = (payload: In, ctx: HandlerContext) => Out | Promise<Out>;

/** The public view of an agent: `bus.agents()`. */
export interface AgentInfo {
  readonly id: string;
  readonly capabilities: readonly string[];
  readonly trust: number;
  /** The node serving it, when the bus has a transport and the agent is on another node. */
  readonly node?: string;
}

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

/** Options of an ask or delegate. */
export interface SendOptions {
  /** Deadline in ms from now. @default timeouts.askMs / timeouts.delegateMs (30 s) */
  timeoutMs?: number;
  /** Aborting it cancels the request (CANCELLED), like `job.cancel()`. */
  signal?: AbortSignal;
  /** Place in the recipient's mailbox. @default 'normal' */
  priority?: Priority;
}

/** Options of a notify. */
export interface NotifyOptions {
  /** Recipients; omitted, every other registered agent (each still needs a rule). */
  to?: readonly string[];
  /** @default 'normal' */
  priority?: Priority;
}

/** What a notify did, recipient by recipient (agent ids). */
export interface NotifyReceipt {
  /** The notify's message id (every recipient's envelope carries it). */
  readonly id: string;
  /** Committed to the audit log and put in the recipient's mailbox. */
  readonly delivered: readonly string[];
  /** Refused by policy. */
  readonly denied: readonly string[];
  /** Held for a human decision. */
  readonly pending: readonly string[];
  /** Refused at delivery: no handler, mailbox full, not registered. */
  readonly failed: readonly string[];
}

/** The generic form of a send: `agent.send({ to, type, intent, payload, … })`. */
export type SendInput =
  | ({ type: 'ask' | 'delegate'; to: string; intent: string; payload?: unknown } & SendOptions)
  | ({ type: 'notify'; to?: string | readonly string[]; intent: string; payload?: unknown } & Omit<NotifyOptions, 'to'>)
  | { type: 'reply'; inReplyTo: string; payload?: unknown };

/** What an agent can send; the handle and a handler's `ctx` both offer it. */
export interface Sender<C extends Contracts = AnyContracts> {
  /** Asks `to` and resolves with its reply. */
  ask<K extends IntentsOf<C, 'ask'>>(to: string, intent: K, payload: InputOf<C, K>, options?: SendOptions): Promise<OutputOf<C, K>>;
  /** Assigns a subtask to `to`; the job resolves with its result and reports progress. */
  delegate<K extends IntentsOf<C, 'delegate'>>(to: string, intent: K, payload: InputOf<C, K>, options?: SendOptions): Job<OutputOf<C, K>>;
  /** Tells every other agent (or `options.to`); resolves with a receipt once delivered. */
  notify<K extends IntentsOf<C, 'notify'>>(intent: K, payload: InputOf<C, K>, options?: NotifyOptions): Promise<NotifyReceipt>;
}

/**
 * What a handler gets beside the payload. Its `ask`, `delegate` and `notify` send as this
 * agent inside the chain: same conversation, `causationId` = this message, `depth + 1`,
 * and a deadline no later than the one that remains.
 */
export interface HandlerContext<C extends Contracts = AnyContracts> extends Sender<C> {
  /** The message being handled. */
  readonly message: Envelope;
  /** The id of the agent handling it. */
  readonly agentId: string;
  /** Aborts when the sender's deadline passes, it cancels, or the bus closes. */
  readonly signal: AbortSignal;
  /** Reports progress (0..1) to the delegator. Not a message: it is not audited. */
  progress(fraction: number, note?: string): void;
}

/** A typed handler for intent `K` of contracts `C`. */
export type HandlerFor<C extends Contracts, K> = (
  payload: PayloadOf<C, K>,
  ctx: HandlerContext<C>,
) => OutputOf<C, K> | Promise<OutputOf<C, K>>;

/** Handlers by intent; `'*'` takes any intent without its own. */
export type HandlerMap<C extends Contracts = AnyContracts> = {
  [K in keyof C & string]?: HandlerFor<C, K>;
} & { '*'?: (payload: unknown, ctx: HandlerContext<C>) => unknown };
