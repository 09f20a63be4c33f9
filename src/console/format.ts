// Pure helpers: what the console says about bus events and held messages.
import type { BusEvents } from '../events.js';
import type { PendingApproval } from '../approvals.js';

/** How a feed line is coloured. */
export type Tone = 'plain' | 'dim' | 'green' | 'red' | 'yellow';

/** One line of the live feed. */
export interface FeedLine {
  readonly key: number;
  readonly time: string;
  /** The agents the line is about (sender and recipient), for the agent filter. */
  readonly agents: readonly string[];
  readonly route: string;
  readonly what: string;
  readonly status: string;
  readonly tone: Tone;
  readonly detail?: string;
}

/** `12:00:00.123` (or `12:00:00` without `millis`), local time. */
export function clockTime(ms: number, millis = true): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  const time = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  return millis ? `${time}.${String(d.getMilliseconds()).padStart(3, '0')}` : time;
}

/** A value as JSON (indented when `indent` is given); never throws. */
export function toJson(value: unknown, indent?: number): string {
  try {
    return JSON.stringify(value, null, indent) ?? 'undefined';
  } catch {
    return String(value);
  }
}

/** A payload as one short line of JSON. */
export function summarize(payload: unknown, max = 60): string {
  const text = toJson(payload);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** `45 s`, `1 min 56 s`, or `expired`. */
export function expiresIn(expiresAt: number, now: number): string {
  const s = Math.ceil((expiresAt - now) / 1000);
  if (s <= 0) return 'expired';
  if (s < 60) return `${s} s`;
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/** `text` padded or cut (with `…`) to exactly `width` characters, so columns line up. */
export function cell(text: string, width: number): string {
  return text.length > width ? `${text.slice(0, width - 1)}…` : text.padEnd(width);
}

/** `purchase → payment`. */
export function routeOf(a: { from: string; to: string }): string {
  return `${a.from} → ${a.to}`;
}

/** `1 pending approval`, `2 pending approvals`. */
export function pendingCount(n: number): string {
  return `${n} pending approval${n === 1 ? '' : 's'}`;
}

/**
 * Splits text into lines of at most `width` characters: at newlines, then hard wraps (a
 * payload is data, so it is cut where it must be rather than at words).
 */
export function wrapLines(text: string, width: number): string[] {
  const w = Math.max(1, width);
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0) out.push('');
    for (let at = 0; at < line.length; at += w) out.push(line.slice(at, at + w));
  }
  return out;
}

/** True when the agent filter lets `agents` through (no filter lets everything through). */
export function matchesAgent(agents: readonly string[], filter: string | undefined): boolean {
  return filter === undefined || agents.includes(filter);
}

type Line = Omit<FeedLine, 'key' | 'time'>;

const about = (a: { from: string; to: string }) => ({ agents: [a.from, a.to], route: routeOf(a) });

/** The feed line for each event the console shows (`message:sent` is left out: `delivered` or `held` follows it). */
export const describeEvent: { [K in keyof BusEvents]?: (event: BusEvents[K]) => Line } = {
  'message:delivered': ({ envelope: e }) => ({ ...about(e), what: `${e.type} ${e.intent}`, status: '✓ delivered', tone: 'green' }),
  'message:replied': ({ envelope: e }) => ({ ...about(e), what: `${e.type} ${e.intent}`, status: '↩ replied', tone: 'green' }),
  'message:denied': ({ attempt: a, code, reason, rule }) => ({
    ...about(a),
    what: `${a.type} ${a.intent}`,
    status: `✗ refused ${code}`,
    tone: 'red',
    detail: rule !== undefined ? `rule '${rule}'` : reason,
  }),
  'message:expired': ({ envelope: e, code }) => ({ ...about(e), what: `${e.type} ${e.intent}`, status: `⌛ expired ${code}`, tone: 'yellow' }),
  'message:failed': ({ envelope: e, code, reason }) => ({ ...about(e), what: `${e.type} ${e.intent}`, status: `✗ failed ${code}`, tone: 'red', detail: reason }),
  'message:dead': ({ envelope: e, reason }) => ({ ...about(e), what: `${e.type} ${e.intent}`, status: '☠ dead', tone: 'red', detail: reason }),
  'approval:requested': ({ approval: { envelope: e, rule } }) => ({
    ...about(e),
    what: `${e.type} ${e.intent}`,
    status: '⏸ held for approval',
    tone: 'yellow',
    ...(rule !== undefined ? { detail: `rule '${rule}'` } : {}),
  }),
  'approval:decided': ({ approval: { envelope: e }, decision, by, reason }) => ({
    ...about(e),
    what: `${e.type} ${e.intent}`,
    status: `${decision === 'approved' ? '✓' : '✗'} ${decision}${by !== undefined ? ` by ${by}` : ''}`,
    tone: decision === 'approved' ? 'green' : decision === 'rejected' ? 'red' : 'yellow',
    ...(reason !== undefined ? { detail: reason } : {}),
  }),
  'audit:error': ({ error, records }) => ({ agents: [], route: 'audit log', what: `${records} records`, status: '✗ not written', tone: 'red', detail: error.message }),
  'audit:backpressure': ({ walBytes, maxWalBytes }) => ({
    agents: [],
    route: 'audit log',
    what: `WAL ${(walBytes / 1048576).toFixed(1)} of ${(maxWalBytes / 1048576).toFixed(1)} MiB`,
    status: '⏳ commits wait for a checkpoint',
    tone: 'yellow',
  }),
  'agent:lost': ({ agentId, holder, error }) => ({ agents: [agentId], route: agentId, what: 'agent id', status: `✗ lost to node ${holder}`, tone: 'red', detail: error.message }),
  'operator:refused': ({ request, operator, messageId, code, reason }) => ({
    agents: [],
    route: operator === undefined ? 'approval desk' : `operator ${operator}`,
    what: messageId === undefined ? request : `${request} ${messageId}`,
    status: `✗ refused ${code}`,
    tone: 'red',
    detail: reason,
  }),
};

/** One line describing a held message (for status lines). */
export function describeHeld(a: PendingApproval): string {
  const e = a.envelope;
  return `${routeOf(e)} ${e.type} "${e.intent}"`;
}
