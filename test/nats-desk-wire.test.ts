// The frames of fleet approvals, byte by byte: what a hostile peer or broker can send to
// either end is refused with a BusError naming why, never thrown or half believed.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { isBusError } from '../src/errors.js';
import { ephemeralKey, openFrame, sealFor, sealFrame } from '../src/nats/desk-wire.js';
import { keysFromSeed, verifierOf } from '../src/nats/keys.js';

const nkeys = createRequire(import.meta.url)('@nats-io/nkeys') as { createUser(): { getSeed(): Uint8Array } };
const keys = () => keysFromSeed(new TextDecoder().decode(nkeys.createUser().getSeed()));
const text = new TextEncoder();

describe('openFrame()', () => {
  const signer = keys();
  const key = verifierOf(signer.publicKey);

  it('returns the body of a frame signed by the expected key', () => {
    expect(openFrame(sealFrame(signer, { kind: 'list', n: 1 }), () => key)).toEqual({ kind: 'list', n: 1 });
  });

  it.each([
    ['bytes that are not UTF-8 JSON', new Uint8Array([0xff, 0xfe]), /not JSON/],
    ['JSON that is not an object', text.encode('7'), /not an object/],
    ['a frame without its signature', text.encode(JSON.stringify({ body: '{}' })), /lacks its body or signature/],
    ['a body that is not JSON', text.encode(JSON.stringify({ body: '{', sig: '' })), /body is not JSON/],
    ['a body that is an array', text.encode(JSON.stringify({ body: '[]', sig: '' })), /body is not an object/],
  ])('refuses %s with INVALID_ARGUMENT', (_what, data, why) => {
    const body = openFrame(data, () => key);
    expect(isBusError(body) && body.code).toBe('INVALID_ARGUMENT');
    expect((body as Error).message).toMatch(why);
  });

  it('refuses a frame signed by another key, and one whose body was changed after signing', () => {
    expect((openFrame(sealFrame(keys(), { kind: 'list' }), () => key) as Error).message).toMatch(/signature does not verify/);
    const outer = JSON.parse(new TextDecoder().decode(sealFrame(signer, { decision: 'reject' }))) as { body: string; sig: string };
    const changed = text.encode(JSON.stringify({ ...outer, body: outer.body.replace('reject', 'approve') }));
    expect((openFrame(changed, () => key) as Error).message).toMatch(/signature does not verify/);
  });

  it("refuses a signer the caller's roster does not know, with the caller's reason", () => {
    expect((openFrame(sealFrame(signer, { op: 'mallory' }), () => 'operator "mallory" is not in the roster') as Error).message).toMatch(/operator "mallory" is not in the roster/);
  });
});

describe('sealFor() / ephemeralKey()', () => {
  it('opens only with the one-time key and the nonce it was sealed for; a changed ciphertext fails', () => {
    const eph = ephemeralKey();
    const sealed = sealFor(eph.publicKey, 'nonce-0123456789abcdef', [{ id: 'm1', payload: { amount: 42 } }]);
    expect(JSON.stringify(sealed)).not.toContain('amount');
    expect(eph.open(sealed, 'nonce-0123456789abcdef')).toEqual([{ id: 'm1', payload: { amount: 42 } }]);
    expect(() => eph.open(sealed, 'another-nonce-0123456789')).toThrow();
    expect(() => ephemeralKey().open(sealed, 'nonce-0123456789abcdef')).toThrow();
    const flipped = { ...sealed, ct: (sealed.ct![0] === 'A' ? 'B' : 'A') + sealed.ct!.slice(1) };
    expect(() => eph.open(flipped, 'nonce-0123456789abcdef')).toThrow();
    expect(() => eph.open(null, 'nonce-0123456789abcdef')).toThrow(/not sealed/);
  });

  it('refuses a one-time key that is not an X25519 public key', () => {
    expect(() => sealFor('not a key', 'n', [])).toThrow(/not an X25519 public key/);
  });
});
