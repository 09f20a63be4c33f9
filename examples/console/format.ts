// Pure helpers: what the console says about bus events and held messages.
import type { BusEvents, PendingApproval } from '../../src/index.js';

/** How a feed line is coloured. */
export type Tone = 'plain' | 'dim' | 'green' | 'red' | 'yellow';

/** One line of the live feed. */
export interface FeedLine {
  readonly key: number;
  readonly time: string;
  readonly route: string;
  readonly what: string;
  readonly status: string;
  readonly tone: Tone;
  readonly detail?: string;
}

/** `12:00:00.123`, local time. */
export function clockTime(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** A payload as one short line of JSON. */
export function summarize(payload: unknown, max = 60): string {
  let text: string;
  try {
    text = JSON.stringify(payload) ?? 'undefined';
  } catch {
    text = String(payload);
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** `45 s`, `1 min 56 s`, or `expired`. */
export function expiresIn(expiresAt: number, now: number): string {
  const s = Math.ceil((expiresAt - now) / 1000);
  if (s <= 0) return 'expired';
  if (s < 60) return `${s} s`;
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/** `purchase → payment`. */
export function routeOf(a: { from: string; to: string }): string {
  return `${a.from} → ${a.to}`;
}

/** `1 pending approval`, `2 pending approvals`. */
export function pendingCount(n: number): string {
  return `${n} pending approval${n === 1 ? '' : 's'}`;
}

type Line = Omit<FeedLine, 'key' | 'time'>;

/** The feed line for each event the console shows (`message:sent` is left out: `delivered` or `held` follows it). */
export const describeEvent: { [K in keyof BusEvents]?: (event: BusEvents[K]) => Line } = {
  'message:delivered': ({ envelope: e }) => ({ route: routeOf(e), what: `${e.type} ${e.intent}`, status: '✓ delivered', tone: 'green' }),
  'message:replied': ({ envelope: e }) => ({ route: routeOf(e), what: `${e.type} ${e.intent}`, status: '↩ replied', tone: 'green' }),
  'message:denied': ({ attempt: a, code, reason, rule }) => ({
    route: routeOf(a),
    what: `${a.type} ${a.intent}`,
    status: `✗ refused ${code}`,
    tone: 'red',
    detail: rule !== undefined ? `rule '${rule}'` : reason,
  }),
  'message:expired': ({ envelope: e, code }) => ({ route: routeOf(e), what: `${e.type} ${e.intent}`, status: `⌛ expired ${code}`, tone: 'yellow' }),
  'message:failed': ({ envelope: e, code, reason }) => ({ route: routeOf(e), what: `${e.type} ${e.intent}`, status: `✗ failed ${code}`, tone: 'red', detail: reason }),
  'message:dead': ({ envelope: e, reason }) => ({ route: routeOf(e), what: `${e.type} ${e.intent}`, status: '☠ dead', tone: 'red', detail: reason }),
  'approval:requested': ({ approval: { envelope: e, rule } }) => ({
    route: routeOf(e),
    what: `${e.type} ${e.intent}`,
    status: '⏸ held for approval',
    tone: 'yellow',
    ...(rule !== undefined ? { detail: `rule '${rule}'` } : {}),
  }),
  'approval:decided': ({ approval: { envelope: e }, decision, by, reason }) => ({
    route: routeOf(e),
    what: `${e.type} ${e.intent}`,
    status: `${decision === 'approved' ? '✓' : '✗'} ${decision}${by !== undefined ? ` by ${by}` : ''}`,
    tone: decision === 'approved' ? 'green' : decision === 'rejected' ? 'red' : 'yellow',
    ...(reason !== undefined ? { detail: reason } : {}),
  }),
  'audit:error': ({ error, records }) => ({ route: 'audit log', what: `${records} records`, status: '✗ not written', tone: 'red', detail: error.message }),
};

/** One line describing a held message (for status lines). */
export function describeHeld(a: PendingApproval): string {
  const e = a.envelope;
  return `${routeOf(e)} ${e.type} "${e.intent}"`;
}
