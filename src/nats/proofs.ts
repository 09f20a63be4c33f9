/**
 * The proof on every frame a node publishes to another (ask, delegate, notify, reply, error,
 * progress, cancel): who made it, signed with that node's roster key, and, when sealed, the
 * body encrypted for the other node.
 *
 * A frame is a proof line, then the frame as {@link ./wire.ts} writes it (its metadata line
 * and body): `p <node> <seal> <signature>\n<line>\n<body>`. The signature (Ed25519, 64 bytes,
 * base64url) covers the subject (recipient, sender and type of a message; the requester's
 * inbox and the message id of an answer), the seal flag, the metadata line and the SHA-256
 * of the plaintext body: a frame cannot be re-targeted, re-typed or given another payload,
 * and the digest is what both nodes' logs record, so a receipt row can keep the proof and
 * be checked later against the roster alone (`switchboard verify --roster`).
 *
 * Sealed (`s`): the body is AES-256-GCM under a key derived (HKDF-SHA256) from the X25519
 * agreement of the two nodes' sealing keys and the direction (sender → recipient), with a
 * random 96-bit nonce before the ciphertext and the signed prefix as associated data.
 *
 * Digests (`proof: 'digest'`): each frame carries a MAC (`m.…`) under the pair's key, and
 * every {@link DIGEST_EVERY}th frame to a peer (or the first after {@link DIGEST_MS}) is
 * signed instead, with a fifth field `c.<h>.<h>…` listing the covers of the MAC'd frames sent
 * to that peer since the previous signed one: each `h` the first 16 bytes (base64url) of the
 * SHA-256 of what that frame's MAC covered. The signature covers the list too, so the
 * receiver's log keeps a proof anyone holding the roster can check for every MAC'd row that a
 * later signed row covers.
 *
 * The tail: covers still pending {@link DIGEST_MS} after a MAC'd frame (or when the link
 * closes) go out in a signed digest frame of their own ({@link Proofs.digests}) on the
 * `digest` subject of a pair of agents the MAC'd frames were exchanged by: metadata line
 * `sb2 d <id> <ts>`, an empty body, and the signature over the covers like any signed frame.
 * The receiver records it as a digest record of its audit log (a record of the two nodes, not a
 * message), so every MAC'd row of a quiet log is covered.
 *
 * Without a roster (an insecure fleet) the line is `p <node> - -` and nothing is checked.
 */
import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hash, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { BusError } from '../errors.js';
import { verifySignature, type NodeKeys } from './keys.js';
import type { RosterIndex } from './roster.js';
import { WIRE_ID_PATTERN, WIRE_VERSION } from './wire.js';

const NEWLINE = 0x0a;
/**
 * At most this many frames to one peer between two signed ones (digest proofs). Receivers
 * of the same wire version refuse a longer list of covers or a proof line past
 * {@link MAX_PROOF_LINE}: raising either needs a new wire version, or a fleet that upgrades
 * one node at a time stops understanding its own signed frames.
 */
export const DIGEST_EVERY = 64;
/** The first frame to a peer this long after the last signed one is signed (digest proofs). */
export const DIGEST_MS = 100;
/** The longest proof line: `p`, a node id, a flag, a signature and the covers of up to {@link DIGEST_EVERY} frames. */
export const MAX_PROOF_LINE = 2048;
/** A signed frame's covers: `c.` then up to DIGEST_EVERY - 1 covers of 16 bytes in base64url, dot-separated. */
const COVERS = new RegExp(`^c(?:\\.[A-Za-z0-9_-]{22}){1,${DIGEST_EVERY - 1}}$`);
const SIGNATURE = /^[A-Za-z0-9_-]{86}$/;
/** A MAC proof: `m.` and 32 bytes of HMAC-SHA256 in base64url. */
const MAC = /^m\.[A-Za-z0-9_-]{43}$/;
const ABSENT = '-';
const NONCE = 12;
/** Nonces drawn from the CSPRNG at once: one call per this many sealed frames instead of one each. */
const NONCES_PER_DRAW = 256;
const TAG = 16;

/** What a verified frame tells: its signer and the frame to decode. */
export interface Opened {
  /** The node that made the frame: the signer, verified against the roster (as written on an insecure fleet). */
  readonly node: string;
  /** Whether the body was sealed. */
  readonly sealed: boolean;
  /** Whether the proof is a signature listing covers (a digest). */
  readonly covers: boolean;
  /** The metadata line and the plaintext body, as wire.ts decodes them. */
  readonly frame: Uint8Array;
  /** The proof to keep with a receipt (JSON): signer, key, signature, subject, line; undefined on an insecure fleet. */
  readonly proof: string | undefined;
}

/** Signs and seals what this node sends; verifies and opens what it receives. */
export class Proofs {
  readonly #bus: string;
  readonly #node: string;
  readonly #roster: RosterIndex | undefined;
  readonly #keys: NodeKeys | undefined;
  /** `from \0 to` → the AES key of that direction. */
  readonly #sealKeys = new Map<string, KeyObject>();
  /** `from \0 to` → the HMAC key of that direction (a KeyObject: the key is imported once, not per frame). */
  readonly #macKeys = new Map<string, KeyObject>();
  readonly #mac: boolean;
  readonly #digest: boolean;
  /** Per peer (digest proofs): covers of the MAC'd frames sent since the last signed one, and when that was. */
  readonly #pendingCovers = new Map<string, Pending>();
  /** Makes the ids of digest frames. */
  #digestSeq = 0;
  readonly #now: () => number;
  /** Random bytes not yet used as nonces, from {@link Proofs.#nonceAt} on. */
  #nonces = Buffer.alloc(0);
  #nonceAt = 0;

  /**
   * `mac: true` authenticates each frame this node sends with HMAC-SHA256 under a key only
   * the two nodes share (from the X25519 agreement of their roster sealing keys and the
   * direction) instead of an Ed25519 signature: about 25 times cheaper, and just as sure for
   * the receiver, but the receiver's log then proves what a peer sent only to this fleet
   * (either end of a pair could have made the MAC), not to a third party. Frames of either
   * kind are accepted.
   *
   * `proof: 'digest'` (the default) MACs routine frames and signs one in {@link DIGEST_EVERY}
   * to each peer (or the first after {@link DIGEST_MS}), covering the MAC'd ones sent before
   * it; `'signature'` signs every frame.
   */
  constructor(options: { bus: string; node: string; roster?: RosterIndex; keys?: NodeKeys; proof?: 'signature' | 'mac' | 'digest'; now?: () => number }) {
    this.#bus = options.bus;
    this.#node = options.node;
    this.#roster = options.roster;
    this.#keys = options.keys;
    this.#mac = options.proof === 'mac';
    this.#digest = options.proof === undefined || options.proof === 'digest';
    this.#now = options.now ?? Date.now;
  }

  /** True when frames are signed and checked (a roster was given). */
  get verifying(): boolean {
    return this.#roster !== undefined;
  }

  /**
   * A frame for `subject`: `line` is its metadata line, `body` the plaintext. Sealed for
   * `peer` when `seal` is true (and a roster is there).
   */
  wrap(subject: string, line: string, body: string, peer: string | undefined, seal: boolean, digestSubject?: string): Uint8Array {
    const keys = this.#keys;
    if (keys === undefined || this.#roster === undefined) return Buffer.from(`p ${this.#node} ${ABSENT} ${ABSENT}\n${line}\n${body}`, 'utf8');
    const plain = Buffer.from(body, 'utf8');
    const sealed = seal && peer !== undefined;
    const flag = sealed ? 's' : 'o';
    let signed = signedBytes(this.#bus, subject, flag, line, plain);
    let proof: string;
    const pending = this.#digest && peer !== undefined ? this.#pending(peer) : undefined;
    if (pending !== undefined && pending.covers.length < DIGEST_EVERY - 1 && this.#now() - pending.signedAt < DIGEST_MS) {
      proof = `m.${createHmac('sha256', this.#key('mac', this.#node, peer!)).update(signed).digest('base64url')}`;
      pending.covers.push(coverOf(signed));
      if (digestSubject !== undefined) pending.route = digestSubject;
    } else if (pending !== undefined) {
      const covers = pending.covers.length === 0 ? undefined : `c.${pending.covers.join('.')}`;
      if (covers !== undefined) signed = Buffer.concat([signed, Buffer.from(`\n${covers}`, 'latin1')]);
      proof = covers === undefined ? keys.sign(signed).toString('base64url') : `${keys.sign(signed).toString('base64url')} ${covers}`;
      pending.covers = [];
      pending.signedAt = this.#now();
    } else {
      proof = this.#mac && peer !== undefined ? `m.${createHmac('sha256', this.#key('mac', this.#node, peer)).update(signed).digest('base64url')}` : keys.sign(signed).toString('base64url');
    }
    const head = Buffer.from(`p ${this.#node} ${flag} ${proof}\n${line}\n`, 'latin1');
    if (!sealed) return Buffer.concat([head, plain]);
    const nonce = this.#nonce();
    const cipher = createCipheriv('aes-256-gcm', this.#key('seal', this.#node, peer), nonce);
    cipher.setAAD(signedPrefix(this.#bus, subject, flag, line));
    const ct = cipher.update(plain);
    const last = cipher.final();
    return Buffer.concat([head, nonce, ct, last, cipher.getAuthTag()]);
  }

  /**
   * Verifies a frame from a peer against the roster (before anything else is read) and
   * opens it. Throws `POLICY_DENIED` naming the signature or the roster: an unknown node, a
   * bad signature, a body that does not decrypt, an unsealed frame when `requireSealed`.
   */
  open(subject: string, data: Uint8Array, requireSealed: boolean): Opened {
    const end = data.byteLength > MAX_PROOF_LINE ? data.subarray(0, MAX_PROOF_LINE).indexOf(NEWLINE) : data.indexOf(NEWLINE);
    if (end < 0) throw denied('no proof line (a frame from a node of another version, or forged)');
    const [p, node, flag, sig, covers, extra] = Buffer.from(data.buffer, data.byteOffset, end).toString('latin1').split(' ', 6);
    if (p !== 'p' || node === undefined || !WIRE_ID_PATTERN.test(node) || extra !== undefined) throw denied('malformed proof line');
    const rest = data.subarray(end + 1);
    const roster = this.#roster;
    if (roster === undefined) return { node, sealed: false, covers: false, frame: rest, proof: undefined };
    const key = roster.verifier(node);
    if (key === undefined) throw denied(`signed by node "${node}", which is not in the roster`);
    if (flag !== 'o' && flag !== 's') throw denied(`node "${node}" sent a frame without a signature`);
    if (sig === undefined || !(SIGNATURE.test(sig) || MAC.test(sig))) throw denied(`node "${node}" sent a malformed signature`);
    if (covers !== undefined && (!SIGNATURE.test(sig) || !COVERS.test(covers))) throw denied(`node "${node}" sent a malformed digest`);
    if (requireSealed && flag !== 's') throw denied(`node "${node}" sent an unsealed frame, and this node requires sealing`);
    const lineEnd = rest.byteLength > 4096 ? rest.subarray(0, 4096).indexOf(NEWLINE) : rest.indexOf(NEWLINE);
    if (lineEnd < 0) throw denied('no metadata line');
    const line = Buffer.from(rest.buffer, rest.byteOffset, lineEnd).toString('latin1');
    let plain = Buffer.from(rest.buffer, rest.byteOffset + lineEnd + 1, rest.byteLength - lineEnd - 1);
    if (flag === 's') {
      if (plain.byteLength < NONCE + TAG) throw denied(`sealed body from node "${node}" is too short`);
      try {
        const decipher = createDecipheriv('aes-256-gcm', this.#key('seal', node, this.#node), plain.subarray(0, NONCE));
        decipher.setAAD(signedPrefix(this.#bus, subject, flag, line));
        decipher.setAuthTag(plain.subarray(plain.byteLength - TAG));
        plain = Buffer.concat([decipher.update(plain.subarray(NONCE, plain.byteLength - TAG)), decipher.final()]);
      } catch {
        throw denied(`sealed body from node "${node}" does not decrypt for this node (not sealed for it, or altered)`);
      }
    }
    const text = `${signedText(this.#bus, subject, flag, line)}${hash('sha256', plain, 'hex')}`;
    const signed = Buffer.from(covers === undefined ? text : `${text}\n${covers}`, 'latin1');
    if (sig.startsWith('m.')) {
      const want = createHmac('sha256', this.#key('mac', node, this.#node)).update(signed).digest();
      if (!timingSafeEqual(want, Buffer.from(sig.slice(2), 'base64url'))) throw denied(`the MAC of node "${node}" does not verify under the key this node shares with it (forged or altered)`);
    } else if (!verifySignature(key, signed, Buffer.from(sig, 'base64url'))) {
      throw denied(`the signature of node "${node}" does not verify under its roster key (forged or altered)`);
    }
    const frame = flag === 's' ? Buffer.concat([Buffer.from(`${line}\n`, 'latin1'), plain]) : rest;
    const proof = JSON.stringify(covers === undefined ? { v: 1, node, key: roster.node(node)!.signingKey, sig, subject, seal: flag, line } : { v: 1, node, key: roster.node(node)!.signingKey, sig, subject, seal: flag, line, covers });
    return { node, sealed: flag === 's', covers: covers !== undefined, frame, proof };
  }

  /** True while some MAC'd frame to a peer is not yet covered by a signed one (digest proofs). */
  get pending(): boolean {
    for (const p of this.#pendingCovers.values()) if (p.covers.length > 0) return true;
    return false;
  }

  /**
   * Signed digest frames for every peer with covers pending (digest proofs), each on the
   * `digest` subject last given for that peer; the pending covers are then sent. `ts` is the
   * signed time the receiver's freshness window checks.
   */
  digests(): Array<{ subject: string; data: Uint8Array }> {
    const keys = this.#keys;
    if (keys === undefined || this.#roster === undefined) return [];
    const out: Array<{ subject: string; data: Uint8Array }> = [];
    for (const pending of this.#pendingCovers.values()) {
      if (pending.covers.length === 0 || pending.route === undefined) continue;
      const line = `${WIRE_VERSION} d d${Date.now().toString(36)}.${(++this.#digestSeq).toString(36)} ${this.#now()}`;
      const covers = `c.${pending.covers.join('.')}`;
      const signed = Buffer.concat([signedBytes(this.#bus, pending.route, 'o', line, EMPTY), Buffer.from(`\n${covers}`, 'latin1')]);
      out.push({ subject: pending.route, data: Buffer.from(`p ${this.#node} o ${keys.sign(signed).toString('base64url')} ${covers}\n${line}\n`, 'latin1') });
      pending.covers = [];
      pending.signedAt = this.#now();
    }
    return out;
  }

  /** A fresh random 96-bit nonce (random, never a counter: the keys outlive a restart). */
  #nonce(): Buffer {
    if (this.#nonceAt >= this.#nonces.byteLength) {
      this.#nonces = randomBytes(NONCE * NONCES_PER_DRAW);
      this.#nonceAt = 0;
    }
    const nonce = this.#nonces.subarray(this.#nonceAt, this.#nonceAt + NONCE);
    this.#nonceAt += NONCE;
    return nonce;
  }

  /** What this node still has to cover for `peer` (digest proofs). */
  #pending(peer: string): Pending {
    let pending = this.#pendingCovers.get(peer);
    if (pending === undefined) {
      // The first frame to a peer is signed.
      pending = { covers: [], signedAt: -Infinity, route: undefined };
      if (this.#pendingCovers.size > 10_000) this.#pendingCovers.clear();
      this.#pendingCovers.set(peer, pending);
    }
    return pending;
  }

  /** The AES (`seal`) or HMAC (`mac`) key of the direction `from` → `to` (one of them is this node). */
  #key(use: 'seal' | 'mac', from: string, to: string): KeyObject {
    const cache = use === 'seal' ? this.#sealKeys : this.#macKeys;
    const id = `${from}\0${to}`;
    let key = cache.get(id);
    if (key === undefined) {
      const peer = from === this.#node ? to : from;
      const entry = this.#roster?.node(peer);
      if (entry === undefined || this.#keys === undefined) throw denied(`node "${peer}" is not in the roster: no key agreed with it`);
      const shared = this.#keys.agree(entry.sealingKey);
      key = createSecretKey(Buffer.from(hkdfSync('sha256', shared, Buffer.alloc(0), `sb-${use}1\n${this.#bus}\n${from}\n${to}`, 32)));
      if (cache.size > 10_000) cache.clear();
      cache.set(id, key);
    }
    return key;
  }
}

/** Covers of MAC'd frames not yet listed by a signed one, to one peer. */
interface Pending {
  covers: string[];
  signedAt: number;
  /** The `digest` subject to send them on when no frame follows (a pair of agents of the two nodes). */
  route: string | undefined;
}

const EMPTY = new Uint8Array(0);

/** The SHA-256 (hex) of a digest frame's empty body: the payload hash of the digest record that records it. */
export const DIGEST_BODY_HASH = hash('sha256', EMPTY, 'hex');

/** Reads a digest frame's metadata line (`sb2 d <id> <ts>`); undefined when malformed. */
export function readDigestLine(frame: Uint8Array): { id: string; ts: number } | undefined {
  const end = frame.subarray(0, 512).indexOf(NEWLINE);
  if (end < 0 || end !== frame.byteLength - 1) return undefined;
  const [v, kind, id, ts, extra] = Buffer.from(frame.buffer, frame.byteOffset, end).toString('latin1').split(' ', 5);
  if (v !== WIRE_VERSION || kind !== 'd' || id === undefined || !WIRE_ID_PATTERN.test(id) || ts === undefined || !/^[0-9]{1,15}$/.test(ts) || extra !== undefined) return undefined;
  return { id, ts: Number(ts) };
}

/** What every proof of a frame starts with: its context and metadata line (latin1). */
function signedText(bus: string, subject: string, flag: string, line: string): string {
  return `sb-msg1\n${bus}\n${subject}\n${flag}\n${line}\n`;
}

/** {@link signedText} as bytes: the associated data of a sealed body. */
function signedPrefix(bus: string, subject: string, flag: string, line: string): Buffer {
  return Buffer.from(signedText(bus, subject, flag, line), 'latin1');
}

/** The cover of a MAC'd frame that a later signed frame lists: 16 bytes of the SHA-256 of what its MAC covered. */
function coverOf(signed: Uint8Array): string {
  return hash('sha256', signed, 'buffer').subarray(0, 16).toString('base64url');
}

/** What a signature covers: the frame's context, its line and the hex SHA-256 of its plaintext body. */
function signedBytes(bus: string, subject: string, flag: string, line: string, plain: Uint8Array): Buffer {
  return Buffer.from(`${signedText(bus, subject, flag, line)}${hash('sha256', plain, 'hex')}`, 'latin1');
}

/**
 * What a proof kept in a receipt row shows, checked against the roster: a signature of
 * `node` that verifies over the recorded subject, line and the row's payload hash (with the
 * covers of the MAC'd frames it vouches for, when it lists them); or a MAC, which a third
 * party can check only through a signed row of the same node whose covers list `cover`.
 */
export type RecordedProof =
  | { readonly kind: 'signed'; readonly node: string; readonly covers: readonly string[] }
  | { readonly kind: 'mac'; readonly node: string; readonly cover: string }
  | { readonly kind: 'bad'; readonly why: string };

/** Reads and checks a proof kept in a receipt row (see {@link RecordedProof}). */
export function readRecordedProof(proofJson: string, payloadHash: string, bus: string, roster: RosterIndex): RecordedProof {
  let p: { node?: unknown; key?: unknown; sig?: unknown; subject?: unknown; seal?: unknown; line?: unknown; covers?: unknown };
  try {
    p = JSON.parse(proofJson) as typeof p;
  } catch {
    return { kind: 'bad', why: 'the recorded proof is not JSON' };
  }
  const { node, key, sig, subject, seal, line, covers } = p;
  if (typeof node !== 'string' || typeof sig !== 'string' || typeof subject !== 'string' || typeof line !== 'string' || (seal !== 'o' && seal !== 's')) return { kind: 'bad', why: 'the recorded proof is malformed' };
  if (covers !== undefined && (typeof covers !== 'string' || !COVERS.test(covers))) return { kind: 'bad', why: 'the recorded covers are malformed' };
  const verifier = roster.verifier(node);
  if (verifier === undefined) return { kind: 'bad', why: `node "${node}" is not in the roster` };
  if (roster.node(node)!.signingKey !== key) return { kind: 'bad', why: `the recorded key of node "${node}" is not its roster key` };
  const body = Buffer.concat([signedPrefix(bus, subject, seal, line), Buffer.from(payloadHash, 'latin1')]);
  if (sig.startsWith('m.')) return { kind: 'mac', node, cover: coverOf(body) };
  const signed = covers === undefined ? body : Buffer.concat([body, Buffer.from(`\n${covers}`, 'latin1')]);
  if (!verifySignature(verifier, signed, Buffer.from(sig, 'base64url'))) return { kind: 'bad', why: `the signature of node "${node}" does not verify` };
  return { kind: 'signed', node, covers: covers === undefined ? [] : covers.slice(2).split('.') };
}

/**
 * Reads and checks the proof kept in a digest record (a peer node's signed digest frame):
 * a signature of `peerNode` listing covers, over a digest line that names `digestId`, and the
 * record's payload hash (an empty body). Anything else is `bad`: a MAC, no covers, another
 * signer than the record names, another id.
 */
export function readRecordedDigest(proofJson: string, payloadHash: string, digestId: string, peerNode: string, bus: string, roster: RosterIndex): RecordedProof {
  const read = readRecordedProof(proofJson, payloadHash, bus, roster);
  if (read.kind === 'bad') return read;
  if (read.kind === 'mac') return { kind: 'bad', why: 'a digest record must hold a signature, not a MAC' };
  if (read.node !== peerNode) return { kind: 'bad', why: `the digest was signed by node "${read.node}", not by node "${peerNode}" the record names` };
  if (read.covers.length === 0) return { kind: 'bad', why: 'the digest lists no covers' };
  const line = (JSON.parse(proofJson) as { line: string }).line;
  if (readDigestLine(Buffer.from(`${line}\n`, 'latin1'))?.id !== digestId) return { kind: 'bad', why: `the signed line is not that of digest ${JSON.stringify(digestId)}` };
  return read;
}

function denied(message: string): BusError {
  return new BusError('POLICY_DENIED', `refused before reading: ${message}`);
}
