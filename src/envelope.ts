/** The message types the bus carries. */
export type MessageType = 'ask' | 'delegate' | 'reply' | 'notify';

/** The types a policy rule can allow or deny (replies need no rule). */
export type RuleType = Exclude<MessageType, 'reply'>;

/** Delivery priority inside a recipient's mailbox. */
export type Priority = 'low' | 'normal' | 'high' | 'critical';

/** Every message type: the one list (audit filters, the stored row's check use it). */
export const MESSAGE_TYPES = ['ask', 'delegate', 'reply', 'notify'] as const satisfies readonly MessageType[];
/** The types a sender starts, which rules name: the one list (policy, contracts, inbound checks, tools use it). */
export const RULE_TYPES = ['ask', 'delegate', 'notify'] as const satisfies readonly RuleType[];
/** Whether `value` is one of {@link RULE_TYPES}. */
export function isRuleType(value: unknown): value is RuleType {
  return value === 'ask' || value === 'delegate' || value === 'notify';
}
export const PRIORITIES: readonly Priority[] = ['low', 'normal', 'high', 'critical'];

/**
 * What handlers, events and logs see of a message. Deep-frozen: nobody can change it
 * after the bus created it.
 */
export interface Envelope<P = unknown> {
  readonly id: string;
  readonly type: MessageType;
  readonly from: string;
  /** The recipient. For a notify, each recipient's envelope names that recipient. */
  readonly to: string;
  readonly intent: string;
  readonly payload: P;
  /** Creation time, epoch ms. */
  readonly ts: number;
  readonly conversationId: string;
  /** The message whose handler sent this one, inside a chain. */
  readonly causationId?: string;
  /** For a reply: the ask or delegate it answers. */
  readonly inReplyTo?: string;
  /** Epoch ms after which the message expires (asks and delegates). */
  readonly deadline?: number;
  readonly priority: Priority;
  /** Hops from the start of the causal chain: 0 for a message sent from outside a handler. */
  readonly depth: number;
}
