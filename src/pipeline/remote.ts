import { checkSize, copyPlainJson, type EncodedPayload } from '../codec.js';
import { BusError, ErrorCode, MAX_TEXT_LENGTH } from '../errors.js';
import { Mailbox } from '../mailbox.js';
import type { Handler } from '../types.js';
import { recordedText } from './checks.js';
import type { AgentRecord } from './records.js';

// What both sides of a cross-node message share: the stand-in record of an agent another
// node serves, and the reading of JSON text that came over the wire.

const NO_HANDLERS: Map<string, Handler> = new Map();
/** Never used: a stand-in is never delivered to (its node does that). */
const NO_MAILBOX = new Mailbox(1, 0);
const NO_CAPABILITIES: readonly string[] = Object.freeze([]);

/**
 * The stand-in for an agent another node serves, so a pending request can name it as its
 * sender (at the receiver) or recipient (at the sender). `trust` is this node's knowledge
 * of it (its directory), never the message's word. It is never in the registry.
 */
export function remoteRecord(id: string, node: string, trust = 0, capabilities: readonly string[] = NO_CAPABILITIES): AgentRecord {
  return {
    id,
    node,
    handlers: NO_HANDLERS,
    mailbox: NO_MAILBOX,
    bucket: undefined,
    capabilities,
    trust,
    alive: true,
    outgoing: new Set(),
    incoming: new Set(),
    deliveries: new Set(),
  };
}

/**
 * JSON text from another node as a checked payload: at most `maxBytes` UTF-8 bytes (refused
 * unread when longer), valid JSON, plain data (the same walk a local send's payload takes,
 * depth and `__proto__` keys included). PAYLOAD_TOO_LARGE or INVALID_PAYLOAD otherwise.
 */
export function decodeJson(json: unknown, maxBytes: number, what: string): EncodedPayload {
  if (typeof json !== 'string') throw new BusError('INVALID_PAYLOAD', `${what} must be JSON text, got ${typeof json}`);
  // Every UTF-16 unit takes at least one byte: a longer string is refused before it is measured.
  if (json.length > maxBytes || Buffer.byteLength(json, 'utf8') > maxBytes) {
    throw new BusError('PAYLOAD_TOO_LARGE', `${what} is over the limit of ${maxBytes} bytes`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    throw new BusError('INVALID_PAYLOAD', `${what} is not valid JSON: ${(error as Error).message}`.slice(0, MAX_TEXT_LENGTH));
  }
  return checkSize(copyPlainJson(parsed, maxBytes, what), maxBytes, what);
}

const CODES = new Set<string>(Object.values(ErrorCode));

/** A code from another node: one of ours, else TRANSPORT_UNAVAILABLE. */
export function remoteCode(code: unknown): ErrorCode {
  return typeof code === 'string' && CODES.has(code) ? (code as ErrorCode) : 'TRANSPORT_UNAVAILABLE';
}

/** Text from another node, bounded and well-formed (a lone surrogate is kept escaped, never U+FFFD). */
export function remoteText(text: unknown): string {
  return typeof text === 'string' ? recordedText(text, MAX_TEXT_LENGTH) : '';
}

/** What a remote notify's acknowledgement says: delivered, or held for approval at the receiver. */
export type NotifyAck = 'delivered' | 'pending';

/** The acknowledgement payloads of a notify (JSON text), between the two halves of this seam. */
export const NOTIFY_ACK: Readonly<Record<NotifyAck, string>> = Object.freeze({
  delivered: '{"notify":"delivered"}',
  pending: '{"notify":"pending"}',
});

/** Reads a notify acknowledgement; anything else is not one. */
export function readNotifyAck(json: unknown): NotifyAck | undefined {
  if (json === NOTIFY_ACK.delivered) return 'delivered';
  if (json === NOTIFY_ACK.pending) return 'pending';
  return undefined;
}
