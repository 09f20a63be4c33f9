/**
 * What one message looks like on the wire: metadata in NATS headers, the payload as JSON
 * bytes. Who sends to whom is never read from here: it comes from the subject, whose `from`
 * the broker pins to the publishing node's credentials.
 *
 * Decoding treats every byte from a peer as hostile: each header must appear once, fit its
 * bound and match its pattern; the payload must fit the receiver's own size limit and parse
 * as JSON; errors cross as `{ code, message }` only (never a stack, never a `cause`).
 */
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';
import { BusError, ErrorCode } from '../errors.js';
import { PRIORITIES, type Priority } from '../envelope.js';

/** The wire format version; a receiver refuses any other. */
export const WIRE_VERSION = '1';

/** Ids that travel in headers (message, conversation, causation): the agent id pattern. */
export const WIRE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** The longest intent (UTF-16 units), as in one process. */
export const MAX_WIRE_INTENT = 128;
/** The largest deadline budget: what `setTimeout` can wait. */
export const MAX_BUDGET_MS = 2_147_483_647;
/** The deepest causal chain a header may claim (the receiver's own `maxDepth` still applies). */
export const MAX_WIRE_DEPTH = 10_000;
/** The longest error message that crosses; longer ones are cut by the sender. */
export const MAX_ERROR_MESSAGE = 2_048;
/** An error answer's JSON is never larger than this. */
const MAX_ERROR_BYTES = 16 * 1024;
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

const H = {
  version: 'Sb-V',
  id: 'Sb-Id',
  intent: 'Sb-Intent',
  ts: 'Sb-Ts',
  conversation: 'Sb-Conv',
  causation: 'Sb-Cause',
  depth: 'Sb-Depth',
  priority: 'Sb-Prio',
  budget: 'Sb-Budget',
  kind: 'Sb-Kind',
  node: 'Sb-Node',
  trace: 'traceparent',
} as const;

/** The metadata of an ask, delegate or notify (the subject carries `from`, `to` and type). */
export interface WireMeta {
  readonly id: string;
  readonly intent: string;
  /** Creation time at the sender, epoch ms (informational: deadlines use `budgetMs`). */
  readonly ts: number;
  readonly conversationId: string;
  readonly causationId?: string;
  readonly depth: number;
  readonly priority: Priority;
  /** What is left of the deadline, in ms (asks and delegates). */
  readonly budgetMs?: number;
  /** W3C trace context of the sending span. */
  readonly traceparent?: string;
  /**
   * The node the sender says it is. Never trusted alone: the receiver checks it against
   * the bus-wide claim of the subject's `from`, which the broker pins to the sender.
   */
  readonly node?: string;
}

/** Encoded for `publish`: headers and payload bytes. */
export interface WireFrame {
  readonly headers: MsgHdrs;
  readonly data: Uint8Array;
}

/** A decoded ask, delegate or notify. */
export interface DecodedMessage extends WireMeta {
  readonly payload: unknown;
  /** The payload as the JSON text that arrived (already checked to parse). */
  readonly payloadJson: string;
  /** The payload's size on the wire, in bytes. */
  readonly payloadBytes: number;
}

/** An error as it crosses: a stable code and a message, nothing else. */
export interface WireError {
  readonly code: ErrorCode;
  readonly message: string;
}

/** What comes back on a reply inbox. */
export type DecodedAnswer =
  | { readonly kind: 'reply'; readonly id: string; readonly payload: unknown; readonly payloadJson: string; readonly payloadBytes: number }
  | { readonly kind: 'error'; readonly id: string; readonly error: WireError };

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const codes = new Set<string>(Object.values(ErrorCode));

/** Encodes a message's metadata and its payload JSON. */
export function encodeMessage(meta: WireMeta, payloadJson: string): WireFrame {
  const h = natsHeaders();
  h.set(H.version, WIRE_VERSION);
  h.set(H.id, meta.id);
  h.set(H.intent, encodeURIComponent(meta.intent));
  h.set(H.ts, String(meta.ts));
  h.set(H.conversation, meta.conversationId);
  if (meta.causationId !== undefined) h.set(H.causation, meta.causationId);
  h.set(H.depth, String(meta.depth));
  h.set(H.priority, meta.priority);
  if (meta.budgetMs !== undefined) h.set(H.budget, String(Math.max(1, Math.min(MAX_BUDGET_MS, Math.ceil(meta.budgetMs)))));
  if (meta.traceparent !== undefined && TRACEPARENT.test(meta.traceparent)) h.set(H.trace, meta.traceparent);
  if (meta.node !== undefined) h.set(H.node, meta.node);
  return { headers: h, data: utf8.encode(payloadJson) };
}

/**
 * Decodes an ask, delegate or notify from a peer. Throws a `BusError`: `INVALID_ARGUMENT`
 * for bad metadata, `PAYLOAD_TOO_LARGE` past `maxPayloadBytes`, `INVALID_PAYLOAD` for bytes
 * that are not UTF-8 JSON. `needsBudget` is true for asks and delegates.
 */
export function decodeMessage(headers: MsgHdrs | undefined, data: Uint8Array, maxPayloadBytes: number, needsBudget: boolean): DecodedMessage {
  const h = checkHeaders(headers);
  const id = idHeader(h, H.id);
  const intent = intentHeader(h);
  const ts = intHeader(h, H.ts, 0, Number.MAX_SAFE_INTEGER);
  const conversationId = idHeader(h, H.conversation);
  const causationId = h.has(H.causation) ? idHeader(h, H.causation) : undefined;
  const depth = intHeader(h, H.depth, 0, MAX_WIRE_DEPTH);
  const priority = one(h, H.priority, 16);
  if (!(PRIORITIES as readonly string[]).includes(priority)) throw bad(`header ${H.priority} must be one of ${PRIORITIES.join(', ')}, got ${JSON.stringify(priority)}`);
  let budgetMs: number | undefined;
  if (h.has(H.budget)) budgetMs = intHeader(h, H.budget, 1, MAX_BUDGET_MS);
  else if (needsBudget) throw bad(`header ${H.budget} is missing: an ask or delegate needs its remaining deadline`);
  const trace = h.has(H.trace) ? one(h, H.trace, 55) : undefined;
  const node = h.has(H.node) ? idHeader(h, H.node) : undefined;
  const { value: payload, text: payloadJson } = decodeJson(data, maxPayloadBytes, 'payload', id);
  return {
    id,
    intent,
    ts,
    conversationId,
    ...(causationId === undefined ? {} : { causationId }),
    depth,
    priority: priority as Priority,
    ...(budgetMs === undefined ? {} : { budgetMs }),
    // An unreadable trace context is ignored (W3C: start a new trace), not refused.
    ...(trace !== undefined && TRACEPARENT.test(trace) ? { traceparent: trace } : {}),
    ...(node === undefined ? {} : { node }),
    payload,
    payloadJson,
    payloadBytes: data.byteLength,
  };
}

/** Encodes a reply to message `id`. */
export function encodeReply(id: string, payloadJson: string): WireFrame {
  const h = natsHeaders();
  h.set(H.version, WIRE_VERSION);
  h.set(H.kind, 'reply');
  h.set(H.id, id);
  return { headers: h, data: utf8.encode(payloadJson) };
}

/** Encodes an error answer to message `id`: only `code` and a message cut to {@link MAX_ERROR_MESSAGE}. */
export function encodeError(id: string, error: WireError): WireFrame {
  const h = natsHeaders();
  h.set(H.version, WIRE_VERSION);
  h.set(H.kind, 'error');
  h.set(H.id, id);
  const message = String(error.message).slice(0, MAX_ERROR_MESSAGE);
  return { headers: h, data: utf8.encode(JSON.stringify({ code: error.code, message })) };
}

/** Encodes a progress report (or a cancel) about message `id`. */
export function encodeAbout(id: string, payloadJson: string): WireFrame {
  const h = natsHeaders();
  h.set(H.version, WIRE_VERSION);
  h.set(H.id, id);
  return { headers: h, data: utf8.encode(payloadJson) };
}

/** Decodes a progress report or cancel: the message id it is about and its JSON payload. */
export function decodeAbout(headers: MsgHdrs | undefined, data: Uint8Array, maxPayloadBytes: number): { id: string; payload: unknown } {
  const h = checkHeaders(headers);
  const id = idHeader(h, H.id);
  return { id, payload: decodeJson(data, maxPayloadBytes, 'payload', id).value };
}

/**
 * Decodes what arrived on a reply inbox. Throws `INVALID_REPLY` for anything malformed: an
 * unknown kind, an error code this package does not define, an oversized answer.
 */
export function decodeAnswer(headers: MsgHdrs | undefined, data: Uint8Array, maxPayloadBytes: number): DecodedAnswer {
  let h: MsgHdrs;
  let id: string;
  let kind: string;
  try {
    h = checkHeaders(headers);
    id = idHeader(h, H.id);
    kind = one(h, H.kind, 8);
  } catch (e) {
    throw new BusError('INVALID_REPLY', `malformed answer from a peer: ${(e as Error).message}`);
  }
  if (kind === 'reply') {
    const { value, text } = decodeJson(data, maxPayloadBytes, 'reply', id);
    return { kind, id, payload: value, payloadJson: text, payloadBytes: data.byteLength };
  }
  if (kind !== 'error') throw new BusError('INVALID_REPLY', `unknown answer kind ${JSON.stringify(kind)} for message ${id}`, { messageId: id });
  let body: unknown;
  try {
    body = decodeJson(data, MAX_ERROR_BYTES, 'error', id).value;
  } catch (e) {
    throw new BusError('INVALID_REPLY', `malformed error answer for message ${id}: ${(e as Error).message}`, { messageId: id });
  }
  const { code, message } = (typeof body === 'object' && body !== null ? body : {}) as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || !codes.has(code) || typeof message !== 'string' || message.length > MAX_ERROR_MESSAGE) {
    throw new BusError('INVALID_REPLY', `malformed error answer for message ${id}: expected { code: a known ErrorCode, message: a string of at most ${MAX_ERROR_MESSAGE} characters }`, { messageId: id });
  }
  return { kind, id, error: { code: code as ErrorCode, message } };
}

function bad(message: string): BusError {
  return new BusError('INVALID_ARGUMENT', `malformed message from a peer: ${message}`);
}

function checkHeaders(headers: MsgHdrs | undefined): MsgHdrs {
  if (headers === undefined) throw bad('no headers');
  const count = headers.keys().length;
  if (count > 32) throw bad(`${count} headers (at most 32)`);
  const version = one(headers, H.version, 8);
  if (version !== WIRE_VERSION) throw bad(`wire version ${JSON.stringify(version)} (this node speaks ${WIRE_VERSION})`);
  return headers;
}

/** The one value of header `key`, at most `max` characters. */
function one(h: MsgHdrs, key: string, max: number): string {
  const values = h.values(key);
  if (values.length !== 1) throw bad(`header ${key} must appear once, found ${values.length}`);
  const v = values[0]!;
  if (v.length > max) throw bad(`header ${key} is ${v.length} characters long (at most ${max})`);
  return v;
}

function idHeader(h: MsgHdrs, key: string): string {
  const v = one(h, key, 128);
  if (!WIRE_ID_PATTERN.test(v)) throw bad(`header ${key} ${JSON.stringify(v)} does not match ${WIRE_ID_PATTERN}`);
  return v;
}

function intHeader(h: MsgHdrs, key: string, min: number, max: number): number {
  const v = one(h, key, 16);
  const n = /^\d{1,16}$/.test(v) ? Number(v) : NaN;
  if (!(n >= min && n <= max)) throw bad(`header ${key} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

function intentHeader(h: MsgHdrs): string {
  const raw = one(h, H.intent, MAX_WIRE_INTENT * 9);
  let intent: string;
  try {
    intent = decodeURIComponent(raw);
  } catch {
    throw bad(`header ${H.intent} is not percent-encoded UTF-8`);
  }
  if (intent.length === 0 || intent.length > MAX_WIRE_INTENT || intent === '*') {
    throw bad(`intent must be a non-empty string of at most ${MAX_WIRE_INTENT} characters (not "*"), got ${JSON.stringify(intent.slice(0, MAX_WIRE_INTENT + 1))}`);
  }
  return intent;
}

function decodeJson(data: Uint8Array, maxBytes: number, what: string, messageId: string): { value: unknown; text: string } {
  if (data.byteLength > maxBytes) {
    throw new BusError('PAYLOAD_TOO_LARGE', `${what} of message ${messageId} is ${data.byteLength} bytes (limit ${maxBytes})`, { messageId });
  }
  let text: string;
  try {
    text = strictUtf8.decode(data);
  } catch {
    throw new BusError('INVALID_PAYLOAD', `${what} of message ${messageId} is not UTF-8`, { messageId });
  }
  try {
    return { value: JSON.parse(text), text };
  } catch (e) {
    throw new BusError('INVALID_PAYLOAD', `${what} of message ${messageId} is not JSON: ${(e as Error).message}`, { messageId });
  }
}
