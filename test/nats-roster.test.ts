import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { claimsStreamDifferences } from '../src/nats/bucket.js';
import { keysFromSeed, verifierOf, verifySignature } from '../src/nats/keys.js';
import { checkRoster, covers, RosterIndex, type Roster } from '../src/nats/roster.js';

const nkeys = createRequire(import.meta.url)('@nats-io/nkeys') as { createUser(): { getSeed(): Uint8Array; getPublicKey(): string; verify(d: Uint8Array, s: Uint8Array): boolean } };
const user = () => {
  const kp = nkeys.createUser();
  return { kp, seed: new TextDecoder().decode(kp.getSeed()) };
};

function roster(nodes: Record<string, string[]>): Roster {
  return {
    v: 1,
    bus: 'shop',
    nodes: Object.fromEntries(Object.entries(nodes).map(([n, agents]) => {
      const k = keysFromSeed(user().seed);
      return [n, { signingKey: k.publicKey, sealingKey: k.sealingKey, agents }];
    })),
    operators: {},
  };
}

describe('keysFromSeed()', () => {
  it('derives the public key nkeys derives, and signatures nkeys verifies', () => {
    const { kp, seed } = user();
    const keys = keysFromSeed(`${seed}\n`);
    expect(keys.publicKey).toBe(kp.getPublicKey());
    const data = Buffer.from('what node n1 sent');
    const sig = keys.sign(data);
    expect(kp.verify(data, sig)).toBe(true);
    expect(verifySignature(verifierOf(keys.publicKey), data, sig)).toBe(true);
    expect(verifySignature(verifierOf(keys.publicKey), Buffer.from('something else'), sig)).toBe(false);
  });

  it('agrees the same sealing secret on both ends', () => {
    const a = keysFromSeed(user().seed);
    const b = keysFromSeed(user().seed);
    expect(a.agree(b.sealingKey).equals(b.agree(a.sealingKey))).toBe(true);
  });

  it('refuses a seed with a bad checksum without echoing it', () => {
    const { seed } = user();
    // A character in the middle: the last one carries padding bits a decoder may ignore.
    const i = Math.floor(seed.length / 2);
    const bad = `${seed.slice(0, i)}${seed[i] === 'A' ? 'B' : 'A'}${seed.slice(i + 1)}`;
    expect(() => keysFromSeed(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    try {
      keysFromSeed(bad);
    } catch (e) {
      expect((e as Error).message).not.toContain(bad);
    }
  });
});

describe('checkRoster()', () => {
  it('accepts a roster and answers who may serve what, patterns included', () => {
    const index = new RosterIndex(checkRoster(roster({ n1: ['alice'], n2: ['chat-*'] })));
    expect(index.mayServe('n1', 'alice')).toBe(true);
    expect(index.mayServe('n2', 'chat-42')).toBe(true);
    expect(index.mayServe('n2', 'alice')).toBe(false);
    expect(index.mayServe('n3', 'alice')).toBe(false);
    expect(covers(['chat-*'], 'chat')).toBe(false);
  });

  it('refuses an agent on two nodes, a pattern that covers another node\'s id, overlapping patterns and unknown keys, naming them', () => {
    expect(() => checkRoster(roster({ n1: ['a'], n2: ['a'] }))).toThrow(/agent "a" is listed on two nodes: "n1" and "n2"/);
    expect(() => checkRoster(roster({ n1: ['chat-1'], n2: ['chat-*'] }))).toThrow(/agent "chat-1" of node "n1" matches "chat-\*" of node "n2"/);
    expect(() => checkRoster(roster({ n1: ['c*'], n2: ['chat-*'] }))).toThrow(/overlaps/);
    expect(() => checkRoster({ ...roster({ n1: ['a'] }), extra: 1 })).toThrow(/unknown key "extra"/);
    expect(() => checkRoster({ ...roster({ n1: ['a b'] }) })).toThrow(/agent "a b" is neither an agent id/);
  });

  it('refuses two nodes with one sealing key (what is sealed for one would open for the other), naming both', () => {
    const r = roster({ n1: ['a'], n2: ['b'] });
    const shared = { ...r, nodes: { ...r.nodes, n2: { ...r.nodes.n2!, sealingKey: r.nodes.n1!.sealingKey } } };
    expect(() => checkRoster(shared)).toThrow(/nodes "n1" and "n2" have the same sealingKey/);
  });
});

describe('claimsStreamDifferences()', () => {
  const good = { subjects: ['$KV.sb_shop_agents.>'], max_msgs_per_subject: 1, allow_rollup_hdrs: false, deny_delete: true, deny_purge: true };
  const info = (config: object) => ({ config: { name: 'KV_sb_shop_agents', ...config } }) as never;

  it('finds none in the expected settings', () => {
    expect(claimsStreamDifferences(info(good), 'shop')).toEqual([]);
  });

  it('names each unexpected setting: extra subjects, rollup, purge, republish, mirror, sources', () => {
    const diff = claimsStreamDifferences(
      info({ ...good, subjects: ['$KV.sb_shop_agents.>', 'shop.in.>'], allow_rollup_hdrs: true, deny_purge: false, republish: { src: '>', dest: 'x.>' }, mirror: { name: 'X' }, sources: [{ name: 'Y' }] }),
      'shop',
    );
    expect(diff.join('; ')).toMatch(/subjects .*shop\.in\.>.*allow_rollup_hdrs is true.*deny_purge is false.*republish.*mirror.*sources/);
  });
});
