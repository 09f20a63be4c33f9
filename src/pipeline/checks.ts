import { PRIORITIES, type Priority, type RuleType } from '../envelope.js';
import { describeIssues, validate, type ContractDef, type Contracts } from '../contracts.js';
import { escapeText, hasUnsafeText } from '../escape-text.js';
import { article, BusError, describe, toBusError, type BusErrorDetails } from '../errors.js';
import { isAgentId } from '../ids.js';
import type { TokenBucket } from '../limits.js';
import type { PolicyDecision, PolicySet } from '../policy.js';
import type { AgentRecord, Delivery } from './records.js';

// The checks of a send, in the documented order (docs/architecture.md). Each throws the refusal's BusError and needs
// no more of the bus than what it is given. Caller-supplied objects are read here once
// into plain snapshots; every later step sees only the snapshot.

/** Intents are at most this long, as in policy rules, so every intent can be named by one. */
export const MAX_INTENT_LENGTH = 128;
export const SEND_OPTION_KEYS: ReadonlySet<string> = new Set(['timeoutMs', 'signal', 'priority']);
export const NOTIFY_OPTION_KEYS: ReadonlySet<string> = new Set(['to', 'priority']);

/** A send's options, read once. */
export interface OptionsSnapshot {
  readonly timeoutMs?: unknown;
  readonly signal?: unknown;
  readonly priority?: unknown;
  readonly to?: unknown;
}

const NO_OPTIONS: OptionsSnapshot = Object.freeze({});

/** Reads `options` once (known keys only) into a plain object; INVALID_ARGUMENT otherwise. */
export function readOptions(options: unknown, known: ReadonlySet<string>): OptionsSnapshot {
  if (options === undefined) return NO_OPTIONS;
  if (typeof options !== 'object' || options === null) throw new BusError('INVALID_ARGUMENT', `options must be an object, got ${describe(options)}`);
  const snapshot: Record<string, unknown> = {};
  try {
    for (const key in options) {
      if (!known.has(key)) throw new BusError('INVALID_ARGUMENT', `unknown option "${key}" (expected ${[...known].join(', ')})`);
      snapshot[key] = (options as Record<string, unknown>)[key];
    }
  } catch (error) {
    throw toBusError(error, 'INVALID_ARGUMENT', undefined, 'cannot read the options: ');
  }
  return snapshot;
}

export function checkSender(sender: AgentRecord): void {
  if (!sender.alive) throw new BusError('UNKNOWN_AGENT', `${sender.id}'s handle is dead: it was unregistered`, { agentId: sender.id });
}

/** The recipient's id: an agent id, not the sender's own. */
export function checkRecipientId(sender: AgentRecord, to: unknown): string {
  if (!isAgentId(to)) throw new BusError('INVALID_ARGUMENT', `recipient must be an agent id, got ${describe(to)}`);
  if (to === sender.id) throw new BusError('SELF_MESSAGE', `${sender.id} cannot message itself`, { agentId: to });
  return to;
}

export function unknownAgent(to: string): BusError {
  return new BusError('UNKNOWN_AGENT', `no agent "${to}" is registered`, { agentId: to });
}

/** A notify's listed recipients, deduplicated; undefined for a broadcast. */
export function checkNotifyRecipients(sender: AgentRecord, to: unknown): string[] | undefined {
  if (to === undefined) return undefined;
  const list = typeof to === 'string' ? [to] : to;
  if (!Array.isArray(list) || list.length === 0) {
    throw new BusError('INVALID_ARGUMENT', `notify options.to must be a non-empty array of agent ids, got ${describe(to)}`);
  }
  const ids = new Set<string>();
  for (const id of [...(list as unknown[])]) {
    if (!isAgentId(id)) throw new BusError('INVALID_ARGUMENT', `notify options.to holds ${describe(id)}, which is not an agent id`);
    if (id === sender.id) throw new BusError('SELF_MESSAGE', `${sender.id} cannot notify itself`, { agentId: id });
    ids.add(id);
  }
  return [...ids];
}

export function checkIntent(intent: unknown): asserts intent is string {
  if (typeof intent !== 'string' || intent.length === 0 || intent.length > MAX_INTENT_LENGTH || intent === '*') {
    throw new BusError('INVALID_ARGUMENT', `intent must be a non-empty string of at most ${MAX_INTENT_LENGTH} characters (not "*"), got ${describe(intent)}`);
  }
  checkWellFormed(intent, 'intent');
  if (hasUnsafeText(intent)) {
    const at = [...intent].findIndex((c) => hasUnsafeText(c));
    const bad = [...intent][at]!.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    // Intents name handlers and reach operators' screens: no character there may steer a terminal.
    throw new BusError('INVALID_ARGUMENT', `intent "${escapeText(intent)}" contains U+${bad} at ${at}: control, escape and bidirectional characters are not allowed in an intent`);
  }
}

// A lone surrogate (half of a UTF-16 pair) is not a Unicode character: the log's UTF-8 would
// write U+FFFD for it, so two different strings would be recorded alike.
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * How a caller-supplied string (an intent, a recipient) is recorded when the send may be
 * refused: its first `max` units, as given when they are well-formed, else as their JSON,
 * whose escapes keep a lone surrogate distinct (never U+FFFD). Anything else is described.
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

export function checkTimeout(timeoutMs: unknown): number {
  if (!(typeof timeoutMs === 'number' && Number.isFinite(timeoutMs) && timeoutMs > 0 && timeoutMs <= 2_147_483_647)) {
    throw new BusError('INVALID_ARGUMENT', `timeoutMs must be a positive number of ms (at most 2147483647), got ${describe(timeoutMs)}`);
  }
  return timeoutMs;
}

export function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) throw new BusError('INVALID_ARGUMENT', `signal must be an AbortSignal, got ${describe(signal)}`);
  if (signal.aborted) throw new BusError('CANCELLED', 'the signal was already aborted', { reason: String(signal.reason) });
  return signal;
}

/** A send's priority (`normal` when left out), or a message's from another node, which must name one. */
export function checkPriority(priority: unknown, fallback?: Priority): Priority {
  if (priority === undefined && fallback !== undefined) return fallback;
  if (!PRIORITIES.includes(priority as Priority)) {
    throw new BusError('INVALID_ARGUMENT', `priority must be one of ${PRIORITIES.join(', ')}, got ${describe(priority)}`);
  }
  return priority as Priority;
}

/** The depth of a message sent from `parent`'s handler (0 from outside). */
export function checkDepth(parent: Delivery | undefined, maxDepth: number): number {
  // A handler whose own message expired or was cancelled cannot start new work in its chain.
  if (parent?.aborted) throw new BusError('CANCELLED', `the message ${parent.envelope.id} being handled was cancelled or expired; its chain is closed`);
  return checkDepthLimit(parent === undefined ? 0 : parent.envelope.depth + 1, maxDepth);
}

/** A message's depth against `maxDepth` (MAX_DEPTH), the same for a local send and one from another node. */
export function checkDepthLimit(depth: number, maxDepth: number): number {
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
  const result = validate(contract.input, payload, `the input of "${intent}"`);
  if (!result.success) {
    throw new BusError('INVALID_PAYLOAD', `payload for "${intent}" does not match its contract: ${describeIssues(result.error)}`);
  }
}

/** The sender's bucket, then the bus's: RATE_LIMITED with `retryAfterMs`. */
export function checkRate(sender: AgentRecord, global: TokenBucket | undefined, now: number): void {
  const wait = sender.bucket?.take(now) ?? 0;
  if (wait > 0) {
    throw new BusError('RATE_LIMITED', `${sender.id} is sending too fast (limit ${sender.bucket!.spec.perSecond}/s, burst ${sender.bucket!.spec.burst}); retry in ${Math.ceil(wait)}ms`, {
      retryAfterMs: Math.ceil(wait),
    });
  }
  const globalWait = global?.take(now) ?? 0;
  if (globalWait > 0) {
    throw new BusError('RATE_LIMITED', `the bus is over its global rate (${global!.spec.perSecond}/s); retry in ${Math.ceil(globalWait)}ms`, {
      retryAfterMs: Math.ceil(globalWait),
    });
  }
}

/** The policy's decision for one recipient: throws POLICY_DENIED; returns allow or approval. */
export function checkPolicy(policy: PolicySet, sender: AgentRecord, recipient: AgentRecord, type: RuleType, intent: string): PolicyDecision {
  const to = recipient.id;
  const decision = policy.evaluate({ from: sender.id, to, type, intent, trust: sender.trust, recipientTrust: recipient.trust });
  if (decision.decision === 'deny') {
    throw new BusError('POLICY_DENIED', `${sender.id} may not ${type} ${to} ("${intent}"): ${decision.reason}`, withRule({}, decision));
  }
  return decision;
}

export function withRule(details: BusErrorDetails, decision: PolicyDecision): BusErrorDetails {
  return decision.ruleLabel !== undefined ? { ...details, rule: decision.ruleLabel } : details;
}
