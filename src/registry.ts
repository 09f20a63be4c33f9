import type { HandlerContext } from './handler.js';
import type { TokenBucket } from './limits.js';
import type { Mailbox } from './mailbox.js';
import type { Delivery, PendingRequest } from './request.js';

/** A message handler: gets the payload and a context, returns the reply (ask, delegate). */
export type Handler<In = unknown, Out = unknown> = (payload: In, ctx: HandlerContext) => Out | Promise<Out>;

/** Everything the bus keeps about one registered agent. Never handed to other agents. */
export interface AgentRecord {
  readonly id: string;
  readonly handlers: Map<string, Handler>;
  readonly mailbox: Mailbox;
  /** Undefined when the agent's rate limit is off. */
  readonly bucket: TokenBucket | undefined;
  readonly capabilities: readonly string[];
  readonly trust: number;
  /** False once unregistered: its handle is dead for good. */
  alive: boolean;
  /** Asks and delegates this agent sent that await a reply. */
  readonly outgoing: Set<PendingRequest>;
  /** Asks and delegates addressed to this agent that await its reply. */
  readonly incoming: Set<PendingRequest>;
  /** Every delivery to this agent not yet finished, queued or running (aborted on unregister/close). */
  readonly deliveries: Set<Delivery>;
}

/** The public view of an agent: `bus.agents()`. */
export interface AgentInfo {
  readonly id: string;
  readonly capabilities: readonly string[];
  readonly trust: number;
}
