/**
 * The wire of fleet approvals (`fleetApprovals` at an operator, the desk service at each
 * node): every frame is `{ "body": "<JSON text>", "sig": "<base64 Ed25519>" }`, signed by its
 * sender's roster key over the UTF-8 bytes of `body`. The body names its kind, the bus and
 * the node, so a frame signed for one purpose, bus or node is refused for any other.
 *
 * - `list` (operator → node): `{ kind, bus, node, op, ts, nonce, eph }`; answered by the node with
 *   `{ kind: 'listed', bus, node, nonce, sealed }` (the nonce binds the answer to the request;
 *   `sealed` is the held messages encrypted for the request's one-time X25519 key `eph`, since
 *   their payloads may be ones a sealed rule kept from the broker).
 * - `decide` (operator → node): `{ kind, bus, node, op, ts, nonce, id, decision, note?, always?, reason? }`;
 *   answered `{ kind: 'decided', bus, node, nonce, ok: true, result? }` or `{ …, ok: false, code, message }`.
 * - `changed` (node → every operator): `{ kind, bus, node, ts, event: 'requested' | 'decided', id, decision?, by?, reason? }`:
 *   no payload (every operator hears it); an operator lists the node again for a new hold.
 */
import { createCipheriv, createDecipheriv, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { BusError } from '../errors.js';
import { verifySignature } from './keys.js';

/** What signs a frame: a node's or an operator's keys. */
export interface Signer {
  sign(data: Uint8Array): Buffer;
}

/** The largest frame either end reads (a node's list of held messages included). */
export const MAX_DESK_FRAME = 8 * 1024 * 1024;

const utf8 = new TextEncoder();
const text = new TextDecoder('utf-8', { fatal: true });

/** Signs `body` (a plain JSON object) into a frame's bytes. */
export function sealFrame(signer: Signer, body: Record<string, unknown>): Uint8Array {
  const json = JSON.stringify(body);
  return utf8.encode(JSON.stringify({ body: json, sig: signer.sign(utf8.encode(json)).toString('base64') }));
}

/**
 * The body of a frame whose signature `verifierFor(body)` verifies, or a `BusError`
 * (`INVALID_ARGUMENT`) naming what is wrong: never throws.
 */
export function openFrame(data: Uint8Array, verifierFor: (body: Record<string, unknown>) => KeyObject | string): Record<string, unknown> | BusError {
  if (data.byteLength > MAX_DESK_FRAME) return refusal(`frame of ${data.byteLength} bytes exceeds ${MAX_DESK_FRAME}`);
  let outer: unknown;
  try {
    outer = JSON.parse(text.decode(data));
  } catch {
    return refusal('frame is not JSON');
  }
  if (typeof outer !== 'object' || outer === null) return refusal('frame is not an object');
  const { body, sig } = outer as Record<string, unknown>;
  if (typeof body !== 'string' || typeof sig !== 'string') return refusal('frame lacks its body or signature');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return refusal('frame body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return refusal('frame body is not an object');
  const key = verifierFor(parsed as Record<string, unknown>);
  if (typeof key === 'string') return refusal(key);
  if (!verifySignature(key, utf8.encode(body), Buffer.from(sig, 'base64'))) return refusal('its signature does not verify against the roster key of its signer');
  return parsed as Record<string, unknown>;
}

function refusal(message: string): BusError {
  return new BusError('INVALID_ARGUMENT', `fleet approvals: refused a frame: ${message}`);
}

const SEAL_INFO = 'agent-switchboard fleet approvals v1';

/** A fresh X25519 key pair for one list request: its public half (base64url) goes in the signed request. */
export function ephemeralKey(): { readonly publicKey: string; open(sealed: unknown, nonce: string): unknown } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return {
    publicKey: String(publicKey.export({ format: 'jwk' }).x),
    open(sealed, nonce) {
      if (typeof sealed !== 'object' || sealed === null) throw new BusError('INVALID_ARGUMENT', 'fleet approvals: the answer is not sealed');
      const { eph, iv, ct, tag } = sealed as Record<string, unknown>;
      if (typeof eph !== 'string' || typeof iv !== 'string' || typeof ct !== 'string' || typeof tag !== 'string') throw new BusError('INVALID_ARGUMENT', 'fleet approvals: the sealed answer lacks a field');
      const key = sealKey(diffieHellman({ privateKey, publicKey: x25519(eph) }), nonce);
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return JSON.parse(Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8')) as unknown;
    },
  };
}

/**
 * `value` as JSON, encrypted for the holder of `peer` (an X25519 public key, base64url):
 * a fresh key pair of this side, HKDF-SHA256 of the shared secret salted with the request's
 * nonce, AES-256-GCM. Held messages carry payloads a sealed rule kept from the broker.
 */
export function sealFor(peer: string, nonce: string, value: unknown): Record<string, string> {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const key = sealKey(diffieHellman({ privateKey, publicKey: x25519(peer) }), nonce);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  return { eph: String(publicKey.export({ format: 'jwk' }).x), iv: iv.toString('base64url'), ct: ct.toString('base64url'), tag: cipher.getAuthTag().toString('base64url') };
}

function sealKey(shared: Buffer, nonce: string): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.from(nonce, 'utf8'), SEAL_INFO, 32));
}

function x25519(raw: string): KeyObject {
  if (!/^[A-Za-z0-9_-]{43}$/.test(raw)) throw new BusError('INVALID_ARGUMENT', 'fleet approvals: not an X25519 public key');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw }, format: 'jwk' });
}
