import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { keysFromSeed } from '../src/nats/keys.js';
import { natsTransport, type Roster } from '../src/nats/index.js';

const nkeys = createRequire(import.meta.url)('@nats-io/nkeys') as { createUser(): { getSeed(): Uint8Array } };
const newSeed = () => new TextDecoder().decode(nkeys.createUser().getSeed());
const seedA = newSeed();
const keysA = keysFromSeed(seedA);
const roster: Roster = { v: 1, bus: 'shop', nodes: { a: { signingKey: keysA.publicKey, sealingKey: keysA.sealingKey, agents: ['x'] } }, operators: {} };
// Port 1 never answers: each of these is refused before any connect is tried.
const servers = 'nats://127.0.0.1:1';

describe('natsTransport()', () => {
  it('rejects a misspelled option with INVALID_ARGUMENT naming the key', async () => {
    await expect(natsTransport({ servers: 'nats://127.0.0.1:4222', bus: 'shop', leseMs: 10 } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('"leseMs"') });
  });

  it('rejects a bus name that is not one subject token', async () => {
    await expect(natsTransport({ servers: 'nats://x', bus: 'a.b' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('bus') });
  });

  it('rejects with TRANSPORT_UNAVAILABLE naming the servers when no broker answers', async () => {
    await expect(natsTransport({ servers: ['nats://127.0.0.1:1'], bus: 'shop', insecure: true, connectTimeoutMs: 500 })).rejects.toMatchObject({
      code: 'TRANSPORT_UNAVAILABLE',
      message: expect.stringContaining('nats://127.0.0.1:1'),
    });
  });

  it('refuses to start without a roster unless insecure: true, and refuses both at once', async () => {
    await expect(natsTransport({ servers, bus: 'shop' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/no roster given/) });
    await expect(natsTransport({ servers, bus: 'shop', roster, nkeySeed: seedA, insecure: true })).rejects.toMatchObject({ message: expect.stringMatching(/either `roster` or `insecure: true`/) });
  });

  it("refuses a roster without this node's seed, a roster of another bus, and a seed no roster node has, naming the key", async () => {
    await expect(natsTransport({ servers, bus: 'shop', roster })).rejects.toMatchObject({ message: expect.stringMatching(/needs this node's `nkeySeed`/) });
    await expect(natsTransport({ servers, bus: 'other', roster, nkeySeed: seedA })).rejects.toMatchObject({ message: expect.stringMatching(/the roster is for bus "shop", not "other"/) });
    const stranger = newSeed();
    await expect(natsTransport({ servers, bus: 'shop', roster, nkeySeed: stranger })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining(`the seed given is that of key ${keysFromSeed(stranger).publicKey}, which no node of the roster`),
    });
  });

  it('refuses every bad fleet option in the one wording, naming its key (Invalid natsTransport options: <key>: …)', async () => {
    const cases: Array<[string, Parameters<typeof natsTransport>[0]]> = [
      ['roster', { servers, bus: 'shop' }],
      ['insecure', { servers, bus: 'shop', roster, nkeySeed: seedA, insecure: true }],
      ['nkeySeed', { servers, bus: 'shop', roster }],
      ['seal', { servers, bus: 'shop', insecure: true, seal: 'always' }],
      ['roster', { servers, bus: 'shop', roster: '/nonexistent/roster.json', nkeySeed: seedA }],
      ['roster', { servers, bus: 'shop', roster: { ...roster, nodes: {} }, nkeySeed: seedA }],
      ['roster', { servers, bus: 'other', roster, nkeySeed: seedA }],
      ['nkeySeed', { servers, bus: 'shop', roster, nkeySeed: newSeed() }],
      // One character in the middle changed (the last may hold only padding bits): its checksum fails.
      ['nkeySeed', { servers, bus: 'shop', roster, nkeySeed: `${seedA.slice(0, 20)}${seedA[20] === 'A' ? 'B' : 'A'}${seedA.slice(21)}` }],
    ];
    for (const [key, options] of cases) {
      await expect(natsTransport(options)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(new RegExp(`^Invalid natsTransport options: ${key}: `)) });
    }
  });

  it("refuses seal: 'always' without a roster, and a roster that does not check", async () => {
    await expect(natsTransport({ servers, bus: 'shop', insecure: true, seal: 'always' })).rejects.toMatchObject({ message: expect.stringMatching(/needs a `roster`/) });
    await expect(natsTransport({ servers, bus: 'shop', roster: { ...roster, nodes: {} }, nkeySeed: seedA })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/invalid roster: "nodes" must name 1/) });
  });
});
