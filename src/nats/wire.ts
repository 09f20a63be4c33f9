/**
 * What one message looks like on the wire: one line of metadata, then the payload's JSON
 * bytes, in the body of a plain NATS message (no NATS headers: each costs the client a
 * validation, a MIME canonicalization and a parse per message). Who sends to whom is never
 * read from here: it comes from the subject, whose `from` the broker pins to the publishing
 * node's credentials.
 *
 * The metadata line is ASCII: `sb2 <kind> <fields…>\n`, fields separated by one space, in a
 * fixed order for each kind, `-` for a field that is absent (no valid value starts with `-`):
 *
 * | kind | fields |
 * | --- | --- |
 * | `m` (ask, delegate, notify) | id, intent (percent-encoded), ts, conversation, causation, depth, priority, budget, traceparent, node |
 * | `r` (reply), `e` (error), `a` (progress, cancel) | id |
 *
 * Decoding treats every byte from a peer as hostile: the line must be found within
 * {@link MAX_META_BYTES}, have exactly its kind's fields, each fitting its bound and pattern;
 * the payload must fit the receiver's own size limit and be UTF-8. An ask, delegate or
 * notify's payload is not parsed here: the receiving pipeline's bounded codec parses it,
 * refuses bad JSON with `INVALID_PAYLOAD` and audits the refusal. A reply's payload is
 * parsed by the sending pipeline the same way. Errors cross as `{ code, message }` only
 * (never a stack, never a `cause`).
 */
import { isUtf8 } from 'node:buffer';
import { BusError, ErrorCode } from '../errors.js';
import { PRIORITIES, type Priority } from '../envelope.js';

/** The wire format version; a receiver refuses any other. */
export const WIRE_VERSION = 'sb2';

/** Ids that travel in the metadata (message, conversation, causation, node): the agent id pattern. */
export const WIRE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** The longest intent (UTF-16 units), as in one process. */
export const MAX_WIRE_INTENT = 128;
/** The largest deadline budget: what `setTimeout` can wait. */
export const MAX_BUDGET_MS = 2_147_483_647;
/** The deepest causal chain a message may claim (the receiver's own `maxDepth` still applies). */
export const MAX_WIRE_DEPTH = 10_000;
/** The longest error message that crosses; longer ones are cut by the sender. */
export const MAX_ERROR_MESSAGE = 2_048;
/** The longest metadata line (its `\n` included): what ten bounded fields can take. */
export const MAX_META_BYTES = 2_048;
/** An error answer's JSON is never larger than this. */
const MAX_ERROR_BYTES = 16 * 1024;
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
const INTEGER = /^\d{1,16}$/;
/** Percent-encoded intent: what `encodeURIComponent` writes. */
const ENCODED_INTENT = /^[A-Za-z0-9\-_.!~*'()%]+$/;
const ABSENT = '-';
const NEWLINE = 0x0a;

/** The fields of an `m` line, in order: their names appear in refusals. */
const MESSAGE_FIELDS = ['id', 'intent', 'ts', 'conversation', 'causation', 'depth', 'priority', 'budget', 'traceparent', 'node'] as const;

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

/** A decoded ask, delegate or notify: its payload as text, not parsed yet. */
export interface DecodedMessage extends WireMeta {
  /** The payload as the UTF-8 text that arrived (the receiving pipeline parses and checks it). */
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
  | { readonly kind: 'reply'; readonly id: string; readonly payloadJson: string; readonly payloadBytes: number }
  | { readonly kind: 'error'; readonly id: string; readonly error: WireError };

const codes = new Set<string>(Object.values(ErrorCode));
const priorities = new Set<string>(PRIORITIES);

function frame(meta: string, payloadJson: string): Uint8Array {
  return Buffer.from(`${meta}\n${payloadJson}`, 'utf8');
}

/** The metadata line of an ask, delegate or notify (without its newline). */
export function messageLine(meta: WireMeta): string {
  const budget = meta.budgetMs === undefined ? ABSENT : String(Math.max(1, Math.min(MAX_BUDGET_MS, Math.ceil(meta.budgetMs))));
  const trace = meta.traceparent !== undefined && TRACEPARENT.test(meta.traceparent) ? meta.traceparent : ABSENT;
  return `${WIRE_VERSION} m ${meta.id} ${encodeURIComponent(meta.intent)} ${meta.ts} ${meta.conversationId} ${meta.causationId ?? ABSENT} ${meta.depth} ${meta.priority} ${budget} ${trace} ${meta.node ?? ABSENT}`;
}

/** The metadata line of a reply (`r`), an error (`e`) or a progress report or cancel (`a`) about message `id`. */
export function answerLine(kind: 'r' | 'e' | 'a', id: string): string {
  return `${WIRE_VERSION} ${kind} ${id}`;
}

/** The body of an error answer: only `code` and a message cut to {@link MAX_ERROR_MESSAGE}. */
export function errorBody(error: WireError): string {
  return JSON.stringify({ code: error.code, message: String(error.message).slice(0, MAX_ERROR_MESSAGE) });
}

/** Encodes an ask, delegate or notify: its metadata and its payload JSON. */
export function encodeMessage(meta: WireMeta, payloadJson: string): Uint8Array {
  return frame(messageLine(meta), payloadJson);
}

/**
 * Decodes an ask, delegate or notify from a peer. Throws a `BusError`: `INVALID_ARGUMENT`
 * for bad metadata, `PAYLOAD_TOO_LARGE` past `maxPayloadBytes`, `INVALID_PAYLOAD` for bytes
 * that are not UTF-8. `needsBudget` is true for asks and delegates.
 */
export function decodeMessage(data: Uint8Array, maxPayloadBytes: number, needsBudget: boolean): DecodedMessage {
  const { fields, body } = split(data, 'm', MESSAGE_FIELDS.length);
  const id = idField(fields, 0);
  const intent = intentField(fields[1]!);
  const ts = intField(fields, 2, 0, Number.MAX_SAFE_INTEGER);
  const conversationId = idField(fields, 3);
  const causationId = fields[4] === ABSENT ? undefined : idField(fields, 4);
  const depth = intField(fields, 5, 0, MAX_WIRE_DEPTH);
  const priority = fields[6]!;
  if (!priorities.has(priority)) throw bad(`field priority must be one of ${PRIORITIES.join(', ')}, got ${JSON.stringify(priority)}`);
  let budgetMs: number | undefined;
  if (fields[7] !== ABSENT) budgetMs = intField(fields, 7, 1, MAX_BUDGET_MS);
  else if (needsBudget) throw bad('field budget is missing: an ask or delegate needs its remaining deadline');
  // An unreadable trace context is ignored (W3C: start a new trace), not refused.
  const trace = fields[8]!;
  const node = fields[9] === ABSENT ? undefined : idField(fields, 9);
  const payloadJson = text(body, maxPayloadBytes, 'payload', id);
  return {
    id,
    intent,
    ts,
    conversationId,
    ...(causationId === undefined ? {} : { causationId }),
    depth,
    priority: priority as Priority,
    ...(budgetMs === undefined ? {} : { budgetMs }),
    ...(TRACEPARENT.test(trace) ? { traceparent: trace } : {}),
    ...(node === undefined ? {} : { node }),
    payloadJson,
    payloadBytes: body.byteLength,
  };
}

/** Encodes a reply to message `id`. */
export function encodeReply(id: string, payloadJson: string): Uint8Array {
  return frame(`${WIRE_VERSION} r ${id}`, payloadJson);
}

/** Encodes an error answer to message `id`: only `code` and a message cut to {@link MAX_ERROR_MESSAGE}. */
export function encodeError(id: string, error: WireError): Uint8Array {
  return frame(`${WIRE_VERSION} e ${id}`, errorBody(error));
}

/** Encodes a progress report (or a cancel) about message `id`. */
export function encodeAbout(id: string, payloadJson: string): Uint8Array {
  return frame(`${WIRE_VERSION} a ${id}`, payloadJson);
}

/** Decodes a progress report or cancel: the message id it is about and its JSON payload. */
export function decodeAbout(data: Uint8Array, maxPayloadBytes: number): { id: string; payload: unknown } {
  const { fields, body } = split(data, 'a', 1);
  const id = idField(fields, 0);
  return { id, payload: parse(text(body, maxPayloadBytes, 'payload', id), 'payload', id) };
}

/**
 * Decodes what arrived on a reply inbox. Throws `INVALID_REPLY` for anything malformed: an
 * unknown kind, an error code this package does not define, an oversized answer; a reply's
 * payload that is not UTF-8 is `INVALID_PAYLOAD` (its JSON is parsed by the sender's pipeline).
 */
export function decodeAnswer(data: Uint8Array, maxPayloadBytes: number): DecodedAnswer {
  let kind: string;
  let id: string;
  let body: Uint8Array;
  try {
    const line = split(data, undefined, 1);
    kind = line.kind;
    body = line.body;
    id = idField(line.fields, 0);
  } catch (e) {
    throw new BusError('INVALID_REPLY', `malformed answer from a peer: ${(e as Error).message}`);
  }
  if (kind === 'r') return { kind: 'reply', id, payloadJson: text(body, maxPayloadBytes, 'reply', id), payloadBytes: body.byteLength };
  if (kind !== 'e') throw new BusError('INVALID_REPLY', `unknown answer kind ${JSON.stringify(kind)} for message ${id}`, { messageId: id });
  let value: unknown;
  try {
    value = parse(text(body, MAX_ERROR_BYTES, 'error', id), 'error', id);
  } catch (e) {
    throw new BusError('INVALID_REPLY', `malformed error answer for message ${id}: ${(e as Error).message}`, { messageId: id });
  }
  const { code, message } = (typeof value === 'object' && value !== null ? value : {}) as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || !codes.has(code) || typeof message !== 'string' || message.length > MAX_ERROR_MESSAGE) {
    throw new BusError('INVALID_REPLY', `malformed error answer for message ${id}: expected { code: a known ErrorCode, message: a string of at most ${MAX_ERROR_MESSAGE} characters }`, { messageId: id });
  }
  return { kind: 'error', id, error: { code: code as ErrorCode, message } };
}

/**
 * The message id a frame claims, if its metadata line is readable that far (to answer a
 * malformed request with an error instead of leaving its sender to time out); else undefined.
 */
export function claimedId(data: Uint8Array): string | undefined {
  const end = lineEnd(data);
  if (end < 0 || end >= MAX_META_BYTES) return undefined;
  const id = latin1(data, end).split(' ', 3)[2];
  return id !== undefined && WIRE_ID_PATTERN.test(id) ? id : undefined;
}

function bad(message: string): BusError {
  return new BusError('INVALID_ARGUMENT', `malformed message from a peer: ${message}`);
}

/** Where the metadata line ends, looking no further than {@link MAX_META_BYTES}; -1 if it does not. */
function lineEnd(data: Uint8Array): number {
  return data.byteLength > MAX_META_BYTES ? data.subarray(0, MAX_META_BYTES).indexOf(NEWLINE) : data.indexOf(NEWLINE);
}

function latin1(data: Uint8Array, end: number): string {
  return Buffer.from(data.buffer, data.byteOffset, end).toString('latin1');
}

/**
 * Splits a frame into its metadata fields (after version and kind) and its body. Checks
 * the version, the kind (when given) and the field count; the fields are checked by the caller.
 */
function split(data: Uint8Array, kind: string | undefined, count: number): { kind: string; fields: string[]; body: Uint8Array } {
  const end = lineEnd(data);
  if (end < 0 || end >= MAX_META_BYTES) throw bad(`no metadata line within ${MAX_META_BYTES} bytes`);
  const fields = latin1(data, end).split(' ', count + 3);
  const version = fields[0]!;
  if (version !== WIRE_VERSION) throw bad(`wire version ${JSON.stringify(version.slice(0, 16))} (this node speaks ${WIRE_VERSION})`);
  const got = fields[1]!;
  if (kind !== undefined && got !== kind) throw bad(`frame kind ${JSON.stringify(got.slice(0, 8))} where "${kind}" was expected`);
  if (fields.length !== count + 2) throw bad(`${Math.max(0, fields.length - 2)} metadata fields for kind ${JSON.stringify(got.slice(0, 8))} (exactly ${count})`);
  return { kind: got, fields: fields.slice(2), body: data.subarray(end + 1) };
}

function name(index: number): string {
  return MESSAGE_FIELDS[index]!;
}

function idField(fields: readonly string[], index: number): string {
  const v = fields[index]!;
  if (!WIRE_ID_PATTERN.test(v)) throw bad(`field ${name(index)} ${JSON.stringify(v.slice(0, 129))} does not match ${WIRE_ID_PATTERN}`);
  return v;
}

function intField(fields: readonly string[], index: number, min: number, max: number): number {
  const v = fields[index]!;
  const n = INTEGER.test(v) ? Number(v) : NaN;
  if (!(n >= min && n <= max)) throw bad(`field ${name(index)} must be an integer from ${min} to ${max}, got ${JSON.stringify(v.slice(0, 32))}`);
  return n;
}

function intentField(raw: string): string {
  if (raw.length > MAX_WIRE_INTENT * 9 || !ENCODED_INTENT.test(raw)) throw bad('field intent is not a percent-encoded string of at most 128 characters');
  let intent: string;
  try {
    intent = decodeURIComponent(raw);
  } catch {
    throw bad('field intent is not percent-encoded UTF-8');
  }
  if (intent.length === 0 || intent.length > MAX_WIRE_INTENT || intent === '*') {
    throw bad(`intent must be a non-empty string of at most ${MAX_WIRE_INTENT} characters (not "*"), got ${JSON.stringify(intent.slice(0, MAX_WIRE_INTENT + 1))}`);
  }
  return intent;
}

/** The body as strict UTF-8 text, at most `maxBytes` (refused unread when longer). */
function text(body: Uint8Array, maxBytes: number, what: string, messageId: string): string {
  if (body.byteLength > maxBytes) {
    throw new BusError('PAYLOAD_TOO_LARGE', `${what} of message ${messageId} is ${body.byteLength} bytes (limit ${maxBytes})`, { messageId });
  }
  const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (!isUtf8(bytes)) throw new BusError('INVALID_PAYLOAD', `${what} of message ${messageId} is not UTF-8`, { messageId });
  return bytes.toString('utf8');
}

function parse(json: string, what: string, messageId: string): unknown {
  try {
    return JSON.parse(json);
  } catch (e) {
    throw new BusError('INVALID_PAYLOAD', `${what} of message ${messageId} is not JSON: ${(e as Error).message}`, { messageId });
  }
}
