import { hash } from 'node:crypto';
import { types } from 'node:util';
import { BusError } from './errors.js';

/** Nesting deeper than this is refused: real payloads are shallow, and it bounds recursion. */
export const MAX_PAYLOAD_DEPTH = 256;

/**
 * A payload checked and measured once: the recipient's deep-frozen copy, its size in UTF-8
 * bytes of JSON, and (built on first use, for hashing) the JSON itself.
 */
export interface EncodedPayload {
  /** The JSON bytes that are hashed; deep-equal parsing gives `copy`. Built on first read. */
  readonly json: string;
  /** UTF-8 byte length of `json`, counted without building it. */
  readonly bytes: number;
  /** Deep-frozen, shares nothing with the sender, and deep-equals `JSON.parse(json)`. */
  readonly copy: unknown;
}

/**
 * Checks that `value` is plain JSON and measures it.
 *
 * One pass reads every value exactly once, builds a fresh, deep-frozen copy of it and
 * counts the UTF-8 bytes its JSON takes. The copy is what gets serialized (only when
 * something hashes it: with `audit: false` nothing does), measured and handed to the
 * recipient. So what was checked is what was hashed is what arrives (a getter cannot
 * answer the check one thing and the serializer another), and no parse is needed: the copy
 * is, by construction, what `JSON.parse(json)` would give (`-0` is written as `0` in both).
 *
 * `undefined` at the top level (a handler that returns nothing) becomes `null`; object
 * properties whose value is `undefined` are omitted, as JSON does. Everything else that
 * JSON would silently change or that is not data is refused with INVALID_PAYLOAD:
 * functions, symbols, BigInt, NaN/Infinity, cycles, class instances (Date, Map, …),
 * Proxies, `toJSON` keys, `__proto__` keys, symbol keys, arrays with named properties.
 *
 * @param maxBytes refuse with PAYLOAD_TOO_LARGE past this many UTF-8 bytes.
 */
export function encodePayload(value: unknown, maxBytes: number, what = 'payload'): EncodedPayload {
  return checkSize(copyPlainJson(value, maxBytes, what), maxBytes, what);
}

/** A checked copy and the UTF-8 size of its JSON, before the size limit is applied. */
export interface PlainCopy {
  readonly copy: unknown;
  readonly bytes: number;
}

/**
 * The checking half of {@link encodePayload}: a deep-frozen plain copy of `value` and its
 * JSON size, or INVALID_PAYLOAD (PAYLOAD_TOO_LARGE for a value with more nodes than fit in
 * `maxBytes`).
 */
export function copyPlainJson(value: unknown, maxBytes: number, what = 'payload'): PlainCopy {
  // A node budget bounds the walk: every value serializes to at least one byte, so a
  // payload with more nodes than maxBytes is too large whatever it holds (stops DAG bombs).
  const walk: Walk = { nodes: maxBytes + 1, bytes: 0, path: [], what, maxBytes };
  try {
    const copy = copyPlain(value === undefined ? null : value, walk);
    return { copy, bytes: walk.bytes };
  } catch (error) {
    if (error instanceof BusError) throw error;
    // A getter or a Proxy trap threw while being read.
    throw new BusError('INVALID_PAYLOAD', `${what} could not be read: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
}

/** The size half of {@link encodePayload}: PAYLOAD_TOO_LARGE past `maxBytes`. */
export function checkSize(plain: PlainCopy, maxBytes: number, what = 'payload'): EncodedPayload {
  if (plain.bytes > maxBytes) {
    throw new BusError('PAYLOAD_TOO_LARGE', `${what} is ${plain.bytes} bytes, over the limit of ${maxBytes} bytes`);
  }
  return new Encoded(plain.copy, plain.bytes);
}

class Encoded implements EncodedPayload {
  private serialized: string | undefined;
  constructor(
    readonly copy: unknown,
    readonly bytes: number,
  ) {}
  get json(): string {
    return (this.serialized ??= JSON.stringify(this.copy));
  }
}

/** Hex SHA-256 of the payload's UTF-8 JSON bytes. */
export function hashPayload(encoded: EncodedPayload): string {
  return hash('sha256', encoded.json, 'hex');
}

/** The recipient's copy: deep-frozen, so one copy can serve every recipient of a notify. */
export function decodePayload(encoded: EncodedPayload): unknown {
  return encoded.copy;
}

// Printable ASCII except `"` and `\`: such a string's JSON is itself plus two quotes.
const PLAIN_ASCII = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** UTF-8 bytes of `JSON.stringify(s)`. */
function stringBytes(s: string): number {
  return PLAIN_ASCII.test(s) ? s.length + 2 : Buffer.byteLength(JSON.stringify(s), 'utf8');
}

/** State of one validation walk; the key path is only formatted when something is refused. */
interface Walk {
  nodes: number;
  /** UTF-8 bytes of the JSON of what was copied so far. */
  bytes: number;
  readonly path: (string | number)[];
  readonly what: string;
  readonly maxBytes: number;
}

function refuse(walk: Walk, why: string): never {
  const at = walk.path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('');
  throw new BusError('INVALID_PAYLOAD', `${walk.what}${at} is not plain JSON: ${why}`);
}

function copyPlain(value: unknown, walk: Walk): unknown {
  if (--walk.nodes < 0) {
    throw new BusError('PAYLOAD_TOO_LARGE', `${walk.what} has more values than fit in ${walk.maxBytes} bytes`);
  }
  switch (typeof value) {
    case 'string':
      walk.bytes += stringBytes(value);
      return value;
    case 'boolean':
      walk.bytes += value ? 4 : 5;
      return value;
    case 'number':
      if (!Number.isFinite(value)) refuse(walk, `${value} is not a finite number`);
      if (value === 0) {
        walk.bytes += 1;
        return 0; // JSON writes -0 as 0
      }
      walk.bytes += String(value).length; // JSON formats finite numbers as String() does, in ASCII
      return value;
    case 'object':
      break;
    case 'undefined':
      return refuse(walk, 'undefined is not a JSON value');
    default:
      return refuse(walk, `a ${typeof value} is not a JSON value`);
  }
  if (value === null) {
    walk.bytes += 4;
    return null;
  }
  const path = walk.path;
  if (path.length >= MAX_PAYLOAD_DEPTH) refuse(walk, `nested deeper than ${MAX_PAYLOAD_DEPTH} levels (or cyclic)`);
  if (types.isProxy(value)) refuse(walk, 'a Proxy is not plain data');
  if (Array.isArray(value)) {
    const length = value.length;
    if (Object.keys(value).length !== length) refuse(walk, 'an array with named properties (or holes) is not plain JSON');
    const out = new Array<unknown>(length);
    walk.bytes += length === 0 ? 2 : length + 1; // brackets and commas
    for (let i = 0; i < length; i++) {
      path.push(i);
      out[i] = copyPlain(value[i], walk);
      path.pop();
    }
    return Object.freeze(out);
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    const name = (proto as { constructor?: { name?: string } }).constructor?.name ?? 'unknown';
    refuse(walk, `an instance of ${name} is not a plain object`);
  }
  if (Object.getOwnPropertySymbols(value).length > 0) refuse(walk, 'symbol keys are not JSON');
  const out: Record<string, unknown> = {};
  let members = 0;
  for (const key in value) {
    if (key === '__proto__') refuse(walk, 'a "__proto__" key is refused');
    if (key === 'toJSON') refuse(walk, 'a "toJSON" key would change what is serialized');
    const child = (value as Record<string, unknown>)[key]; // read once: getters run once
    // Undefined properties are omitted by JSON; that is how optional fields look in JS.
    if (child === undefined) continue;
    members++;
    walk.bytes += stringBytes(key) + 1; // "key":
    path.push(key);
    out[key] = copyPlain(child, walk);
    path.pop();
  }
  walk.bytes += members === 0 ? 2 : members + 1; // braces and commas
  return Object.freeze(out);
}
