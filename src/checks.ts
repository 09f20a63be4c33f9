import { PRIORITIES, type Priority, type RuleType } from './envelope.js';
import { describeIssues, type ContractDef, type Contracts } from './contracts.js';
import { BusError } from './errors.js';
import type { NotifyOptions, SendOptions } from './handler.js';
import { isAgentId } from './ids.js';
import type { AgentRecord } from './registry.js';
import type { Delivery } from './request.js';
import { article, describe } from './describe.js';

// The argument checks of a send, in the SPEC's order. Each throws the refusal's BusError;
// none needs more of the bus than what it is given.

/** Intents are at most this long, as in policy rules, so every intent can be named by one. */
export const MAX_INTENT_LENGTH = 128;
export const SEND_OPTION_KEYS: ReadonlySet<string> = new Set(['timeoutMs', 'signal', 'priority']);
export const NOTIFY_OPTION_KEYS: ReadonlySet<string> = new Set(['to', 'priority']);

export function checkSender(sender: AgentRecord): void {
  if (!sender.alive) throw new BusError('UNKNOWN_AGENT', `${sender.id}'s handle is dead: it was unregistered`, { agentId: sender.id });
}

export function checkRecipient(registry: ReadonlyMap<string, AgentRecord>, sender: AgentRecord, to: unknown): AgentRecord {
  if (!isAgentId(to)) throw new BusError('INVALID_ARGUMENT', `recipient must be an agent id, got ${describe(to)}`);
  if (to === sender.id) throw new BusError('SELF_MESSAGE', `${sender.id} cannot message itself`, { agentId: to });
  const recipient = registry.get(to);
  if (recipient === undefined) throw new BusError('UNKNOWN_AGENT', `no agent "${to}" is registered`, { agentId: to });
  return recipient;
}

/** A notify's listed recipients, deduplicated; undefined for a broadcast. */
export function checkNotifyRecipients(sender: AgentRecord, to: unknown): string[] | undefined {
  if (to === undefined) return undefined;
  const list = typeof to === 'string' ? [to] : to;
  if (!Array.isArray(list) || list.length === 0) {
    throw new BusError('INVALID_ARGUMENT', `notify options.to must be a non-empty array of agent ids, got ${describe(to)}`);
  }
  const ids = new Set<string>();
  for (const id of list) {
    if (!isAgentId(id)) throw new BusError('INVALID_ARGUMENT', `notify options.to holds ${describe(id)}, which is not an agent id`);
    if (id === sender.id) throw new BusError('SELF_MESSAGE', `${sender.id} cannot notify itself`, { agentId: id });
    ids.add(id);
  }
  return [...ids];
}

export function checkIntent(intent: unknown): void {
  if (typeof intent !== 'string' || intent.length === 0 || intent.length > MAX_INTENT_LENGTH || intent === '*') {
    throw new BusError('INVALID_ARGUMENT', `intent must be a non-empty string of at most ${MAX_INTENT_LENGTH} characters (not "*"), got ${describe(intent)}`);
  }
  checkWellFormed(intent, 'intent');
}

// A lone surrogate (half of a UTF-16 pair) is not a Unicode character: the log's UTF-8 would
// write U+FFFD for it, so two different strings would be recorded alike.
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * How a caller-supplied string (an intent, a recipient) is recorded when the send may be
 * refused: its first `max` units, as given when they are well-formed, else as their JSON,
 * whose escapes keep a lone surrogate distinct (never U+FFFD).
 * Anything else is described.
 */
export function recordedText(value: unknown, max: number): string {
  if (typeof value !== 'string') return describe(value);
  const cut = value.length <= max ? value : value.slice(0, max);
  return LONE_SURROGATE.test(cut) ? JSON.stringify(cut) : cut;
}

/**
 * Refuses a string with a lone surrogate (INVALID_ARGUMENT, naming `what` and where): every
 * text the log records (intents, notes, reasons) must be well-formed Unicode.
 */
export function checkWellFormed(value: string, what: string): void {
  const match = LONE_SURROGATE.exec(value);
  if (match !== null) {
    const unit = value.charCodeAt(match.index).toString(16).toUpperCase();
    throw new BusError('INVALID_ARGUMENT', `${what} must be well-formed Unicode: it holds a lone surrogate (U+${unit}) at index ${match.index}`);
  }
}

/** Checks a send's options (`known` keys only) and returns its priority. */
export function checkOptions(options: SendOptions | NotifyOptions | undefined, timeoutMs: number | undefined, known: ReadonlySet<string>): Priority {
  if (options !== undefined) {
    if (typeof options !== 'object' || options === null) throw new BusError('INVALID_ARGUMENT', `options must be an object, got ${describe(options)}`);
    for (const key in options) {
      if (!known.has(key)) throw new BusError('INVALID_ARGUMENT', `unknown option "${key}" (expected ${[...known].join(', ')})`);
    }
  }
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0 && timeoutMs <= 2_147_483_647)) {
    throw new BusError('INVALID_ARGUMENT', `timeoutMs must be a positive number of ms (at most 2147483647), got ${describe(timeoutMs)}`);
  }
  const signal = (options as SendOptions | undefined)?.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new BusError('INVALID_ARGUMENT', `signal must be an AbortSignal, got ${describe(signal)}`);
  }
  if (signal?.aborted) throw new BusError('CANCELLED', 'the signal was already aborted', { reason: String(signal.reason) });
  const priority = options?.priority ?? 'normal';
  if (!PRIORITIES.includes(priority)) {
    throw new BusError('INVALID_ARGUMENT', `priority must be one of ${PRIORITIES.join(', ')}, got ${describe(priority)}`);
  }
  return priority;
}

/** The depth of a message sent from `parent`'s handler (0 from outside). */
export function checkDepth(parent: Delivery | undefined, maxDepth: number): number {
  // A handler whose own message expired or was cancelled cannot start new work in its chain.
  if (parent?.aborted) throw new BusError('CANCELLED', `the message ${parent.envelope.id} being handled was cancelled or expired; its chain is closed`);
  const depth = parent === undefined ? 0 : parent.envelope.depth + 1;
  if (depth > maxDepth) {
    throw new BusError('MAX_DEPTH', `causal chain too deep: depth ${depth} exceeds maxDepth ${maxDepth}`);
  }
  return depth;
}

/** The contract of `intent`, if the bus has one. */
export function contractOf(contracts: Contracts | undefined, intent: string): ContractDef | undefined {
  return contracts !== undefined && Object.hasOwn(contracts, intent) ? contracts[intent] : undefined;
}

export function checkContract(contracts: Contracts | undefined, type: RuleType, intent: string, payload: unknown): void {
  const contract = contractOf(contracts, intent);
  if (contract === undefined) return;
  if (contract.type !== type) {
    throw new BusError('INVALID_ARGUMENT', `intent "${intent}" is ${article(contract.type)} by its contract, not ${article(type)}`);
  }
  const result = contract.input.safeParse(payload);
  if (!result.success) {
    throw new BusError('INVALID_PAYLOAD', `payload for "${intent}" does not match its contract: ${describeIssues(result.error)}`);
  }
}
