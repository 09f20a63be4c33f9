import { hash } from 'node:crypto';
import { types } from 'node:util';
import { BusError } from './errors.js';

/** Nesting deeper than this is refused: real payloads are shallow, and it bounds recursion. */
export const MAX_PAYLOAD_DEPTH = 256;

/** A payload serialized once: the bytes that are measured, hashed and parsed for the recipient. */
export interface EncodedPayload {
  readonly json: string;
  /** UTF-8 byte length of `json`. */
  readonly bytes: number;
}

/**
 * Checks that `value` is plain JSON and serializes it once.
 * `undefined` at the top level (a handler that returns nothing) becomes `null`; object
 * properties whose value is `undefined` are omitted, as JSON does. Everything else that JSON
 * would silently change or that is not data is refused with INVALID_PAYLOAD: functions,
 * symbols, BigInt, NaN/Infinity, cycles, class instances (Date, Map, …), Proxies,
 * `toJSON` tricks, accessors are read once, and `__proto__` keys.
 *
 * @param maxBytes refuse with PAYLOAD_TOO_LARGE past this many UTF-8 bytes.
 */
export function encodePayload(value: unknown, maxBytes: number, what = 'payload'): EncodedPayload {
  assertPlainJson(value, maxBytes, what);
  return serializePayload(value, maxBytes, what);
}

/** The plain-JSON half of {@link encodePayload}: throws INVALID_PAYLOAD (or PAYLOAD_TOO_LARGE for a node bomb). */
export function assertPlainJson(value: unknown, maxBytes: number, what = 'payload'): void {
  // A node budget bounds the walk: every value serializes to at least one byte, so a
  // payload with more nodes than maxBytes is too large whatever it holds (stops DAG bombs).
  const walk: Walk = { nodes: maxBytes + 1, path: [], what, maxBytes };
  checkPlain(value === undefined ? null : value, walk);
}

/** The size half of {@link encodePayload}, for a value already checked: serialize once and measure. */
export function serializePayload(value: unknown, maxBytes: number, what = 'payload'): EncodedPayload {
  let json: string;
  try {
    json = JSON.stringify(value === undefined ? null : value);
  } catch (cause) {
    throw new BusError('INVALID_PAYLOAD', `${what} cannot be serialized to JSON: ${(cause as Error).message}`, { cause });
  }
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > maxBytes) {
    throw new BusError('PAYLOAD_TOO_LARGE', `${what} is ${bytes} bytes, over the limit of ${maxBytes} bytes`);
  }
  return { json, bytes };
}

/** Hex SHA-256 of the payload's UTF-8 JSON bytes. */
export function hashPayload(encoded: EncodedPayload): string {
  return hash('sha256', encoded.json, 'hex');
}

/** Parses the serialized bytes into a fresh, deep-frozen copy for the recipient. */
export function decodePayload(encoded: EncodedPayload): unknown {
  return deepFreeze(JSON.parse(encoded.json));
}

/** Freezes a freshly parsed JSON value in place (only plain objects and arrays occur). */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.freeze(value);
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) deepFreeze(value[i]);
    } else {
      for (const key in value) deepFreeze((value as Record<string, unknown>)[key]);
    }
  }
  return value;
}

/** State of one validation walk; the key path is only formatted when something is refused. */
interface Walk {
  nodes: number;
  readonly path: (string | number)[];
  readonly what: string;
  readonly maxBytes: number;
}

function refuse(walk: Walk, why: string): never {
  const at = walk.path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('');
  throw new BusError('INVALID_PAYLOAD', `${walk.what}${at} is not plain JSON: ${why}`);
}

function checkPlain(value: unknown, walk: Walk): void {
  if (--walk.nodes < 0) {
    throw new BusError('PAYLOAD_TOO_LARGE', `${walk.what} has more values than fit in ${walk.maxBytes} bytes`);
  }
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) refuse(walk, `${value} is not a finite number`);
      return;
    case 'object':
      break;
    case 'undefined':
      return refuse(walk, 'undefined is not a JSON value');
    default:
      return refuse(walk, `a ${typeof value} is not a JSON value`);
  }
  if (value === null) return;
  const path = walk.path;
  if (path.length >= MAX_PAYLOAD_DEPTH) refuse(walk, `nested deeper than ${MAX_PAYLOAD_DEPTH} levels (or cyclic)`);
  if (types.isProxy(value)) refuse(walk, 'a Proxy is not plain data');
  if (Array.isArray(value)) {
    if (Object.keys(value).length !== value.length) refuse(walk, 'an array with named properties is not plain JSON');
    for (let i = 0; i < value.length; i++) {
      path.push(i);
      checkPlain(value[i], walk);
      path.pop();
    }
    return;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    const name = (proto as { constructor?: { name?: string } }).constructor?.name ?? 'unknown';
    refuse(walk, `an instance of ${name} is not a plain object`);
  }
  if (Object.getOwnPropertySymbols(value).length > 0) refuse(walk, 'symbol keys are not JSON');
  for (const key in value) {
    if (key === '__proto__') refuse(walk, 'a "__proto__" key is refused');
    if (key === 'toJSON') refuse(walk, 'a "toJSON" key would change what is serialized');
    const desc = Object.getOwnPropertyDescriptor(value, key);
    if (desc !== undefined && (desc.get !== undefined || desc.set !== undefined)) refuse(walk, `"${key}" is an accessor, not data`);
    const child = (value as Record<string, unknown>)[key];
    // Undefined properties are omitted by JSON; that is how optional fields look in JS.
    if (child === undefined) continue;
    path.push(key);
    checkPlain(child, walk);
    path.pop();
  }
}
