/**
 * The audit log's hash chain.
 *
 * Row `n` stores `hash_n = H(hash_{n-1} ‖ encode(row_n))`, where `hash_0` is
 * {@link GENESIS}, `‖` is plain concatenation (the previous hash is always 64 hex
 * characters, so the split is unambiguous), `encode` is the JSON array of the row's columns
 * in their canonical order, seq first (so a row cannot move), and `H` is SHA-256, or
 * HMAC-SHA-256 with the log's key when it has one.
 */
import { createHmac, createSecretKey, hash as oneShotHash } from 'node:crypto';

/** The "previous hash" of the first row. */
export const GENESIS = '0'.repeat(64);

/** Computes the hash of a row from the previous row's hash and the row's encoding. */
export type Digest = (prevHash: string, encodedRow: string) => string;

/** Which chain a log uses, as stored in its metadata. */
export type ChainAlgorithm = 'sha256' | 'hmac-sha256';

/** The digest for a log: SHA-256, or HMAC-SHA-256 keyed with `key`. */
export function createDigest(key?: string | Uint8Array): Digest {
  if (key === undefined) return (prev, row) => oneShotHash('sha256', prev + row, 'hex');
  const secret = createSecretKey(typeof key === 'string' ? Buffer.from(key, 'utf8') : key);
  return (prev, row) => createHmac('sha256', secret).update(prev).update(row).digest('hex');
}

/** Computes a row's hash from `prev ‖ encodedRow` given as one run of UTF-8 bytes: the same hash as {@link Digest}. */
export type ByteDigest = (prevAndRow: Uint8Array) => string;

/** The {@link ByteDigest} of a log: SHA-256, or HMAC-SHA-256 keyed with `key`. */
export function createByteDigest(key?: string | Uint8Array): ByteDigest {
  if (key === undefined) return (bytes) => oneShotHash('sha256', bytes, 'hex');
  const secret = createSecretKey(typeof key === 'string' ? Buffer.from(key, 'utf8') : key);
  return (bytes) => createHmac('sha256', secret).update(bytes).digest('hex');
}

const KEY_CHECK_LABEL = 'agent-switchboard audit key check v1';

/**
 * A value stored beside a keyed chain so that opening it with a wrong key is a clear error
 * rather than a chain that fails on row 1. It reveals nothing useful about the key.
 */
export function keyCheck(key: string | Uint8Array): string {
  return createDigest(key)(GENESIS, KEY_CHECK_LABEL);
}

type WellFormedString = string & { toWellFormed(): string };

/**
 * The canonical encoding of a row (an array of column values in canonical order).
 *
 * Strings holding lone UTF-16 surrogates are the one value that would not survive a round
 * trip through SQLite unchanged, so such strings are replaced in `row` by their well-formed
 * form (U+FFFD for each lone surrogate) before encoding: the caller then stores exactly what
 * was hashed. The check is one substring search over the JSON (lone surrogates are the only
 * thing `JSON.stringify` writes as `\ud8xx`..`\udfxx`); a false positive merely takes the slow path.
 */
export function encodeRow(row: unknown[]): string {
  const json = JSON.stringify(row);
  if (!json.includes('\\ud')) return json;
  for (let i = 0; i < row.length; i++) {
    const v = row[i];
    if (typeof v === 'string') row[i] = (v as WellFormedString).toWellFormed();
  }
  return JSON.stringify(row);
}
