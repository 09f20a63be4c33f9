/**
 * A node's keys, from its nkey seed: the Ed25519 signing key (the same key the broker knows
 * the node's user by) and the X25519 sealing key derived from it, so one secret file holds
 * everything a node needs.
 *
 * Signing and verifying run on `node:crypto` (OpenSSL), not on the nkeys package's pure
 * JavaScript Ed25519: a message is signed and verified on the hot path. The nkey text
 * formats (`SU…` seeds, `U…` public keys: base32 with a prefix byte and a CRC-16) are read
 * here with their checksum checked.
 */
import { createPrivateKey, createPublicKey, diffieHellman, hkdfSync, sign, verify, type KeyObject } from 'node:crypto';
import { BusError } from '../errors.js';

/** A user nkey public key: `U` and 55 base32 characters. */
export const PUBLIC_KEY_PATTERN = /^U[A-Z2-7]{55}$/;
/** A user nkey seed: `SU` and 56 base32 characters. */
export const SEED_PATTERN = /^SU[A-Z2-7]{56}$/;
/** A sealing public key: 32 raw X25519 bytes, base64url without padding. */
export const SEALING_KEY_PATTERN = /^[A-Za-z0-9_-]{43}$/;

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** The nkey prefix byte of a user public key ('U' << 3 in base32 terms). */
const PREFIX_USER = 20 << 3;
/** The first byte of a seed: the seed prefix ('S'). */
const PREFIX_SEED = 18 << 3;
const SEAL_INFO = 'agent-switchboard seal key v1';
/** The DER prefixes of a raw 32-byte private key (PKCS#8) of each curve. */
const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** One node's (or operator's) secret keys, made from its seed. Holds KeyObjects only. */
export interface NodeKeys {
  /** The Ed25519 public key as an nkey (`U…`): the roster's `signingKey`. */
  readonly publicKey: string;
  /** The X25519 public key, base64url: the roster's `sealingKey`. */
  readonly sealingKey: string;
  /** Signs `data` (Ed25519): 64 bytes. */
  sign(data: Uint8Array): Buffer;
  /** The X25519 shared secret with a peer's sealing public key (base64url). */
  agree(peerSealingKey: string): Buffer;
}

function base32Decode(text: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = ALPHABET.indexOf(ch);
    if (v < 0) throw new BusError('INVALID_ARGUMENT', `not base32: ${JSON.stringify(ch)}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** Splits an nkey's bytes into payload and checks its CRC-16 (little endian, as nkeys writes it). */
function checked(text: string, what: string): Buffer {
  const raw = base32Decode(text);
  if (raw.length < 3) throw new BusError('INVALID_ARGUMENT', `${what} is too short`);
  const body = raw.subarray(0, raw.length - 2);
  if (raw.readUInt16LE(raw.length - 2) !== crc16(body)) throw new BusError('INVALID_ARGUMENT', `${what} has a bad checksum`);
  return body;
}

/** The 32 raw Ed25519 public key bytes of a `U…` nkey. Throws `INVALID_ARGUMENT`. */
export function rawPublicKey(publicKey: string): Buffer {
  if (!PUBLIC_KEY_PATTERN.test(publicKey)) throw new BusError('INVALID_ARGUMENT', `not a user public nkey (U…): ${JSON.stringify(String(publicKey).slice(0, 80))}`);
  const body = checked(publicKey, `public key ${publicKey}`);
  if (body.length !== 33 || body[0] !== PREFIX_USER) throw new BusError('INVALID_ARGUMENT', `not a user public nkey: ${publicKey}`);
  return body.subarray(1);
}

/** The `U…` nkey of 32 raw Ed25519 public key bytes. */
export function encodePublicKey(raw: Uint8Array): string {
  const body = Buffer.concat([Buffer.from([PREFIX_USER]), raw]);
  const crc = Buffer.alloc(2);
  crc.writeUInt16LE(crc16(body));
  return base32Encode(Buffer.concat([body, crc]));
}

/** The 32 raw bytes of a `SU…` seed. Throws `INVALID_ARGUMENT` without echoing the seed. */
function rawSeed(seed: string): Buffer {
  if (!SEED_PATTERN.test(seed)) throw new BusError('INVALID_ARGUMENT', 'not a user nkey seed (SU… and 56 base32 characters)');
  const body = checked(seed, 'the seed');
  // Two prefix bytes: the seed marker and the key type (user) packed across them.
  if (body.length !== 34 || (body[0]! & 0xf8) !== PREFIX_SEED || (((body[0]! & 7) << 5) | ((body[1]! & 0xf8) >> 3)) !== PREFIX_USER) {
    throw new BusError('INVALID_ARGUMENT', 'not a user nkey seed');
  }
  return body.subarray(2);
}

const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

/** An Ed25519 public KeyObject of a `U…` nkey (for verifying). */
export function verifierOf(publicKey: string): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64url(rawPublicKey(publicKey)) }, format: 'jwk' });
}

/** True when `signature` is `publicKey`'s Ed25519 signature of `data`. Never throws. */
export function verifySignature(key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  if (signature.byteLength !== 64) return false;
  try {
    return verify(null, data, key, signature);
  } catch {
    return false;
  }
}

/** The sealing public key (X25519, base64url) of 32 raw bytes. */
function sealingPublic(privateKey: KeyObject): string {
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  return String(jwk.x);
}

/**
 * The keys of a seed: its Ed25519 signing key and the X25519 sealing key derived from it
 * (HKDF-SHA256 of the seed). Throws `INVALID_ARGUMENT` for a seed that is not a user nkey.
 */
export function keysFromSeed(seedText: string | Uint8Array): NodeKeys {
  const text = (typeof seedText === 'string' ? seedText : new TextDecoder().decode(seedText)).trim();
  const seed = rawSeed(text);
  const signer = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8, seed]), format: 'der', type: 'pkcs8' });
  const pub = createPublicKey(signer).export({ format: 'jwk' });
  const publicKey = encodePublicKey(Buffer.from(String(pub.x), 'base64url'));
  const sealSecret = Buffer.from(hkdfSync('sha256', seed, Buffer.alloc(0), SEAL_INFO, 32));
  const sealer = createPrivateKey({ key: Buffer.concat([X25519_PKCS8, sealSecret]), format: 'der', type: 'pkcs8' });
  const sealingKey = sealingPublic(sealer);
  seed.fill(0);
  sealSecret.fill(0);
  return Object.freeze({
    publicKey,
    sealingKey,
    sign: (data: Uint8Array) => sign(null, data, signer),
    agree: (peer: string) => {
      if (!SEALING_KEY_PATTERN.test(peer)) throw new BusError('INVALID_ARGUMENT', `not a sealing key: ${JSON.stringify(peer.slice(0, 80))}`);
      return diffieHellman({ privateKey: sealer, publicKey: createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: peer }, format: 'jwk' }) });
    },
  });
}
