/**
 * NATS subjects of one bus. Every id that goes into a subject is escaped into one token of
 * `[A-Za-z0-9-]` and `_XX` (the hex of each UTF-8 byte of any other character, `_` itself
 * included), so no id can add a token, match a wildcard or reach another agent's subject,
 * and two different ids never share a token (the encoding is injective and reversible).
 *
 * Layout (`<x>` is an escaped token):
 * - `<bus>.in.<to>.<from>.<kind>`: everything addressed to agent `to` by agent `from`
 *   (`ask`, `delegate`, `notify`, `cancel` sent by the asker, `progress` sent by the
 *   delegate's recipient back to its sender). The broker's publish permissions pin `from`.
 * - `<bus>._r.<node>.<token>`: a node's private reply inbox (never `_INBOX.>`).
 * - KV bucket `sb_<bus>_agents`, key `<agent>`: the bus-wide claim of an agent id.
 */
import { BusError } from '../errors.js';

/** A bus name: one subject token, 1..64 of letters, digits, `-` (no `_`, `.` or wildcards). */
export const BUS_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

/** What can follow `<bus>.in.<to>.<from>.`. */
export type InKind = 'ask' | 'delegate' | 'notify' | 'cancel' | 'progress';
export const IN_KINDS: readonly InKind[] = ['ask', 'delegate', 'notify', 'cancel', 'progress'];

const PLAIN = /^[A-Za-z0-9-]$/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Escapes `id` into one subject token: letters, digits and `-` stay; every other UTF-8 byte
 * becomes `_` and two upper-case hex digits. Injective on well-formed strings (a lone
 * surrogate is refused with `INVALID_ARGUMENT`).
 *
 * @example
 * escapeToken('svc.billing:1') // 'svc_2Ebilling_3A1'
 */
export function escapeToken(id: string): string {
  if (LONE_SURROGATE.test(id)) throw new BusError('INVALID_ARGUMENT', `cannot put a string with a lone surrogate in a subject: ${JSON.stringify(id.slice(0, 300))}`);
  let out = '';
  for (const ch of id) {
    if (PLAIN.test(ch)) {
      out += ch;
      continue;
    }
    for (const byte of utf8.encode(ch)) out += `_${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const TOKEN = /^(?:[A-Za-z0-9-]|_[0-9A-F]{2})+$/;

/**
 * The inverse of {@link escapeToken}. Throws `INVALID_ARGUMENT` for a token that no id
 * escapes to (a lower-case or short escape, a raw `_`, bad UTF-8).
 */
export function unescapeToken(token: string): string {
  if (!TOKEN.test(token)) throw new BusError('INVALID_ARGUMENT', `not an escaped subject token: ${JSON.stringify(token.slice(0, 300))}`);
  const bytes: number[] = [];
  for (let i = 0; i < token.length; ) {
    if (token[i] === '_') {
      bytes.push(parseInt(token.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      bytes.push(token.charCodeAt(i));
      i += 1;
    }
  }
  let id: string;
  try {
    id = strictUtf8.decode(new Uint8Array(bytes));
  } catch {
    throw new BusError('INVALID_ARGUMENT', `subject token ${JSON.stringify(token.slice(0, 300))} is not UTF-8`);
  }
  // Injective only if every plain character was written plain: refuse `_2D` for `-`.
  if (escapeToken(id) !== token) throw new BusError('INVALID_ARGUMENT', `subject token ${JSON.stringify(token.slice(0, 300))} is not in canonical form`);
  return id;
}

/** Throws `INVALID_ARGUMENT` unless `bus` is a valid bus name. */
export function checkBusName(bus: unknown): asserts bus is string {
  if (typeof bus !== 'string' || !BUS_NAME_PATTERN.test(bus)) {
    throw new BusError('INVALID_ARGUMENT', `invalid bus name ${JSON.stringify(bus)}: expected ${BUS_NAME_PATTERN}`);
  }
}

/** The subjects of one bus. Build it once per transport; `bus` is checked here. */
export class Subjects {
  readonly bus: string;

  constructor(bus: string) {
    checkBusName(bus);
    this.bus = bus;
  }

  /** `<bus>.in.<to>.<from>.<kind>` */
  inbound(to: string, from: string, kind: InKind): string {
    return `${this.bus}.in.${escapeToken(to)}.${escapeToken(from)}.${kind}`;
  }

  /** Everything addressed to `agent`, by anyone, of any kind: what its node subscribes to. */
  inboundFor(agent: string): string {
    return `${this.bus}.in.${escapeToken(agent)}.*.*`;
  }

  /** Every subject `agent` may publish on as a sender: its publish permission. */
  outboundOf(agent: string): string {
    return `${this.bus}.in.*.${escapeToken(agent)}.*`;
  }

  /** The private inbox prefix of `node` (replies to its requests land under it). */
  inboxPrefix(node: string): string {
    return `${this.bus}._r.${escapeToken(node)}`;
  }

  /** The KV bucket that holds agent claims. */
  claimsBucket(): string {
    return `sb_${this.bus.replaceAll('-', '_')}_agents`;
  }

  /** The KV key of `agent`'s claim. */
  claimKey(agent: string): string {
    return escapeToken(agent);
  }

  /**
   * Splits an inbound subject into its parts, or throws `INVALID_ARGUMENT`: the broker
   * routes by the subscription, but the tokens are still a peer's bytes.
   */
  parseInbound(subject: string): { to: string; from: string; kind: InKind } {
    const parts = subject.split('.');
    if (parts.length !== 5 || parts[0] !== this.bus || parts[1] !== 'in') {
      throw new BusError('INVALID_ARGUMENT', `not an inbound subject of bus "${this.bus}": ${JSON.stringify(subject.slice(0, 600))}`);
    }
    const kind = parts[4] as InKind;
    if (!IN_KINDS.includes(kind)) throw new BusError('INVALID_ARGUMENT', `unknown message kind in subject: ${JSON.stringify(parts[4]!.slice(0, 64))}`);
    return { to: unescapeToken(parts[2]!), from: unescapeToken(parts[3]!), kind };
  }
}
