import { hash } from 'node:crypto';
import { types } from 'node:util';
import { BusError, errorText } from './errors.js';

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
export function encodePayload(value: unknown, maxBytes: number, what = 'payload', withJson = false): EncodedPayload {
  return checkSize(copyPlainJson(value, maxBytes, what, withJson), maxBytes, what);
}

/** A checked copy and the UTF-8 size of its JSON, before the size limit is applied. */
export interface PlainCopy {
  readonly copy: unknown;
  readonly bytes: number;
  /** The copy's JSON, written during the walk when asked for (`withJson`). */
  readonly json?: string | undefined;
}

/**
 * The checking half of {@link encodePayload}: a deep-frozen plain copy of `value` and its
 * JSON size, or INVALID_PAYLOAD.
 *
 * The walk is bounded by `maxBytes`: it counts the JSON's bytes as it goes and throws
 * PAYLOAD_TOO_LARGE at the first byte past the limit, so its work is O(`maxBytes`)
 * whatever the value shares (a string or an object referenced many times is counted at
 * every reference, as JSON writes it, but measured or copied once). A string longer than
 * what is left is refused before it is read, and so is an array whose length alone (two
 * bytes an element) would pass the limit. When this returns, `bytes <= maxBytes`, so
 * {@link checkSize} with the same limit always passes; it stays for callers that check
 * against a smaller limit.
 *
 * With `withJson`, the walk also writes the copy's JSON as it goes (what `JSON.stringify`
 * of the copy gives, byte for byte), for callers that will hash or send it: cheaper than
 * serializing the frozen copy afterwards, which V8 does on a slow path.
 *
 * @param maxBytes the walk stops with PAYLOAD_TOO_LARGE past this many UTF-8 bytes.
 */
export function copyPlainJson(value: unknown, maxBytes: number, what = 'payload', withJson = false): PlainCopy {
  const walk: Walk = { bytes: 0, skipped: 0, objects: 0, path: [], what, maxBytes, strings: undefined, seen: undefined, json: withJson ? '' : undefined };
  try {
    const copy = copyPlain(value === undefined ? null : value, walk);
    return { copy, bytes: walk.bytes, json: walk.json };
  } catch (error) {
    if (isOurs(error)) throw error;
    // A getter or a Proxy trap threw while being read (the thrown value may itself be a revoked Proxy).
    throw new BusError('INVALID_PAYLOAD', `${what}${pathText(walk)} could not be read: ${errorText(error)}`, { cause: error });
  }
}

/** Whether the walk itself threw `error` (a thrown revoked Proxy fails even `instanceof`). */
function isOurs(error: unknown): error is BusError {
  try {
    return error instanceof BusError;
  } catch {
    return false;
  }
}

/** The size half of {@link encodePayload}: PAYLOAD_TOO_LARGE past `maxBytes`. */
export function checkSize(plain: PlainCopy, maxBytes: number, what = 'payload'): EncodedPayload {
  if (plain.bytes > maxBytes) {
    throw new BusError('PAYLOAD_TOO_LARGE', `${what} is ${plain.bytes} bytes, over the limit of ${maxBytes} bytes`);
  }
  return new Encoded(plain.copy, plain.bytes, plain.json);
}

class Encoded implements EncodedPayload {
  constructor(
    readonly copy: unknown,
    readonly bytes: number,
    private serialized: string | undefined,
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

/** Strings at least this long have their size remembered for the walk: a shared one is measured once. */
const CACHED_STRING_LENGTH = 256;
/**
 * At most this many strings are remembered per walk. Small on purpose: V8 hashes a string
 * past 16,383 characters by its length alone, so distinct strings of one length all
 * collide, and a lookup compares against each one remembered (at most 16 times the bytes
 * the string is charged).
 */
const MAX_CACHED_STRINGS = 16;
/**
 * Past this many objects and arrays in one walk, each is remembered, so one referenced
 * again is charged its bytes without being read or copied again. Small payloads (most of
 * them) never pay for the map.
 */
const UNREMEMBERED_OBJECTS = 8;

/** State of one validation walk; the key path is only formatted when something is refused. */
interface Walk {
  /** UTF-8 bytes of the JSON of what was copied so far; never past `maxBytes`. */
  bytes: number;
  /** Properties passed over because their value is undefined (they cost no byte but are work). */
  skipped: number;
  /** Objects and arrays entered so far. */
  objects: number;
  readonly path: (string | number)[];
  readonly what: string;
  readonly maxBytes: number;
  /** Long strings met so far: their JSON bytes, and their JSON when it needs escaping and the walk writes JSON. */
  strings: Map<string, { readonly bytes: number; readonly json: string | undefined }> | undefined;
  /** Objects met again after the first few: their copy, bytes, and JSON once it was needed (a repeat while writing JSON). */
  seen: Map<object, { readonly copy: unknown; readonly bytes: number; json: string | undefined }> | undefined;
  /** The JSON written so far, or undefined when nobody asked for it. */
  json: string | undefined;
}

function pathText(walk: Walk): string {
  return walk.path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k.length > 64 ? `${k.slice(0, 64)}…` : k}`)).join('');
}

function refuse(walk: Walk, why: string): never {
  throw new BusError('INVALID_PAYLOAD', `${walk.what}${pathText(walk)} is not plain JSON: ${why}`);
}

/** PAYLOAD_TOO_LARGE, naming the limit and where the walk passed it. */
function tooLarge(walk: Walk, atLeast: number): never {
  const at = pathText(walk);
  throw new BusError('PAYLOAD_TOO_LARGE', `${walk.what} is over the limit of ${walk.maxBytes} bytes: at least ${atLeast} bytes${at === '' ? '' : ` by ${walk.what}${at}`}`);
}

function add(walk: Walk, bytes: number): void {
  const total = walk.bytes + bytes;
  if (total > walk.maxBytes) tooLarge(walk, total);
  walk.bytes = total;
}

/** {@link add}, and `text` appended to the JSON when the walk writes it. */
function put(walk: Walk, bytes: number, text: string): void {
  add(walk, bytes);
  if (walk.json !== undefined) walk.json += text;
}

/** UTF-8 bytes of `JSON.stringify(s)` (and that JSON, when written), reading `s` only if it can fit in what is left. */
function addString(walk: Walk, s: string): void {
  const length = s.length;
  // Every UTF-16 unit takes at least one byte of JSON: a string longer than what is left is refused unread.
  if (length + 2 > walk.maxBytes - walk.bytes) tooLarge(walk, walk.bytes + length + 2);
  if (length < CACHED_STRING_LENGTH) {
    if (PLAIN_ASCII.test(s)) {
      put(walk, length + 2, walk.json === undefined ? '' : `"${s}"`);
    } else {
      const json = JSON.stringify(s);
      put(walk, Buffer.byteLength(json, 'utf8'), json);
    }
    return;
  }
  const strings = (walk.strings ??= new Map());
  let known = strings.get(s);
  if (known === undefined) {
    const json = PLAIN_ASCII.test(s) ? undefined : JSON.stringify(s);
    known = { bytes: json === undefined ? length + 2 : Buffer.byteLength(json, 'utf8'), json: walk.json === undefined ? undefined : json };
    if (strings.size < MAX_CACHED_STRINGS) strings.set(s, known);
  }
  put(walk, known.bytes, walk.json === undefined ? '' : (known.json ?? `"${s}"`));
}

function copyPlain(value: unknown, walk: Walk): unknown {
  switch (typeof value) {
    case 'string':
      addString(walk, value);
      return value;
    case 'boolean':
      put(walk, value ? 4 : 5, value ? 'true' : 'false');
      return value;
    case 'number': {
      if (!Number.isFinite(value)) refuse(walk, `${value} is not a finite number`);
      if (value === 0) {
        put(walk, 1, '0');
        return 0; // JSON writes -0 as 0
      }
      const text = String(value); // JSON formats finite numbers as String() does, in ASCII
      put(walk, text.length, text);
      return value;
    }
    case 'object':
      break;
    case 'undefined':
      return refuse(walk, 'undefined is not a JSON value');
    default:
      return refuse(walk, `a ${typeof value} is not a JSON value`);
  }
  if (value === null) {
    put(walk, 4, 'null');
    return null;
  }
  if (walk.path.length >= MAX_PAYLOAD_DEPTH) refuse(walk, `nested deeper than ${MAX_PAYLOAD_DEPTH} levels (or cyclic)`);
  if (types.isProxy(value)) refuse(walk, 'a Proxy is not plain data');
  if (++walk.objects <= UNREMEMBERED_OBJECTS) return copyComposite(value, walk);
  const seen = (walk.seen ??= new Map());
  const known = seen.get(value);
  if (known !== undefined) {
    add(walk, known.bytes);
    // Serialized only when met again, from its copy: at most the bytes just charged for it.
    // (Slicing it out of the JSON written so far would flatten all of that at every object.)
    if (walk.json !== undefined) walk.json += known.json ??= JSON.stringify(known.copy);
    return known.copy;
  }
  const before = walk.bytes;
  const copy = copyComposite(value, walk);
  seen.set(value, { copy, bytes: walk.bytes - before, json: undefined });
  return copy;
}

function copyComposite(value: object, walk: Walk): unknown {
  if (Array.isArray(value)) return copyArray(value, walk);
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    const name = (proto as { constructor?: { name?: string } }).constructor?.name ?? 'unknown';
    refuse(walk, `an instance of ${name} is not a plain object`);
  }
  // Own or inherited, enumerable or not: JSON.stringify would call it.
  if ('toJSON' in value) refuse(walk, 'a "toJSON" property would change what is serialized');
  const keys = Object.keys(value); // own enumerable keys, in JSON's order
  if (Object.getOwnPropertySymbols(value).length > 0) refuse(walk, 'symbol keys are not JSON');
  const path = walk.path;
  const out: Record<string, unknown> = {};
  let members = 0;
  add(walk, 2); // braces
  if (walk.json !== undefined) walk.json += '{';
  for (const key of keys) {
    if (key === '__proto__') refuse(walk, 'a "__proto__" key is refused');
    path.push(key);
    const child = (value as Record<string, unknown>)[key]; // read once: getters run once
    // Undefined properties are omitted by JSON; that is how optional fields look in JS.
    if (child === undefined) {
      path.pop();
      if (++walk.skipped > walk.maxBytes) {
        throw new BusError('PAYLOAD_TOO_LARGE', `${walk.what} has more than ${walk.maxBytes} properties whose value is undefined (the limit is ${walk.maxBytes} bytes)`);
      }
      continue;
    }
    if (members++ > 0) put(walk, 1, ',');
    addString(walk, key);
    put(walk, 1, ':');
    out[key] = copyPlain(child, walk);
    path.pop();
  }
  if (walk.json !== undefined) walk.json += '}';
  return Object.freeze(out);
}

function copyArray(value: unknown[], walk: Walk): unknown {
  const proto = Object.getPrototypeOf(value);
  if (proto !== Array.prototype) {
    const name = (proto as { constructor?: { name?: string } } | null)?.constructor?.name ?? 'none';
    refuse(walk, `an array whose prototype is not Array.prototype (a subclass or another realm's array: ${name}) is not plain JSON`);
  }
  // Own or inherited (a patched Array.prototype): JSON.stringify would call it.
  if ('toJSON' in value) refuse(walk, 'an array with a "toJSON" property would serialize as something else');
  const length = value.length;
  // Each element takes at least a byte and a comma: refuse a long array before touching its keys.
  if (length > 0 && 2 * length + 1 > walk.maxBytes - walk.bytes) tooLarge(walk, walk.bytes + 2 * length + 1);
  add(walk, length === 0 ? 2 : length + 1); // brackets and commas
  if (walk.json !== undefined) walk.json += '[';
  const path = walk.path;
  const out = new Array<unknown>(length);
  for (let i = 0; i < length; i++) {
    if (i > 0 && walk.json !== undefined) walk.json += ',';
    path.push(i);
    const element = value[i]; // read once: an index getter runs once
    if (element === undefined) refuse(walk, Object.hasOwn(value, i) ? 'undefined is not a JSON value' : 'a hole in an array is not plain JSON');
    out[i] = copyPlain(element, walk);
    path.pop();
  }
  // Named properties: JSON would drop them. Checked last, once the length is known to fit
  // (Object.keys builds a string per index, the costliest step of a long array).
  if (Object.keys(value).length !== length) refuse(walk, 'an array with named properties is not plain JSON');
  if (walk.json !== undefined) walk.json += ']';
  return Object.freeze(out);
}
