/**
 * The wire of fleet approvals (`fleetApprovals` at an operator, the desk service at each
 * node): every frame is `{ "body": "<JSON text>", "sig": "<base64 Ed25519>" }`, signed by its
 * sender's roster key over the UTF-8 bytes of `body`. The body names its kind, the bus and
 * the node, so a frame signed for one purpose, bus or node is refused for any other.
 *
 * - `list` (operator → node): `{ kind, bus, node, op, ts, nonce }`; answered by the node with
 *   `{ kind: 'listed', bus, node, nonce, items }` (the nonce binds the answer to the request).
 * - `decide` (operator → node): `{ kind, bus, node, op, ts, nonce, id, decision, note?, always?, reason? }`;
 *   answered `{ kind: 'decided', bus, node, nonce, ok: true, result? }` or `{ …, ok: false, code, message }`.
 * - `changed` (node → every operator): `{ kind, bus, node, ts, event: 'requested' | 'decided', approval, decision?, by?, reason? }`.
 */
import type { KeyObject } from 'node:crypto';
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
