// SPEC "Fleet trust: signed and sealed envelopes", promise by promise, against a real
// nats-server running the `auth.conf` of `switchboard fleet init`, plus one user the fleet
// never has: `broker`, allowed every subject, standing for the broker itself (or anyone who
// controls it) reading and writing what it carries.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createUser } from '@nats-io/nkeys';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { Msg } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Orchestrator, type OrchestratorOptions } from '../../src/index.js';
import { ALLOW_ALL } from '../../src/testing/index.js';
import { main } from '../../src/cli/main.js';
import { Claims } from '../../src/nats/claims.js';
import { NodeConnection } from '../../src/nats/connection.js';
import { natsTransport, type NatsTransportOptions } from '../../src/nats/index.js';
import { keysFromSeed } from '../../src/nats/keys.js';
import { Proofs } from '../../src/nats/proofs.js';
import { loadRoster, RosterIndex } from '../../src/nats/roster.js';
import { Subjects } from '../../src/nats/subjects.js';
import { answerLine } from '../../src/nats/wire.js';
import { denials, signedFrame } from '../support/fleet.js';
import { natsBin, natsUrl, skip } from './context.js';
import { startNatsServer, type NatsServer } from './server.js';

if (skip !== '') console.warn(`[nats] fleet-contract.test.ts skipped: ${skip}`);

const quiet = { out: () => {}, err: (l: string) => console.error(l) };
const dir = mkdtempSync(join(tmpdir(), 'switchboard-contract-'));
const cfg = join(dir, 'fleet');
const seed = (holder: string) => readFileSync(join(cfg, `${holder}.nk`), 'utf8');
const rosterPath = join(cfg, 'roster.json');
const BUS = 'shop';
const FLEET = { dir: cfg, bus: BUS };
const subjects = new Subjects(BUS);
const buses: Orchestrator[] = [];
const conns: NodeConnection[] = [];
const opened: Claims[] = [];
const brokerSeed = new TextDecoder().decode(createUser().getSeed());

afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((c) => c.close()));
  await Promise.allSettled(buses.splice(0).map((b) => b.close()));
  await Promise.allSettled(conns.splice(0).map((c) => c.close()));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let server: NatsServer;

async function startNode(node: string, options: Partial<NatsTransportOptions> = {}, bus: Partial<OrchestratorOptions> = {}): Promise<Orchestrator> {
  const transport = await natsTransport({ servers: server.url, bus: BUS, roster: rosterPath, nkeySeed: seed(node), ...options });
  const o = new Orchestrator({ node, transport, policies: ALLOW_ALL, ...bus });
  buses.push(o);
  return o;
}

/** A raw client: with a node's credentials (a thief of its seed), or as the broker itself. */
async function raw(holder: string | 'broker'): Promise<NodeConnection> {
  const c = await NodeConnection.open({ servers: server.url, inboxPrefix: `${BUS}._r.${holder}`, nkeySeed: holder === 'broker' ? brokerSeed : seed(holder) });
  conns.push(c);
  return c;
}

describe.skipIf(skip !== '')('fleet trust on a nats-server with the auth.conf of `switchboard fleet init`', () => {
  beforeAll(async () => {
    const file = join(dir, 'fleet.json');
    writeFileSync(file, JSON.stringify({ bus: BUS, nodes: { n1: ['alice', 'carol'], n2: ['bob', 'chat-*'], n3: ['erin'] }, operators: ['op'] }));
    expect(main(['fleet', 'init', file, '--out', cfg], quiet)).toBe(0);
    const broker = keysFromSeed(brokerSeed).publicKey;
    const auth = readFileSync(join(cfg, 'auth.conf'), 'utf8').replace('  users = [\n', `  users = [\n    { nkey: "${broker}", permissions: { publish: { allow: [">"] }, subscribe: { allow: [">"] } } }\n`);
    server = await startNatsServer(natsBin, { extraConfig: auth });
    expect(await main(['fleet', 'bucket', '--servers', server.url, '--creds', join(cfg, 'op.nk')], quiet)).toBe(0);
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it('takes the roster as an object as well as a path', async () => {
    const n1 = await startNode('n1', { roster: JSON.parse(readFileSync(rosterPath, 'utf8')) });
    const n2 = await startNode('n2');
    n2.register('bob', { handlers: { echo: (p) => p } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    await expect(alice.ask('bob', 'echo', { x: 1 })).resolves.toEqual({ x: 1 });
  });

  it('refuses a second node registering an id another node holds with DUPLICATE_AGENT naming the holder: the handle dies, ready() rejects', async () => {
    const n1 = await startNode('n1');
    n1.register('alice');
    await n1.ready();
    // Registered before n2 has read the claims: its claim finds the id taken.
    const n2 = await startNode('n2');
    const taken = n2.register('alice');
    await expect(n2.ready()).rejects.toMatchObject({ code: 'DUPLICATE_AGENT', message: expect.stringMatching(/already claimed by node "n1"/) });
    expect(taken.alive).toBe(false);
    // Once n2 knows the claim, registering the id is refused at once, naming the holder.
    expect(() => n2.register('alice')).toThrow(expect.objectContaining({ code: 'DUPLICATE_AGENT', message: expect.stringMatching(/on another node: "n1"/) }));
  });

  it("refuses an Orchestrator whose node id is not in the roster, naming the roster node of its seed", async () => {
    const transport = await natsTransport({ servers: server.url, bus: BUS, roster: rosterPath, nkeySeed: seed('n2') });
    try {
      expect(() => new Orchestrator({ transport, policies: ALLOW_ALL })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/is not in the roster of bus "shop" .*pass `node: "n2"`/) }));
    } finally {
      await transport.close();
    }
  });

  it("refuses to start a node whose roster entry lists another sealing key than its seed's, naming both", async () => {
    const roster = loadRoster(rosterPath);
    const other = keysFromSeed(seed('op')).sealingKey;
    const edited = { ...roster, nodes: { ...roster.nodes, n1: { ...roster.nodes.n1!, sealingKey: other } } };
    const transport = await natsTransport({ servers: server.url, bus: BUS, roster: edited, nkeySeed: seed('n1') });
    try {
      expect(() => new Orchestrator({ node: 'n1', transport, policies: ALLOW_ALL })).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(`sealing key is ${roster.nodes.n1!.sealingKey}, but the roster lists node "n1" with sealing key ${other}`) }),
      );
    } finally {
      await transport.close();
    }
  });

  it('resolves ready() without waiting for roster nodes that are not running', async () => {
    const n1 = await startNode('n1');
    n1.register('alice');
    await expect(n1.ready()).resolves.toBeUndefined();
  });

  it("refuses an answer signed by a node the roster does not let serve the recipient: recorded, emitted, and the ask settles with the real reply", async () => {
    const n1 = await startNode('n1');
    const n3 = await startNode('n3');
    // erin answers only once n1 has refused the forged answer: the ask is still pending then,
    // whichever of the two reaches n1 first on a busy machine.
    const refused = new Promise<void>((resolve) => n1.events.on('message:denied', () => resolve()));
    n3.register('erin', { handlers: { pay: async () => (await refused, 'from erin') } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n3.ready()]);
    const denied = denials(n1);
    // n2 (a `chat-*` node) may read every inbound subject and answer what it reads.
    const thief = await raw('n2');
    const roster = new RosterIndex(loadRoster(rosterPath));
    const proofs = new Proofs({ bus: BUS, node: 'n2', roster, keys: keysFromSeed(seed('n2')) });
    thief.nc.subscribe(subjects.inbound('erin', 'alice', 'ask'), {
      callback: (_e, m: Msg) => {
        const id = Buffer.from(m.data).toString('latin1').split('\n')[1]!.split(' ')[2]!;
        m.respond(proofs.wrap(m.reply!, answerLine('r', id), '"forged"', 'n1', false));
      },
    });
    await thief.nc.flush();
    await expect(alice.ask('erin', 'pay', {})).resolves.toBe('from erin');
    await vi.waitFor(() => expect(denied).toHaveLength(1));
    expect(denied[0]).toMatchObject({ code: 'POLICY_DENIED', reason: expect.stringMatching(/signed by node "n2", which the roster does not let serve "erin"/) });
    await n1.flush();
    expect(n1.getMessageLog({ decision: 'denied' })).toEqual([
      expect.objectContaining({ type: 'reply', from: 'erin', to: 'alice', peerNode: 'n2', reason: expect.stringMatching(/roster does not let serve "erin"/) }),
    ]);
  });

  it("ignores a claim that names another node than its signer: peers keep the agent where its last valid claim put it", async () => {
    const roster = new RosterIndex(loadRoster(rosterPath));
    const claimsOf = async (node: string) => {
      const conn = await raw(node);
      const claims = await Claims.open({ connection: conn, subjects, node, trust: { roster, keys: keysFromSeed(seed(node)) } });
      opened.push(claims);
      return claims;
    };
    const n1 = await claimsOf('n1');
    const n3 = await claimsOf('n3');
    await n3.watch();
    await n1.claim('alice');
    await vi.waitFor(() => expect(n3.snapshot().find((c) => c.agent === 'alice')).toMatchObject({ node: 'n1' }));
    // n1 stops renewing (paused, say) but its claim is live for its lease.
    n1.abandon();
    // n2 serves `chat-*`, so the broker lets it write any claim key: it overwrites alice's with
    // a claim naming itself.
    const kv = await new Kvm((await raw('n2')).nc).open(subjects.claimsBucket());
    const keys = keysFromSeed(seed('n2'));
    const body = { v: 2, node: 'n2', agent: 'alice', capabilities: [], trust: 9, leaseMs: 60_000, ts: Date.now() };
    const sig = keys.sign(Buffer.from(`sb-claim1\n${BUS}\n${JSON.stringify(body)}`)).toString('base64');
    await kv.put('alice', JSON.stringify({ ...body, sig }));
    // A valid claim written after it: once n3's watch shows it, it has read the forged one.
    const n1b = await claimsOf('n1');
    await n1b.claim('carol');
    await vi.waitFor(() => expect(n3.snapshot().map((c) => c.agent)).toContain('carol'));
    expect(n3.snapshot().find((c) => c.agent === 'alice')).toMatchObject({ node: 'n1' });
  });

  it('claims its own agent again as soon as its watch sees the claim deleted, overwritten, or written back from long ago, not at the next renewal', async () => {
    const n1 = await startNode('n1');
    n1.register('alice');
    await n1.ready();
    const kv = await new Kvm((await raw('n2')).nc).open(subjects.claimsBucket());
    const check = async () => {
      const entry = await kv.get('alice');
      expect(entry?.operation).toBe('PUT');
      expect(JSON.parse(entry!.string())).toMatchObject({ node: 'n1' });
    };
    await kv.delete('alice');
    // The renewal runs every leaseMs / 3 (5 s): waitFor gives up after 1 s.
    await vi.waitFor(check);
    await kv.put('alice', JSON.stringify({ v: 2, node: 'n2', agent: 'alice', capabilities: [], trust: 0, leaseMs: 60_000, ts: Date.now(), sig: 'AA' }));
    await vi.waitFor(check);
    // n1's own claim of long ago, written back: its old time would end the lease in peers' eyes.
    const current = (await kv.get('alice'))!;
    const stale = JSON.parse(current.string()) as { ts: number };
    const old = { ...stale, ts: stale.ts - 60_000 };
    const { sig: _sig, ...body } = old as typeof old & { sig: string };
    const resigned = { ...body, sig: keysFromSeed(seed('n1')).sign(Buffer.from(`sb-claim1\n${BUS}\n${JSON.stringify(body)}`)).toString('base64') };
    await kv.put('alice', JSON.stringify(resigned));
    await vi.waitFor(async () => expect((JSON.parse((await kv.get('alice'))!.string()) as { ts: number }).ts).toBeGreaterThan(stale.ts));
  });

  it('refuses a captured message the broker re-targets, re-types or alters: the signature covers recipient, type and body; never delivered, never answered, recorded and emitted', async () => {
    const n1 = await startNode('n1');
    const n2 = await startNode('n2', { seal: 'never' });
    const calls: string[] = [];
    n2.register('bob', { handlers: { pay: () => (calls.push('bob'), 'paid') } });
    n2.register('chat-1', { handlers: { pay: () => (calls.push('chat-1'), 'paid') } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    const broker = await raw('broker');
    const captured: Msg[] = [];
    broker.nc.subscribe(subjects.inbound('bob', 'alice', 'ask'), { callback: (_e, m) => void captured.push(m) });
    await broker.nc.flush();
    await expect(alice.ask('bob', 'pay', { amount: 1 })).resolves.toBe('paid');
    await vi.waitFor(() => expect(captured).toHaveLength(1));
    const denied = denials(n2);
    const data = Buffer.from(captured[0]!.data);
    const altered = Buffer.from(data.toString('latin1').replace('{"amount":1}', '{"amount":9}'), 'latin1');
    const attempts: Array<[string, Uint8Array]> = [
      [subjects.inbound('chat-1', 'alice', 'ask'), data],
      [subjects.inbound('bob', 'alice', 'delegate'), data],
      [subjects.inbound('bob', 'alice', 'ask'), altered],
    ];
    for (const [subject, bytes] of attempts) await expect(broker.nc.request(subject, bytes, { timeout: 300 })).rejects.toThrow(/timeout/i);
    await vi.waitFor(() => expect(denied).toHaveLength(3));
    for (const d of denied) expect(d).toMatchObject({ code: 'POLICY_DENIED', reason: expect.stringMatching(/the signature of node "n1" does not verify under its roster key/) });
    expect(calls).toEqual(['bob']);
    expect(n2.getMessageLog({ decision: 'denied' })).toHaveLength(3);
  });

  it('refuses to start where the operator has not created the claims bucket, naming `switchboard fleet bucket` (a node never creates it)', async () => {
    const bus = `nobucket${process.pid}`;
    const transport = await natsTransport({ servers: natsUrl, bus, roster: { ...loadRoster(rosterPath), bus }, nkeySeed: seed('n1') });
    const n1 = new Orchestrator({ node: 'n1', transport, policies: ALLOW_ALL });
    buses.push(n1);
    n1.register('alice');
    await expect(n1.ready()).rejects.toMatchObject({ code: 'TRANSPORT_UNAVAILABLE', message: expect.stringContaining('switchboard fleet bucket') });
  });

  it('remembers across a restart only the ids it admitted: a forged frame refused before the restart does not use up the id of a later genuine message', async () => {
    const db = join(dir, `n2-restart-${Date.now()}.db`);
    const n1 = await startNode('n1');
    n1.register('alice');
    await n1.ready();
    let n2 = await startNode('n2', {}, { audit: { path: db } });
    const calls: unknown[] = [];
    n2.register('bob', { handlers: { pay: (p) => (calls.push(p), 'paid') } });
    await n2.ready();
    const denied = denials(n2);
    const broker = await raw('broker');
    // n3 signs a frame as alice (not its agent): refused, recorded with alice's next id.
    const forged = signedFrame(FLEET, 'n3', 'bob', 'alice', { id: 'mvictim-1', intent: 'pay' });
    broker.nc.publish(forged.subject, forged.data);
    await vi.waitFor(() => expect(denied).toHaveLength(1));
    await n2.close();
    n2 = await startNode('n2', {}, { audit: { path: db } });
    n2.register('bob', { handlers: { pay: (p) => (calls.push(p), 'paid') } });
    await n2.ready();
    // alice's genuine message with that id (signed by n1) is taken.
    const genuine = signedFrame(FLEET, 'n1', 'bob', 'alice', { id: 'mvictim-1', intent: 'pay' }, '{"amount":5}');
    const answer = await broker.nc.request(genuine.subject, genuine.data, { timeout: 5000 });
    expect(Buffer.from(answer.data).toString('latin1')).toContain('"paid"');
    expect(calls).toEqual([{ amount: 5 }]);
  });

  it('carries a signed notify to each of several agents of one remote node, and a broadcast to every agent of every node; the receipt lists each', async () => {
    const n1 = await startNode('n1');
    const n2 = await startNode('n2');
    const got: string[] = [];
    for (const id of ['bob', 'chat-1', 'chat-2']) n2.register(id, { handlers: { news: () => void got.push(id) } });
    n1.register('carol', { handlers: { news: () => void got.push('carol') } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    expect(await alice.notify('news', {}, { to: ['bob', 'chat-1', 'chat-2'] })).toMatchObject({ delivered: ['bob', 'chat-1', 'chat-2'] });
    await vi.waitFor(() => expect([...got].sort()).toEqual(['bob', 'chat-1', 'chat-2']));
    got.length = 0;
    expect((await alice.notify('news', {})).delivered.slice().sort()).toEqual(['bob', 'carol', 'chat-1', 'chat-2']);
    await vi.waitFor(() => expect([...got].sort()).toEqual(['bob', 'carol', 'chat-1', 'chat-2']));
    for (const e of n2.getMessageLog({ type: 'notify' })) expect(JSON.parse(e.proof!)).toMatchObject({ node: 'n1' });
  });

  it('refuses a message captured before the receiver restarted also when its log did not outlive it (a :memory: log, the default): nothing signed before it started is taken', async () => {
    const n1 = await startNode('n1');
    let n2 = await startNode('n2');
    const calls: unknown[] = [];
    n2.register('bob', { handlers: { pay: (p) => (calls.push(p), 'paid') } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    const broker = await raw('broker');
    const captured: Msg[] = [];
    broker.nc.subscribe(subjects.inbound('bob', 'alice', 'ask'), { callback: (_e, m) => void captured.push(m) });
    await broker.nc.flush();
    await expect(alice.ask('bob', 'pay', { amount: 10 })).resolves.toBe('paid');
    await vi.waitFor(() => expect(captured).toHaveLength(1));
    await n2.close();
    n2 = await startNode('n2');
    n2.register('bob', { handlers: { pay: (p) => (calls.push(p), 'paid again') } });
    await n2.ready();
    const denied = denials(n2);
    await expect(broker.nc.request(captured[0]!.subject, captured[0]!.data, { timeout: 300 })).rejects.toThrow(/timeout/i);
    await vi.waitFor(() => expect(denied).toHaveLength(1));
    expect(denied[0]).toMatchObject({ code: 'POLICY_DENIED', reason: expect.stringMatching(/signed before this node started/) });
    expect(calls).toHaveLength(1);
    // What its peers send now is taken.
    await expect(alice.ask('bob', 'pay', { amount: 11 })).resolves.toBe('paid again');
  });

  it('checks minRecipientTrust on both nodes, each with its own registry: the sender with its remoteTrust, the receiver with its registration', async () => {
    const gated = [{ from: 'alice', to: 'bob', allow: ['ask' as const], minRecipientTrust: 50 }];
    const cases: Array<[number, number, string | undefined]> = [
      [49, 90, 'needs recipient trust >= 50'],
      [90, 10, '(node n2)'],
      [50, 50, undefined],
    ];
    for (const [granted, registered, refusal] of cases) {
      const n1 = await startNode('n1', {}, { policies: gated, remoteTrust: { bob: granted } });
      const n2 = await startNode('n2', {}, { policies: gated });
      const calls: unknown[] = [];
      n2.register('bob', { trust: registered, handlers: { pay: () => (calls.push(1), 'paid') } });
      const alice = n1.register('alice');
      await Promise.all([n1.ready(), n2.ready()]);
      if (refusal === undefined) await expect(alice.ask('bob', 'pay', {})).resolves.toBe('paid');
      else await expect(alice.ask('bob', 'pay', {})).rejects.toMatchObject({ code: 'POLICY_DENIED', message: expect.stringContaining(refusal) });
      expect(calls).toHaveLength(refusal === undefined ? 1 : 0);
      await Promise.all(buses.splice(0).map((b) => b.close()));
    }
  });

  it('never lets a node update the claims stream (to allow rollups, add a subject) or delete one of its messages (another node\'s claim)', async () => {
    const n1 = await startNode('n1');
    n1.register('alice');
    await n1.ready();
    const jsm = await jetstreamManager((await raw('n3')).nc);
    const info = await jsm.streams.info('KV_sb_shop_agents');
    await expect(jsm.streams.update('KV_sb_shop_agents', { ...info.config, allow_rollup_hdrs: true })).rejects.toThrow(/Permissions Violation/);
    await expect(jsm.streams.update('KV_sb_shop_agents', { ...info.config, subjects: [...info.config.subjects, 'shop.in.>'] })).rejects.toThrow(/Permissions Violation/);
    const alice = await new Kvm((await raw('n3')).nc).open(subjects.claimsBucket()).then((kv) => kv.get('alice'));
    await expect(jsm.streams.deleteMessage('KV_sb_shop_agents', alice!.revision)).rejects.toThrow(/Permissions Violation/);
    const after = await jetstreamManager((await raw('broker')).nc).then((m) => m.streams.info('KV_sb_shop_agents'));
    expect(after.config).toMatchObject({ allow_rollup_hdrs: false, deny_delete: true, deny_purge: true, subjects: ['$KV.sb_shop_agents.>'] });
  });

  it("refuses a cancel and a progress report signed by a node that may not speak for their sender, saying in the row what the frame was", async () => {
    const n1 = await startNode('n1');
    n1.register('alice');
    await n1.ready();
    const denied = denials(n1);
    const roster = new RosterIndex(loadRoster(rosterPath));
    const proofs = new Proofs({ bus: BUS, node: 'n3', roster, keys: keysFromSeed(seed('n3')) });
    const broker = await raw('broker');
    for (const kind of ['cancel', 'progress'] as const) {
      const subject = subjects.inbound('alice', 'bob', kind);
      broker.nc.publish(subject, proofs.wrap(subject, answerLine('a', 'm-1'), '{"fraction":0.5}', undefined, false));
    }
    await vi.waitFor(() => expect(denied).toHaveLength(2));
    await n1.flush();
    const reasons = n1.getMessageLog({ decision: 'denied' }).map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining([
      expect.stringMatching(/^a cancel frame refused before reading: node "n3" signed a cancel from "bob"/),
      expect.stringMatching(/^a progress frame refused before reading: node "n3" signed a progress from "bob"/),
    ]));
  });

  it('refuses a digest frame captured before the receiver restarted when its log did not outlive it', async () => {
    const n1 = await startNode('n1', { proof: 'digest' });
    let n2 = await startNode('n2');
    n2.register('bob', { handlers: { echo: (p) => p } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    const broker = await raw('broker');
    const captured: Msg[] = [];
    // Only n1's digest frames to n2 (n2 sends its own, for its replies, the other way).
    broker.nc.subscribe(subjects.inbound('bob', 'alice', 'digest'), { callback: (_e, m) => void captured.push(m) });
    await broker.nc.flush();
    // The first frame is signed; those right after it are MAC'd, and a digest frame covers them.
    await Promise.all([1, 2, 3].map((i) => expect(alice.ask('bob', 'echo', i)).resolves.toBe(i)));
    await vi.waitFor(() => expect(captured.length).toBeGreaterThan(0), { timeout: 5000 });
    await n2.close();
    n2 = await startNode('n2');
    n2.register('bob', { handlers: { echo: (p) => p } });
    await n2.ready();
    const denied = denials(n2);
    broker.nc.publish(captured[0]!.subject, captured[0]!.data);
    await vi.waitFor(() => expect(denied).toHaveLength(1));
    expect(denied[0]!.reason).toMatch(/digest .* refused: it was signed before this node started/);
  });

  it('seals progress notes and error texts as well as payloads and replies: the broker sees none of them, and both logs hash the plaintext reply', async () => {
    const n1 = await startNode('n1', { seal: 'always' });
    const n2 = await startNode('n2', { seal: 'always' });
    n2.register('bob', {
      handlers: {
        work: async (_p, ctx) => {
          ctx.progress(0.5, 'note-SECRET-1');
          await new Promise((r) => setTimeout(r, 50));
          return { done: 'reply-SECRET-2' };
        },
        fail: () => {
          throw new Error('error-SECRET-3');
        },
      },
    });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    const broker = await raw('broker');
    const seen: string[] = [];
    broker.nc.subscribe('>', { callback: (_e, m) => void seen.push(Buffer.from(m.data).toString('latin1')) });
    await broker.nc.flush();
    const notes: string[] = [];
    await expect(alice.delegate('bob', 'work', { card: 'payload-SECRET-0' }).onProgress((p) => notes.push(String(p.note)))).resolves.toEqual({ done: 'reply-SECRET-2' });
    await expect(alice.ask('bob', 'fail', {})).rejects.toMatchObject({ code: 'HANDLER_FAILED', message: expect.stringContaining('error-SECRET-3') });
    expect(notes).toContain('note-SECRET-1');
    await broker.nc.flush();
    expect(seen.length).toBeGreaterThan(3);
    expect(seen.filter((s) => /SECRET/.test(s))).toEqual([]);
    await Promise.all([n1.flush(), n2.flush()]);
    const sent = n1.getMessageLog({ agentId: 'alice', type: 'reply' })[0]!;
    const got = n2.getMessageLog({ agentId: 'bob', type: 'reply' }).find((e) => e.inReplyTo === sent.inReplyTo)!;
    expect(got.payloadHash).toBe(sent.payloadHash);
  });
});

describe.skipIf(skip !== '')('an insecure fleet (insecure: true on an open server)', () => {
  it('marks every cross-node entry unverified on both nodes: refusals, notifies and replays included', async () => {
    const bus = `open${process.pid}c`;
    const n1 = new Orchestrator({ node: 'n1', transport: await natsTransport({ servers: natsUrl, bus, insecure: true }), policies: ALLOW_ALL });
    const n2 = new Orchestrator({ node: 'n2', transport: await natsTransport({ servers: natsUrl, bus, insecure: true }), policies: [{ from: 'alice', to: 'bob', allow: ['ask', 'notify'] }] });
    buses.push(n1, n2);
    n2.register('bob', { handlers: { echo: () => 'ok', news: () => undefined } });
    n2.register('dan', { handlers: { echo: () => 'ok' } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    const spy = await NodeConnection.open({ servers: natsUrl, inboxPrefix: `${bus}._r.spy` });
    conns.push(spy);
    const captured: Msg[] = [];
    spy.nc.subscribe(new Subjects(bus).inbound('bob', 'alice', 'ask'), { callback: (_e, m) => void captured.push(m) });
    await spy.nc.flush();
    await expect(alice.ask('bob', 'echo', {})).resolves.toBe('ok');
    await expect(alice.ask('dan', 'echo', {})).rejects.toMatchObject({ code: 'POLICY_DENIED' });
    expect((await alice.notify('news', {}, { to: ['bob'] })).delivered).toEqual(['bob']);
    await vi.waitFor(() => expect(captured).toHaveLength(1));
    const denied = denials(n2);
    spy.nc.publish(captured[0]!.subject, captured[0]!.data);
    await vi.waitFor(() => expect(denied).toHaveLength(1));
    await Promise.all([n1.flush(), n2.flush()]);
    const entries = [...n1.getMessageLog(), ...n2.getMessageLog()];
    expect(entries.length).toBeGreaterThanOrEqual(7);
    for (const entry of entries) expect({ id: entry.messageId, type: entry.type, decision: entry.decision, unverified: entry.unverified }).toMatchObject({ unverified: true });
  });
  it('refuses a claims stream made beforehand with republish, sources or a mirror, naming each difference', async () => {
    const conn = await NodeConnection.open({ servers: natsUrl, inboxPrefix: `x${process.pid}._r.x` });
    conns.push(conn);
    const jsm = await jetstreamManager(conn.nc);
    const made: string[] = [];
    const refusal = async (bus: string) => {
      const node = new Orchestrator({ node: 'n1', transport: await natsTransport({ servers: natsUrl, bus, insecure: true }), policies: ALLOW_ALL });
      buses.push(node);
      node.register('alice');
      return node.ready().then(() => 'ready', (e: Error) => e.message);
    };
    try {
      const a = `rep${process.pid}`;
      made.push(`KV_sb_${a}_agents`, `src${process.pid}`);
      await jsm.streams.add({ name: `src${process.pid}`, subjects: [`src${process.pid}.>`] });
      await jsm.streams.add({
        name: `KV_sb_${a}_agents`, subjects: [`$KV.sb_${a}_agents.>`], max_msgs_per_subject: 1, deny_delete: true, deny_purge: true,
        republish: { src: '>', dest: `spy${process.pid}.>` }, sources: [{ name: `src${process.pid}` }],
      });
      const first = await refusal(a);
      expect(first).toMatch(/unexpected settings, refused: .*republish .*spy/);
      expect(first).toMatch(/sources .*src\d+/);
      const b = `mir${process.pid}`;
      made.push(`KV_sb_${b}_agents`);
      await jsm.streams.add({ name: `KV_sb_${b}_agents`, mirror: { name: `src${process.pid}` } });
      expect(await refusal(b)).toMatch(/unexpected settings, refused: subjects \[\].*mirror .*src\d+/);
    } finally {
      for (const name of made.reverse()) await jsm.streams.delete(name).catch(() => false);
    }
  });
  it('refuses at the sender a message its `sealed: true` rule covers when there is no roster to seal with, never carried', async () => {
    const bus = `opens${process.pid}`;
    const policies = [{ from: 'alice', to: 'bob', allow: ['ask' as const], sealed: true }];
    const n1 = new Orchestrator({ node: 'n1', transport: await natsTransport({ servers: natsUrl, bus, insecure: true }), policies });
    const n2 = new Orchestrator({ node: 'n2', transport: await natsTransport({ servers: natsUrl, bus, insecure: true }), policies: ALLOW_ALL });
    buses.push(n1, n2);
    const calls: unknown[] = [];
    n2.register('bob', { handlers: { pay: (p) => (calls.push(p), 'paid') } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    await expect(alice.ask('bob', 'pay', { card: '4111' })).rejects.toMatchObject({ code: 'POLICY_DENIED', message: expect.stringMatching(/requires sealing/) });
    expect(calls).toEqual([]);
  });
});
