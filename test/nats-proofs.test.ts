// Proofs without a server: what a sealed frame carries and what its receiver accepts.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { keysFromSeed } from '../src/nats/keys.js';
import { Proofs } from '../src/nats/proofs.js';
import { checkRoster, RosterIndex } from '../src/nats/roster.js';

const nkeys = createRequire(import.meta.url)('@nats-io/nkeys') as { createUser(): { getSeed(): Uint8Array } };
const seed = () => new TextDecoder().decode(nkeys.createUser().getSeed());

function pair(proof: 'signature' | 'mac' | 'digest') {
  const k1 = keysFromSeed(seed());
  const k2 = keysFromSeed(seed());
  const roster = new RosterIndex(
    checkRoster({
      v: 1,
      bus: 'shop',
      nodes: { n1: { signingKey: k1.publicKey, sealingKey: k1.sealingKey, agents: ['alice'] }, n2: { signingKey: k2.publicKey, sealingKey: k2.sealingKey, agents: ['bob'] } },
      operators: {},
    }),
  );
  return { n1: new Proofs({ bus: 'shop', node: 'n1', roster, keys: k1, proof }), n2: new Proofs({ bus: 'shop', node: 'n2', roster, keys: k2, proof }) };
}

const SUBJECT = 'sb.shop.in.bob.alice.ask';
const LINE = 'sb2 q m1 0 c1 - 0 1000 normal';
const BODY = '{"card":"4111 1111 1111 1111"}';
/** Where a sealed frame's nonce starts: after the proof line and the metadata line. */
const nonceOf = (frame: Uint8Array) => {
  const buf = Buffer.from(frame);
  const start = buf.indexOf(0x0a, buf.indexOf(0x0a) + 1) + 1;
  return buf.subarray(start, start + 12).toString('hex');
};

describe('Proofs#wrap() sealed', () => {
  it.each(['signature', 'mac', 'digest'] as const)('gives every frame its own nonce and hides the body (proof %s), and the recipient opens each', (proof) => {
    const { n1, n2 } = pair(proof);
    const frames = Array.from({ length: 600 }, () => n1.wrap(SUBJECT, LINE, BODY, 'n2', true));
    // 600 frames span more than one draw of random nonces.
    expect(new Set(frames.map(nonceOf)).size).toBe(600);
    for (const frame of frames) {
      expect(Buffer.from(frame).includes('4111')).toBe(false);
      const opened = n2.open(SUBJECT, frame, true);
      expect(opened.sealed).toBe(true);
      expect(Buffer.from(opened.frame).toString('utf8')).toBe(`${LINE}\n${BODY}`);
    }
  });

  it('refuses a sealed frame whose ciphertext was altered, naming the sender', () => {
    const { n1, n2 } = pair('digest');
    const frame = Buffer.from(n1.wrap(SUBJECT, LINE, BODY, 'n2', true));
    frame[frame.byteLength - 20]! ^= 1;
    expect(() => n2.open(SUBJECT, frame, true)).toThrow(expect.objectContaining({ code: 'POLICY_DENIED', message: expect.stringContaining('node "n1" does not decrypt') }));
  });
});
