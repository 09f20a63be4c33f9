/**
 * NATS subjects of one bus. Every id that goes into a subject is escaped into one token of
 * `[A-Za-z0-9-]` and `_XX` (the hex of each UTF-8 byte of any other character, `_` itself
 * included), so no id can add a token, match a wildcard or reach another agent's subject,
 * and two different ids never share a token (the encoding is injective and reversible).
 *
 * Layout (`<x>` is an escaped token):
 * - `<bus>.in.<to>.<from>.<kind>`: everything addressed to agent `to` by agent `from`
 *   (`ask`, `delegate`, `notify`, `cancel` sent by the asker, `progress` sent by the
 *   delegate's recipient back to its sender, `digest`: a node's signed covers of the MAC'd
 *   frames it sent the other's node, see proofs.ts). The broker's publish permissions pin `from`.
 * - `<bus>._r.<node>.<id>__<to>`: a node's private reply inbox (never `_INBOX.>`), one token per
 *   message and recipient (a notify keeps one id for all its recipients).
 * - KV bucket `sb_<bus>_agents`, key `<agent>`: the bus-wide claim of an agent id.
 * - `<bus>.ops.<node>.list` / `.decide`: an operator's signed requests to one node's approval
 *   queue (fleet approvals); `<bus>.ops.<node>.changed`: the node's signed notices of held
 *   and decided messages; `<bus>._o.<operator>`: an operator's private reply inbox prefix.
 */
import { BusError } from '../errors.js';

/** A bus name: one subject token, 1..64 of letters, digits, `-` (no `_`, `.` or wildcards). */
export const BUS_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

/** What can follow `<bus>.in.<to>.<from>.`. */
export type InKind = 'ask' | 'delegate' | 'notify' | 'cancel' | 'progress' | 'digest';
export const IN_KINDS: readonly InKind[] = ['ask', 'delegate', 'notify', 'cancel', 'progress', 'digest'];

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
  if (ALL_PLAIN.test(id)) return id;
  let out = '';
  for (let i = 0; i < id.length; i++) {
    const code = id.charCodeAt(i);
    if (code >= 0x80) return escapeSlow(id);
    out += PLAIN_ASCII[code] === 1 ? id[i] : ESCAPED_ASCII[code];
  }
  return out;
}

/** Every character plain: the token is the id itself (most ids). */
const ALL_PLAIN = /^[A-Za-z0-9-]*$/;
/** For each ASCII code: 1 when it stays as it is. */
const PLAIN_ASCII = Uint8Array.from({ length: 128 }, (_, c) => (PLAIN.test(String.fromCharCode(c)) ? 1 : 0));
/** For each ASCII code: its `_XX` escape. */
const ESCAPED_ASCII = Array.from({ length: 128 }, (_, c) => `_${c.toString(16).toUpperCase().padStart(2, '0')}`);

/** {@link escapeToken} for ids with characters past ASCII. */
function escapeSlow(id: string): string {
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
  /** `<kind> \0 <to> \0 <from>` → subject, for the senders and recipients in use (bounded). */
  readonly #built = new Map<string, string>();
  /** Subject → its parts, for subjects that parsed (bounded: a peer's subjects cannot grow it past {@link CACHED}). */
  readonly #parsed = new Map<string, InboundRoute>();

  constructor(bus: string) {
    checkBusName(bus);
    this.bus = bus;
  }

  /** `<bus>.in.<to>.<from>.<kind>` */
  inbound(to: string, from: string, kind: InKind): string {
    const key = `${kind}\0${to}\0${from}`;
    let subject = this.#built.get(key);
    if (subject === undefined) {
      subject = `${this.bus}.in.${escapeToken(to)}.${escapeToken(from)}.${kind}`;
      remember(this.#built, key, subject);
    }
    return subject;
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

  /** `<bus>.ops.<node>.<kind>`: where `node` takes operators' requests (`list`, `decide`) and tells of changes (`changed`). */
  desk(node: string, kind: 'list' | 'decide' | 'changed'): string {
    return `${this.bus}.ops.${escapeToken(node)}.${kind}`;
  }

  /** Every node's `changed` notices: what an operator subscribes to. */
  deskChanges(): string {
    return `${this.bus}.ops.*.changed`;
  }

  /** Every node's `kind` requests: what an operator may publish. */
  deskRequests(kind: 'list' | 'decide'): string {
    return `${this.bus}.ops.*.${kind}`;
  }

  /** The private reply inbox prefix of operator `op`. */
  operatorInbox(op: string): string {
    return `${this.bus}._o.${escapeToken(op)}`;
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
  parseInbound(subject: string): InboundRoute {
    const known = this.#parsed.get(subject);
    if (known !== undefined) return known;
    const parts = subject.split('.');
    if (parts.length !== 5 || parts[0] !== this.bus || parts[1] !== 'in') {
      throw new BusError('INVALID_ARGUMENT', `not an inbound subject of bus "${this.bus}": ${JSON.stringify(subject.slice(0, 600))}`);
    }
    const kind = parts[4] as InKind;
    if (!IN_KINDS.includes(kind)) throw new BusError('INVALID_ARGUMENT', `unknown message kind in subject: ${JSON.stringify(parts[4]!.slice(0, 64))}`);
    const route: InboundRoute = Object.freeze({ to: unescapeToken(parts[2]!), from: unescapeToken(parts[3]!), kind });
    remember(this.#parsed, subject, route);
    return route;
  }
}

/** The parts of an inbound subject. */
export interface InboundRoute {
  readonly to: string;
  readonly from: string;
  readonly kind: InKind;
}

/** How many subjects each cache of {@link Subjects} keeps. */
const CACHED = 4_096;

/** Adds to a bounded cache, dropping the oldest entry when full. */
function remember<V>(cache: Map<string, V>, key: string, value: V): void {
  if (cache.size >= CACHED) cache.delete(cache.keys().next().value!);
  cache.set(key, value);
}
